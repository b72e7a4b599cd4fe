package migrate

import (
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ferry-migrate/ferry/internal/testenv"
)

// TestIsCRIU finds a real CRIU (a page server waiting for its client) as
// CRIU, whether the binary runs as itself or through its own loader as the
// project's install does, and this test process as not.
func TestIsCRIU(t *testing.T) {
	testenv.RequireRoot(t)
	info := testenv.CRIU(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	cmd := exec.Command(info.Path, "page-server", "--address", "127.0.0.1", "--port", port, "-D", t.TempDir(), "-o", "/dev/null")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// The wrapper script execs the loader: wait for the exec.
	found := false
	for deadline := time.Now().Add(10 * time.Second); !found && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		found = IsCRIU(cmd.Process.Pid)
	}
	if !found {
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/comm")
		t.Fatalf("criu page-server (pid %d, comm %q) not recognised as CRIU", cmd.Process.Pid, comm)
	}
	if !slices.Contains(CRIUProcesses(), cmd.Process.Pid) {
		t.Errorf("CRIUProcesses lacks %d", cmd.Process.Pid)
	}
	if IsCRIU(os.Getpid()) {
		t.Error("the test process is taken for CRIU")
	}
}
