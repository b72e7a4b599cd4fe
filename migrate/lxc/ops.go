package lxc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
)

// Operations. They are also the run store's operation names (lower-case
// letters only: run ids embed them).
const (
	OpSnapshot = "snapshot" // stateful snapshot of a running instance
	OpRestore  = "restore"  // stateful restore of a snapshot
	OpStop     = "stop"     // stateful stop
	OpStart    = "start"    // start from the state a stateful stop saved
	OpMove     = "move"     // live move to another daemon
)

// Step names specific to these operations (the engine's own are reused
// for preflight, verify).
const (
	StepRecord = "record-processes"
)

// Op is one operation on one instance.
type Op struct {
	Kind     string
	Client   *Client
	Instance string
	// Snapshot names the snapshot for OpSnapshot and OpRestore.
	Snapshot string
	// Dest is the destination daemon of OpMove, reached from Client as the
	// remote DestRemote.
	Dest       *Client
	DestRemote string
	// Check, when set, is an extra verification after the built-in ones
	// (tests check a counter's value there).
	Check func(ctx context.Context, c *Client, name string) error
}

// Runner runs operations as journaled runs in a store.
type Runner struct {
	Store   migrate.Store
	Command []string
	Now     func() time.Time
	// Gap is the time between the two process listings that find the
	// long-lived processes; 0 means 400 ms.
	Gap time.Duration
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runner) gap() time.Duration {
	if r.Gap > 0 {
		return r.Gap
	}
	return 400 * time.Millisecond
}

// target is the op's target spec as the journal records it.
func (op Op) target() migrate.Target {
	return migrate.Target{Kind: op.Client.Kind, Name: op.Instance, Remote: op.Client.Remote}
}

// Run runs op: preflight (nothing touched on failure), the process list
// before, the operation with the daemon's CRIU and liblxc logs copied into
// the run directory and their cause lifted, then a verification that does
// not trust the exit code. The error is a *migrate.OpError.
func (r *Runner) Run(ctx context.Context, op Op) (*migrate.Journal, error) {
	c := op.Client
	t := op.target()
	j := migrate.Journal{Command: r.Command, Driver: c.Kind, Target: t.String(), Source: c.Name()}
	if op.Kind == OpMove && op.Dest != nil {
		j.Dest = op.Dest.Name()
	}
	if op.Snapshot != "" {
		j.ImagesDir = "snapshot " + op.Snapshot
	}
	run, err := r.Store.Create(op.Kind, r.now(), j)
	if err != nil {
		return nil, err
	}
	run.Now = r.Now
	hn := c.Name()
	fail := func(step string, err error) (*migrate.Journal, error) {
		_ = run.Finish(migrate.RunFailed, err)
		jj := run.Journal()
		return &jj, &migrate.OpError{Op: op.Kind + " " + t.String(), RunID: run.ID(), RunDir: run.Dir, Step: step, Err: err}
	}
	where := func(s string) { _ = run.Update(func(j *migrate.Journal) { j.Workload = s }) }

	// 1. Preflight: daemon, capability, instance status.
	if err := run.Step(migrate.StepPreflight, hn, func(s *migrate.Step) error {
		caps, err := r.preflight(ctx, op)
		if caps != nil {
			s.Notes = map[string]string{"version": caps.Version, "storage": caps.Storage, "criu": caps.CRIU, "liblxc": caps.DriverVersion}
		}
		return err
	}); err != nil {
		where(t.String() + " on " + hn + " (untouched)")
		return fail(migrate.StepPreflight, err)
	}

	// 2. The processes that must carry on.
	var before []Process
	if err := run.Step(StepRecord, hn, func(s *migrate.Step) error {
		var err error
		var from string
		before, from, err = r.recorded(ctx, op)
		if err != nil {
			return err
		}
		s.Notes = map[string]string{"processes": encodeProcesses(before), "from": from}
		if op.Snapshot != "" {
			s.Notes["snapshot"] = op.Snapshot
		}
		return nil
	}); err != nil {
		where(t.String() + " on " + hn + " (untouched)")
		return fail(StepRecord, err)
	}

	// 3. The operation, with its logs.
	started := r.now()
	logsBefore := c.logsNow(ctx, op.Instance)
	var destBefore logSnapshot
	if op.Kind == OpMove {
		destBefore = op.Dest.logsNow(ctx, op.Instance)
	}
	opErr := run.Step(op.Kind, hn, func(s *migrate.Step) error {
		var err error
		var logs []Collected
		switch op.Kind {
		case OpSnapshot:
			err = c.SnapshotStateful(ctx, op.Instance, op.Snapshot)
		case OpRestore:
			err = c.RestoreStateful(ctx, op.Instance, op.Snapshot)
		case OpStop:
			err = c.StopStateful(ctx, op.Instance)
		case OpStart:
			err = c.Start(ctx, op.Instance)
		case OpMove:
			// The source's migration_dump log goes away with the
			// instance: copy it while the move runs.
			w := c.watch(ctx, op.Instance, logsBefore, run.Dir, "source-")
			err = c.Move(ctx, op.Instance, op.DestRemote)
			logs = append(logs, w.stop()...)
			logs = append(logs, op.Dest.collect(ctx, op.Instance, destBefore, run.Dir, "target-")...)
		}
		if op.Kind != OpMove {
			logs = c.collect(ctx, op.Instance, logsBefore, run.Dir, "")
		} else {
			logs = append(logs, c.collect(ctx, op.Instance, logsBefore, run.Dir, "source-")...)
		}
		s.Notes = map[string]string{}
		for i, l := range logs {
			s.Notes[fmt.Sprintf("log%d", i)] = relPath(run.Dir, l.Path) + " <- " + l.From
		}
		if err != nil {
			lines, from := lift(logs, started, err)
			f := &migrate.Failure{Op: op.Kind, Log: from, Lifted: lines, Err: err}
			if len(lines) == 0 {
				f.Log = ""
			}
			s.Log, s.Lifted = relPath(run.Dir, f.Log), f.Lifted
			return f
		}
		for _, l := range logs {
			if l.CRIU {
				s.Log = relPath(run.Dir, l.Path)
			}
		}
		return nil
	})
	// LXD 5.0.2 can fail a move AFTER the target took over: "Failed to
	// delete original instance after copying it: ... Instance is busy
	// running a "stop" operation". The workload then runs on the target
	// and a stopped copy is left on the source. Verify the target, and
	// only then finish the move by deleting the stopped source copy.
	leftover := false
	if opErr != nil {
		if op.Kind != OpMove || !r.movedButSourceLeft(ctx, op) {
			where(r.afterFailure(ctx, op))
			return fail(op.Kind, opErr)
		}
		leftover = true
	}

	// 4. Verify: never trust the exit code.
	verifyHost := hn
	if op.Kind == OpMove {
		verifyHost = op.Dest.Name()
	}
	if err := run.Step(migrate.StepVerify, verifyHost, func(s *migrate.Step) error {
		notes, err := r.verify(ctx, op, before, leftover)
		s.Notes = notes
		return err
	}); err != nil {
		where(r.afterFailure(ctx, op))
		return fail(migrate.StepVerify, err)
	}
	if leftover {
		if err := run.Step("delete-source-copy", hn, func(s *migrate.Step) error {
			s.Notes = map[string]string{"why": "the daemon's move failed after the target took over (" + opErr.Error() + "); the target verified, so ferry deleted the stopped copy on the source"}
			return c.deleteWhenIdle(ctx, op.Instance, 30*time.Second)
		}); err != nil {
			where(r.afterFailure(ctx, op))
			return fail("delete-source-copy", err)
		}
	}
	switch op.Kind {
	case OpStop:
		where(t.String() + " on " + hn + " (stopped, state saved)")
	case OpMove:
		where(t.String() + " on " + op.Dest.Name() + " (running)")
	default:
		where(t.String() + " on " + hn + " (running)")
	}
	_ = run.Finish(migrate.RunOK, nil)
	jj := run.Journal()
	return &jj, nil
}

// movedButSourceLeft reports whether a failed move left the instance running
// on the target and stopped on the source.
func (r *Runner) movedButSourceLeft(ctx context.Context, op Op) bool {
	dst, err := op.Dest.State(ctx, op.Instance)
	if err != nil || dst.Status != "Running" {
		return false
	}
	src, err := op.Client.Instance(ctx, op.Instance)
	return err == nil && src.Status == "Stopped"
}

func (r *Runner) preflight(ctx context.Context, op Op) (*Capabilities, error) {
	c := op.Client
	switch op.Kind {
	case OpSnapshot:
		if op.Snapshot == "" {
			return nil, errors.New("no snapshot name given")
		}
		caps, _, err := c.preflight(ctx, "stateful snapshot", op.Instance, "Running", true)
		if err != nil {
			return caps, err
		}
		if _, err := c.Snapshot(ctx, op.Instance, op.Snapshot); err == nil {
			return caps, fmt.Errorf("snapshot %s/%s already exists", op.Instance, op.Snapshot)
		} else if !isNotFound(err) {
			return caps, err
		}
		return caps, nil
	case OpRestore:
		if op.Snapshot == "" {
			return nil, errors.New("no snapshot name given")
		}
		caps, _, err := c.preflight(ctx, "stateful restore", op.Instance, "", false)
		if err != nil {
			return caps, err
		}
		snap, err := c.Snapshot(ctx, op.Instance, op.Snapshot)
		if err != nil {
			return caps, err
		}
		if !snap.Stateful {
			return caps, &NotStatefulError{Instance: op.Instance, Snapshot: op.Snapshot}
		}
		return caps, nil
	case OpStop:
		caps, _, err := c.preflight(ctx, "stateful stop", op.Instance, "Running", true)
		return caps, err
	case OpStart:
		caps, in, err := c.preflight(ctx, "stateful start", op.Instance, "Stopped", false)
		if err != nil {
			return caps, err
		}
		if !in.Stateful {
			return caps, &NotStatefulError{Instance: op.Instance}
		}
		return caps, nil
	case OpMove:
		if op.Dest == nil || op.DestRemote == "" {
			return nil, errors.New("move: no destination daemon given")
		}
		caps, _, err := c.preflight(ctx, "live move", op.Instance, "Running", false)
		if err != nil {
			return caps, err
		}
		dcaps, err := op.Dest.Probe(ctx)
		if err != nil {
			return caps, err
		}
		if !dcaps.Stateful {
			return caps, &CapabilityError{Op: "live move", Why: "destination: " + dcaps.Why}
		}
		if _, err := op.Dest.Instance(ctx, op.Instance); err == nil {
			return caps, fmt.Errorf("the destination %s already has an instance %s", op.Dest.Name(), op.Instance)
		} else if !isNotFound(err) {
			return caps, err
		}
		return caps, nil
	}
	return nil, fmt.Errorf("unknown operation %q", op.Kind)
}

// NotStatefulError is a snapshot or stopped instance without saved state:
// restoring it would cold-start the instance, which ferry never does.
type NotStatefulError struct{ Instance, Snapshot string }

func (e *NotStatefulError) Error() string {
	if e.Snapshot != "" {
		return fmt.Sprintf("snapshot %s/%s holds no running state (not taken with --stateful)", e.Instance, e.Snapshot)
	}
	return fmt.Sprintf("instance %s was not stopped with its state (stateful stop)", e.Instance)
}
func (e *NotStatefulError) Hint() string {
	return "ferry restores only saved running state; a plain restore or start would cold-start the instance"
}

// recorded returns the processes that must run after op, and where the
// list comes from.
func (r *Runner) recorded(ctx context.Context, op Op) ([]Process, string, error) {
	c := op.Client
	switch op.Kind {
	case OpSnapshot, OpStop, OpMove:
		ps, err := c.StableProcesses(ctx, op.Instance, r.gap())
		if err != nil {
			if ctx.Err() != nil {
				return nil, "", err
			}
			// An instance without sh/tr: the operation still runs,
			// verified by status and a writable rootfs only.
			return nil, "not listed: " + err.Error(), nil
		}
		return ps, "listed now", nil
	case OpRestore, OpStart:
		// The list the snapshot or stop run recorded.
		if ps, id := r.lookup(op); ps != nil {
			return ps, "run " + id, nil
		}
		return nil, "none: no ferry run recorded the processes", nil
	}
	return nil, "", nil
}

// lookup finds the newest successful snapshot (for a restore) or stop (for
// a start) run of the same instance and returns its recorded processes.
func (r *Runner) lookup(op Op) ([]Process, string) {
	want := OpSnapshot
	if op.Kind == OpStart {
		want = OpStop
	}
	runs, err := r.Store.List()
	if err != nil {
		return nil, ""
	}
	for _, j := range runs {
		if j.Operation != want || j.Result != migrate.RunOK || j.Target != op.target().String() || j.Driver != op.Client.Kind {
			continue
		}
		for _, s := range j.Steps {
			if s.Name != StepRecord {
				continue
			}
			if op.Kind == OpRestore && s.Notes["snapshot"] != op.Snapshot {
				continue
			}
			return decodeProcesses(s.Notes["processes"]), j.ID
		}
	}
	return nil, ""
}

// verify checks op's outcome; leftover says a stopped source copy is
// expected after a move (deleted next).
func (r *Runner) verify(ctx context.Context, op Op, before []Process, leftover bool) (map[string]string, error) {
	c := op.Client
	var notes map[string]string
	var err error
	switch op.Kind {
	case OpSnapshot:
		notes, err = c.verifyRunning(ctx, op.Instance, "the stateful snapshot", before)
		if err == nil {
			var snap *Snapshot
			snap, err = c.Snapshot(ctx, op.Instance, op.Snapshot)
			if err == nil && !snap.Stateful {
				err = &NotStatefulError{Instance: op.Instance, Snapshot: op.Snapshot}
			}
		}
	case OpRestore:
		notes, err = c.verifyRunning(ctx, op.Instance, "the stateful restore", before)
	case OpStart:
		notes, err = c.verifyRunning(ctx, op.Instance, "the stateful start", before)
	case OpStop:
		notes = map[string]string{}
		var in *Instance
		in, err = c.Instance(ctx, op.Instance)
		if err == nil {
			notes["status"] = in.Status
			switch {
			case in.Status != "Stopped":
				err = &StatusMismatchError{Instance: op.Instance, Where: c.Name(), Status: in.Status, Want: "Stopped", After: "the stateful stop"}
			case !in.Stateful:
				err = &NotStatefulError{Instance: op.Instance}
			}
		}
	case OpMove:
		notes, err = op.Dest.verifyRunning(ctx, op.Instance, "the move", before)
		if err == nil && !leftover {
			err = c.instanceGone(ctx, op.Instance)
		}
	}
	if err == nil && op.Check != nil {
		vc := c
		if op.Kind == OpMove {
			vc = op.Dest
		}
		err = op.Check(ctx, vc, op.Instance)
	}
	return notes, err
}

// afterFailure says where the workload is after a failed operation, from
// what the daemons say now.
func (r *Runner) afterFailure(ctx context.Context, op Op) string {
	c := op.Client
	t := op.target().String()
	desc := func(cl *Client) string {
		in, err := cl.Instance(ctx, op.Instance)
		if err != nil {
			if isNotFound(err) {
				return "absent on " + cl.Name()
			}
			return "unknown on " + cl.Name() + ": " + err.Error()
		}
		return in.Status + " on " + cl.Name()
	}
	s := t + ": " + desc(c)
	if op.Kind == OpMove && op.Dest != nil {
		s += "; " + desc(op.Dest)
	}
	return s
}

// deleteWhenIdle deletes a stopped instance, trying again while the daemon
// still holds the operation lock of the move's stop: LXD 5.0.2 reports the
// instance Stopped while its "stop" operation has not ended yet ("Instance
// is busy running a "stop" operation"), for a few seconds here.
func (c *Client) deleteWhenIdle(ctx context.Context, name string, patience time.Duration) error {
	deadline := time.Now().Add(patience)
	for {
		_, err := c.run(ctx, "delete", c.ref(name))
		var ce *host.CommandError
		if err == nil || !errors.As(err, &ce) || !strings.Contains(ce.Stderr, "is busy running") || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

func relPath(dir, p string) string {
	if p == "" {
		return ""
	}
	if len(p) > len(dir)+1 && p[:len(dir)] == dir && p[len(dir)] == '/' {
		return p[len(dir)+1:]
	}
	return p
}
