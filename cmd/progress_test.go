package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-migrate/ferry/migrate"
)

func TestStepPrinter(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	step := migrate.Step{Name: migrate.StepDump, Host: "testbed:tb1", Result: migrate.StepRunning}
	done := step
	done.Result, done.Duration = migrate.StepOK, 1500*time.Millisecond

	// Not a terminal: one plain line per finished step, nothing while it runs.
	var plain bytes.Buffer
	p := stepPrinter(&IOStreams{ErrOut: &plain}, func(string) string { return dir })
	p(step)
	p(done)
	if got, want := plain.String(), "freeze-dump    testbed:tb1      1500.0ms  ok\n"; got != want {
		t.Errorf("plain progress:\n got %q\nwant %q", got, want)
	}

	// A terminal: a live line with the bytes the step wrote, then the same
	// plain line.
	var tty bytes.Buffer
	p = stepPrinter(&IOStreams{ErrOut: &tty, ErrTTY: true}, func(string) string { return dir })
	p(step)
	if err := os.WriteFile(filepath.Join(dir, "pages-1.img"), make([]byte, 3<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	p(done)
	out := tty.String()
	if !strings.Contains(out, "freeze-dump on testbed:tb1") || !strings.Contains(out, "3.1 MB") {
		t.Errorf("live progress lacks the step or its bytes:\n%q", out)
	}
	if !strings.HasSuffix(out, "freeze-dump    testbed:tb1      1500.0ms  ok\n") {
		t.Errorf("live progress does not end with the step's line:\n%q", out)
	}
}
