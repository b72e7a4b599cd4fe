package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-migrate/ferry/collect"
	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/output"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/probe"
	"github.com/ferry-migrate/ferry/report/bundle"
)

// CollectOptions are the inputs of `ferry collect`.
type CollectOptions struct {
	IO     *IOStreams
	Format output.Format
	// Host resolves host specs.
	Host  func(spec string) (host.Host, error)
	Store migrate.Store
	Now   func() time.Time
	CRIU  string
	// Log receives one line per artefact (shown with --log-level info).
	Log *slog.Logger

	Container     string
	RunID         string
	Source        string
	Target        string
	Out           string
	RedactNetwork bool
	Compression   string
	Timeout       time.Duration
	MaxSize       string
}

// CollectResult is the data model of `ferry collect`.
type CollectResult struct {
	Bundle    string   `json:"bundle"`
	SHA256    string   `json:"sha256"`
	Size      int64    `json:"size"`
	Artefacts int      `json:"artefacts"`
	Absent    int      `json:"absent"`
	Redacted  int      `json:"redactions"`
	Failures  []string `json:"failures"`
}

func (r CollectResult) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "bundle:     %s\n", r.Bundle)
	fmt.Fprintf(w, "sha256:     %s\n", r.SHA256)
	fmt.Fprintf(w, "size:       %d bytes\n", r.Size)
	fmt.Fprintf(w, "artefacts:  %d (%d absent on their host), %d redactions\n", r.Artefacts, r.Absent, r.Redacted)
	if len(r.Failures) > 0 {
		fmt.Fprintf(w, "not collected (%d):\n", len(r.Failures))
		for _, f := range r.Failures {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
	_, err := fmt.Fprintf(w, "summary:    ferry report %s\n", host.QuoteWord(r.Bundle))
	return err
}

func newCollectCmd(f *Factory, runF func(context.Context, *CollectOptions) error) *cobra.Command {
	opts := &CollectOptions{IO: f.IO}
	c := &cobra.Command{
		Use:   "collect",
		Short: "Gather a bug-report bundle from the source and target hosts",
		Long: `Gather everything CRIU, LXD and Incus maintainers ask for into one bundle:
uname -a, dmesg, /proc/self/mountinfo, os-release, criu --version and
criu check --all, lxc info / incus info, the daemon logs and
/etc/default/lxd-bridge from every host (source and target); with --container
the container's info with its log, its expanded configuration, its
mountinfo and its log directory; with --run the run's journal, every CRIU log
and the stats files, and the command and its error.

Each artefact is collected with a timeout (--timeout) and a size cap
(--max-size, the tail is kept and marked truncated). What does not exist on a
host is recorded as absent. Secrets are redacted before anything is written:
private keys and certificates, passwords, tokens, environment.* values,
cloud-init user data and common token formats; --redact-network also maps IP
and MAC addresses and host names to stable placeholders. manifest.json counts
the redactions per file, never the values.

The bundle is a tar.gz (or tar.zst) of mode 0600 laid out as
<host>/<collector>/<file>, with manifest.json (command or path, exit code,
duration, size, sha256, truncated, redactions of every artefact) and a
.sha256 file beside it. When some artefacts could not be collected the
bundle is still written and ferry exits 5.

Without --source and --target, a bundle for --run uses the run's hosts, and
otherwise the local machine.`,
		Example: `  ferry collect
  ferry collect --run 20261129T190501-restore-a1b2c3
  ferry collect --container lxd:c1 --source local --target ssh://root@db2 --redact-network
  ferry collect --container incus:web --out /tmp/web.tar.zst --compression zstd`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			opts.Format, opts.Host, opts.Store, opts.Now, opts.CRIU, opts.Log = f.Output, f.Host, f.runStore(), f.Now, f.CRIUPath(), f.Log
			if runF != nil {
				return runF(c.Context(), opts)
			}
			return collectRun(c.Context(), opts)
		},
	}
	fl := c.Flags()
	fl.StringVar(&opts.Container, "container", "", "the container: lxd:[remote:]NAME or incus:[remote:]NAME")
	fl.StringVar(&opts.RunID, "run", "", "a run id (see ferry runs): add its journal, CRIU logs and stats")
	fl.StringVar(&opts.Source, "source", "", "the source host (default: the run's, else local)")
	fl.StringVar(&opts.Target, "target", "", "the target host (default: the run's destination, if any)")
	fl.StringVar(&opts.Out, "out", "", "the bundle file (default ./ferry-bundle-<run or time>.tar.gz)")
	fl.BoolVar(&opts.RedactNetwork, "redact-network", false, "replace IP and MAC addresses and host names by stable placeholders")
	fl.StringVar(&opts.Compression, "compression", bundle.Gzip, "gz or zstd")
	fl.DurationVar(&opts.Timeout, "timeout", collect.DefaultTimeout, "time limit of each artefact")
	fl.StringVar(&opts.MaxSize, "max-size", "25MiB", "size cap of each artefact (the tail is kept)")
	return c
}

func collectRun(ctx context.Context, opts *CollectOptions) error {
	req := collect.Request{Store: opts.Store, RunID: opts.RunID, Options: collect.Options{
		Timeout: opts.Timeout, RedactNetwork: opts.RedactNetwork, Compression: opts.Compression,
		CRIU: opts.CRIU, Now: opts.Now, Ferry: version,
	}}
	if opts.Log != nil {
		req.Progress = func(line string) { opts.Log.Info("collected", "artefact", line) }
	}
	req.Extra = []collect.Collector{factsCollector(opts.CRIU)}
	if opts.Compression != bundle.Gzip && opts.Compression != bundle.Zstd {
		return exit.Usagef("use --compression gz or zstd", "unknown compression %q", opts.Compression)
	}
	if opts.Timeout <= 0 {
		return exit.Usagef("give --timeout a positive duration such as 30s", "--timeout must be positive")
	}
	max, err := parseSize(opts.MaxSize)
	if err != nil {
		return exit.Usagef("give --max-size as bytes or with a unit: 25MiB, 512KiB, 1GiB", "--max-size: %v", err)
	}
	req.MaxSize = max
	if opts.Container != "" {
		c, err := collect.ParseContainer(opts.Container)
		if err != nil {
			return exit.New(exit.Usage, err)
		}
		req.Container = &c
	}
	source, target := opts.Source, opts.Target
	if opts.RunID != "" {
		j, err := opts.Store.Load(opts.RunID)
		if err != nil {
			return exit.WithHint(err)
		}
		if source == "" && target == "" {
			source, target = runHostSpec(opts, j.Source), runHostSpec(opts, j.Dest)
		}
		if req.Container == nil {
			if c, err := collect.ParseContainer(j.Target); err == nil {
				req.Container = &c
			}
		}
	}
	if source == "" {
		source = "local"
	}
	for _, s := range []struct{ spec, role string }{{source, collect.RoleSource}, {target, collect.RoleTarget}} {
		if s.spec == "" {
			continue
		}
		h, err := opts.Host(s.spec)
		if err != nil {
			return err
		}
		if c, ok := h.(io.Closer); ok {
			defer c.Close()
		}
		req.Hosts = append(req.Hosts, collect.Target{Host: h, Role: s.role})
	}
	if len(req.Hosts) == 1 {
		req.Hosts[0].Role = collect.RoleHost
		if target != "" || opts.RunID != "" {
			req.Hosts[0].Role = collect.RoleSource
		}
	}
	req.Output = opts.Out
	if req.Output == "" {
		name := opts.RunID
		if name == "" {
			name = opts.Now().UTC().Format("20060102T150405")
		}
		req.Output = "ferry-bundle-" + name + bundle.Ext(opts.Compression)
	}
	res, err := collect.Collect(ctx, req)
	var partial *collect.PartialError
	if res == nil {
		return exit.WithHint(fmt.Errorf("collect: %w", err), "check that the bundle's directory is writable")
	}
	out := CollectResult{Bundle: res.Bundle.Path, SHA256: res.Bundle.SHA256, Size: res.Bundle.Size, Failures: res.Manifest.Failures}
	for _, a := range res.Manifest.Artefacts {
		out.Artefacts++
		out.Redacted += a.Redactions
		if a.Status == bundle.StatusAbsent {
			out.Absent++
		}
	}
	if werr := output.Write(opts.IO.Out, opts.Format, out); werr != nil {
		return werr
	}
	if errors.As(err, &partial) {
		return exit.New(exit.Partial, err)
	}
	return err
}

// runHostSpec turns the host label a journal recorded into a host spec:
// labels are specs ("local", "testbed:tb1", "ssh://db1"), or a runtime's
// view of one ("lxd@local"). What cannot be resolved is collected as the
// local machine, with a warning.
func runHostSpec(opts *CollectOptions, label string) string {
	if label == "" {
		return ""
	}
	if _, err := opts.Host(label); err == nil {
		return label
	}
	if i := strings.Index(label, "@"); i >= 0 && !strings.Contains(label[:i], "://") {
		if _, err := opts.Host(label[i+1:]); err == nil {
			return label[i+1:]
		}
	}
	fmt.Fprintf(opts.IO.ErrOut, "warning: the run's host %q is not a host ferry can reach; collecting from this machine (give --source and --target)\n", label)
	return "local"
}

// factsCollector stores ferry's facts of each host (ferry.facts/v1, as
// `ferry probe -o json` prints them) in the bundle: `ferry report` compares
// them rule by rule, and `ferry check` can read a host from the bundle.
func factsCollector(criu string) collect.Collector {
	return collect.Func{ID: host.FactsCollector, File: "facts.json", Fn: func(ctx context.Context, h host.Host) ([]byte, error) {
		opt := probe.Options{}
		switch h.(type) {
		case host.Local, *host.Local, *host.Netns:
			// These share the local filesystem: --criu applies.
			opt.CRIUPath = criu
		}
		f, err := probe.Gather(ctx, h, opt)
		if err != nil {
			return nil, err
		}
		b, err := json.MarshalIndent(f, "", "  ")
		return append(b, '\n'), err
	}}
}

// failureBundle makes the bug-report bundle of a failed run, for the
// commands that run operations (checkpoint, restore, migrate): it returns
// the hint lines to print (the bundle's path and how to summarise it), or
// a line saying why there is no bundle. hosts are the run's hosts, source
// first.
func failureBundle(ctx context.Context, f *Factory, runID string, hosts ...host.Host) []string {
	var ts []collect.Target
	for i, h := range hosts {
		role := collect.RoleSource
		if i > 0 {
			role = collect.RoleTarget
		}
		ts = append(ts, collect.Target{Host: h, Role: role})
	}
	if len(ts) == 0 {
		ts = []collect.Target{{Host: host.Local{}, Role: collect.RoleSource}}
	}
	// The operation's own context may be cancelled (SIGINT): the report
	// is still wanted, within its own time limit.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	p, err := collect.ForRun(ctx, ts, f.runStore(), runID, collect.Options{CRIU: f.CRIUPath(), Now: f.Now, Ferry: version},
		factsCollector(f.CRIUPath()))
	var partial *collect.PartialError
	switch {
	case err == nil:
		return []string{"bug-report bundle: " + p + " (summary: ferry report " + host.QuoteWord(p) + "; again: ferry collect --run " + runID + ")"}
	case errors.As(err, &partial):
		return []string{"bug-report bundle (partial: " + strconv.Itoa(len(partial.Failures)) + " artefacts missing): " + p + " (summary: ferry report " + host.QuoteWord(p) + "; again: ferry collect --run " + runID + ")"}
	}
	return []string{"no bug-report bundle: " + err.Error() + "; run `ferry collect --run " + runID + "`"}
}
