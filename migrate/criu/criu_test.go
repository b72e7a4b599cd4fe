package criu

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/migrate"
)

func TestMain(m *testing.M) {
	// Restored trees are orphaned when CRIU exits; as a subreaper this
	// test process adopts and reaps them (this VM's PID 1 reaps slowly).
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	os.Exit(m.Run())
}

// startTree starts a dumpable process: its own session, stdio on /dev/null.
func startTree(t *testing.T) *exec.Cmd {
	t.Helper()
	return testenv.StartDumpable(t, "sleep", "1000")
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

func reap(pid int) {
	var ws unix.WaitStatus
	_, _ = unix.Wait4(pid, &ws, 0, nil)
}

// lift is a stand-in for the explain package's lifter: Error lines only.
func lift(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "Error (") && !strings.Contains(l, "RLIMIT_NOFILE") {
			out = append(out, l)
		}
	}
	return out
}

func TestCheckpointRestore(t *testing.T) {
	testenv.RequireRoot(t)
	info := testenv.CRIU(t)
	d := &Driver{Path: info.Path, Lift: lift}
	ctx := context.Background()

	w := startTree(t)
	pid := w.Process.Pid
	dir := t.TempDir()
	logs := t.TempDir()
	res, err := d.Checkpoint(ctx, migrate.CheckpointRequest{
		Target: migrate.Target{Kind: migrate.KindPID, PID: pid}, ImagesDir: dir, LogDir: logs,
	})
	if err != nil {
		t.Fatalf("checkpoint: %v (lifted %v)", err, liftedOf(err))
	}
	_, _ = w.Process.Wait() // CRIU killed it: reap the zombie so its pid is free
	if res.Log != filepath.Join(logs, DumpLog) {
		t.Errorf("log = %s", res.Log)
	}
	if b, err := os.ReadFile(res.Log); err != nil || !strings.Contains(string(b), "Dumping finished successfully") {
		t.Errorf("dump log: %v", err)
	}
	if res.Stats.PagesWritten == 0 || res.Stats.FrozenTime == 0 || res.Stats.ImageBytes == 0 {
		t.Errorf("stats not decoded: %+v", res.Stats)
	}

	rres, err := d.Restore(ctx, migrate.RestoreRequest{ImagesDir: dir, LogDir: logs})
	if err != nil {
		t.Fatalf("restore: %v (lifted %v)", err, liftedOf(err))
	}
	t.Cleanup(func() { _ = syscall.Kill(rres.PID, syscall.SIGKILL); reap(rres.PID) })
	if rres.PID != pid {
		t.Errorf("restored pid %d, want %d", rres.PID, pid)
	}
	if !alive(rres.PID) {
		t.Errorf("restored pid %d is not running", rres.PID)
	}
	if rres.Stats.PagesRestored == 0 {
		t.Errorf("restore stats not decoded: %+v", rres.Stats)
	}
}

func liftedOf(err error) []string {
	var f *migrate.Failure
	if errors.As(err, &f) {
		return f.Lifted
	}
	return nil
}

// A restore whose pid is taken fails with CRIU's real cause lifted, not
// go-criu's summary, and leaves the running original alone.
func TestRestorePidClash(t *testing.T) {
	testenv.RequireRoot(t)
	info := testenv.CRIU(t)
	d := &Driver{Path: info.Path, Lift: lift}
	ctx := context.Background()

	w := startTree(t)
	dir := t.TempDir()
	// A dump that leaves the tree running may leave CRIU's lock table.
	t.Cleanup(func() {
		_ = migrate.DropRunTables(ctx, host.Local{}, nil, filepath.Join(dir, DumpLog), filepath.Join(dir, RestoreLog))
	})
	if _, err := d.Checkpoint(ctx, migrate.CheckpointRequest{
		Target: migrate.Target{Kind: migrate.KindPID, PID: w.Process.Pid}, ImagesDir: dir, LeaveRunning: true,
	}); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	_, err := d.Restore(ctx, migrate.RestoreRequest{ImagesDir: dir})
	var f *migrate.Failure
	if !errors.As(err, &f) {
		t.Fatalf("restore over a running original: err = %v, want *migrate.Failure", err)
	}
	if len(f.Lifted) == 0 || !strings.Contains(strings.Join(f.Lifted, "\n"), "File exists") {
		t.Errorf("lifted %q, want the pid clash", f.Lifted)
	}
	if !strings.Contains(err.Error(), "File exists") {
		t.Errorf("error %q does not name the cause", err)
	}
	if !alive(w.Process.Pid) {
		t.Error("the original died")
	}
}

func TestCheckTree(t *testing.T) {
	// A child in our session: its session leader is outside its tree.
	inSession := exec.Command("sleep", "1000")
	if err := inSession.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inSession.Process.Kill(); _, _ = inSession.Process.Wait() })
	own := startTree(t)
	time.Sleep(10 * time.Millisecond)

	tests := []struct {
		name    string
		pid     int
		shell   bool
		wantErr string
	}{
		{"own session", own.Process.Pid, false, ""},
		{"session leader outside", inSession.Process.Pid, false, "is not the root of its process tree"},
		{"shell job allowed", inSession.Process.Pid, true, ""},
		{"missing", 1 << 30, false, "no such process"},
		{"init", 1, false, "init or ferry"},
		{"self", os.Getpid(), false, "init or ferry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckTree(tt.pid, tt.shell)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			var te *TreeError
			if !errors.As(err, &te) || !strings.Contains(err.Error(), tt.wantErr) || te.Hint() == "" {
				t.Errorf("err = %v, want TreeError with %q and a hint", err, tt.wantErr)
			}
		})
	}
}

func TestReadStatsCorrupt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"short": {1, 2},
		"magic": make([]byte, 16),
		"trunc": {0x40, 0x59, 0x10, 0x55, 0x06, 0x33, 0x09, 0x57, 0xff, 0, 0, 0, 1},
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := readStats(p); err == nil {
			t.Errorf("%s: corrupt stats accepted", name)
		}
	}
}
