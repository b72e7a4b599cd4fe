package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/ferry-migrate/ferry/internal/criubin"
	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/criu"
	"github.com/ferry-migrate/ferry/migrate/remote"
)

// pidMoveOptions are migrate's inputs for a pid:N tree moved to a plain
// host over SSH.
type pidMoveOptions struct {
	TCPEstablished bool
	ShellJob       bool
	NetworkLock    string
	// RemoteDir is ferry's directory on the target host.
	RemoteDir      string
	PageServerPort int
	// Getenv reads $FERRY_EXE (the static ferry copied to the target).
	Getenv func(string) string
	Lift   func(string) []string
	// CRIUPath is CRIU as the user named it (--criu, $FERRY_CRIU; ""
	// looks for it): on each host, not this host's path on the other.
	CRIUPath func() string
}

func addPIDMoveFlags(f *Factory, fl *pflag.FlagSet, o *pidMoveOptions) {
	o.Getenv, o.Lift, o.CRIUPath = f.Getenv, f.Lift, f.CRIUPath
	fl.BoolVar(&o.TCPEstablished, "tcp-established", false, "pid targets: carry established TCP connections")
	fl.BoolVar(&o.ShellJob, "shell-job", false, "pid targets: the tree was started from a shell (CRIU --shell-job)")
	fl.StringVar(&o.NetworkLock, "network-lock", "nftables", "pid targets: how CRIU locks the network: nftables, iptables or skip")
	fl.StringVar(&o.RemoteDir, "remote-dir", remote.DefaultDir, "pid targets: ferry's directory on the target host (its binary, the run's images)")
	fl.IntVar(&o.PageServerPort, "page-server-port", 0, "pid targets, page-server mode: the port of CRIU's page server on the target (0: 27000 + pid % 1000)")
}

// closeHost closes hosts that hold a connection (ssh's ControlMaster).
func closeHost(h host.Host) {
	if c, ok := h.(io.Closer); ok {
		_ = c.Close()
	}
}

// migrateHostRun moves the process tree t of this machine to the host
// named by to (ssh://...): ferry copies itself there and restores through
// its agent.
func migrateHostRun(ctx context.Context, opts *MigrateOptions, t migrate.Target, to host.Spec) error {
	o := &opts.PID
	switch {
	case to.Local:
		return exit.Usagef("name another host: --to ssh://[user@]host[:port]", "pid:%d already runs on this host: refusing to move it to itself", t.PID)
	case to.SSH == nil:
		return exit.Usagef("pid:N trees move to hosts reached over SSH: --to ssh://[user@]host[:port]", "migrate of %s to %s is not supported", opts.Target, opts.To)
	}
	if opts.Mode == migrate.ModeLazy || (opts.Mode != migrate.ModeStopCopy && opts.Mode != migrate.ModePageServer) {
		return exit.New(exit.Usage, &migrate.ModeError{Mode: opts.Mode})
	}
	exe, err := remote.Executable(o.Getenv)
	if err != nil {
		return fmt.Errorf("find ferry's own binary: %w", err)
	}
	info, err := opts.CRIU(ctx)
	if err != nil {
		return err
	}
	dst, err := opts.Host(opts.To)
	if err != nil {
		return err
	}
	defer closeHost(dst)
	src := host.Local{}
	// On disk, not in a tmpfs: the images are as large as the tree's
	// memory, and `ferry runs recover` needs them after a reboot.
	images, err := os.MkdirTemp("/var/tmp", "ferry-migrate-")
	if err != nil {
		return err
	}
	p := &remote.Placement{
		Source: src, Dest: dst, PID: t.PID, Mode: opts.Mode,
		TCPEstablished: o.TCPEstablished, ShellJob: o.ShellJob, NetworkLock: o.NetworkLock,
		ImagesDir: images, Exe: exe, Dir: o.RemoteDir, PageServerAddress: to.SSH.Host, PageServerPort: o.PageServerPort,
		Restorer: &criu.Driver{Path: info.Path, Lift: o.Lift},
		OnBinary: func(b *remote.Binary) {
			if b.Copied {
				fmt.Fprintf(opts.IO.ErrOut, "copied ferry to %s:%s (%.1f MiB in %s)\n", dst.Name(), b.Path, float64(b.Bytes)/(1<<20), b.Took.Round(time.Millisecond))
			}
		},
	}
	opts.Engine.OnStep = stepPrinter(opts.IO, p.ProgressDir)
	j, err := opts.Engine.Migrate(ctx, migrate.MigrateOp{
		Target: t, Source: src, Dest: dst, ImagesDir: images,
		SourceDriver: &criu.Driver{Path: info.Path, Lift: o.Lift}, DestDriver: p.DestDriver(),
		Placement: p, Mode: opts.Mode,
		Preflight: func(ctx context.Context) error {
			named := o.CRIUPath()
			if err := criuOnBothEnds(ctx, named, src, dst); err != nil {
				return err
			}
			di, err := criubin.Find(ctx, dst, named)
			if err != nil {
				return err
			}
			p.CRIU = di.Path
			if opts.SkipCheck {
				return nil
			}
			return compatible(ctx, named, src, dst, opts.Force, opts.IO)
		},
	})
	// A move that rolled back cleanly needs its images no more (a
	// commit removed them already); a failed rollback keeps them for
	// `ferry runs recover`.
	if j != nil && (j.Result == migrate.RunRolledBack || isEmptyDir(images)) {
		_ = os.RemoveAll(images)
	}
	return finishRun(ctx, opts.IO, opts.Format, opts.Report, j, err, src, dst)
}

func isEmptyDir(d string) bool {
	ents, err := os.ReadDir(d)
	return err == nil && len(ents) == 0
}
