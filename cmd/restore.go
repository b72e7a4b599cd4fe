package cmd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/output"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/remote"
)

// RestoreOptions are the inputs of `ferry restore`.
type RestoreOptions struct {
	IO     *IOStreams
	Format output.Format
	Engine *migrate.Engine
	Driver func(ctx context.Context) (migrate.Driver, error)
	Host   host.Host
	// Report makes the bug-report bundle of a failed run (nil: --no-report).
	Report Reporter

	// Target is an lxd:/incus: instance; empty restores CRIU images.
	Target         string
	Snapshot       string
	Dir            string
	On             string
	Root           string
	TCPEstablished bool
	ShellJob       bool
	NetworkLock    string
	NoReport       bool
	// CRIUPath is --criu (or $FERRY_CRIU), also looked for on a remote
	// host; Exe is the static ferry copied there ($FERRY_EXE or this
	// executable); RemoteDir is ferry's directory there.
	CRIUPath  string
	Exe       func() (string, error)
	RemoteDir string
}

func newRestoreCmd(f *Factory, runF func(context.Context, *RestoreOptions) error) *cobra.Command {
	opts := &RestoreOptions{IO: f.IO}
	c := &cobra.Command{
		Use:   "restore [lxd:NAME|incus:NAME] [--dir DIR | --snapshot NAME]",
		Short: "Restore a workload from a directory of CRIU images",
		Long: `Restore a workload that ferry checkpoint (or CRIU) wrote into DIR, then verify
that it runs. The run journal records every step with CRIU's log.

With an lxd:[remote:]NAME or incus:[remote:]NAME target the daemon restores:
--snapshot NAME restores a stateful snapshot WITH its state (never the
silent cold start of a plain lxc restore); without --snapshot the container
starts from the state a stateful stop saved. ferry then checks that it runs,
that its processes carried on and that its root filesystem is writable.

With --on ssh://[user@]host[:port] the images are restored on that host:
ferry copies its own static binary there once (to
--remote-dir/bin/ferry-<sha256>, reused after), copies the images over the
same SSH connection, restores them there through it, detached (the tree
outlives the SSH session), checks that the tree runs, and removes the
copied images. The journal records each step and CRIU's log, fetched from
the host; the restored pid is the host's. The tree's executable and files
must exist on that host at the same paths: ferry carries only the images.`,
		Example: `  ferry restore --dir /var/tmp/ckpt
  ferry restore --dir /var/tmp/ckpt --on ssh://root@10.0.0.2
  ferry restore --dir /var/tmp/ckpt --tcp-established --output json
  ferry restore lxd:c1 --snapshot s1
  ferry restore incus:c1`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Target = args[0]
			}
			opts.Format = f.Output
			opts.Engine = &migrate.Engine{Store: f.runStore(), Command: os.Args, Now: f.Now}
			opts.Driver = func(ctx context.Context) (migrate.Driver, error) { return f.criuDriver(ctx) }
			opts.Report = f.reporter(opts.NoReport)
			h, err := f.Host(opts.On)
			if err != nil {
				return err
			}
			switch h.(type) {
			case host.Local, *host.SSH:
			default:
				closeHost(h)
				return exit.Usagef("restore on this host with --on local, or on a host over SSH with --on ssh://[user@]host[:port]", "restore --on %s is not supported", opts.On)
			}
			defer closeHost(h)
			opts.Host = h
			opts.CRIUPath = f.CRIUPath()
			opts.Exe = func() (string, error) { return remote.Executable(f.Getenv) }
			if runF != nil {
				return runF(c.Context(), opts)
			}
			return restoreRun(c.Context(), opts)
		},
	}
	fl := c.Flags()
	fl.StringVar(&opts.Dir, "dir", "", "directory holding the CRIU images")
	fl.StringVar(&opts.On, "on", "local", "host to restore on")
	fl.StringVar(&opts.Root, "root", "", "root directory of the restored tree's mount namespace")
	fl.BoolVar(&opts.TCPEstablished, "tcp-established", false, "restore established TCP connections")
	fl.BoolVar(&opts.ShellJob, "shell-job", false, "the tree was checkpointed with --shell-job")
	fl.StringVar(&opts.NetworkLock, "network-lock", "nftables", "how CRIU locks the network: nftables, iptables or skip")
	fl.BoolVar(&opts.NoReport, "no-report", false, "on failure, do not gather the bug-report bundle")
	fl.StringVar(&opts.Snapshot, "snapshot", "", "lxd/incus targets: the stateful snapshot to restore")
	fl.StringVar(&opts.RemoteDir, "remote-dir", remote.DefaultDir, "--on ssh://: ferry's directory on that host (its binary, the copied images)")
	return c
}

func restoreRun(ctx context.Context, opts *RestoreOptions) error {
	if opts.Target != "" {
		t, err := migrate.ParseTarget(opts.Target)
		if err != nil {
			return exit.New(exit.Usage, err)
		}
		if !isDaemonTarget(t) {
			return exit.Usagef("restore CRIU images with --dir DIR and no target", "restore of a %s target is not supported", t.Kind)
		}
		if opts.Dir != "" {
			return exit.Usagef("the daemon keeps the state itself", "--dir cannot be used with %s targets", t.Kind)
		}
		if _, ok := opts.Host.(host.Local); !ok {
			return exit.Usagef("name the daemon's remote in the target (lxd:REMOTE:NAME), or restore CRIU images with --dir DIR --on "+opts.On, "restore of %s targets --on %s is not supported", t.Kind, opts.On)
		}
		return runDaemonOp(ctx, daemonRequest{IO: opts.IO, Format: opts.Format, Engine: opts.Engine, Host: opts.Host, Report: opts.Report, Target: t, Op: daemonRestoreOp(opts), Snapshot: opts.Snapshot})
	}
	if opts.Dir == "" {
		return exit.Usagef("give --dir DIR with the CRIU images, or an lxd:/incus: target", `required flag(s) "dir" not set`)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return exit.New(exit.Usage, err)
	}
	req := migrate.RestoreRequest{
		ImagesDir: dir, Root: opts.Root, TCPEstablished: opts.TCPEstablished, ShellJob: opts.ShellJob, NetworkLock: opts.NetworkLock,
	}
	if _, ok := opts.Host.(host.Local); !ok {
		return restoreRemoteRun(ctx, opts, req)
	}
	d, err := opts.Driver(ctx)
	if err != nil {
		return err
	}
	j, err := opts.Engine.Restore(ctx, migrate.RestoreOp{Driver: d, Host: opts.Host, Request: migrate.RestoreRequest{
		ImagesDir: dir, Root: opts.Root, TCPEstablished: opts.TCPEstablished, ShellJob: opts.ShellJob, NetworkLock: opts.NetworkLock,
	}})
	return finishRun(ctx, opts.IO, opts.Format, opts.Report, j, err, opts.Host)
}

// restoreRemoteRun restores the images on a host over SSH: ferry copies
// itself and the images there and restores through its agent, detached.
func restoreRemoteRun(ctx context.Context, opts *RestoreOptions, req migrate.RestoreRequest) error {
	exe, err := opts.Exe()
	if err != nil {
		return fmt.Errorf("find ferry's own binary: %w", err)
	}
	opts.Engine.OnStep = stepPrinter(opts.IO, func(string) string { return "" })
	j, err := remote.Restore(ctx, opts.Engine, remote.RestoreOp{
		Host: opts.Host, Request: req, Exe: exe, CRIUPath: opts.CRIUPath, Dir: opts.RemoteDir,
	})
	return finishRun(ctx, opts.IO, opts.Format, opts.Report, j, err, host.Local{}, opts.Host)
}
