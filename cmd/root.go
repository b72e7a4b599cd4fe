package cmd

import (
	"github.com/spf13/cobra"

	"github.com/ferry-migrate/ferry/internal/exit"
)

const helpTemplate = `{{with (or .Long .Short)}}{{. | trimTrailingWhitespaces}}

{{end}}{{if or .Runnable .HasSubCommands}}{{.UsageString}}{{end}}
` + exit.Statuses + "\n"

// NewRootCmd builds the whole command tree. Commands are registered here,
// explicitly, not by init side effects.
func NewRootCmd(f *Factory) *cobra.Command {
	root := &cobra.Command{
		Use:   "ferry",
		Short: "Check, run and report on Linux container live migration",
		Long: `ferry tells whether a container can move between two hosts, runs checkpoint,
restore and live migration with CRIU, LXD or Incus with every step timed and
logged, and when something fails gathers the bug report maintainers ask for.

Hosts are named as: local, ssh://[user@]host[:port], testbed:NAME, or a
directory holding a captured host.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(c *cobra.Command, _ []string) error {
			return f.setup()
		},
	}
	root.SetIn(f.IO.In)
	root.SetOut(f.IO.Out)
	root.SetErr(f.IO.ErrOut)
	root.SetHelpTemplate(helpTemplate)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return exit.New(exit.Usage, err, "run '"+c.CommandPath()+" --help' for its flags")
	})

	pf := root.PersistentFlags()
	pf.StringVarP(&f.outputFlag, "output", "o", "text", "output format: text, json or yaml")
	pf.StringVar(&f.logLevel, "log-level", "warn", "log detail on stderr: debug, info, warn or error")
	pf.StringVar(&f.criuFlag, "criu", "", "CRIU binary to use (default $FERRY_CRIU, then criu on PATH)")

	root.AddCommand(
		newVersionCmd(f, nil),
		newProbeCmd(f, nil),
		newCheckCmd(f, nil),
		newCheckpointCmd(f, nil),
		newRestoreCmd(f, nil),
		newMigrateCmd(f, nil),
		newSoakCmd(f, nil),
		newRunsCmd(f),
		newExplainCmd(f, nil),
		newTestbedCmd(f, nil),
		newAgentCmd(f),
		newCollectCmd(f, nil),
		newReportCmd(f, nil),
		newInspectCmd(f, nil),
	)
	return root
}

// usageArgs wraps a cobra argument check so that its failure exits 2.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if err := check(c, args); err != nil {
			return exit.New(exit.Usage, err, "run '"+c.CommandPath()+" --help' for its arguments")
		}
		return nil
	}
}
