package migrate

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-migrate/ferry/internal/host"
)

// fakePlacement records the engine's calls and fails where told.
type fakePlacement struct {
	failAt string
	calls  []string
	cancel context.CancelFunc // called after the step named in cancelAfter
	after  string
}

func (f *fakePlacement) step(name string) error {
	f.calls = append(f.calls, name)
	if f.after == name && f.cancel != nil {
		f.cancel()
	}
	if f.failAt == name {
		return errors.New(name + " broke")
	}
	return nil
}

func (f *fakePlacement) Checkpoint() CheckpointRequest {
	return CheckpointRequest{Target: Target{Kind: KindTestbed, Name: "counter"}}
}
func (f *fakePlacement) Prepare(context.Context, string) (RestoreRequest, error) {
	return RestoreRequest{Root: "/tb2/counter"}, f.step("prepare")
}
func (f *fakePlacement) Transfer(context.Context, *Step) error { return f.step("transfer") }
func (f *fakePlacement) Adopt(ctx context.Context, restore func(context.Context, RestoreRequest) (*RestoreResult, error), req RestoreRequest) (*RestoreResult, error) {
	if err := f.step("adopt"); err != nil {
		return nil, err
	}
	return restore(ctx, req)
}
func (f *fakePlacement) Verify(context.Context, int) error     { return f.step("verify") }
func (f *fakePlacement) KillTarget(context.Context, int) error { return f.step("kill-target") }
func (f *fakePlacement) Resume(context.Context) error          { return f.step("resume") }
func (f *fakePlacement) Commit(context.Context, int) error     { return f.step("commit") }

func TestMigrateRollback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		place      *fakePlacement
		drv        *fakeDriver
		mode       string
		cancel     bool
		wantCalls  []string
		wantResult string
		wantStep   string
	}{
		{name: "ok", place: &fakePlacement{}, drv: &fakeDriver{},
			wantCalls: []string{"prepare", "transfer", "adopt", "verify", "commit"}, wantResult: RunOK},
		{name: "lazy refused", place: &fakePlacement{}, drv: &fakeDriver{}, mode: ModeLazy,
			wantCalls: nil, wantResult: RunFailed, wantStep: StepPreflight},
		{name: "preflight refuses", place: &fakePlacement{}, drv: &fakeDriver{preflightErr: errors.New("no")},
			wantCalls: nil, wantResult: RunFailed, wantStep: StepPreflight},
		{name: "dump fails: target cleaned, source untouched", place: &fakePlacement{}, drv: &fakeDriver{dumpErr: errors.New("x")},
			wantCalls: []string{"prepare", "kill-target"}, wantResult: RunFailed, wantStep: StepDump},
		{name: "prepare fails: target cleaned", place: &fakePlacement{failAt: "prepare"}, drv: &fakeDriver{},
			wantCalls: []string{"prepare", "kill-target"}, wantResult: RunFailed, wantStep: "prepare-target"},
		{name: "transfer fails: source resumed", place: &fakePlacement{failAt: "transfer"}, drv: &fakeDriver{},
			wantCalls: []string{"prepare", "transfer", "kill-target", "resume"}, wantResult: RunRolledBack, wantStep: StepTransfer},
		{name: "restore fails: source resumed", place: &fakePlacement{}, drv: &fakeDriver{restoreErr: errors.New("File exists")},
			wantCalls: []string{"prepare", "transfer", "adopt", "kill-target", "resume"}, wantResult: RunRolledBack, wantStep: StepRestore},
		{name: "verify fails: target killed, source resumed", place: &fakePlacement{failAt: "verify"}, drv: &fakeDriver{},
			wantCalls: []string{"prepare", "transfer", "adopt", "verify", "kill-target", "resume"}, wantResult: RunRolledBack, wantStep: StepVerify},
		{name: "interrupt during transfer: rolled back", place: &fakePlacement{after: "transfer"}, drv: &fakeDriver{}, cancel: true,
			wantCalls: []string{"prepare", "transfer", "kill-target", "resume"}, wantResult: RunRolledBack, wantStep: StepTransfer},
		{name: "resume fails: says so", place: &fakePlacement{failAt: "resume"}, drv: &fakeDriver{restoreErr: errors.New("x")},
			wantCalls: []string{"prepare", "transfer", "adopt", "kill-target", "resume"}, wantResult: RunFailed, wantStep: StepRestore},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				tt.place.cancel = cancel
			}
			e := &Engine{Store: Store{Dir: t.TempDir()}, Now: tick()}
			j, err := e.Migrate(ctx, MigrateOp{
				Target: Target{Kind: KindTestbed, Name: "counter"}, Source: host.Local{}, Dest: &host.Netns{Label: "testbed:tb2"},
				SourceDriver: tt.drv, DestDriver: tt.drv, Placement: tt.place, Mode: tt.mode, ImagesDir: t.TempDir(),
			})
			if diff := cmp.Diff(tt.wantCalls, tt.place.calls); diff != "" {
				t.Errorf("placement calls (-want +got):\n%s", diff)
			}
			if j.Result != tt.wantResult {
				t.Errorf("result %s, want %s (err %v)", j.Result, tt.wantResult, err)
			}
			var op *OpError
			switch {
			case tt.wantStep == "" && err != nil:
				t.Errorf("err = %v", err)
			case tt.wantStep != "" && (!errors.As(err, &op) || op.Step != tt.wantStep):
				t.Errorf("err = %v, want failure at %s", err, tt.wantStep)
			}
			if tt.wantResult == RunOK && (j.Stats == nil || j.Stats.Downtime <= 0) {
				t.Errorf("no downtime recorded: %+v", j.Stats)
			}
			if tt.name == "resume fails: says so" && !strings.Contains(j.Workload, "ferry runs recover") {
				t.Errorf("workload after a failed rollback: %q", j.Workload)
			}
			// Every step the engine started also finished.
			for _, s := range j.Steps {
				if s.Result == StepRunning {
					t.Errorf("step %s left running", s.Name)
				}
			}
		})
	}
}
