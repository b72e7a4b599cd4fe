package migrate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
)

// Step names, in the order a migration runs them.
const (
	StepPreflight = "preflight"
	StepDump      = "freeze-dump"
	StepTransfer  = "transfer"
	StepRestore   = "restore"
	StepVerify    = "verify"
	StepCleanup   = "cleanup"
	StepRollback  = "rollback"
)

// Engine runs operations as journaled steps.
type Engine struct {
	Store Store
	// Command is the ferry command line, recorded in the journal.
	Command []string
	Now     func() time.Time
	// OnStep is told about every step start and end (progress).
	OnStep func(Step)
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// OpError is a failed operation: the run id and directory let the user find
// the journal and the logs.
type OpError struct {
	Op     string
	RunID  string
	RunDir string
	// Step is the step that failed; a preflight failure means nothing was
	// touched.
	Step string
	Err  error
}

func (e *OpError) Error() string { return fmt.Sprintf("%s (run %s): %v", e.Op, e.RunID, e.Err) }
func (e *OpError) Unwrap() error { return e.Err }
func (e *OpError) Hint() string {
	return fmt.Sprintf("the journal and CRIU logs are in %s; `ferry runs show %s` shows every step", e.RunDir, e.RunID)
}

// CheckpointOp is one checkpoint.
type CheckpointOp struct {
	Driver  Driver
	Host    host.Host // where the workload runs
	Request CheckpointRequest
}

// Checkpoint dumps a workload. The run's logs go into the run directory.
func (e *Engine) Checkpoint(ctx context.Context, op CheckpointOp) (*Journal, error) {
	req := op.Request
	run, err := e.Store.Create("checkpoint", e.now(), Journal{
		Command: e.Command, Driver: op.Driver.Name(), Target: req.Target.String(),
		Source: op.Host.Name(), ImagesDir: req.ImagesDir,
	})
	if err != nil {
		return nil, err
	}
	run.Now, run.OnStep = e.Now, e.OnStep
	req.LogDir = run.Dir
	hn := op.Host.Name()
	fail := func(step string, err error) (*Journal, error) {
		return run.end(RunFailed, "checkpoint "+req.Target.String(), step, err)
	}

	if err := run.Step(StepPreflight, hn, func(s *Step) error {
		if err := checkImagesDir(req.ImagesDir); err != nil {
			return err
		}
		if p, ok := op.Driver.(Preflighter); ok {
			return p.PreflightCheckpoint(ctx, req)
		}
		return nil
	}); err != nil {
		_ = run.Update(func(j *Journal) { j.Workload = req.Target.String() + " on " + hn + " (untouched)" })
		return fail(StepPreflight, err)
	}
	var res *CheckpointResult
	err = run.Step(StepDump, hn, func(s *Step) error {
		var err error
		res, err = op.Driver.Checkpoint(ctx, req)
		if res != nil {
			s.Log = relLog(run.Dir, res.Log)
		}
		liftInto(s, run.Dir, err)
		return err
	})
	cleanupErr := run.Step(StepCleanup, hn, func(s *Step) error {
		return DropRunTables(ctx, op.Host, s, run.stepLog(StepDump))
	})
	if err != nil {
		_ = run.Update(func(j *Journal) {
			j.Workload = req.Target.String() + " on " + hn + " (still running: CRIU resumes a tree it failed to dump)"
		})
		return fail(StepDump, err)
	}
	st := res.Stats
	_ = run.Update(func(j *Journal) {
		j.Stats = &st
		j.Workload = "images in " + req.ImagesDir
		if req.LeaveRunning {
			j.Workload = req.Target.String() + " on " + hn + " (left running); images in " + req.ImagesDir
		}
	})
	if cleanupErr != nil {
		return fail(StepCleanup, cleanupErr)
	}
	return run.end(RunOK, "", "", nil)
}

// RestoreOp is one restore.
type RestoreOp struct {
	Driver  Driver
	Host    host.Host // where the workload is restored
	Request RestoreRequest
	// Verify checks the restored workload; nil checks that its pid runs.
	Verify func(ctx context.Context, pid int) error
}

// Restore restores a workload from images.
func (e *Engine) Restore(ctx context.Context, op RestoreOp) (*Journal, error) {
	req := op.Request
	run, err := e.Store.Create("restore", e.now(), Journal{
		Command: e.Command, Driver: op.Driver.Name(), Dest: op.Host.Name(), ImagesDir: req.ImagesDir,
	})
	if err != nil {
		return nil, err
	}
	run.Now, run.OnStep = e.Now, e.OnStep
	req.LogDir = run.Dir
	hn := op.Host.Name()
	fail := func(step string, err error) (*Journal, error) {
		return run.end(RunFailed, "restore "+req.ImagesDir, step, err)
	}
	if err := run.Step(StepPreflight, hn, func(s *Step) error { return hasImages(req.ImagesDir) }); err != nil {
		return fail(StepPreflight, err)
	}
	var res *RestoreResult
	err = run.Step(StepRestore, hn, func(s *Step) error {
		var err error
		res, err = op.Driver.Restore(ctx, req)
		if res != nil {
			s.Log = relLog(run.Dir, res.Log)
			if res.PID > 0 {
				s.Notes = map[string]string{"pid": fmt.Sprint(res.PID)}
			}
			noteFixups(s, res.Fixups)
		}
		liftInto(s, run.Dir, err)
		return err
	})
	_ = run.Step(StepCleanup, hn, func(s *Step) error {
		return DropRunTables(ctx, op.Host, s, run.stepLog(StepRestore))
	})
	if err != nil {
		_ = run.Update(func(j *Journal) { j.Workload = "images in " + req.ImagesDir + " (not restored)" })
		return fail(StepRestore, err)
	}
	verify := op.Verify
	if verify == nil {
		verify = func(ctx context.Context, pid int) error { return processRuns(ctx, op.Host, pid) }
	}
	if err := run.Step(StepVerify, hn, func(s *Step) error { return verify(ctx, res.PID) }); err != nil {
		return fail(StepVerify, err)
	}
	st := res.Stats
	_ = run.Update(func(j *Journal) {
		j.Stats = &st
		j.Target = fmt.Sprintf("pid:%d", res.PID)
		j.Workload = fmt.Sprintf("pid:%d on %s", res.PID, hn)
	})
	return run.end(RunOK, "", "", nil)
}

// liftInto records a driver failure's log and lifted lines in its step.
func liftInto(s *Step, runDir string, err error) {
	var f *Failure
	if errors.As(err, &f) {
		s.Log = relLog(runDir, f.Log)
		s.Lifted = f.Lifted
	}
}

func relLog(runDir, log string) string {
	if log == "" {
		return ""
	}
	if r, err := filepath.Rel(runDir, log); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return log
}

// checkImagesDir refuses to dump over existing images.
func checkImagesDir(dir string) error {
	if dir == "" {
		return errors.New("no images directory given")
	}
	if _, err := os.Stat(filepath.Join(dir, "inventory.img")); err == nil {
		return &ImagesExistError{Dir: dir}
	}
	return nil
}

// ImagesExistError refuses to overwrite a checkpoint.
type ImagesExistError struct{ Dir string }

func (e *ImagesExistError) Error() string { return e.Dir + " already holds a checkpoint" }
func (e *ImagesExistError) Hint() string {
	return "choose an empty --dir, or remove the old images first"
}

func hasImages(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "inventory.img")); err != nil {
		return fmt.Errorf("%s holds no CRIU images (no inventory.img): %w", dir, err)
	}
	return nil
}

// processRuns checks that pid exists on h and is not a zombie.
func processRuns(ctx context.Context, h host.Host, pid int) error {
	if pid <= 0 {
		return errors.New("restore reported no pid")
	}
	b, err := host.ReadFile(ctx, h, fmt.Sprintf("/proc/%d/stat", pid), 0)
	if err != nil {
		return fmt.Errorf("restored pid %d is not running: %w", pid, err)
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i > 0 && len(s) > i+2 && s[i+2] == 'Z' {
		return fmt.Errorf("restored pid %d exited (zombie)", pid)
	}
	return nil
}

// noteFixups records the image fixups a driver made before a restore.
func noteFixups(s *Step, fixups []string) {
	if len(fixups) == 0 {
		return
	}
	if s.Notes == nil {
		s.Notes = map[string]string{}
	}
	s.Notes["image_fixups"] = strings.Join(fixups, "; ")
}
