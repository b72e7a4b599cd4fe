package remote

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ferry-migrate/ferry/internal/criubin"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/agent"
	"github.com/ferry-migrate/ferry/migrate/criu"
)

// Step names of a restore on a remote host, besides migrate's.
const StepCopy = "copy"

// RestoreOp restores CRIU images of this machine on a remote host.
type RestoreOp struct {
	Host host.Host
	// Request's ImagesDir is the local directory holding the images.
	Request migrate.RestoreRequest
	// Exe is the static ferry binary to run the agent on Host.
	Exe string
	// CRIUPath is CRIU as the user named it ("" looks for it on Host).
	CRIUPath string
	// Dir is ferry's directory on Host (DefaultDir when empty).
	Dir string
}

// Restore restores the images of op.Request.ImagesDir on op.Host as
// journaled steps: preflight (images here, CRIU there), copy (ferry and
// the images), restore (the agent, detached: the tree outlives the SSH
// session), cleanup (CRIU's lock tables and the copied images) and verify.
// The target keeps nothing of the run but the restored tree; its CRIU log
// is fetched into the run directory.
func Restore(ctx context.Context, e *migrate.Engine, op RestoreOp) (*migrate.Journal, error) {
	req := op.Request
	now := e.Now
	if now == nil {
		now = time.Now
	}
	run, err := e.Store.Create("restore", now(), migrate.Journal{
		Command: e.Command, Driver: "criu@" + op.Host.Name(), Dest: op.Host.Name(), ImagesDir: req.ImagesDir,
	})
	if err != nil {
		return nil, err
	}
	run.Now, run.OnStep = e.Now, e.OnStep
	hn := op.Host.Name()
	end := func(result, step string, err error) (*migrate.Journal, error) {
		_ = run.Finish(result, err)
		j := run.Journal()
		if err == nil {
			return &j, nil
		}
		return &j, &migrate.OpError{Op: "restore " + req.ImagesDir + " on " + hn, RunID: run.ID(), RunDir: run.Dir, Step: step, Err: err}
	}
	dir := op.Dir
	if dir == "" {
		dir = DefaultDir
	}
	remoteDir := path.Join(dir, "remote", run.ID())
	remoteImgs := path.Join(remoteDir, "images")

	var criuPath string
	if err := run.Step(migrate.StepPreflight, hn, func(s *migrate.Step) error {
		if _, err := os.Stat(filepath.Join(req.ImagesDir, "inventory.img")); err != nil {
			return &criu.NoImagesError{Dir: req.ImagesDir, Err: err}
		}
		info, err := criubin.Find(ctx, op.Host, op.CRIUPath)
		if err != nil {
			return fmt.Errorf("CRIU on %s: %w", hn, err)
		}
		criuPath = info.Path
		s.Notes = map[string]string{"criu": info.Path + " " + info.VersionString}
		return nil
	}); err != nil {
		_ = run.Update(func(j *migrate.Journal) { j.Workload = "images in " + req.ImagesDir + " (not restored)" })
		return end(migrate.RunFailed, migrate.StepPreflight, err)
	}

	// From here on the host holds files of this run: they go whatever
	// happens. The copy stops on an interrupt; CRIU's restore, once
	// started, runs to its end.
	keep := context.WithoutCancel(ctx)
	var restoreLog string
	cleanup := func(s *migrate.Step) error {
		var err error
		if restoreLog != "" {
			err = migrate.DropRunTables(keep, op.Host, s, restoreLog)
		}
		if rerr := Remove(keep, op.Host, remoteDir); rerr != nil && err == nil {
			err = fmt.Errorf("remove the copied images on %s: %w", hn, rerr)
		}
		return err
	}
	failed := func(step string, err error) (*migrate.Journal, error) {
		_ = run.Step(migrate.StepCleanup, hn, cleanup)
		_ = run.Update(func(j *migrate.Journal) { j.Workload = "images in " + req.ImagesDir + " (not restored)" })
		return end(migrate.RunFailed, step, err)
	}

	var drv *agent.Driver
	if err := run.Step(StepCopy, hn, func(s *migrate.Step) error {
		bin, err := EnsureBinary(ctx, op.Host, op.Exe, dir)
		if err != nil {
			return err
		}
		drv = &agent.Driver{Host: op.Host, Argv: bin.AgentArgv(criuPath), Label: "criu"}
		s.Notes = map[string]string{"ferry": bin.Note()}
		if _, err := op.Host.Run(ctx, []string{"mkdir", "-p", "-m", "0700", "--", remoteImgs}, host.RunOptions{}); err != nil {
			return fmt.Errorf("make the images directory on %s: %w", hn, err)
		}
		start := time.Now()
		if err := CopyDir(ctx, host.Local{}, req.ImagesDir, op.Host, remoteImgs); err != nil {
			return fmt.Errorf("copy the images to %s: %w", hn, err)
		}
		s.Notes["images"] = hn + ":" + remoteImgs
		s.Notes["image_bytes"] = strconv.FormatInt(criu.ImageBytes(req.ImagesDir), 10)
		s.Notes["copy"] = time.Since(start).Round(time.Millisecond).String()
		return nil
	}); err != nil {
		return failed(StepCopy, err)
	}
	if err := ctx.Err(); err != nil {
		return failed(StepCopy, fmt.Errorf("interrupted: %w", err))
	}

	rreq := req
	rreq.ImagesDir, rreq.LogDir = remoteImgs, remoteDir
	var res *migrate.RestoreResult
	err = run.Step(migrate.StepRestore, hn, func(s *migrate.Step) error {
		var err error
		res, err = drv.Restore(keep, rreq)
		restoreLog = localLog(keep, op.Host, path.Join(remoteDir, criu.RestoreLog), run.Dir, res, err)
		if restoreLog != "" {
			s.Log = criu.RestoreLog
		}
		var f *migrate.Failure
		if asFailure(err, &f) {
			s.Lifted = f.Lifted
		}
		if res != nil && res.PID > 0 {
			s.Notes = map[string]string{"pid": strconv.Itoa(res.PID)}
		}
		return explainFiles(op.Host, err)
	})
	if err != nil {
		return failed(migrate.StepRestore, err)
	}
	if err := run.Step(migrate.StepCleanup, hn, cleanup); err != nil {
		return end(migrate.RunFailed, migrate.StepCleanup, err)
	}
	if err := run.Step(migrate.StepVerify, hn, func(s *migrate.Step) error {
		if err := Runs(keep, op.Host, res.PID); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
		return Runs(keep, op.Host, res.PID)
	}); err != nil {
		return end(migrate.RunFailed, migrate.StepVerify, err)
	}
	st := res.Stats
	_ = run.Update(func(j *migrate.Journal) {
		j.Stats = &st
		j.Target = fmt.Sprintf("pid:%d", res.PID)
		j.Workload = fmt.Sprintf("pid:%d on %s", res.PID, hn)
	})
	return end(migrate.RunOK, "", nil)
}
