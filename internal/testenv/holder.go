package testenv

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// holdEnv makes a re-executed test binary a memory-holding workload.
const holdEnv = "FERRY_TEST_HOLD_MIB"

// HoldMemoryIfAsked turns this process into a workload that writes N MiB
// and sleeps for ever, when StartHolder started it; otherwise it returns.
// Call it from an init function of the test package that uses StartHolder.
func HoldMemoryIfAsked() {
	v := os.Getenv(holdEnv)
	if v == "" {
		return
	}
	n, _ := strconv.Atoi(v)
	mem := make([]byte, n<<20)
	for i := range mem {
		mem[i] = byte(i)
	}
	for {
		time.Sleep(time.Hour)
		_ = mem[len(mem)-1]
	}
}

// StartDumpable starts argv as a process CRIU can dump as the root of its
// tree: its own session, stdio on /dev/null, no other fds. It is killed and
// reaped when the test ends.
func StartDumpable(t testing.TB, argv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	startDumpable(t, cmd)
	return cmd
}

func startDumpable(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
}

// BecomeSubreaper makes the test process the child subreaper of what it
// starts: trees CRIU restores are orphaned when CRIU exits, and this VM's
// PID 1 reaps slowly; the test adopts and reaps them instead.
func BecomeSubreaper(t testing.TB) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
}

// StartHolder re-executes the test binary as a dumpable workload holding
// mib MiB of written memory: its own session, stdio on /dev/null. It
// returns once the memory is resident; the process is killed and reaped
// when the test ends. env is added to its environment.
func StartHolder(t testing.TB, mib int, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), holdEnv+"="+strconv.Itoa(mib)), env...)
	startDumpable(t, cmd)
	for i := 0; i < 1000 && rssBytes(cmd.Process.Pid) < int64(mib-mib/16)<<20; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	return cmd
}

func rssBytes(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseInt(f[1], 10, 64)
	return n * int64(os.Getpagesize())
}
