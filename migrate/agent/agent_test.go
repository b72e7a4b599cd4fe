package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
)

// loopHost answers Run by serving the request in-process, as `ferry agent
// --stdio` would on the other side.
type loopHost struct {
	d    migrate.Driver
	argv []string
}

func (h *loopHost) Name() string { return "testbed:tb2" }
func (h *loopHost) Open(context.Context, string) (io.ReadCloser, error) {
	return nil, errors.New("not used")
}
func (h *loopHost) Run(ctx context.Context, argv []string, opt host.RunOptions) (*host.Result, error) {
	h.argv = argv
	var out bytes.Buffer
	if err := Serve(ctx, opt.Stdin, &out, h.d); err != nil {
		return &host.Result{Argv: argv, ExitCode: 1}, &host.CommandError{Host: h.Name(), Argv: argv, ExitCode: 1, Stderr: err.Error()}
	}
	return &host.Result{Argv: argv, Stdout: out.Bytes()}, nil
}

type fake struct {
	err error
}

func (f *fake) Name() string { return "criu" }
func (f *fake) PreflightCheckpoint(_ context.Context, req migrate.CheckpointRequest) error {
	if req.Target.PID == 999 {
		return &migrate.Failure{Op: "preflight", Err: errors.New("no such process")}
	}
	return nil
}
func (f *fake) Checkpoint(_ context.Context, req migrate.CheckpointRequest) (*migrate.CheckpointResult, error) {
	if f.err != nil {
		return nil, &migrate.Failure{Op: "dump", Log: req.LogDir + "/dump.log", Lifted: []string{"Error (criu/cr-dump.c:1): real cause"}, Err: f.err}
	}
	return &migrate.CheckpointResult{Log: req.LogDir + "/dump.log", Stats: migrate.Stats{PagesWritten: 5}}, nil
}
func (f *fake) Restore(_ context.Context, req migrate.RestoreRequest) (*migrate.RestoreResult, error) {
	return &migrate.RestoreResult{PID: 77, Log: req.LogDir + "/restore.log"}, nil
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := &loopHost{d: &fake{}}
	d := &Driver{Host: h, Argv: []string{"ferry", "agent", "--stdio"}, Label: "criu"}

	res, err := d.Checkpoint(ctx, migrate.CheckpointRequest{Target: migrate.Target{Kind: "pid", PID: 5}, LogDir: "/r"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&migrate.CheckpointResult{Log: "/r/dump.log", Stats: migrate.Stats{PagesWritten: 5}}, res); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"ferry", "agent", "--stdio"}, h.argv); diff != "" {
		t.Errorf("argv (-want +got):\n%s", diff)
	}
	rr, err := d.Restore(ctx, migrate.RestoreRequest{LogDir: "/r"})
	if err != nil || rr.PID != 77 {
		t.Errorf("restore = %+v, %v", rr, err)
	}
	if d.Name() != "criu@testbed:tb2" {
		t.Errorf("Name = %s", d.Name())
	}
}

func TestRemoteFailureKeepsLiftedLines(t *testing.T) {
	t.Parallel()
	d := &Driver{Host: &loopHost{d: &fake{err: errors.New("criu failed")}}, Label: "criu"}
	_, err := d.Checkpoint(context.Background(), migrate.CheckpointRequest{LogDir: "/r"})
	var f *migrate.Failure
	if !errors.As(err, &f) {
		t.Fatalf("err = %v, want *migrate.Failure", err)
	}
	if f.Log != "/r/dump.log" || len(f.Lifted) != 1 || !strings.Contains(err.Error(), "real cause") {
		t.Errorf("failure lost its evidence: %+v", f)
	}
	var re *RemoteError
	if !errors.As(err, &re) || re.Host != "testbed:tb2" {
		t.Errorf("the host is not named: %v", err)
	}
	if err := d.PreflightCheckpoint(context.Background(), migrate.CheckpointRequest{Target: migrate.Target{Kind: "pid", PID: 999}}); err == nil {
		t.Error("remote preflight refusal lost")
	}
}

func TestServeRejectsBadRequests(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"not json",
		`{"protocol":"ferry.agent/v0","op":"checkpoint"}`,
		`{"protocol":"ferry.agent/v1","op":"format-disk"}`,
		`{"protocol":"ferry.agent/v1","op":"checkpoint"}`,
	} {
		if err := Serve(context.Background(), strings.NewReader(in), io.Discard, &fake{}); err == nil {
			t.Errorf("Serve(%q) accepted", in)
		}
	}
}
