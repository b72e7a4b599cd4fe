package cmd

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/output"
	"github.com/ferry-migrate/ferry/report"
	"github.com/ferry-migrate/ferry/report/bundle"
)

// ReportOptions are the inputs of `ferry report`.
type ReportOptions struct {
	IO *IOStreams
	// Output is the global --output, used when --format is not given.
	Output output.Format

	Bundle string
	Format string
}

func newReportCmd(f *Factory, runF func(context.Context, *ReportOptions) error) *cobra.Command {
	opts := &ReportOptions{IO: f.IO}
	c := &cobra.Command{
		Use:   "report BUNDLE",
		Short: "Summarise a bug-report bundle for a bug tracker",
		Long: `Read a bundle written by ferry collect and print a summary ready to paste
into a bug tracker: what failed and the exact command, the versions and key
facts of source and target side by side, the compatibility findings, the
known issues matched in the bundle's logs with their causes, fixes and
upstream issues, and the list of attached artefacts.

--format md (default) is Markdown for GitHub or GitLab, html one
self-contained page, json the same data for programs. The bundle's entries
are checked before anything is read: a bundle with entries that would land
outside its directory, or with links, is refused.`,
		Example: `  ferry report ferry-bundle-20261129T190501-restore-a1b2c3.tar.gz
  ferry report bundle.tar.gz --format html > report.html
  ferry report bundle.tar.gz --format json`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Bundle, opts.Output = args[0], f.Output
			if !c.Flags().Changed("format") && f.Output == output.JSON {
				opts.Format = report.JSON
			}
			if runF != nil {
				return runF(c.Context(), opts)
			}
			return reportRun(c.Context(), opts)
		},
	}
	c.Flags().StringVar(&opts.Format, "format", report.Markdown, "md, html or json")
	return c
}

func reportRun(ctx context.Context, opts *ReportOptions) error {
	switch opts.Format {
	case report.Markdown, report.HTML, report.JSON:
	default:
		return exit.Usagef("use --format md, html or json", "unknown report format %q", opts.Format)
	}
	b, err := bundle.Open(ctx, opts.Bundle)
	if err != nil {
		return exit.WithHint(err, "give the path of a bundle written by `ferry collect` (.tar.gz or .tar.zst)")
	}
	if err := b.Verify(); err != nil {
		return exit.WithHint(fmt.Errorf("bundle %s does not match its manifest: %w", opts.Bundle, err),
			"the bundle was changed after ferry wrote it; ask for a fresh one")
	}
	return report.Render(opts.IO.Out, report.Build(b, report.Options{}), opts.Format)
}
