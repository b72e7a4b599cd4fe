package cmd

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/output"
	"github.com/ferry-migrate/ferry/probe"
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
	return report.Render(opts.IO.Out, report.Build(b, report.Options{Findings: bundleFindings}), opts.Format)
}

// bundleFindings runs the compatibility rules (ferry check's) on the facts
// the bundle holds of its source and target.
func bundleFindings(b *bundle.Bundle) ([]report.Finding, string) {
	m := b.Manifest
	if len(m.Hosts) < 2 {
		return nil, "the bundle holds one host: there is nothing to compare"
	}
	var facts []*probe.Facts
	for _, h := range m.Hosts[:2] {
		for _, a := range m.Artefacts {
			if a.Collector != host.FactsCollector || a.Status != bundle.StatusOK || !strings.HasPrefix(a.Path, h.Dir+"/") {
				continue
			}
			data, _ := b.File(a.Path)
			if f, err := probe.Read(bytes.NewReader(data), a.Path); err == nil {
				facts = append(facts, f)
			}
			break
		}
	}
	if len(facts) < 2 {
		return nil, "the bundle lacks the facts of its source or target (collected by an older ferry, or the probe failed)"
	}
	runtime := probe.RuntimeCRIU
	switch {
	case strings.HasPrefix(m.Container, "lxd:"):
		runtime = probe.RuntimeLXD
	case strings.HasPrefix(m.Container, "incus:"):
		runtime = probe.RuntimeIncus
	}
	rep := probe.Check(facts[0], facts[1], runtime)
	out := make([]report.Finding, 0, len(rep.Findings))
	for _, f := range rep.Findings {
		out = append(out, report.Finding{Severity: string(f.Severity), Rule: f.Rule, Message: f.Message, Hint: f.Hint, Source: f.Source, Target: f.Target})
	}
	note := ""
	if len(out) == 0 {
		note = "the rules of ferry check found nothing between " + m.Hosts[0].Name + " and " + m.Hosts[1].Name
	}
	return out, note
}

// bundleFacts reads a host's facts from a bug-report bundle, for ferry probe
// and ferry check: BUNDLE.tar.gz is its source, BUNDLE.tar.gz#target (or
// #DIR) another of its hosts.
func bundleFacts(ctx context.Context, spec string) (*probe.Facts, error) {
	b, err := host.OpenBundle(ctx, spec)
	if err != nil {
		return nil, exit.New(exit.Usage, err)
	}
	raw, ok := b.Facts()
	if !ok {
		return nil, exit.New(exit.Failure, fmt.Errorf("bundle %s holds no ferry facts of %s", spec, b.Host().Name),
			"bundles from `ferry collect` hold each host's facts; this one was made without them (or the probe failed: see its manifest)")
	}
	return probe.Read(bytes.NewReader(raw), spec)
}
