package cmd

import (
	"context"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/output"
	"github.com/ferry-migrate/ferry/migrate"
)

// CheckpointOptions are the inputs of `ferry checkpoint`.
type CheckpointOptions struct {
	IO     *IOStreams
	Format output.Format
	Engine *migrate.Engine
	Driver func(ctx context.Context) (migrate.Driver, error)
	Host   host.Host
	// Report makes the bug-report bundle of a failed run (nil: --no-report).
	Report Reporter

	Target         string
	Dir            string
	LeaveRunning   bool
	TCPEstablished bool
	ShellJob       bool
	NetworkLock    string
	NoReport       bool
	// Snapshot and Stop are the stateful operations of lxd: and incus:
	// targets.
	Snapshot string
	Stop     bool
}

func newCheckpointCmd(f *Factory, runF func(context.Context, *CheckpointOptions) error) *cobra.Command {
	opts := &CheckpointOptions{IO: f.IO}
	c := &cobra.Command{
		Use:   "checkpoint TARGET --dir DIR",
		Short: "Checkpoint a workload into a directory of CRIU images",
		Long: `Checkpoint a workload with CRIU into DIR. Every step is timed and written to a
run journal with CRIU's log (verbosity 4); ` + "`ferry runs show ID`" + ` shows it again.

TARGET is pid:N (the root of a process tree). The workload stops after a
successful checkpoint unless --leave-running is given; a failed checkpoint
leaves it running (CRIU resumes a tree it could not dump).

TARGET lxd:[remote:]NAME or incus:[remote:]NAME is checkpointed by its daemon:
--snapshot NAME takes a stateful snapshot (the container keeps running),
--stop stops it with its state saved. The daemon's CRIU logs are copied into
the run, and ferry checks the container afterwards instead of trusting the
daemon's exit code.`,
		Example: `  ferry checkpoint pid:4242 --dir /var/tmp/ckpt
  ferry checkpoint pid:4242 --dir /var/tmp/ckpt --leave-running --tcp-established
  ferry checkpoint pid:4242 --dir /var/tmp/ckpt --output json
  ferry checkpoint lxd:c1 --snapshot s1
  ferry checkpoint incus:c1 --stop`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Target = args[0]
			opts.Format = f.Output
			opts.Host = host.Local{}
			opts.Engine = &migrate.Engine{Store: f.runStore(), Command: os.Args, Now: f.Now}
			opts.Driver = func(ctx context.Context) (migrate.Driver, error) { return f.criuDriver(ctx) }
			opts.Report = f.reporter(opts.NoReport)
			if runF != nil {
				return runF(c.Context(), opts)
			}
			return checkpointRun(c.Context(), opts)
		},
	}
	fl := c.Flags()
	fl.StringVar(&opts.Dir, "dir", "", "directory for the CRIU images (created; must not hold a checkpoint)")
	fl.BoolVar(&opts.LeaveRunning, "leave-running", false, "keep the workload running after the checkpoint")
	fl.BoolVar(&opts.TCPEstablished, "tcp-established", false, "checkpoint established TCP connections")
	fl.BoolVar(&opts.ShellJob, "shell-job", false, "allow a tree whose session leader is outside it (a job of a shell)")
	fl.StringVar(&opts.NetworkLock, "network-lock", "nftables", "how CRIU locks the network: nftables, iptables or skip")
	fl.BoolVar(&opts.NoReport, "no-report", false, "on failure, do not gather the bug-report bundle")
	fl.StringVar(&opts.Snapshot, "snapshot", "", "lxd/incus targets: take a stateful snapshot with this name")
	fl.BoolVar(&opts.Stop, "stop", false, "lxd/incus targets: stop the container with its state saved")
	return c
}

func checkpointRun(ctx context.Context, opts *CheckpointOptions) error {
	t, err := migrate.ParseTarget(opts.Target)
	if err != nil {
		return exit.New(exit.Usage, err)
	}
	if isDaemonTarget(t) {
		op, err := daemonCheckpointOp(opts)
		if err != nil {
			return err
		}
		return runDaemonOp(ctx, daemonRequest{IO: opts.IO, Format: opts.Format, Engine: opts.Engine, Host: opts.Host, Report: opts.Report, Target: t, Op: op, Snapshot: opts.Snapshot})
	}
	if opts.Snapshot != "" || opts.Stop {
		return exit.Usagef("--snapshot and --stop take lxd:NAME or incus:NAME targets", "--snapshot and --stop are not for %s targets", t.Kind)
	}
	if t.Kind != migrate.KindPID {
		return exit.Usagef("use pid:N; testbed, lxd and incus targets are checkpointed by ferry migrate and the runtime commands",
			"checkpoint of %s targets is not supported yet", t.Kind)
	}
	if opts.Dir == "" {
		return exit.Usagef("pid targets are checkpointed into --dir DIR", `required flag(s) "dir" not set`)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return exit.New(exit.Usage, err)
	}
	d, err := opts.Driver(ctx)
	if err != nil {
		return err
	}
	j, err := opts.Engine.Checkpoint(ctx, migrate.CheckpointOp{Driver: d, Host: opts.Host, Request: migrate.CheckpointRequest{
		Target: t, ImagesDir: dir, LeaveRunning: opts.LeaveRunning, TCPEstablished: opts.TCPEstablished,
		ShellJob: opts.ShellJob, NetworkLock: opts.NetworkLock,
	}})
	return finishRun(ctx, opts.IO, opts.Format, opts.Report, j, err, opts.Host)
}
