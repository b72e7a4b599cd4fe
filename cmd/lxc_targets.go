package cmd

import (
	"context"

	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/output"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/lxc"
)

// isDaemonTarget reports whether t is run by the LXD or Incus daemon.
func isDaemonTarget(t migrate.Target) bool {
	return t.Kind == migrate.KindLXD || t.Kind == migrate.KindIncus
}

// daemonRequest is one stateful operation on an LXD or Incus instance, as
// `ferry checkpoint` and `ferry restore` ask for it.
type daemonRequest struct {
	IO       *IOStreams
	Format   output.Format
	Engine   *migrate.Engine
	Host     host.Host
	Report   Reporter
	Target   migrate.Target
	Op       string // lxc.OpSnapshot, OpStop, OpRestore, OpStart
	Snapshot string
}

// runDaemonOp runs the operation through the lxc driver's journaled runner
// and prints the journal.
func runDaemonOp(ctx context.Context, req daemonRequest) error {
	c, err := lxc.NewClient(req.Host, req.Target)
	if err != nil {
		return exit.New(exit.Usage, err)
	}
	r := &lxc.Runner{Store: req.Engine.Store, Command: req.Engine.Command, Now: req.Engine.Now}
	j, err := r.Run(ctx, lxc.Op{Kind: req.Op, Client: c, Instance: req.Target.Name, Snapshot: req.Snapshot})
	return finishRun(ctx, req.IO, req.Format, req.Report, j, err, req.Host)
}

// daemonCheckpointOp picks the checkpoint operation for an lxd/incus target.
func daemonCheckpointOp(opts *CheckpointOptions) (string, error) {
	switch {
	case opts.Snapshot != "" && opts.Stop:
		return "", exit.Usagef("give one of them", "--snapshot and --stop cannot be combined")
	case opts.Snapshot != "":
		return lxc.OpSnapshot, nil
	case opts.Stop:
		return lxc.OpStop, nil
	}
	return "", exit.Usagef("lxd and incus targets take --snapshot NAME (stateful snapshot) or --stop (stateful stop)",
		"no operation given for %s", opts.Target)
}

// daemonRestoreOp picks the restore operation for an lxd/incus target.
func daemonRestoreOp(opts *RestoreOptions) string {
	if opts.Snapshot != "" {
		return lxc.OpRestore
	}
	return lxc.OpStart
}
