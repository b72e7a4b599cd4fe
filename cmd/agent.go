package cmd

import (
	"github.com/spf13/cobra"

	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/migrate/agent"
)

// newAgentCmd is the far end of a migration: ferry runs `ferry agent
// --stdio` on the other host (through nsenter or ssh), sends one JSON
// request on stdin and reads the JSON response from stdout.
func newAgentCmd(f *Factory) *cobra.Command {
	var stdio bool
	c := &cobra.Command{
		Use:     "agent --stdio",
		Short:   "Serve one checkpoint or restore request from another ferry (internal)",
		Hidden:  true,
		Example: `  echo '{"protocol":"ferry.agent/v1","op":"restore","restore":{...}}' | ferry agent --stdio`,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if !stdio {
				return exit.Usagef("ferry starts its agent itself; there is nothing to run by hand", "agent needs --stdio")
			}
			d, err := f.criuDriver(c.Context())
			if err != nil {
				return err
			}
			return agent.Serve(c.Context(), f.IO.In, f.IO.Out, d)
		},
	}
	c.Flags().BoolVar(&stdio, "stdio", false, "read one request from stdin, answer on stdout")
	return c
}
