package migrate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
)

// Migration modes.
const (
	ModeStopCopy   = "stop-copy"   // dump to disk, copy the images, restore
	ModePageServer = "page-server" // memory streamed to CRIU's page server on the target
	ModeLazy       = "lazy"        // restore first, pages on demand (userfaultfd)
)

// Placement is what a runtime must provide for the engine to move one of
// its workloads between hosts. The engine owns the order of steps and the
// rollback; the placement knows where things live.
//
// Contract: Prepare and Transfer must leave the source untouched. Resume
// must bring a source tree that was left stopped (and its network locked)
// back to running and must be safe to call twice. Commit runs only after
// the target verified, and removes the stopped source.
type Placement interface {
	// Checkpoint is the dump request for the source workload (the engine
	// forces LeaveStopped so that a failed move can resume it).
	Checkpoint() CheckpointRequest
	// Prepare readies the target (directories, a page server) and returns
	// the restore request; its ImagesDir is where the target reads the
	// images (empty: the engine's). Logs go into runDir.
	Prepare(ctx context.Context, runDir string) (RestoreRequest, error)
	// Transfer moves the images and the workload's files to the target.
	// With a page server, memory pages are already there.
	Transfer(ctx context.Context, s *Step) error
	// Adopt runs the restore under the target's supervision (the testbed
	// restores under a subreaper) and returns the restored pid; a
	// placement that needs nothing special calls restore itself.
	Adopt(ctx context.Context, restore func(context.Context, RestoreRequest) (*RestoreResult, error), req RestoreRequest) (*RestoreResult, error)
	// Verify checks the workload on the target.
	Verify(ctx context.Context, pid int) error
	// KillTarget removes whatever the run left on the target: the
	// restored tree (pid, 0 when none), files, a page server. It must be
	// safe to call after a partial Prepare.
	KillTarget(ctx context.Context, pid int) error
	// Resume brings the source back after a failure.
	Resume(ctx context.Context) error
	// Commit records the move and removes the stopped source.
	Commit(ctx context.Context, pid int) error
}

// Guard is implemented by placements that can watch a dump in progress:
// Guard starts watching (e.g. for a memory transfer that stopped moving)
// and returns a function that stops the watch and says what it did, if
// anything. A guard may break the transfer so that CRIU fails the dump and
// resumes the workload; it never kills CRIU.
type Guard interface {
	Guard(ctx context.Context) (stop func() string)
}

// MigrateOp is one live migration.
type MigrateOp struct {
	Target       Target
	Source, Dest host.Host
	// SourceDriver and DestDriver run CRIU on each end.
	SourceDriver, DestDriver Driver
	Placement                Placement
	Mode                     string
	// Preflight runs first (the compatibility check); an error refuses
	// the move before anything is frozen.
	Preflight func(ctx context.Context) error
	ImagesDir string
}

// Migrate moves a workload: preflight, freeze-dump (source left stopped),
// transfer, restore, verify, then commit; any failure before the target
// verified resumes the source and cleans the target. The workload never
// runs twice and is never lost.
func (e *Engine) Migrate(ctx context.Context, op MigrateOp) (*Journal, error) {
	if op.Mode == "" {
		op.Mode = ModeStopCopy
	}
	run, err := e.Store.Create("migrate", e.now(), Journal{
		Command: e.Command, Driver: op.SourceDriver.Name(), Target: op.Target.String(),
		Source: op.Source.Name(), Dest: op.Dest.Name(), ImagesDir: op.ImagesDir,
	})
	if err != nil {
		return nil, err
	}
	run.Now, run.OnStep = e.Now, e.OnStep
	src, dst := op.Source.Name(), op.Dest.Name()
	p := op.Placement
	// Steps that change the world must finish even when the user
	// interrupts: they run on a context that is never cancelled, and the
	// interrupt is honoured between steps by rolling back.
	keep := context.WithoutCancel(ctx)

	var (
		prepared  bool // the target holds something of this run that must go on failure
		stopped   bool // the source tree is frozen-stopped and must be resumed on failure
		targetPID int
		frozenAt  time.Time
	)
	fail := func(step string, cause error) (*Journal, error) {
		result := RunFailed
		if stopped || prepared {
			rbErr := run.Step(StepRollback, src, func(s *Step) error {
				var errs []error
				if prepared {
					errs = append(errs, p.KillTarget(keep, targetPID))
				}
				if stopped {
					errs = append(errs, p.Resume(keep))
				}
				return errors.Join(errs...)
			})
			if rbErr == nil {
				if stopped {
					result = RunRolledBack
					_ = run.Update(func(j *Journal) { j.Workload = op.Target.String() + " on " + src + " (resumed)" })
				}
			} else {
				cause = errors.Join(cause, fmt.Errorf("rollback: %w", rbErr))
				_ = run.Update(func(j *Journal) {
					j.Workload = "UNKNOWN: rollback failed; images in " + op.ImagesDir + "; see `ferry runs recover " + run.ID() + "`"
				})
			}
		}
		return run.end(result, "migrate "+op.Target.String()+" to "+dst, step, cause)
	}
	interrupted := func() error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted: %w", err)
		}
		return nil
	}

	if err := run.Step(StepPreflight, src, func(s *Step) error {
		if op.Mode != ModeStopCopy && op.Mode != ModePageServer {
			return &ModeError{Mode: op.Mode}
		}
		if op.Preflight != nil {
			if err := op.Preflight(ctx); err != nil {
				return err
			}
		}
		if pf, ok := op.SourceDriver.(Preflighter); ok {
			return pf.PreflightCheckpoint(ctx, p.Checkpoint())
		}
		return nil
	}); err != nil {
		_ = run.Update(func(j *Journal) { j.Workload = op.Target.String() + " on " + src + " (untouched)" })
		return fail(StepPreflight, err)
	}

	var restoreReq RestoreRequest
	prepared = true
	if err := run.Step("prepare-target", dst, func(s *Step) error {
		var err error
		restoreReq, err = p.Prepare(ctx, run.Dir)
		return err
	}); err != nil {
		return fail("prepare-target", err)
	}
	if err := interrupted(); err != nil {
		return fail("prepare-target", err)
	}

	ck := p.Checkpoint()
	ck.LeaveStopped, ck.LeaveRunning = true, false
	if ck.ImagesDir == "" {
		ck.ImagesDir = op.ImagesDir
	}
	ck.LogDir = run.Dir
	var dump *CheckpointResult
	dumpStart := e.now()
	err = run.Step(StepDump, src, func(s *Step) error {
		stopGuard := func() string { return "" }
		if g, ok := p.(Guard); ok {
			stopGuard = g.Guard(keep)
		}
		var err error
		dump, err = op.SourceDriver.Checkpoint(keep, ck)
		if did := stopGuard(); did != "" {
			s.Notes = map[string]string{"guard": did}
			if err != nil {
				err = fmt.Errorf("%s: %w", did, err)
			}
		}
		if dump != nil {
			s.Log = relLog(run.Dir, dump.Log)
		}
		liftInto(s, run.Dir, err)
		return err
	})
	if err != nil {
		// CRIU resumes a tree it failed to dump; there is nothing to roll back.
		_ = run.Update(func(j *Journal) { j.Workload = op.Target.String() + " on " + src + " (still running)" })
		return fail(StepDump, err)
	}
	stopped = true
	frozenAt = dumpStart
	if err := interrupted(); err != nil {
		return fail(StepDump, err)
	}

	if err := run.Step(StepTransfer, dst, func(s *Step) error { return p.Transfer(keep, s) }); err != nil {
		return fail(StepTransfer, err)
	}
	if err := interrupted(); err != nil {
		return fail(StepTransfer, err)
	}

	if restoreReq.ImagesDir == "" {
		restoreReq.ImagesDir = op.ImagesDir
	}
	restoreReq.LogDir = run.Dir
	var rres *RestoreResult
	err = run.Step(StepRestore, dst, func(s *Step) error {
		var err error
		rres, err = p.Adopt(keep, op.DestDriver.Restore, restoreReq)
		if rres != nil {
			s.Log = relLog(run.Dir, rres.Log)
			if rres.PID > 0 {
				targetPID = rres.PID
				s.Notes = map[string]string{"pid": fmt.Sprint(rres.PID)}
			}
			noteFixups(s, rres.Fixups)
		}
		liftInto(s, run.Dir, err)
		return err
	})
	runningAt := e.now()
	if err != nil {
		return fail(StepRestore, err)
	}
	if err := interrupted(); err != nil {
		return fail(StepRestore, err)
	}
	if err := run.Step(StepVerify, dst, func(s *Step) error { return p.Verify(keep, targetPID) }); err != nil {
		return fail(StepVerify, err)
	}
	// The target runs and verified: from here on the move is done, even if
	// the user interrupts.
	if err := run.Step("commit", src, func(s *Step) error { return p.Commit(keep, targetPID) }); err != nil {
		stopped, prepared = false, false
		return fail("commit", err)
	}
	stats := dump.Stats
	stats.RestoreTime, stats.ForkingTime, stats.PagesRestored = rres.Stats.RestoreTime, rres.Stats.ForkingTime, rres.Stats.PagesRestored
	stats.Downtime = runningAt.Sub(frozenAt)
	_ = run.Update(func(j *Journal) {
		j.Stats = &stats
		j.Workload = fmt.Sprintf("%s on %s (pid %d)", op.Target, dst, targetPID)
	})
	return run.end(RunOK, "", "", nil)
}

// ModeError is a migration mode ferry will not run here.
type ModeError struct{ Mode string }

func (e *ModeError) Error() string {
	if e.Mode == ModeLazy {
		return "lazy migration is not supported: lazy pages over the network fail with CRIU 4.2.1 (page-pipe: splice: Bad file descriptor)"
	}
	return fmt.Sprintf("unknown migration mode %q", e.Mode)
}
func (e *ModeError) Hint() string { return "use --mode stop-copy or --mode page-server" }
