package migrate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-migrate/ferry/internal/host"
)

// fakeDriver records calls and fails where told.
type fakeDriver struct {
	preflightErr, dumpErr, restoreErr error
	calls                             []string
}

func (f *fakeDriver) Name() string { return "fake" }
func (f *fakeDriver) PreflightCheckpoint(context.Context, CheckpointRequest) error {
	f.calls = append(f.calls, "preflight")
	return f.preflightErr
}
func (f *fakeDriver) Checkpoint(_ context.Context, req CheckpointRequest) (*CheckpointResult, error) {
	f.calls = append(f.calls, "checkpoint")
	log := filepath.Join(req.LogDir, "dump.log")
	if f.dumpErr != nil {
		return nil, &Failure{Op: "dump", Log: log, Lifted: []string{"Error (criu/x.c:1): the cause"}, Err: f.dumpErr}
	}
	if err := os.WriteFile(filepath.Join(req.ImagesDir, "inventory.img"), []byte("x"), 0o600); err != nil {
		return nil, err
	}
	return &CheckpointResult{Log: log, Stats: Stats{FrozenTime: time.Millisecond, PagesWritten: 7}}, nil
}
func (f *fakeDriver) Restore(_ context.Context, req RestoreRequest) (*RestoreResult, error) {
	f.calls = append(f.calls, "restore")
	if f.restoreErr != nil {
		return nil, f.restoreErr
	}
	return &RestoreResult{PID: os.Getpid(), Log: filepath.Join(req.LogDir, "restore.log")}, nil
}

// tick is a clock that advances 10ms a call.
func tick() func() time.Time {
	t := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	return func() time.Time { t = t.Add(10 * time.Millisecond); return t }
}

type stepView struct{ Name, Host, Result, Log string }

func steps(j *Journal) []stepView {
	var out []stepView
	for _, s := range j.Steps {
		out = append(out, stepView{s.Name, s.Host, s.Result, s.Log})
	}
	return out
}

func TestCheckpointJournal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		drv        *fakeDriver
		wantSteps  []stepView
		wantResult string
		wantStep   string // OpError.Step
		wantCalls  []string
	}{
		{
			name: "ok", drv: &fakeDriver{},
			wantSteps:  []stepView{{"preflight", "local", "ok", ""}, {"freeze-dump", "local", "ok", "dump.log"}, {"cleanup", "local", "ok", ""}},
			wantResult: RunOK, wantCalls: []string{"preflight", "checkpoint"},
		},
		{
			name: "preflight refuses", drv: &fakeDriver{preflightErr: errors.New("no such process")},
			wantSteps:  []stepView{{"preflight", "local", "failed", ""}},
			wantResult: RunFailed, wantStep: StepPreflight, wantCalls: []string{"preflight"},
		},
		{
			name: "dump fails", drv: &fakeDriver{dumpErr: errors.New("criu said no")},
			wantSteps:  []stepView{{"preflight", "local", "ok", ""}, {"freeze-dump", "local", "failed", "dump.log"}, {"cleanup", "local", "ok", ""}},
			wantResult: RunFailed, wantStep: StepDump, wantCalls: []string{"preflight", "checkpoint"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := &Engine{Store: Store{Dir: t.TempDir()}, Command: []string{"ferry", "checkpoint"}, Now: tick()}
			j, err := e.Checkpoint(context.Background(), CheckpointOp{Driver: tt.drv, Host: host.Local{}, Request: CheckpointRequest{
				Target: Target{Kind: KindPID, PID: 42}, ImagesDir: t.TempDir(),
			}})
			var op *OpError
			if tt.wantStep == "" && err != nil {
				t.Fatalf("err = %v", err)
			}
			if tt.wantStep != "" && (!errors.As(err, &op) || op.Step != tt.wantStep) {
				t.Fatalf("err = %#v, want OpError at %s", err, tt.wantStep)
			}
			if diff := cmp.Diff(tt.wantSteps, steps(j)); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
			if j.Result != tt.wantResult {
				t.Errorf("result %s, want %s", j.Result, tt.wantResult)
			}
			if diff := cmp.Diff(tt.wantCalls, tt.drv.calls); diff != "" {
				t.Errorf("driver calls (-want +got):\n%s", diff)
			}
			// The journal on disk is the one returned.
			saved, err := e.Store.Load(j.ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(j, saved); diff != "" {
				t.Errorf("saved journal differs (-returned +saved):\n%s", diff)
			}
			for _, s := range saved.Steps {
				if s.Duration != s.End.Sub(s.Start) || s.Duration <= 0 {
					t.Errorf("step %s: duration %s from %s to %s", s.Name, s.Duration, s.Start, s.End)
				}
				if s.Name == StepDump && s.Result == StepFailed && len(s.Lifted) == 0 {
					t.Errorf("failed dump step has no lifted lines")
				}
			}
		})
	}
}

func TestRestoreJournal(t *testing.T) {
	t.Parallel()
	e := &Engine{Store: Store{Dir: t.TempDir()}, Now: tick()}
	images := t.TempDir()

	// No images: refused in preflight, the driver never called.
	drv := &fakeDriver{}
	_, err := e.Restore(context.Background(), RestoreOp{Driver: drv, Host: host.Local{}, Request: RestoreRequest{ImagesDir: images}})
	var op *OpError
	if !errors.As(err, &op) || op.Step != StepPreflight || len(drv.calls) != 0 {
		t.Fatalf("restore without images: err=%v calls=%v", err, drv.calls)
	}

	if err := os.WriteFile(filepath.Join(images, "inventory.img"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := e.Restore(context.Background(), RestoreOp{Driver: drv, Host: host.Local{}, Request: RestoreRequest{ImagesDir: images}})
	if err != nil {
		t.Fatal(err)
	}
	want := []stepView{{"preflight", "local", "ok", ""}, {"restore", "local", "ok", "restore.log"}, {"cleanup", "local", "ok", ""}, {"verify", "local", "ok", ""}}
	if diff := cmp.Diff(want, steps(j)); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}

	// A verify that fails makes the run fail, even though CRIU said yes.
	_, err = e.Restore(context.Background(), RestoreOp{Driver: drv, Host: host.Local{}, Request: RestoreRequest{ImagesDir: images},
		Verify: func(context.Context, int) error { return errors.New("counter restarted") }})
	if !errors.As(err, &op) || op.Step != StepVerify {
		t.Fatalf("failed verify: err = %v", err)
	}
}

func TestStoreListAndLoad(t *testing.T) {
	t.Parallel()
	s := Store{Dir: t.TempDir()}
	now := tick()
	for i := 0; i < 3; i++ {
		r, err := s.Create("checkpoint", now().Add(time.Duration(i)*time.Second), Journal{Target: "pid:1"})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Finish(RunOK, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Noise that List must skip.
	_ = os.MkdirAll(filepath.Join(s.Dir, "junk"), 0o700)
	js, err := s.List()
	if err != nil || len(js) != 3 {
		t.Fatalf("List = %d runs, %v", len(js), err)
	}
	if js[0].ID < js[1].ID {
		t.Errorf("not newest first: %s, %s", js[0].ID, js[1].ID)
	}
	for _, bad := range []string{"../etc", "nope", "20261129T120000-checkpoint-000000"} {
		var nf *RunNotFoundError
		if _, err := s.Load(bad); !errors.As(err, &nf) {
			t.Errorf("Load(%q) = %v, want RunNotFoundError", bad, err)
		}
	}
	// A newer schema is refused, not misread.
	dir := s.RunDir(js[0].ID)
	if err := os.WriteFile(filepath.Join(dir, "journal.json"), []byte(`{"schema":"ferry.run/v9"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(js[0].ID); err == nil {
		t.Error("a newer journal schema was accepted")
	}
}

func TestParseTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Target
		wantErr bool
	}{
		{"pid:42", Target{Kind: KindPID, PID: 42}, false},
		{"testbed:counter", Target{Kind: KindTestbed, Name: "counter"}, false},
		{"lxd:c1", Target{Kind: KindLXD, Name: "c1"}, false},
		{"incus:remote2:c1", Target{Kind: KindIncus, Remote: "remote2", Name: "c1"}, false},
		{"pid:0", Target{}, true},
		{"pid:x", Target{}, true},
		{"lxd:../c1", Target{}, true},
		{"lxd:c1/x", Target{}, true},
		{"vm:x", Target{}, true},
		{"42", Target{}, true},
	}
	for _, tt := range tests {
		got, err := ParseTarget(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseTarget(%q) err = %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseTarget(%q) (-want +got):\n%s", tt.in, diff)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
	}
}
