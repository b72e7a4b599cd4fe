package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/output"
	"github.com/ferry-migrate/ferry/probe"
)

// ProbeOptions are the inputs of `ferry probe`.
type ProbeOptions struct {
	IO *IOStreams
	// HostSpec resolves a spec to a host (Factory.Host).
	HostSpec func(string) (host.Host, error)
	CRIUPath string
	Format   output.Format

	Spec    string // HOST argument; "" means local
	Root    string // --root
	Timeout time.Duration
}

func newProbeCmd(f *Factory, runF func(context.Context, *ProbeOptions) error) *cobra.Command {
	opts := &ProbeOptions{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "probe [HOST]",
		Short: "Show the facts of one host that decide whether containers can move",
		Long: `Show the facts of one host that decide whether a container can move to or
from it: kernel (release, architecture, page size, checkpoint/restore
options), the syscalls it offers, CPU (instruction-set flags as CRIU compares
them, platform flags, xsave sizes), CRIU (version, criu check, every
criu check --feature), filesystems, whether the host is a container or VM,
cgroups, LSMs, network-lock backends and container runtimes.

HOST is local (the default), ssh://[user@]host[:port], testbed:NAME, a
directory holding a captured host, or a facts file written by
'ferry probe -o json' (shown again). --root DIR reads a captured host
(an unpacked ferry bundle or sos report, a mounted disk image): files come
from DIR/proc, DIR/sys, DIR/boot; command outputs from DIR/commands/ or a sos
report's DIR/sos_commands/*/, and are unknown otherwise.

A fact that cannot be read is shown as unknown with the reason; ferry never
guesses. The JSON form ("schema": "ferry.facts/v1") is what 'ferry check'
reads as a saved host.`,
		Example: `  ferry probe
  ferry probe -o json > host-a.json
  ferry probe ssh://root@db1
  ferry probe testbed:tb1 -o yaml
  ferry probe --root ./sosreport-db1-2026-11-28`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Spec = args[0]
			}
			if opts.Spec != "" && opts.Root != "" {
				return exit.Usagef("give either HOST or --root DIR", "both a host (%s) and --root (%s) given", opts.Spec, opts.Root)
			}
			opts.HostSpec = f.Host
			opts.CRIUPath = f.CRIUPath()
			opts.Format = f.Output
			if runF != nil {
				return runF(c.Context(), opts)
			}
			return probeRun(c.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Root, "root", "", "read a captured host from this directory instead of a live system")
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", 60*time.Second, "give up on the host after this long")
	return cmd
}

func probeRun(ctx context.Context, opts *ProbeOptions) error {
	spec := opts.Spec
	if opts.Root != "" {
		st, err := os.Stat(opts.Root)
		if err != nil || !st.IsDir() {
			return exit.Usagef("--root takes the directory that holds the captured proc/ and sys/", "--root %s: not a directory", opts.Root)
		}
		spec = opts.Root
	}
	if spec == "" {
		spec = "local"
	}
	src := factsSource{hostSpec: opts.HostSpec, criuPath: opts.CRIUPath}
	facts, err := src.facts(ctx, spec, opts.Timeout)
	if err != nil {
		return err
	}
	return output.Write(opts.IO.Out, opts.Format, facts)
}

// factsSource turns a host spec into facts: a saved facts file is read,
// anything else is probed through its Host.
type factsSource struct {
	hostSpec func(string) (host.Host, error)
	criuPath string
}

// isFactsFile reports whether spec names a saved facts file: a regular
// file named *.json or starting with '{'. Other files (bug-report bundles,
// *.tar.gz) are host specs.
func isFactsFile(spec string) bool {
	st, err := os.Stat(spec)
	if err != nil || !st.Mode().IsRegular() {
		return false
	}
	if strings.HasSuffix(spec, ".json") {
		return true
	}
	f, err := os.Open(spec)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [64]byte
	n, _ := f.Read(b[:])
	return strings.HasPrefix(strings.TrimSpace(string(b[:n])), "{")
}

func (s factsSource) facts(ctx context.Context, spec string, timeout time.Duration) (*probe.Facts, error) {
	if isFactsFile(spec) {
		fh, err := os.Open(spec)
		if err != nil {
			return nil, exit.New(exit.Failure, fmt.Errorf("facts %s: %w", spec, err), "check the file's path and permissions")
		}
		defer fh.Close()
		return probe.Read(fh, spec)
	}
	if strings.HasSuffix(spec, ".json") {
		if _, err := os.Stat(spec); err != nil {
			return nil, exit.New(exit.Failure, fmt.Errorf("facts %s: %w", spec, err), "write it with `ferry probe -o json > "+spec+"`")
		}
	}
	if host.IsBundlePath(spec) {
		return bundleFacts(ctx, spec)
	}
	h, err := s.hostSpec(spec)
	if err != nil {
		return nil, err
	}
	if c, ok := h.(io.Closer); ok {
		// An ssh host keeps a master connection until closed.
		defer c.Close()
	}
	opt := probe.Options{}
	switch h.(type) {
	case host.Local, *host.Local, *host.Netns:
		// These share the local filesystem: --criu / $FERRY_CRIU apply.
		opt.CRIUPath = s.criuPath
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	f, err := probe.Gather(ctx, h, opt)
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, exit.New(exit.Failure, fmt.Errorf("probe %s: timed out after %s", spec, timeout),
			"check that the host answers (ssh, nsenter), or raise --timeout")
	}
	return f, err
}
