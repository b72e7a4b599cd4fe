package migrate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/ferry-migrate/ferry/internal/host"
)

// RunRecovered is the result of a run that `ferry runs recover` brought back.
const RunRecovered = "recovered"

// Recovery is what Recover needs to bring a workload back.
type Recovery struct {
	Host   host.Host
	Driver Driver
	// Resume, when set, is the runtime's own way to finish or undo an
	// interrupted migration (the testbed's placement); it returns where
	// the workload runs.
	Resume func(ctx context.Context, j *Journal) (string, error)
	// CleanTarget, when set, removes what an interrupted move left on its
	// target (a move to another host) before the source is brought back;
	// it returns what it did.
	CleanTarget func(ctx context.Context, j *Journal) (string, error)
}

// NothingToRecoverError says the run ended cleanly.
type NothingToRecoverError struct{ ID, Result, Workload string }

func (e *NothingToRecoverError) Error() string {
	return fmt.Sprintf("run %s ended %s: nothing to recover (workload: %s)", e.ID, e.Result, e.Workload)
}

// Recover brings back the workload of a run that ferry did not finish
// (killed with SIGKILL, the machine rebooted) or whose rollback failed:
// a tree left stopped is continued, CRIU's leftover lock tables removed, and
// a tree that is gone is restored from complete images. It appends a
// "recover" step to the run's journal.
func (e *Engine) Recover(ctx context.Context, id string, rec Recovery) (*Journal, error) {
	j, err := e.Store.Load(id)
	if err != nil {
		return nil, err
	}
	if j.Result == RunOK || j.Result == RunRolledBack || j.Result == RunRecovered ||
		(j.Result == RunFailed && !strings.HasPrefix(j.Workload, "UNKNOWN")) {
		return j, &NothingToRecoverError{ID: id, Result: j.Result, Workload: j.Workload}
	}
	run := &Run{Dir: e.Store.RunDir(id), journal: *j, Now: e.Now}
	_ = run.Update(func(j *Journal) {
		for i := range j.Steps {
			if j.Steps[i].Result == StepRunning {
				j.Steps[i].Result, j.Steps[i].Error = StepFailed, "interrupted: ferry did not finish this step"
			}
		}
	})
	var outcome string
	err = run.Step("recover", rec.Host.Name(), func(s *Step) error {
		var err error
		outcome, err = e.recover(ctx, run, j, rec, s)
		return err
	})
	if err != nil {
		_ = run.Update(func(j *Journal) { j.Workload = "UNKNOWN: recovery failed: " + err.Error() })
		jj := run.Journal()
		return &jj, fmt.Errorf("recover run %s: %w", id, err)
	}
	_ = run.Update(func(j *Journal) { j.Workload = outcome })
	_ = run.Finish(RunRecovered, nil)
	jj := run.Journal()
	return &jj, nil
}

func (e *Engine) recover(ctx context.Context, run *Run, j *Journal, rec Recovery, s *Step) (string, error) {
	// Whatever else happens, CRIU's lock tables go once no CRIU runs.
	defer func() {
		if !criuRunning() {
			_ = dropCRIUTables(ctx, rec.Host, nil, s)
		}
	}()
	if rec.Resume != nil {
		return rec.Resume(ctx, j)
	}
	if rec.CleanTarget != nil {
		did, err := rec.CleanTarget(ctx, j)
		if err != nil {
			return "", fmt.Errorf("clean the target: %w", err)
		}
		if s.Notes == nil {
			s.Notes = map[string]string{}
		}
		s.Notes["target"] = did
	}
	t, err := ParseTarget(j.Target)
	if err != nil || t.Kind != KindPID {
		return "", fmt.Errorf("cannot recover %q targets without their runtime", j.Target)
	}
	switch state := ProcState(t.PID); state {
	case "":
		// Gone: bring it back from the images if the dump finished.
		if !dumpComplete(run.Dir) {
			return "", fmt.Errorf("pid %d is gone and the dump in %s did not finish; nothing to restore from", t.PID, j.ImagesDir)
		}
		res, err := rec.Driver.Restore(ctx, RestoreRequest{ImagesDir: j.ImagesDir, LogDir: run.Dir})
		if res != nil {
			s.Log = relLog(run.Dir, res.Log)
		}
		liftInto(s, run.Dir, err)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("pid:%d on %s (restored from %s)", res.PID, rec.Host.Name(), j.ImagesDir), nil
	case "T", "t":
		for _, p := range ProcessTree(t.PID) {
			_ = syscall.Kill(p, syscall.SIGCONT)
		}
		if s.Notes == nil {
			s.Notes = map[string]string{}
		}
		s.Notes["continued"] = strconv.Itoa(t.PID)
		return fmt.Sprintf("pid:%d on %s (continued)", t.PID, rec.Host.Name()), nil
	default:
		return fmt.Sprintf("pid:%d on %s (running)", t.PID, rec.Host.Name()), nil
	}
}

// dumpComplete reports whether the run's dump log says the dump finished.
func dumpComplete(runDir string) bool {
	b, err := os.ReadFile(filepath.Join(runDir, "dump.log"))
	return err == nil && strings.Contains(string(b), "Dumping finished successfully")
}

// ProcState is the one-letter state of pid ("" when it does not exist or
// is a zombie).
func ProcState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || len(s) < i+3 || s[i+2] == 'Z' {
		return ""
	}
	return s[i+2 : i+3]
}

// ProcessTree lists pid and its descendants on this machine.
func ProcessTree(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", out[i]))
		for _, t := range tasks {
			b, _ := os.ReadFile(t)
			for _, f := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(f); err == nil {
					out = append(out, n)
				}
			}
		}
	}
	return out
}

// criuRunning reports whether any criu process runs on this machine.
func criuRunning() bool { return len(CRIUProcesses()) > 0 }
