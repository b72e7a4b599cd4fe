package cmd

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/migrate"
)

// runJSON runs ferry with --output json and decodes stdout into v.
func runJSON(t *testing.T, v any, args ...string) (int, string) {
	t.Helper()
	io, out, errOut := testIO()
	code := Run(context.Background(), append(args, "--output", "json"), io)
	if out.Len() > 0 {
		if err := json.Unmarshal(out.Bytes(), v); err != nil {
			t.Fatalf("ferry %s: stdout is not JSON: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return code, errOut.String()
}

// TestCheckpointRestoreCommands drives the real commands against real CRIU:
// checkpoint a process tree, restore it, and read the journals back.
func TestCheckpointRestoreCommands(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.CRIU(t)
	t.Setenv("FERRY_RUNS", t.TempDir())
	// Restored trees are orphaned when CRIU exits: adopt and reap them.
	testenv.BecomeSubreaper(t)

	w := testenv.StartDumpable(t, "sleep", "1000")
	pid := w.Process.Pid
	dir := filepath.Join(t.TempDir(), "ckpt")

	var cj migrate.Journal
	code, stderr := runJSON(t, &cj, "checkpoint", "pid:"+strconv.Itoa(pid), "--dir", dir)
	if code != exit.OK {
		t.Fatalf("checkpoint exit %d: %s", code, stderr)
	}
	_, _ = w.Process.Wait() // CRIU killed it; free its pid for the restore
	if cj.Result != migrate.RunOK || cj.Stats == nil || cj.Stats.PagesWritten == 0 {
		t.Errorf("checkpoint journal: %+v", cj)
	}

	// Dumping into the same directory again is refused before CRIU runs.
	var again migrate.Journal
	if code, _ := runJSON(t, &again, "checkpoint", "pid:"+strconv.Itoa(pid), "--dir", dir); code != exit.Failure {
		t.Errorf("checkpoint over existing images: exit %d, want 1", code)
	}

	var rj migrate.Journal
	code, stderr = runJSON(t, &rj, "restore", "--dir", dir)
	if code != exit.OK {
		t.Fatalf("restore exit %d: %s", code, stderr)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, 0, nil)
	})
	if rj.Target != "pid:"+strconv.Itoa(pid) {
		t.Errorf("restored %s, want pid:%d", rj.Target, pid)
	}

	// A second restore clashes with the running copy: exit 4, the copy
	// keeps running, and the error names the run.
	var clash migrate.Journal
	code, stderr = runJSON(t, &clash, "restore", "--dir", dir)
	if code != exit.Migration || !strings.Contains(stderr, "File exists") || !strings.Contains(stderr, "hint: known issue") ||
		!strings.Contains(stderr, "hint: bug-report bundle: ") {
		t.Errorf("clashing restore: exit %d, stderr %s", code, stderr)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Errorf("the restored copy died: %v", err)
	}

	var shown migrate.Journal
	if code, stderr := runJSON(t, &shown, "runs", "show", cj.ID); code != exit.OK || shown.ID != cj.ID {
		t.Errorf("runs show: exit %d id %q: %s", code, shown.ID, stderr)
	}
	var list []migrate.Journal
	if code, _ := runJSON(t, &list, "runs"); code != exit.OK || len(list) != 4 {
		t.Errorf("runs: exit %d, %d runs, want 4", code, len(list))
	}
	if code, _ := runJSON(t, &shown, "runs", "show", "nope"); code != exit.Failure {
		t.Errorf("runs show nope: exit %d", code)
	}
}

func TestCheckpointBadInput(t *testing.T) {
	t.Setenv("FERRY_RUNS", t.TempDir())
	tests := []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{[]string{"checkpoint", "pid:abc", "--dir", "/tmp/x"}, exit.Usage, "pid must be a positive number"},
		{[]string{"checkpoint", "pid:1"}, exit.Usage, `required flag(s) "dir" not set`},
		{[]string{"checkpoint", "vm:x", "--dir", "/tmp/x"}, exit.Usage, "unknown kind"},
		{[]string{"restore", "--dir", "/nonexistent", "--on", "ssh://"}, exit.Usage, "missing host name"},
		{[]string{"checkpoint", "pid:1", "--dir", t.TempDir(), "--criu", "/nonexistent/criu"}, exit.Failure, "criu not found"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			io, _, errOut := testIO()
			if got := Run(context.Background(), tt.args, io); got != tt.wantCode {
				t.Errorf("exit %d, want %d: %s", got, tt.wantCode, errOut)
			}
			if !strings.Contains(errOut.String(), tt.wantErr) || !strings.Contains(errOut.String(), "hint: ") {
				t.Errorf("stderr lacks %q or a hint:\n%s", tt.wantErr, errOut)
			}
		})
	}
}
