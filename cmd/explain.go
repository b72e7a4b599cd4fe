package cmd

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/output"
	"github.com/ferry-migrate/ferry/report/explain"
)

// explainMaxFile is the largest log explain reads whole.
const explainMaxFile = 1 << 30

// ExplainOptions are the inputs of `ferry explain`.
type ExplainOptions struct {
	IO *IOStreams
	// Host reads the named files (the local machine in production).
	Host host.Host
	// DB is the signature database (the embedded one in production).
	DB     *explain.DB
	Format output.Format

	// Files to explain; "-" is standard input.
	Files []string
}

// ExplainResult is the data model of `ferry explain`.
type ExplainResult struct {
	Matches []explain.Match `json:"matches"`
}

// WriteText writes one block per match, root cause first.
func (r ExplainResult) WriteText(w io.Writer) error {
	if len(r.Matches) == 0 {
		_, err := fmt.Fprintln(w, "No known failure signature matched.")
		return err
	}
	for i, m := range r.Matches {
		if i > 0 {
			fmt.Fprintln(w)
		}
		label := ""
		if i == 0 {
			label = "  (most likely root cause)"
		}
		fmt.Fprintf(w, "%d. %s: %s%s\n", i+1, m.Category, m.ID, label)
		fmt.Fprintf(w, "   %s:%d: %s\n", m.File, m.LineNo, strings.TrimSpace(m.Line))
		fmt.Fprintf(w, "   cause: %s\n", m.Cause)
		if m.Conditions != "" {
			fmt.Fprintf(w, "   when:  %s\n", m.Conditions)
		}
		fmt.Fprintf(w, "   fix:   %s\n", m.Fix)
		if _, err := fmt.Fprintf(w, "   see:   %s\n", m.URL); err != nil {
			return err
		}
	}
	return nil
}

func newExplainCmd(f *Factory, runF func(context.Context, *ExplainOptions) error) *cobra.Command {
	opts := &ExplainOptions{IO: f.IO}
	return &cobra.Command{
		Use:   "explain FILE... | -",
		Short: "Name the known failure behind CRIU, LXC, LXD or Incus logs",
		Long: `Match logs against ferry's database of known failure signatures and name the
cause, the fix and the public issue where maintainers explained it.

Reads CRIU dump and restore logs, lxc.log, lxd.log and incusd.log, and the
output of failed commands; "-" reads standard input. Timestamps, PIDs, line
numbers and addresses are ignored when matching; the original line and its
line number are shown. Lines that only say that something failed ("Dumping
FAILED.", "Failed to run: ... forkmigrate") and lines known to be harmless
("rlimit: Can't setup RLIMIT_NOFILE") never count: the root cause comes first.

Finding nothing is not an error: the list is empty and the exit status 0.`,
		Example: `  ferry explain /var/log/lxd/c1/lxc.log
  ferry explain dump.log restore.log --output json
  lxc info c1 --show-log | ferry explain -`,
		Args: usageArgs(func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("no logs given: name log files, or - for standard input")
			}
			stdin := 0
			for _, a := range args {
				if a == "-" {
					stdin++
				}
			}
			if stdin > 1 {
				return fmt.Errorf("standard input (-) given %d times", stdin)
			}
			return nil
		}),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Files = args
			opts.Host = host.Local{}
			opts.DB = explain.Default()
			opts.Format = f.Output
			if runF != nil {
				return runF(c.Context(), opts)
			}
			return explainRun(c.Context(), opts)
		},
	}
}

func explainRun(ctx context.Context, opts *ExplainOptions) error {
	inputs := make([]explain.Input, 0, len(opts.Files))
	for _, name := range opts.Files {
		in, err := readExplainInput(ctx, opts, name)
		if err != nil {
			return err
		}
		inputs = append(inputs, in)
	}
	return output.Write(opts.IO.Out, opts.Format, ExplainResult{Matches: opts.DB.Explain(inputs)})
}

func readExplainInput(ctx context.Context, opts *ExplainOptions, name string) (explain.Input, error) {
	if name == "-" {
		in, err := explain.ReadInput("stdin", io.LimitReader(opts.IO.In, explainMaxFile))
		if err != nil {
			return explain.Input{}, exit.WithHint(fmt.Errorf("read standard input: %w", err))
		}
		return in, nil
	}
	b, err := host.ReadFile(ctx, opts.Host, name, explainMaxFile)
	if err != nil {
		return explain.Input{}, exit.WithHint(fmt.Errorf("read %s: %w", name, err),
			"check the path and that you may read it (CRIU and daemon logs are often root's); use - to read standard input")
	}
	return explain.Input{Name: name, Text: string(b)}, nil
}
