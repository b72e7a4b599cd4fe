package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/ferry-migrate/ferry/internal/criubin"
	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/output"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/agent"
	"github.com/ferry-migrate/ferry/migrate/lxc"
	"github.com/ferry-migrate/ferry/probe"
	"github.com/ferry-migrate/ferry/testbed"
)

// MigrateOptions are the inputs of `ferry migrate`.
type MigrateOptions struct {
	IO      *IOStreams
	Format  output.Format
	Engine  *migrate.Engine
	Testbed func() (*testbed.Testbed, error)
	CRIU    func(ctx context.Context) (criubin.Info, error)
	Lift    func(string) []string
	// Report makes the bug-report bundle of a failed run (nil with
	// --no-report) and returns the
	// hint lines naming it.
	Report Reporter

	// Host resolves the --to host spec (lxd and incus moves).
	Host func(spec string) (host.Host, error)

	Target string
	To     string
	// From is the source daemon's host for lxd and incus targets (""
	// means this host): its client runs the move.
	From     string
	Remote   string
	Mode     string
	Force    bool
	NoReport bool
	// SkipCheck leaves out the compatibility check (CRIU is still
	// checked on both ends): ferry soak checks its hosts once up front.
	SkipCheck bool
	// KeepImages keeps a testbed move's images after it succeeded.
	KeepImages bool
	// PID holds the flags of pid:N moves (migrate_host.go).
	PID pidMoveOptions
}

func newMigrateCmd(f *Factory, runF func(context.Context, *MigrateOptions) error) *cobra.Command {
	opts := &MigrateOptions{IO: f.IO}
	c := &cobra.Command{
		Use:   "migrate TARGET --to HOST",
		Short: "Live-migrate a workload to another host, timing every step",
		Long: `Live-migrate a workload with CRIU running on both ends, and report the
downtime (from the source being frozen until the workload runs on the
target) with its breakdown.

The source is dumped and left stopped, its network locked; only when the
workload runs and passes its check on the target is the source removed. Any
failure before that (or an interrupt) brings the source back and cleans the
target, so the workload never runs twice and is never lost.

Modes: stop-copy dumps to disk, copies the images and restores; page-server
streams memory to CRIU's page server on the target during the dump. Lazy
migration is refused: lazy pages over the network fail with CRIU 4.2.1.

TARGET is testbed:NAME (a workload of ` + "`ferry testbed run`" + `) and HOST a
testbed host (testbed:tb2); or lxd:NAME / incus:NAME, moved live by the
daemon to --remote (the remote's name as the source host's client knows it)
whose daemon runs on HOST, where ferry checks that the instance runs with its
processes carried on and collects the target's CRIU logs. The source daemon
runs on this host unless --from names its host (ssh://...): ferry then runs
the daemon's client there.

TARGET pid:N is a process tree of this machine moved to HOST
ssh://[user@]host[:port] (never to this machine itself). ferry copies its
own static binary there once (to --remote-dir/bin/ferry-<sha256>, reused
after) and runs CRIU there through it; the images go over the same SSH
connection, or in page-server mode the pages go straight to a CRIU page
server on HOST's address (the host part of the spec: it must be routable
from here, and the page server's port open: --page-server-port, by
default 27000 + N % 1000). The tree is restored detached: it outlives the
SSH session, and its pids stay as they were (they must be free on HOST).
There is no root file system to carry: the tree's executable, libraries,
working directory and open files must exist on HOST at the same paths,
which is up to you (shared storage, the same package installed);
otherwise the restore fails and the tree goes on here.`,
		Example: `  ferry testbed up && ferry testbed run tb1 counter mem --memory 64M
  ferry migrate testbed:counter --to testbed:tb2
  ferry migrate testbed:counter --to testbed:tb1 --mode page-server --output json
  ferry migrate incus:c1 --to ssh://root@host2 --remote host2
  ferry migrate pid:4242 --to ssh://root@10.0.0.2
  ferry migrate pid:4242 --to ssh://root@10.0.0.2:2222 --mode page-server --tcp-established
  ferry migrate lxd:c1 --from ssh://root@host1 --to ssh://root@host2 --remote host2`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Target, opts.Format = args[0], f.Output
			opts.Engine = &migrate.Engine{Store: f.runStore(), Command: os.Args, Now: f.Now}
			opts.Testbed = func() (*testbed.Testbed, error) { return testbed.FromEnv(f.Getenv) }
			opts.CRIU = func(ctx context.Context) (criubin.Info, error) {
				return criubin.Find(ctx, host.Local{}, f.CRIUPath())
			}
			opts.Lift = f.Lift
			opts.Host = f.Host
			opts.Report = f.reporter(opts.NoReport)
			if runF != nil {
				return runF(c.Context(), opts)
			}
			return migrateRun(c.Context(), opts)
		},
	}
	fl := c.Flags()
	fl.StringVar(&opts.To, "to", "", "host to move the workload to (testbed:NAME, ssh://[user@]host[:port])")
	fl.StringVar(&opts.From, "from", "", "lxd and incus: the source daemon's host (default: this host)")
	fl.StringVar(&opts.Remote, "remote", "", "lxd and incus: the target daemon's remote name on this host")
	fl.StringVar(&opts.Mode, "mode", migrate.ModeStopCopy, "stop-copy or page-server")
	fl.BoolVar(&opts.Force, "force", false, "migrate even when the compatibility check finds blockers")
	fl.BoolVar(&opts.NoReport, "no-report", false, "on failure, do not gather the bug-report bundle")
	fl.BoolVar(&opts.SkipCheck, "skip-check", false, "skip the compatibility check between the hosts (CRIU is still checked on both)")
	fl.BoolVar(&opts.KeepImages, "keep-images", false, "testbed: keep the CRIU images after a successful move (for ferry inspect)")
	addPIDMoveFlags(f, fl, &opts.PID)
	_ = c.MarkFlagRequired("to")
	return c
}

// criuOnBothEnds checks that CRIU answers on each host, as the user named
// it, and that the target's is not older than the source's: before
// anything is frozen.
func criuOnBothEnds(ctx context.Context, path string, src, dst host.Host) error {
	si, err := criubin.Find(ctx, src, path)
	if err != nil {
		return fmt.Errorf("CRIU on the source: %w", err)
	}
	di, err := criubin.Find(ctx, dst, path)
	if err != nil {
		return fmt.Errorf("CRIU on the target: %w", err)
	}
	if di.Version.Less(si.Version) {
		return exit.WithHint(fmt.Errorf("CRIU %s on the target is older than %s on the source", di.VersionString, si.VersionString),
			"install the same CRIU on both hosts (make deps)")
	}
	return nil
}

// compatible runs ferry check between the hosts: blockers refuse the move
// (exit 3) unless force, which only warns.
func compatible(ctx context.Context, criuPath string, src, dst host.Host, force bool, io *IOStreams) error {
	var sf, df *probe.Facts
	var serr, derr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); sf, serr = probe.Gather(ctx, src, probe.Options{CRIUPath: criuPath}) }()
	go func() { defer wg.Done(); df, derr = probe.Gather(ctx, dst, probe.Options{CRIUPath: criuPath}) }()
	wg.Wait()
	if err := errors.Join(serr, derr); err != nil {
		return fmt.Errorf("compatibility check: %w", err)
	}
	rep := probe.Check(sf, df, probe.RuntimeCRIU)
	if rep.Blockers == 0 {
		return nil
	}
	var lines, hints []string
	for _, f := range rep.Findings {
		if f.Severity == probe.Blocker {
			lines = append(lines, f.Rule+": "+f.Message)
			if f.Hint != "" {
				hints = append(hints, f.Hint)
			}
		}
	}
	msg := fmt.Sprintf("%s cannot take workloads from %s: %s", dst.Name(), src.Name(), strings.Join(lines, "; "))
	if force {
		fmt.Fprintf(io.ErrOut, "warning: --force: %s\n", msg)
		return nil
	}
	return exit.New(exit.Incompatible, errors.New(msg), append(hints, "`ferry check` shows every finding; --force migrates anyway")...)
}

func migrateRun(ctx context.Context, opts *MigrateOptions) error {
	t, err := migrate.ParseTarget(opts.Target)
	if err != nil {
		return exit.New(exit.Usage, err)
	}
	to, err := host.ParseSpec(opts.To)
	if err != nil {
		return exit.New(exit.Usage, err)
	}
	if isDaemonTarget(t) {
		return migrateDaemonRun(ctx, opts, t)
	}
	if opts.From != "" {
		return exit.Usagef("testbed workloads and pid trees are moved from the host they run on", "--from applies to lxd and incus targets only")
	}
	if t.Kind == migrate.KindPID {
		return migrateHostRun(ctx, opts, t, to)
	}
	if t.Kind != migrate.KindTestbed || to.Testbed == "" {
		return exit.Usagef("migrate testbed:NAME --to testbed:HOST, pid:N --to ssh://[user@]host[:port], lxd:NAME or incus:NAME --to HOST --remote NAME",
			"migrate of %s to %s is not supported", opts.Target, opts.To)
	}
	if opts.Mode == migrate.ModeLazy || (opts.Mode != migrate.ModeStopCopy && opts.Mode != migrate.ModePageServer) {
		return exit.New(exit.Usage, &migrate.ModeError{Mode: opts.Mode})
	}
	info, err := opts.CRIU(ctx)
	if err != nil {
		return err
	}
	tb, err := opts.Testbed()
	if err != nil {
		return err
	}
	tb.CRIU = info.Path
	p, err := tb.Placement(ctx, t.Name, to.Testbed, opts.Mode)
	if err != nil {
		return err
	}
	p.Lift, p.KeepImages = opts.Lift, opts.KeepImages
	opts.Engine.OnStep = stepPrinter(opts.IO, p.ProgressDir)
	agentArgv := []string{tb.Exe, "agent", "--stdio", "--criu", info.Path}
	src := &agent.Driver{Host: p.SourceHost(), Argv: agentArgv, Label: "criu"}
	dst := &agent.Driver{Host: p.DestHost(), Argv: agentArgv, Label: "criu"}
	j, err := opts.Engine.Migrate(ctx, migrate.MigrateOp{
		Target: t, Source: p.SourceHost(), Dest: p.DestHost(),
		SourceDriver: src, DestDriver: dst, Placement: p, Mode: opts.Mode,
		Preflight: func(ctx context.Context) error {
			if err := criuOnBothEnds(ctx, info.Path, p.SourceHost(), p.DestHost()); err != nil {
				return err
			}
			if opts.SkipCheck {
				return nil
			}
			return compatible(ctx, info.Path, p.SourceHost(), p.DestHost(), opts.Force, opts.IO)
		},
	})
	return finishRun(ctx, opts.IO, opts.Format, opts.Report, j, err, p.SourceHost(), p.DestHost())
}

// migrateDaemonRun moves an LXD or Incus instance live with the daemon's
// own move, journaled and verified on the target by the lxc driver.
func migrateDaemonRun(ctx context.Context, opts *MigrateOptions, t migrate.Target) error {
	if opts.Remote == "" {
		return exit.Usagef("name the target daemon as this host's "+t.Kind+" client knows it: --remote NAME", "%s needs --remote", opts.Target)
	}
	var srcHost host.Host = host.Local{}
	if opts.From != "" {
		h, err := opts.Host(opts.From)
		if err != nil {
			return err
		}
		srcHost = h
	}
	dstHost, err := opts.Host(opts.To)
	if err != nil {
		return err
	}
	src, err := lxc.NewClient(srcHost, t)
	if err != nil {
		return exit.New(exit.Usage, err)
	}
	dst, err := lxc.NewClient(dstHost, migrate.Target{Kind: t.Kind, Name: t.Name})
	if err != nil {
		return exit.New(exit.Usage, err)
	}
	r := &lxc.Runner{Store: opts.Engine.Store, Command: opts.Engine.Command, Now: opts.Engine.Now}
	j, err := r.Run(ctx, lxc.Op{Kind: lxc.OpMove, Client: src, Instance: t.Name, Dest: dst, DestRemote: opts.Remote})
	return finishRun(ctx, opts.IO, opts.Format, opts.Report, j, err, srcHost, dstHost)
}
