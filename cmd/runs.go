package cmd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/output"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/remote"
	"github.com/ferry-migrate/ferry/testbed"
)

// RunsOptions are the inputs of `ferry runs` and `ferry runs show`.
type RunsOptions struct {
	IO     *IOStreams
	Format output.Format
	Store  migrate.Store
	ID     string
}

func newRunsCmd(f *Factory) *cobra.Command {
	opts := &RunsOptions{IO: f.IO}
	c := &cobra.Command{
		Use:   "runs",
		Short: "List the journals of past checkpoints, restores and migrations",
		Long: `List ferry's runs, newest first. Each run directory holds journal.json and
every CRIU log of the run ($FERRY_RUNS, /var/lib/ferry/runs for root).`,
		Example: `  ferry runs
  ferry runs --output json
  ferry runs show 20261129T190501-checkpoint-a1b2c3`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			opts.Format, opts.Store = f.Output, f.runStore()
			return runsListRun(c.Context(), opts)
		},
	}
	c.AddCommand(&cobra.Command{
		Use:     "show ID",
		Short:   "Show one run's journal: every step, its host, time, CRIU log and lifted errors",
		Example: `  ferry runs show 20261129T190501-checkpoint-a1b2c3 --output json`,
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Format, opts.Store, opts.ID = f.Output, f.runStore(), args[0]
			return runsShowRun(c.Context(), opts)
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "recover ID",
		Short: "Bring back the workload of a run ferry did not finish",
		Long: `Bring back the workload of a run that ferry did not finish (ferry was killed,
the machine rebooted) or whose rollback failed: a process tree left stopped
is continued, CRIU's leftover network-lock tables are removed, and a tree
that is gone is restored from the run's images when its dump finished.
A testbed move is finished (the workload was already adopted on the
target: the stopped source goes) or undone (the source continues, or is
restored from its images when its TCP sockets were left in repair mode,
and the target is cleaned). A move of a pid:N tree to an SSH host has its
target cleaned (the page server, an unverified restored copy, the run's
directory) before the tree is brought back here. A run that ended cleanly has nothing to recover (exit 0).`,
		Example: `  ferry runs recover 20261129T190501-checkpoint-a1b2c3`,
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Format, opts.Store, opts.ID = f.Output, f.runStore(), args[0]
			return runsRecoverRun(c.Context(), f, opts)
		},
	})
	return c
}

func runsRecoverRun(ctx context.Context, f *Factory, opts *RunsOptions) error {
	d, err := f.criuDriver(ctx)
	if err != nil {
		return err
	}
	e := &migrate.Engine{Store: opts.Store, Now: f.Now}
	rec := migrate.Recovery{Host: host.Local{}, Driver: d}
	if j, lerr := opts.Store.Load(opts.ID); lerr == nil && strings.HasPrefix(j.Target, migrate.KindTestbed+":") {
		tb, err := testbed.FromEnv(f.Getenv)
		if err != nil {
			return err
		}
		tb.CRIU = d.Path
		rec.Resume = func(ctx context.Context, j *migrate.Journal) (string, error) {
			return tb.RecoverMove(ctx, opts.Store.RunDir(j.ID))
		}
	}
	if dest := remote.RecordedTarget(opts.Store.RunDir(opts.ID)); dest != "" {
		h, err := f.Host(dest)
		if err != nil {
			return err
		}
		defer closeHost(h)
		rec.CleanTarget = func(ctx context.Context, j *migrate.Journal) (string, error) {
			return remote.CleanTarget(ctx, h, opts.Store.RunDir(j.ID), j)
		}
	}
	j, err := e.Recover(ctx, opts.ID, rec)
	var nothing *migrate.NothingToRecoverError
	if errors.As(err, &nothing) {
		fmt.Fprintln(opts.IO.ErrOut, nothing.Error())
		err = nil
	}
	if j != nil {
		if werr := output.Write(opts.IO.Out, opts.Format, j); werr != nil && err == nil {
			return werr
		}
	}
	return err
}

func runsListRun(_ context.Context, opts *RunsOptions) error {
	js, err := opts.Store.List()
	if err != nil {
		return err
	}
	if js == nil {
		js = []migrate.Journal{}
	}
	return output.Write(opts.IO.Out, opts.Format, migrate.Runs(js))
}

func runsShowRun(_ context.Context, opts *RunsOptions) error {
	j, err := opts.Store.Load(opts.ID)
	if err != nil {
		return err
	}
	return output.Write(opts.IO.Out, opts.Format, j)
}
