package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/ferry-migrate/ferry/internal/criubin"
	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/output"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/criu"
	"github.com/ferry-migrate/ferry/report/explain"
)

// runStore is where run directories live ($FERRY_RUNS, /var/lib/ferry/runs
// for root, the XDG state directory otherwise).
func (f *Factory) runStore() migrate.Store {
	return migrate.Store{Dir: migrate.DefaultStoreDir(f.Getenv)}
}

// criuDriver finds CRIU on the local host and returns the native driver.
func (f *Factory) criuDriver(ctx context.Context) (*criu.Driver, error) {
	info, err := criubin.Find(ctx, host.Local{}, f.CRIUPath())
	if err != nil {
		return nil, err
	}
	return &criu.Driver{Path: info.Path, Lift: f.Lift}, nil
}

// operationError maps a failed operation to exit 4 (a real checkpoint,
// restore or migration failure) or keeps usage errors as they are.
func operationError(err error) error {
	var op *migrate.OpError
	if err == nil {
		return nil
	}
	if exit.CodeOf(err) == exit.Usage {
		return err
	}
	if errors.As(err, &op) {
		if op.Step == migrate.StepPreflight {
			return err // refused before touching anything: exit 1
		}
		return exit.New(exit.Migration, err, knownIssue(err)...)
	}
	return err
}

// knownIssue names the known issue behind a failed CRIU step, for the
// hint lines: the cause, the fix and where maintainers explained it.
func knownIssue(err error) []string {
	var f *migrate.Failure
	if !errors.As(err, &f) || f.Log == "" {
		return nil
	}
	b, rerr := os.ReadFile(f.Log)
	if rerr != nil {
		return nil
	}
	ms := explain.Explain([]explain.Input{{Name: f.Log, Text: string(b)}})
	if len(ms) == 0 {
		return nil
	}
	m := ms[0]
	return []string{
		fmt.Sprintf("known issue %s (%s): %s", m.ID, m.Category, m.Cause),
		fmt.Sprintf("fix: %s (%s)", m.Fix, m.URL),
	}
}

// Reporter makes the bug-report bundle of a failed run on hosts and returns
// the hint lines that name it.
type Reporter func(ctx context.Context, runID string, hosts ...host.Host) []string

// finishRun prints a run's journal and turns its error into the exit code
// and hints a user needs. A failed operation (exit 4) gets its bug-report
// bundle from hosts through report; a nil report (--no-report) names the
// command that makes it instead.
func finishRun(ctx context.Context, io *IOStreams, format output.Format, report Reporter, j *migrate.Journal, err error, hosts ...host.Host) error {
	if j != nil {
		if werr := output.Write(io.Out, format, j); werr != nil && err == nil {
			return werr
		}
	}
	err = operationError(err)
	if err != nil && j != nil && exit.CodeOf(err) == exit.Migration {
		hints := []string{"bundle the run for a bug report: ferry collect --run " + j.ID}
		if report != nil {
			hints = report(ctx, j.ID, hosts...)
		}
		err = exit.WithHint(err, hints...)
	}
	return err
}

// reporter is the factory's Reporter, or nil when --no-report.
func (f *Factory) reporter(noReport bool) Reporter {
	if noReport {
		return nil
	}
	return func(ctx context.Context, runID string, hosts ...host.Host) []string {
		return failureBundle(ctx, f, runID, hosts...)
	}
}
