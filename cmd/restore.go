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

// RestoreOptions are the inputs of `ferry restore`.
type RestoreOptions struct {
	IO     *IOStreams
	Format output.Format
	Engine *migrate.Engine
	Driver func(ctx context.Context) (migrate.Driver, error)
	Host   host.Host

	Dir            string
	On             string
	Root           string
	TCPEstablished bool
	ShellJob       bool
	NetworkLock    string
}

func newRestoreCmd(f *Factory, runF func(context.Context, *RestoreOptions) error) *cobra.Command {
	opts := &RestoreOptions{IO: f.IO}
	c := &cobra.Command{
		Use:   "restore --dir DIR",
		Short: "Restore a workload from a directory of CRIU images",
		Long: `Restore a workload that ferry checkpoint (or CRIU) wrote into DIR, then verify
that it runs. The run journal records every step with CRIU's log.`,
		Example: `  ferry restore --dir /var/tmp/ckpt
  ferry restore --dir /var/tmp/ckpt --tcp-established --output json`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			opts.Format = f.Output
			opts.Engine = &migrate.Engine{Store: f.runStore(), Command: os.Args, Now: f.Now}
			opts.Driver = func(ctx context.Context) (migrate.Driver, error) { return f.criuDriver(ctx) }
			h, err := f.Host(opts.On)
			if err != nil {
				return err
			}
			if _, ok := h.(host.Local); !ok {
				return exit.Usagef("restore on this host with --on local; ferry migrate restores on other hosts", "restore --on %s is not supported yet", opts.On)
			}
			opts.Host = h
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
	_ = c.MarkFlagRequired("dir")
	return c
}

func restoreRun(ctx context.Context, opts *RestoreOptions) error {
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return exit.New(exit.Usage, err)
	}
	d, err := opts.Driver(ctx)
	if err != nil {
		return err
	}
	j, err := opts.Engine.Restore(ctx, migrate.RestoreOp{Driver: d, Host: opts.Host, Request: migrate.RestoreRequest{
		ImagesDir: dir, Root: opts.Root, TCPEstablished: opts.TCPEstablished, ShellJob: opts.ShellJob, NetworkLock: opts.NetworkLock,
	}})
	if j != nil {
		if werr := output.Write(opts.IO.Out, opts.Format, j); werr != nil && err == nil {
			return werr
		}
	}
	return operationError(err)
}
