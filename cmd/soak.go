package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-migrate/ferry/collect"
	"github.com/ferry-migrate/ferry/internal/criubin"
	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/output"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/lxc"
	"github.com/ferry-migrate/ferry/soak"
	"github.com/ferry-migrate/ferry/testbed"
)

// SoakOptions are the inputs of `ferry soak`.
type SoakOptions struct {
	IO      *IOStreams
	Format  output.Format
	Getenv  func(string) string
	Now     func() time.Time
	CRIU    func(ctx context.Context) (criubin.Info, error)
	Testbed func() (*testbed.Testbed, error)
	Store   migrate.Store
	// Host resolves --hosts specs (the lxd and incus runtimes).
	Host func(spec string) (host.Host, error)
	// CRIUPath is --criu as given (bundles record the hosts' facts).
	CRIUPath string

	Iterations int
	Duration   time.Duration
	Workloads  []string
	Hosts      []string
	Remotes    []string
	Runtime    string
	RuntimeSet bool
	Mode       string
	ModeSet    bool
	Inject     []string
	Seed       uint64
	KeepGoing  bool
	Force      bool
	WorkDir    string
	JUnit      string
	JSON       string
	HTML       string
	Metrics    string
}

func newSoakCmd(f *Factory, runF func(context.Context, *SoakOptions) error) *cobra.Command {
	opts := &SoakOptions{IO: f.IO}
	c := &cobra.Command{
		Use:   "soak [--iterations N | --duration D] [flags]",
		Short: "Move workloads back and forth for a long time, with faults, and report for CI",
		Long: `Move every workload to the next host, round robin, again and again, and
check it after every move: it must run, pass its self-check and carry on
from where it was. Each move records its downtime, dump, transfer and
restore times, image size and pages.

Without --hosts, ferry brings up a testbed of its own (two hosts, a third
for the TCP client), launches the zoo workloads of --workloads on the first
host, and tears it all down at the end. With --hosts testbed:A,testbed:B,
it moves existing workloads of the running testbed.

--inject breaks chosen moves: FAULT at a random iteration (never the first),
FAULT@N at iteration N, FAULT@N:WORKLOAD for one workload, all for every
fault once. Faults:
  link-cut         the target's link goes down while pages stream to it
  kill-mid-dump    ferry is killed with SIGKILL while CRIU dumps, then
                   ` + "`ferry runs recover`" + ` brings the workload back
  disk-full        the target's image directory is a 256 KiB tmpfs
  criu-missing     CRIU does not run on the target
  restore-failure  the restore fails on the target (its link name taken)
A fault is survived when the workload runs and passes its check afterwards,
on its source or on the target.

--runtime lxd or incus soaks running instances (--workloads NAME,... or
lxd:NAME,...)
between the two daemons of --hosts (HOST,HOST: where each daemon and its
client run, e.g. local,ssh://root@h2) with the daemons' own live move,
verified by ferry (running, its processes carried on, its root file system
writable). --remotes names each daemon as the other host's client knows it.
The daemons only do stop-copy; the fault they can take is criu-missing.

Failed moves get a bug-report bundle, linked from every report. Results:
the summary on stdout (--output json for all of it), --junit (a testcase
per move), --json (a JSON line per move as it ends, then the summary),
--metrics (OpenMetrics for node_exporter's textfile collector), --html (a
report with charts). Runs, bundles and helpers go into --work-dir.

Exit 0 when every move without a fault succeeded, every fault was survived
and no workload was lost; 4 otherwise.`,
		Example: `  ferry soak --iterations 50 --junit soak.xml
  ferry soak --duration 10m --workloads mem=256M,tcp --inject all --html soak.html
  ferry soak --iterations 20 --inject link-cut@5:mem,kill-mid-dump --keep-going --json soak.jsonl
  ferry soak --hosts testbed:tb1,testbed:tb2 --workloads counter --metrics /var/lib/node_exporter/ferry.prom
  ferry soak --runtime incus --hosts local,ssh://root@h2 --remotes h1,h2 --workloads c1 --iterations 20`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Format, opts.Getenv, opts.Now, opts.Store = f.Output, f.Getenv, f.Now, f.runStore()
			opts.Host, opts.CRIUPath = f.Host, f.CRIUPath()
			opts.ModeSet, opts.RuntimeSet = c.Flags().Changed("mode"), c.Flags().Changed("runtime")
			opts.CRIU = func(ctx context.Context) (criubin.Info, error) {
				return criubin.Find(ctx, host.Local{}, f.CRIUPath())
			}
			opts.Testbed = func() (*testbed.Testbed, error) { return testbed.FromEnv(f.Getenv) }
			if !c.Flags().Changed("iterations") && opts.Duration > 0 {
				opts.Iterations = 0
			}
			if runF != nil {
				return runF(c.Context(), opts)
			}
			return soakRun(c.Context(), opts)
		},
	}
	fl := c.Flags()
	fl.IntVar(&opts.Iterations, "iterations", 10, "rounds of moves (each moves every workload once)")
	fl.DurationVar(&opts.Duration, "duration", 0, "soak this long instead (the last round finishes)")
	fl.StringSliceVar(&opts.Workloads, "workloads", nil, "zoo workloads to soak: "+strings.Join(soak.DefaultZoo, ",")+" (mem=SIZE); with --hosts, workload names")
	fl.StringSliceVar(&opts.Hosts, "hosts", nil, "hosts to move between, in order (testbed:NAME,...); default: a testbed of its own")
	fl.StringVar(&opts.Runtime, "runtime", "criu", "criu (testbed workloads), lxd or incus (instances moved between two daemons)")
	fl.StringSliceVar(&opts.Remotes, "remotes", nil, "lxd and incus: each --hosts daemon's remote name as the other host's client knows it")
	fl.StringVar(&opts.Mode, "mode", soak.ModeAlternate, "stop-copy, page-server, or alternate (odd rounds stop-copy, even page-server)")
	fl.StringSliceVar(&opts.Inject, "inject", nil, "faults: FAULT, FAULT@N, FAULT@N:WORKLOAD or all (see above)")
	fl.Uint64Var(&opts.Seed, "seed", 0, "seed for the random fault iterations (default: the clock; the summary records it)")
	fl.BoolVar(&opts.KeepGoing, "keep-going", false, "go on after a failed move")
	fl.BoolVar(&opts.Force, "force", false, "soak even when the compatibility check finds blockers")
	fl.StringVar(&opts.WorkDir, "work-dir", "", "runs, bundles and helpers (default: a new directory next to the run store)")
	fl.StringVar(&opts.JUnit, "junit", "", "write JUnit XML here")
	fl.StringVar(&opts.JSON, "json", "", "write JSON lines here (one per move as it ends, then the summary)")
	fl.StringVar(&opts.HTML, "html", "", "write the HTML report with charts here")
	fl.StringVar(&opts.Metrics, "metrics", "", "write OpenMetrics text here (node_exporter textfile collector)")
	return c
}

func soakRun(ctx context.Context, opts *SoakOptions) error {
	if opts.Iterations <= 0 && opts.Duration <= 0 {
		return exit.Usagef("give --iterations N or --duration D", "nothing to soak: no iterations and no duration")
	}
	// lxd:NAME and incus:NAME workloads name their runtime.
	for i, w := range opts.Workloads {
		t, err := migrate.ParseTarget(w)
		if err != nil || !isDaemonTarget(t) {
			continue
		}
		if t.Remote != "" {
			return exit.Usagef("name the instance alone (lxd:c1): --hosts says where its daemon runs", "--workloads %s: a remote in a soak workload", w)
		}
		if opts.RuntimeSet && opts.Runtime != t.Kind {
			return exit.Usagef("soak instances of one runtime, named as their daemons know them: --runtime incus --workloads c1,c2",
				"--workloads %s: not an instance of the %s runtime between --hosts", w, opts.Runtime)
		}
		opts.Runtime, opts.RuntimeSet, opts.Workloads[i] = t.Kind, true, t.Name
	}
	switch opts.Runtime {
	case "criu":
	case migrate.KindLXD, migrate.KindIncus:
		if opts.ModeSet && opts.Mode != migrate.ModeStopCopy {
			return exit.Usagef("leave --mode out, or give --mode stop-copy", "%s moves are the daemon's own stop-copy: --mode %s cannot be done", opts.Runtime, opts.Mode)
		}
		opts.Mode = migrate.ModeStopCopy
	default:
		return exit.Usagef("the runtimes are: criu, lxd, incus", "unknown runtime %q", opts.Runtime)
	}
	switch opts.Mode {
	case migrate.ModeStopCopy, migrate.ModePageServer, soak.ModeAlternate:
	default:
		return exit.New(exit.Usage, &migrate.ModeError{Mode: opts.Mode}, "or --mode alternate")
	}
	seed := opts.Seed
	if seed == 0 {
		seed = uint64(opts.Now().UnixNano())
	}
	inject, err := soak.ParseInject(opts.Inject, opts.Iterations, rand.New(rand.NewPCG(seed, seed>>1)))
	if err != nil {
		return exit.New(exit.Usage, err)
	}
	if opts.Runtime != "criu" {
		bed, err := daemonBed(opts)
		if err != nil {
			return err
		}
		return soakOn(ctx, opts, bed, opts.Workloads, inject, seed, "the runs of the failed moves are in "+opts.Store.Dir)
	}
	own := len(opts.Hosts) == 0
	var specs []soak.WorkloadSpec
	if own {
		if specs, err = soak.ParseWorkloads(opts.Workloads, parseSize); err != nil {
			return exit.New(exit.Usage, err)
		}
	} else if len(opts.Workloads) == 0 {
		return exit.Usagef("name the testbed's workloads to soak: --workloads NAME,... (see ferry testbed ps)", "--hosts needs --workloads")
	}
	info, err := opts.CRIU(ctx)
	if err != nil {
		return err
	}
	work := opts.WorkDir
	if work == "" {
		work = filepath.Join(filepath.Dir(opts.Store.Dir), "soak", opts.Now().UTC().Format("20060102T150405"))
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return fmt.Errorf("soak work directory: %w", err)
	}
	fmt.Fprintf(opts.IO.ErrOut, "soak: work directory %s (runs, bundles)\n", work)

	tb, err := opts.Testbed()
	if err != nil {
		return err
	}
	tb.CRIU = info.Path
	workloads := opts.Workloads
	bed := &soak.TestbedBed{TB: tb, Exe: tb.Exe, CRIU: info.Path, RunsDir: filepath.Join(work, "runs"), WorkDir: work, Host: host.Local{}}
	if own {
		if opts.Getenv(testbed.PrefixEnv) == "" {
			tb.Prefix = "soak"
		}
		if opts.Getenv(testbed.DirEnv) == "" {
			tb.Dir = filepath.Join(work, "testbed")
		}
		tb.Log = opts.IO.ErrOut
		fmt.Fprintf(opts.IO.ErrOut, "soak: bringing up testbed %s with %d workloads\n", tb.Prefix, len(specs))
		hosts, companions, err := soak.StartTestbed(ctx, tb, specs)
		tb.Log = nil
		if err != nil {
			return err
		}
		defer func() {
			if rep, derr := tb.Down(context.WithoutCancel(ctx)); derr != nil {
				fmt.Fprintf(opts.IO.ErrOut, "warning: soak: testbed down: %v\n", derr)
			} else if rep != nil {
				_ = rep.WriteText(opts.IO.ErrOut)
			}
		}()
		bed.HostNames, bed.Companions = hosts, companions
		workloads = nil
		for _, s := range specs {
			workloads = append(workloads, s.Name())
		}
	} else {
		for _, h := range opts.Hosts {
			spec, err := host.ParseSpec(h)
			if err != nil || spec.Testbed == "" {
				return exit.Usagef("--hosts takes testbed hosts: testbed:tb1,testbed:tb2", "--hosts %q: not a testbed host", h)
			}
			bed.HostNames = append(bed.HostNames, spec.Testbed)
		}
	}
	// The hosts are checked once here; the moves skip the check.
	for i, h := range bed.HostNames {
		next := bed.HostNames[(i+1)%len(bed.HostNames)]
		if err := compatible(ctx, info.Path, tb.Host(h), tb.Host(next), opts.Force, opts.IO); err != nil {
			return err
		}
	}
	return soakOn(ctx, opts, bed, workloads, inject, seed, "the failed moves' bug-report bundles and runs are in "+work)
}

// daemonBed is the bed of the lxd and incus runtimes: two daemons, one on
// each --hosts host.
func daemonBed(opts *SoakOptions) (*soak.LXCBed, error) {
	if len(opts.Hosts) != 2 || len(opts.Remotes) != 2 {
		return nil, exit.Usagef("give --hosts HOST1,HOST2 (where each daemon runs) and --remotes R1,R2 (each daemon's remote name on the other host's client)",
			"the %s runtime soaks between two daemons: want two hosts and two remote names, got %d and %d", opts.Runtime, len(opts.Hosts), len(opts.Remotes))
	}
	if len(opts.Workloads) == 0 {
		return nil, exit.Usagef("name running instances: --workloads c1,c2", "the %s runtime needs --workloads", opts.Runtime)
	}
	var ends [2]soak.LXCEnd
	for i, spec := range opts.Hosts {
		h, err := opts.Host(spec)
		if err != nil {
			return nil, err
		}
		ends[i] = soak.LXCEnd{Host: spec, Client: &lxc.Client{Host: h, Kind: opts.Runtime}, Remote: opts.Remotes[i], Daemon: h}
	}
	bed, err := soak.NewLXCBed(opts.Runtime, ends[0], ends[1], opts.Store)
	if err != nil {
		return nil, exit.New(exit.Usage, err)
	}
	bed.Command, bed.Ferry, bed.Now = os.Args, version, opts.Now
	bed.Collectors = []collect.Collector{factsCollector(opts.CRIUPath)}
	return bed, nil
}

// soakOn runs the soak on bed and writes its results; failHint says where
// the evidence of failed moves is.
func soakOn(ctx context.Context, opts *SoakOptions, bed soak.Bed, workloads []string, inject []soak.Injection, seed uint64, failHint string) error {
	var jsonl io.Writer
	if opts.JSON != "" {
		fj, err := os.Create(opts.JSON)
		if err != nil {
			return err
		}
		defer fj.Close()
		jsonl = fj
	}
	r := &soak.Runner{Bed: bed, Workloads: workloads, Iterations: opts.Iterations, Duration: opts.Duration,
		Mode: opts.Mode, Inject: inject, KeepGoing: opts.KeepGoing, Runtime: opts.Runtime, Now: opts.Now,
		OnRecord: func(rec soak.Record) {
			soak.ProgressLine(opts.IO.ErrOut, rec, opts.Iterations)
			if jsonl != nil {
				_ = soak.WriteJSONLine(jsonl, rec)
			}
		}}
	res, runErr := r.Run(ctx)
	var ie *soak.InjectError
	if errors.As(runErr, &ie) {
		return exit.New(exit.Usage, runErr)
	}
	if res == nil {
		return runErr
	}
	res.Summary.Seed = seed
	if jsonl != nil {
		_ = soak.WriteJSONLine(jsonl, res.Summary)
	}
	var werrs []error
	for _, out := range []struct {
		path  string
		write func(io.Writer, *soak.Result) error
	}{{opts.JUnit, soak.WriteJUnit}, {opts.HTML, soak.WriteHTML}, {opts.Metrics, soak.WriteMetrics}} {
		if out.path != "" {
			werrs = append(werrs, writeFile(out.path, func(w io.Writer) error { return out.write(w, res) }))
		}
	}
	if err := output.Write(opts.IO.Out, opts.Format, res); err != nil {
		werrs = append(werrs, err)
	}
	if runErr != nil {
		return errors.Join(append([]error{runErr}, werrs...)...)
	}
	if err := errors.Join(werrs...); err != nil {
		return err
	}
	if !res.Summary.OK() {
		hints := []string{failHint}
		if opts.HTML != "" {
			hints = append(hints, "the report: "+opts.HTML)
		}
		return exit.New(exit.Migration, soakFailure(res.Summary), hints...)
	}
	return nil
}

func soakFailure(s soak.Summary) error {
	msg := fmt.Sprintf("soak: %d of %d moves failed, %d workloads lost", s.Failures, s.Moves, s.WorkloadsLost)
	if s.Stopped != "" {
		msg += "; stopped: " + s.Stopped
	}
	return errors.New(msg)
}

// writeFile writes a report file through a temporary name, so a reader never
// sees half of it.
func writeFile(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
