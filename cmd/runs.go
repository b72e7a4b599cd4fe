package cmd

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/ferry-migrate/ferry/internal/output"
	"github.com/ferry-migrate/ferry/migrate"
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
	return c
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
