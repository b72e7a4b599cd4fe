package cmd

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/output"
	"github.com/ferry-migrate/ferry/testbed"
	"github.com/ferry-migrate/ferry/testbed/zoo"
)

// TestbedOptions are the inputs every `ferry testbed` subcommand shares.
type TestbedOptions struct {
	IO      *IOStreams
	Testbed func() (*testbed.Testbed, error)
	Format  output.Format

	Hosts   int
	Host    string
	Name    string
	Zoo     string
	Args    []string
	Command []string
	Memory  string
	Net     string
}

const testbedEnvHelp = `
The testbed lives in $FERRY_TESTBED_DIR (default /var/lib/ferry/testbed);
$FERRY_TESTBED_PREFIX (default tb) names its hosts; $FERRY_TESTBED_EXE names
a static ferry to run workloads with when this one is not static. Needs
root, iproute2, nsenter, nftables and CRIU.`

func newTestbedCmd(f *Factory, runF func(context.Context, string, *TestbedOptions) error) *cobra.Command {
	opts := &TestbedOptions{IO: f.IO}
	opts.Testbed = func() (*testbed.Testbed, error) {
		tb, err := testbed.FromEnv(f.Getenv)
		if err != nil {
			return nil, err
		}
		tb.CRIU = f.CRIUPath()
		tb.Log = f.IO.ErrOut
		return tb, nil
	}
	do := func(c *cobra.Command, verb string) error {
		opts.Format = f.Output
		if runF != nil {
			return runF(c.Context(), verb, opts)
		}
		return testbedRun(c.Context(), verb, opts)
	}
	root := &cobra.Command{
		Use:   "testbed",
		Short: "Simulated hosts on this machine and a workload zoo that checks itself",
		Long: `The testbed makes hosts out of network namespaces on this machine (tb1, tb2,
...), joined by a private link (10.251.0.0/24, inside the namespaces only),
each with a directory for workload root filesystems. Workloads run as PID 1
of their own namespaces; the zoo's workloads check their own state, so that
a checkpoint, restore or migration can be verified, not trusted.

Test a migration path on one machine: ferry testbed up, ferry testbed run,
move the workload with ferry (or CRIU), ferry testbed verify.` + testbedEnvHelp,
	}

	up := &cobra.Command{
		Use:   "up",
		Short: "Create the testbed's hosts",
		Long: `Create hosts tb1..tbN: a network namespace each, on a bridge of their own,
and a root directory for workloads. A testbed that is already up is an error.` + testbedEnvHelp,
		Example: `  sudo ferry testbed up
  sudo ferry testbed up --hosts 3`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error { return do(c, "up") },
	}
	up.Flags().IntVar(&opts.Hosts, "hosts", 2, "number of hosts")

	down := &cobra.Command{
		Use:   "down",
		Short: "Remove the testbed and everything it started",
		Long: `Kill every workload and process of the testbed, delete CRIU's leftover
nftables tables, the network namespaces and links, and the testbed's files.
Running it again, or on a testbed that is down, is fine.` + testbedEnvHelp,
		Example: `  sudo ferry testbed down`,
		Args:    usageArgs(cobra.NoArgs),
		RunE:    func(c *cobra.Command, _ []string) error { return do(c, "down") },
	}
	status := &cobra.Command{
		Use:     "status",
		Short:   "Show the testbed's hosts",
		Example: `  ferry testbed status --output json`,
		Args:    usageArgs(cobra.NoArgs),
		RunE:    func(c *cobra.Command, _ []string) error { return do(c, "status") },
	}
	runCmd := &cobra.Command{
		Use:   "run HOST NAME [ZOO-WORKLOAD [ARGS...] | -- COMMAND [ARGS...]]",
		Short: "Launch a workload on a testbed host",
		Long: `Launch a zoo workload, or any static program, as PID 1 of its own pid, mount,
uts, ipc and (with --net own, the default) network namespaces, in a rootfs
of its own on HOST. With --net own the workload gets an address of its own
(10.252.x.y/32) that follows it to other hosts.

Zoo workloads:
` + zooHelp() + testbedEnvHelp,
		Example: `  sudo ferry testbed run tb1 m1 mem --memory 256M
  sudo ferry testbed run tb1 srv tcp
  sudo ferry testbed run tb2 cli --net host tcp-client srv
  sudo ferry testbed run tb1 mine -- /usr/local/bin/my-static-daemon --flag`,
		Args: usageArgs(cobra.MinimumNArgs(2)),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Host, opts.Name = args[0], args[1]
			rest := args[2:]
			if dash := c.ArgsLenAtDash(); dash >= 0 {
				if dash != 2 {
					return exit.Usagef("put HOST and NAME before --", "unexpected arguments before --: %q", args[2:dash])
				}
				opts.Command = rest
				if len(rest) == 0 {
					return exit.Usagef("name the program after --", "no command after --")
				}
			} else {
				if len(rest) == 0 {
					return exit.Usagef("name a zoo workload ("+strings.Join(zoo.Names(), ", ")+") or a command after --", "nothing to run")
				}
				opts.Zoo, opts.Args = rest[0], rest[1:]
			}
			return do(c, "run")
		},
	}
	runCmd.Flags().StringVar(&opts.Memory, "memory", "", "memory the mem workload holds (e.g. 64M, 1G)")
	runCmd.Flags().StringVar(&opts.Net, "net", testbed.NetOwn, "network: own (its own namespace and address) or host")

	ps := &cobra.Command{
		Use:     "ps",
		Short:   "List the testbed's workloads",
		Example: `  ferry testbed ps`,
		Args:    usageArgs(cobra.NoArgs),
		RunE:    func(c *cobra.Command, _ []string) error { return do(c, "ps") },
	}
	verify := &cobra.Command{
		Use:   "verify NAME",
		Short: "Check that a workload runs and its state is intact",
		Long: `Ask a workload for its self-check: it must run, its checks must pass and its
counter must advance and never go back (after a restore it continues where
it stopped). Exits 0 when all holds, 1 with the problems otherwise.` + testbedEnvHelp,
		Example: `  sudo ferry testbed verify m1`,
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Name = args[0]
			return do(c, "verify")
		},
	}
	kill := &cobra.Command{
		Use:     "kill NAME",
		Short:   "Stop a workload and remove its rootfs",
		Example: `  sudo ferry testbed kill m1`,
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Name = args[0]
			return do(c, "kill")
		},
	}
	root.AddCommand(up, down, status, runCmd, ps, verify, kill)
	for _, name := range testbed.InternalCommands {
		root.AddCommand(newTestbedInternalCmd(name))
	}
	return root
}

// newTestbedInternalCmd is a hidden entry point of the launcher, the
// supervisor, the namespace init and the zoo: ferry runs itself with these.
func newTestbedInternalCmd(name string) *cobra.Command {
	return &cobra.Command{
		Use:                name,
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(c *cobra.Command, args []string) error {
			return testbed.Internal(c.Context(), name, args)
		},
	}
}

func zooHelp() string {
	var b strings.Builder
	for _, w := range zoo.All() {
		fmt.Fprintf(&b, "  %-11s %s\n", w.Name, w.Summary)
	}
	return b.String()
}

func testbedRun(ctx context.Context, verb string, opts *TestbedOptions) error {
	tb, err := opts.Testbed()
	if err != nil {
		return testbedErr(err)
	}
	var v any
	switch verb {
	case "up":
		if _, err := tb.Up(ctx, opts.Hosts); err != nil {
			return testbedErr(err)
		}
		v, err = tb.Status(ctx)
	case "down":
		v, err = tb.Down(ctx)
	case "status":
		v, err = tb.Status(ctx)
	case "ps":
		v, err = tb.Ps(ctx)
	case "run":
		req := testbed.RunRequest{Host: opts.Host, Name: opts.Name, Zoo: opts.Zoo, Args: opts.Args, Command: opts.Command, Net: opts.Net}
		if opts.Memory != "" {
			req.Memory, err = parseSize(opts.Memory)
			if err != nil {
				return exit.New(exit.Usage, err, "give a size like 64M, 512MiB or 1G")
			}
		}
		var w *testbed.Workload
		w, err = tb.Run(ctx, req)
		if err == nil {
			l, perr := tb.Ps(ctx)
			if perr != nil {
				return testbedErr(perr)
			}
			for _, e := range l.Workloads {
				if e.Name == w.Name {
					v = &testbed.PsList{Workloads: []testbed.PsEntry{e}}
				}
			}
		}
	case "verify":
		var r *testbed.VerifyResult
		r, err = tb.Verify(ctx, opts.Name)
		if err == nil {
			if werr := output.Write(opts.IO.Out, opts.Format, r); werr != nil {
				return werr
			}
			if !r.OK {
				return exit.New(exit.Failure, fmt.Errorf("workload %s failed verification: %s", r.Name, strings.Join(r.Problems, "; ")))
			}
			return nil
		}
	case "kill":
		err = tb.Kill(ctx, opts.Name)
		if err == nil {
			fmt.Fprintf(opts.IO.ErrOut, "killed %s\n", opts.Name)
			return nil
		}
	}
	if err != nil {
		return testbedErr(err)
	}
	return output.Write(opts.IO.Out, opts.Format, v)
}

// testbedErr maps the testbed's usage errors to exit code 2.
func testbedErr(err error) error {
	var ue *testbed.UsageError
	if errors.As(err, &ue) {
		return exit.New(exit.Usage, err)
	}
	return err
}

// parseSize reads 64M, 64MiB, 1G, 1GiB, 4096K or a plain byte count.
func parseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "IB"), "B")
	mult := int64(1)
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, strings.TrimSuffix(t, "K")
	case strings.HasSuffix(t, "M"):
		mult, t = 1<<20, strings.TrimSuffix(t, "M")
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, strings.TrimSuffix(t, "G")
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("size %q: want a positive size like 64M or 1G", s)
	}
	return n * mult, nil
}
