package testenv

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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

// StartHolder re-executes the test binary as a dumpable workload holding
// mib MiB of written memory: its own session, stdio on /dev/null. It
// returns once the memory is resident; the process is killed and reaped
// when the test ends. env is added to its environment.
func StartHolder(t testing.TB, mib int, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), holdEnv+"="+strconv.Itoa(mib)), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
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
