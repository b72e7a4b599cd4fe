package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-migrate/ferry/inspect"
	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/output"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/probe"
)

// InspectOptions are the inputs of `ferry inspect`.
type InspectOptions struct {
	IO     *IOStreams
	Format output.Format
	Store  migrate.Store
	// Facts reads the facts of the --against host.
	Facts func(ctx context.Context, spec string) (*probe.Facts, error)

	Target         string
	Sections       inspect.Sections
	Check          bool
	TCPEstablished bool
	GhostLimit     uint64
	Against        string
}

func newInspectCmd(f *Factory, runF func(context.Context, *InspectOptions) error) *cobra.Command {
	opts := &InspectOptions{IO: f.IO}
	c := &cobra.Command{
		Use:   "inspect DIR|RUN-ID",
		Short: "Show what a checkpoint holds: processes, memory, files, sockets, mounts",
		Long: `Read a directory of CRIU images without CRIU and show what it holds: the
process tree with command lines, the memory saved per process (pages held by a
parent pre-dump counted apart), open files with their positions, sockets with
their kind, state and addresses, the mounts of a dumped mount namespace, and
CRIU's dump and restore statistics.

The argument is an images directory (also an LXD or Incus state directory)
or the id of a ferry run (its images directory, from the run store in
$FERRY_RUNS; see ` + "`ferry runs`" + `). Bug-report bundles leave the images out.

Without section flags ferry shows a summary and the process tree. --check
lists what is known to cause trouble on restore: deleted-but-open files and
their sizes against the ghost limit, unix sockets connected outside the
checkpoint, established TCP connections (restore needs --tcp-established),
and with --against HOST the dumped mounts and open files on filesystems that
HOST's kernel does not support (HOST is a host spec, a saved facts file of
` + "`ferry probe -o json`" + ` or a bug-report bundle).
With --check, exit status 3 means at least one problem was found.

Images are never trusted: a corrupt, truncated or foreign file is an error
naming the file.`,
		Example: `  ferry inspect /var/tmp/ckpt
  ferry inspect /var/tmp/ckpt --all
  ferry inspect 20261129T120000-checkpoint-a1b2c3 --memory --files
  ferry inspect /var/tmp/ckpt --check --tcp-established
  ferry inspect /var/tmp/ckpt --sockets --output json
  ferry inspect /var/tmp/ckpt --against ssh://root@b`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Target, opts.Format, opts.Store = args[0], f.Output, f.runStore()
			src := factsSource{hostSpec: f.Host, criuPath: f.CRIUPath()}
			opts.Facts = func(ctx context.Context, spec string) (*probe.Facts, error) {
				return src.facts(ctx, spec, 60*time.Second)
			}
			if runF != nil {
				return runF(c.Context(), opts)
			}
			return inspectRun(c.Context(), opts)
		},
	}
	fl := c.Flags()
	s := &opts.Sections
	fl.BoolVar(&s.Tree, "ps-tree", false, "show the process tree")
	fl.BoolVar(&s.Files, "files", false, "show open files with their positions")
	fl.BoolVar(&s.Sockets, "sockets", false, "show sockets")
	fl.BoolVar(&s.Mounts, "mounts", false, "show the mounts of dumped mount namespaces")
	fl.BoolVar(&s.Memory, "memory", false, "show memory per process")
	fl.BoolVar(&s.Stats, "stats", false, "show CRIU's dump and restore statistics")
	fl.BoolVar(&s.All, "all", false, "show every section")
	fl.BoolVar(&opts.Check, "check", false, "list what is known to cause trouble on restore")
	fl.BoolVar(&opts.TCPEstablished, "tcp-established", false, "with --check: the restore will pass --tcp-established")
	fl.StringVar(&opts.Against, "against", "", "with --check: the restoring host (spec, facts file or bundle); flags filesystems it lacks")
	fl.Uint64Var(&opts.GhostLimit, "ghost-limit", inspect.DefaultGhostLimit, "with --check: CRIU's --ghost-limit in bytes")
	return c
}

func inspectRun(ctx context.Context, opts *InspectOptions) error {
	if opts.Against != "" {
		opts.Check = true
	}
	dir, run, err := inspectDir(opts.Store, opts.Target)
	if err != nil {
		return err
	}
	c, err := inspect.Load(dir)
	if err != nil {
		return exit.New(exit.Failure, err)
	}
	co := inspect.CheckOptions{GhostLimit: opts.GhostLimit, TCPEstablished: opts.TCPEstablished}
	if opts.Against != "" {
		facts, err := opts.Facts(ctx, opts.Against)
		if err != nil {
			return err
		}
		co.Target = opts.Against
		co.TargetFilesystems = facts.Filesystems.Supported
		if len(co.TargetFilesystems) == 0 {
			co.TargetFilesystems = nil
			fmt.Fprintf(opts.IO.ErrOut, "warning: %s: its supported filesystems are unknown; filesystems not checked\n", opts.Against)
		}
	}
	c.Run = run
	if run != "" {
		if err := c.AddStats(filepath.Join(opts.Store.Dir, run)); err != nil {
			return exit.New(exit.Failure, err)
		}
	}
	if opts.Check {
		c.Check(co)
	}
	c.Select(opts.Sections)
	if err := output.Write(opts.IO.Out, opts.Format, c); err != nil {
		return err
	}
	if opts.Check {
		for _, f := range c.Findings {
			if f.Problem {
				return exit.New(exit.Incompatible, errors.New("the checkpoint holds what breaks a restore as things stand"), f.Fix)
			}
		}
	}
	return nil
}

// inspectDir resolves DIR or RUN-ID to an images directory.
func inspectDir(store migrate.Store, target string) (dir, run string, err error) {
	if host.IsBundlePath(target) {
		return "", "", exit.New(exit.Usage, fmt.Errorf("%s is a bug-report bundle: bundles leave the CRIU images out (they hold process memory)", target),
			"inspect the images directory or run id the bundle's journal names, on the host that made it")
	}
	if st, err := os.Stat(target); err == nil {
		if !st.IsDir() {
			return "", "", exit.Usagef("pass an images directory or a run id", "%s is not a directory", target)
		}
		return target, "", nil
	}
	j, err := store.Load(target)
	if err != nil {
		var nf *migrate.RunNotFoundError
		if errors.As(err, &nf) {
			return "", "", exit.New(exit.Usage, fmt.Errorf("%s is neither a directory nor a run: %w", target, err),
				"pass an images directory, or a run id from `ferry runs`")
		}
		return "", "", err
	}
	if j.ImagesDir == "" {
		return "", "", fmt.Errorf("run %s has no images directory", j.ID)
	}
	return j.ImagesDir, j.ID, nil
}
