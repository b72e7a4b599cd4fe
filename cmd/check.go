package cmd

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/output"
	"github.com/ferry-migrate/ferry/probe"
	"github.com/ferry-migrate/ferry/probe/inventory"
)

// CheckOptions are the inputs of `ferry check`.
type CheckOptions struct {
	IO       *IOStreams
	HostSpec func(string) (host.Host, error)
	CRIUPath string
	Format   output.Format

	Hosts     []string
	Runtime   string
	Matrix    bool
	Inventory string
	Timeout   time.Duration
}

func newCheckCmd(f *Factory, runF func(context.Context, *CheckOptions) error) *cobra.Command {
	opts := &CheckOptions{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "check SRC DST | --matrix HOST... | --inventory FILE",
		Short: "Tell whether a container can move from one host to another",
		Long: `Compare two hosts rule by rule before anything is frozen: CPU instruction
flags and xsave, syscalls, filesystems, page size and architecture, kernel
options, CRIU on both ends and the known-bad CRIU/kernel combinations, the
network lock, nesting, and with --runtime lxd|incus the runtime's rules.

Every finding has a stable rule ID, a severity (blocker, warning, info, or
undecided when a deciding fact is unknown), a one-line message, a hint and the
evidence from both hosts.

A host is local, ssh://[user@]host[:port], testbed:NAME, a directory holding
a captured host, or a facts file written by 'ferry probe -o json'.

--matrix probes every host given (and --inventory every host of an
Ansible-style INI or YAML inventory) in parallel and prints which directions
are possible. A host that fails or times out is reported, the others still
are; the exit status is then 1.

Exit status 0: compatible (warnings allowed); 3: blocking findings; 1: could
not decide (a host could not be probed, or a deciding fact is unknown).`,
		Example: `  ferry check local ssh://root@db2
  ferry check a.json b.json --output json
  ferry check ./capture-a ./capture-b
  ferry check local ssh://db2 --runtime incus
  ferry check --matrix local ssh://db1 ssh://db2 saved.json
  ferry check --inventory hosts.ini`,
		Args: func(c *cobra.Command, args []string) error {
			switch {
			case opts.Inventory != "":
				return nil
			case opts.Matrix:
				return usageArgs(cobra.MinimumNArgs(2))(c, args)
			}
			return usageArgs(cobra.ExactArgs(2))(c, args)
		},
		RunE: func(c *cobra.Command, args []string) error {
			switch opts.Runtime {
			case probe.RuntimeCRIU, probe.RuntimeLXD, probe.RuntimeIncus:
			default:
				return exit.Usagef("use --runtime criu, lxd or incus", "unknown runtime %q", opts.Runtime)
			}
			opts.Hosts = args
			opts.HostSpec = f.Host
			opts.CRIUPath = f.CRIUPath()
			opts.Format = f.Output
			if runF != nil {
				return runF(c.Context(), opts)
			}
			return checkRun(c.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Runtime, "runtime", probe.RuntimeCRIU, "what moves the container: criu, lxd or incus")
	fl.BoolVar(&opts.Matrix, "matrix", false, "compare every ordered pair of the hosts given")
	fl.StringVar(&opts.Inventory, "inventory", "", "compare every ordered pair of an Ansible inventory's hosts (INI or YAML)")
	fl.DurationVar(&opts.Timeout, "timeout", 60*time.Second, "give up on a host after this long")
	return cmd
}

func checkRun(ctx context.Context, opts *CheckOptions) error {
	src := factsSource{hostSpec: opts.HostSpec, criuPath: opts.CRIUPath}
	if opts.Matrix || opts.Inventory != "" {
		return matrixRun(ctx, opts, src)
	}
	type res struct {
		f   *probe.Facts
		err error
	}
	results := make([]res, 2)
	if opts.Hosts[0] == opts.Hosts[1] {
		// One host against itself: probe it once.
		f, err := src.facts(ctx, opts.Hosts[0], opts.Timeout)
		results[0], results[1] = res{f, err}, res{f, err}
	} else {
		done := make(chan struct{}, 2)
		for i, spec := range opts.Hosts {
			go func() {
				f, err := src.facts(ctx, spec, opts.Timeout)
				results[i] = res{f, err}
				done <- struct{}{}
			}()
		}
		<-done
		<-done
	}
	for i, r := range results {
		if r.err != nil {
			return exit.WithHint(fmt.Errorf("%s host %s: %w", []string{"source", "target"}[i], opts.Hosts[i], r.err),
				"ferry could not decide; fix the host above and run the check again")
		}
	}
	rep := probe.Check(results[0].f, results[1].f, opts.Runtime)
	if err := output.Write(opts.IO.Out, opts.Format, rep); err != nil {
		return err
	}
	switch rep.Verdict {
	case probe.VerdictIncompatible:
		return exit.New(exit.Incompatible, fmt.Errorf("%s -> %s: %d blocking findings", opts.Hosts[0], opts.Hosts[1], rep.Blockers),
			"see the BLOCKER findings above: each names what to change")
	case probe.VerdictUndecided:
		return exit.New(exit.Failure, fmt.Errorf("%s -> %s: cannot decide: a deciding fact is unknown", opts.Hosts[0], opts.Hosts[1]),
			"see the UNDECIDED findings above; probe the hosts live as root")
	}
	return nil
}

func matrixRun(ctx context.Context, opts *CheckOptions, src factsSource) error {
	specs := opts.Hosts
	if opts.Inventory != "" {
		b, err := os.ReadFile(opts.Inventory)
		if err != nil {
			return exit.New(exit.Failure, fmt.Errorf("inventory: %w", err), "check the path given with --inventory")
		}
		hosts, err := inventory.Parse(b)
		if err != nil {
			return exit.New(exit.Failure, fmt.Errorf("inventory %s: %w", opts.Inventory, err), "ferry reads Ansible INI and YAML inventories")
		}
		for _, h := range hosts {
			specs = append(specs, h.Spec)
		}
	}
	if len(specs) < 2 {
		return exit.Usagef("a matrix needs at least two hosts", "only %d host given", len(specs))
	}
	seen := map[string]bool{}
	var probes []probe.Probe
	for _, spec := range specs {
		if seen[spec] {
			continue
		}
		seen[spec] = true
		probes = append(probes, probe.Probe{Spec: spec, Facts: func(ctx context.Context) (*probe.Facts, error) {
			// The matrix applies the timeout itself, per host.
			return src.facts(ctx, spec, 0)
		}})
	}
	if len(probes) < 2 {
		return exit.Usagef("a matrix needs at least two different hosts", "only %d different host given", len(probes))
	}
	rep := probe.Matrix(ctx, probes, opts.Runtime, opts.Timeout)
	if err := output.Write(opts.IO.Out, opts.Format, rep); err != nil {
		return err
	}
	if n := rep.Failed(); n > 0 {
		return exit.New(exit.Failure, fmt.Errorf("%d of %d hosts could not be probed", n, len(probes)),
			"the directions between the other hosts are listed above; fix the failed hosts and run again")
	}
	return nil
}
