package testbed

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/testenv"
)

var (
	buildOnce sync.Once
	builtExe  string
	buildErr  error
)

// ferryExe builds a static ferry binary for the launcher and the zoo (the
// test binary itself is neither ferry nor, necessarily, static).
func ferryExe(t testing.TB) string {
	t.Helper()
	testenv.RequireCommand(t, "go")
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ferry-testbed-exe-")
		if err != nil {
			buildErr = err
			return
		}
		builtExe = filepath.Join(dir, "ferry")
		cmd := exec.Command("go", "build", "-o", builtExe, "../cmd/ferry")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtExe
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtExe != "" {
		os.RemoveAll(filepath.Dir(builtExe))
	}
	os.Exit(code)
}

var prefixSeq int
var prefixMu sync.Mutex

// newTestbed returns a testbed isolated from a developer's own: its own
// directory and host-name prefix (so its own namespaces). It is torn down
// when the test ends.
func newTestbed(t testing.TB) *Testbed {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "nsenter", "nft")
	info := testenv.CRIU(t)
	prefixMu.Lock()
	prefixSeq++
	prefix := fmt.Sprintf("t%d%c", os.Getpid()%10000, 'a'+prefixSeq%26)
	prefixMu.Unlock()
	tb := &Testbed{Dir: testDir(t), Prefix: prefix, Exe: ferryExe(t), CRIU: info.Path, Local: host.Local{}}
	t.Cleanup(func() {
		if _, err := tb.Down(context.Background()); err != nil {
			t.Errorf("cleanup: down: %v", err)
		}
	})
	return tb
}

// leftovers lists what a testbed with this prefix may have left on the
// machine: namespaces, links, mounts, nftables tables, processes.
func leftovers(t *testing.T, tb *Testbed, marker string, nftBefore string) []string {
	t.Helper()
	var out []string
	if ns := tb.leftoverNetns(); len(ns) > 0 {
		out = append(out, fmt.Sprintf("namespaces: %v", ns))
	}
	links, err := exec.Command("ip", "-o", "link").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(links), "\n") {
		if strings.Contains(l, tb.Prefix) || strings.Contains(l, "wl") && strings.Contains(l, "veth") {
			out = append(out, "link: "+l)
		}
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, tb.Dir) || strings.Contains(l, host.TestbedNetnsPrefix+tb.Prefix) {
			out = append(out, "mount: "+l)
		}
	}
	// CRIU always runs inside the testbed's namespaces, so the machine's
	// own tables must be as they were. Another package's test may be
	// running CRIU right now, so a difference must last to count.
	if nft := nftTables(t); nft != nftBefore {
		time.Sleep(2 * time.Second)
		if nft := nftTables(t); nft != nftBefore {
			out = append(out, fmt.Sprintf("nft tables changed: before %q, after %q", nftBefore, nft))
		}
	}
	if pids := TestbedProcesses(marker, nil); len(pids) > 0 {
		out = append(out, fmt.Sprintf("processes: %v", pids))
	}
	if _, err := os.Stat(tb.statePath()); err == nil {
		out = append(out, "state file "+tb.statePath())
	}
	if _, err := os.Stat(filepath.Join(tb.Dir, "hosts")); err == nil {
		out = append(out, "hosts dir")
	}
	return out
}

func nftTables(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("nft", "list", "tables").Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(bytes.TrimSpace(out))
}

// reaped waits until pid is gone from /proc altogether: not even a zombie
// is left, so someone (its supervisor) reaped it.
func reaped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return
		}
		if time.Now().After(deadline) {
			st, _ := readStat(pid)
			t.Errorf("pid %d not reaped after 5s (state %c, parent %d)", pid, st.State, st.PPid)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testDir is a fresh directory for a testbed: t.TempDir, unless that is on
// a nodev mount (a tmpfs /tmp), where workloads could not open /dev/null.
func testDir(t testing.TB) string {
	dir := t.TempDir()
	if checkDev(dir) == nil {
		return dir
	}
	dir, err := os.MkdirTemp("/var/tmp", "ferry-testbed-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
