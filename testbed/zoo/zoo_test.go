package zoo

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// TestInProcess runs the workloads that need no rootfs of their own for a
// moment in this process: each must report healthy and count.
func TestInProcess(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"mem", "threads", "pipes", "shm", "fds"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 6*StatusInterval)
			defer cancel()
			args := []string{}
			if name == "mem" {
				args = []string{"4"}
			}
			done := make(chan error, 1)
			go func() { done <- Run(ctx, dir, name, args) }()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			s, err := ReadStatus(filepath.Join(dir, StatusFile))
			if err != nil {
				t.Fatal(err)
			}
			if !s.OK || s.Counter < 3 || s.Workload != name {
				t.Errorf("status: %+v", s)
			}
		})
	}
	if err := Run(context.Background(), t.TempDir(), "nope", nil); err == nil {
		t.Error("unknown workload ran")
	}
}

// TestFailureSticks: once a check failed, the workload never reports
// healthy again, and the counter stops.
func TestFailureSticks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := &reporter{path: filepath.Join(dir, StatusFile), st: Status{Workload: "x", OK: true}}
	for _, err := range []error{nil, nil, errors.New("broken"), nil} {
		if werr := r.tick("fine", err); werr != nil {
			t.Fatal(werr)
		}
	}
	s, err := ReadStatus(r.path)
	if err != nil {
		t.Fatal(err)
	}
	if s.OK || s.Counter != 2 || s.Detail != "broken" || time.Since(s.Time) > time.Minute {
		t.Errorf("status after a failure: %+v", s)
	}
}
