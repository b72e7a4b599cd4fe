package probe

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
)

// Options tune Gather.
type Options struct {
	// CRIUPath is the CRIU binary to use on the host; empty looks for it
	// (PATH, then the usual places).
	CRIUPath string
	// CommandTimeout bounds each command the probe runs; 0 means 10 s.
	// Daemon queries use at most 3 s of it.
	CommandTimeout time.Duration
	// Parallel bounds how many commands run at once (0: 8, below sshd's
	// default MaxSessions of 10).
	Parallel int
}

// Gather reads the facts of h. It fails only when the host cannot be read
// at all (ctx done, namespace or directory gone); each fact that cannot be
// read is recorded in Facts.Unknown.
func Gather(ctx context.Context, h host.Host, opt Options) (*Facts, error) {
	if opt.CommandTimeout == 0 {
		opt.CommandTimeout = 10 * time.Second
	}
	if opt.Parallel <= 0 {
		opt.Parallel = 8
	}
	g := &gatherer{h: h, opt: opt, sem: make(chan struct{}, opt.Parallel)}
	g.f = &Facts{
		Schema:   Schema,
		Host:     h.Name(),
		Runtimes: map[string]Runtime{},
		Unknown:  map[string]string{},
	}
	if _, ok := h.(*host.Dir); ok {
		g.readOnly.Store(true)
	}
	g.prefetch(ctx)
	if err := g.reachable(ctx); err != nil {
		return nil, err
	}

	// cpuinfo and the kernel config feed several sections: read them
	// first (both are quick file reads).
	var cpuinfo []byte
	var cpuErr error
	var pre sync.WaitGroup
	pre.Add(2)
	go func() {
		defer pre.Done()
		cpuinfo, cpuErr = g.read(ctx, "/proc/cpuinfo")
		g.cpu(cpuinfo, cpuErr)
		g.kernelConfig(ctx)
	}()
	go func() {
		defer pre.Done()
		g.findPrograms(ctx)
	}()
	pre.Wait()

	var wg sync.WaitGroup
	for _, fn := range []func(context.Context){
		g.hostname,
		g.kernel,
		g.syscalls,
		g.criu,
		g.filesystems,
		func(ctx context.Context) { g.virtualization(ctx, cpuinfo) },
		g.lsm,
		g.networkLock,
		g.runtimes,
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(ctx)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("probe %s: %w", h.Name(), err)
	}
	return g.f, nil
}

type gatherer struct {
	h   host.Host
	opt Options
	sem chan struct{}

	mu sync.Mutex // guards f.Unknown and f.Runtimes
	f  *Facts

	// programs maps a program name to its path ("" when missing), when
	// findPrograms could ask the host in one command.
	programs map[string]string
	// files holds what prefetch read in one command.
	files map[string]fileResult
	// readOnly is set once the host refused to run a command
	// (host.ErrReadOnly: a captured directory or bundle).
	readOnly atomic.Bool
}

func (g *gatherer) unknown(key string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.f.setUnknown(key, err)
}

// reachable fails when the host cannot be read at all, so that a dead host
// is an error rather than a page of unknowns.
func (g *gatherer) reachable(ctx context.Context) error {
	if d, ok := g.h.(*host.Dir); ok {
		st, err := os.Stat(d.Root)
		if err != nil {
			return fmt.Errorf("probe %s: %w", g.h.Name(), err)
		}
		if !st.IsDir() {
			return fmt.Errorf("probe %s: not a directory", g.h.Name())
		}
		for _, p := range []string{"proc/cpuinfo", "proc/version", "proc/sys/kernel/osrelease", "proc/filesystems"} {
			if _, err := os.Stat(filepath.Join(d.Root, p)); err == nil {
				return nil
			}
		}
		// A mounted disk image has no /proc, but its kernel configs.
		if m, _ := filepath.Glob(filepath.Join(d.Root, "boot", "config-*")); len(m) > 0 {
			return nil
		}
		return &notCapturedError{root: d.Root}
	}
	// Every Linux host has /proc/version: failing to read it means the
	// host (ssh, namespace) is not there.
	if _, err := g.read(ctx, "/proc/version"); err != nil {
		return fmt.Errorf("probe %s: %w", g.h.Name(), err)
	}
	return nil
}

type notCapturedError struct{ root string }

func (e *notCapturedError) Error() string {
	return fmt.Sprintf("probe dir:%s: no captured host there (no proc/cpuinfo, proc/version, proc/sys/kernel/osrelease, proc/filesystems or boot/config-*)", e.root)
}
func (e *notCapturedError) Hint() string {
	return "point --root at the top of an unpacked ferry bundle, sos report or disk image (the directory holding proc/ and sys/)"
}

// read reads a whole file; it counts against Options.Parallel, since on
// ssh hosts a read is a command too.
func (g *gatherer) read(ctx context.Context, p string) ([]byte, error) {
	if r, ok := g.files[p]; ok {
		return r.data, r.err
	}
	if err := g.acquire(ctx); err != nil {
		return nil, err
	}
	defer g.release()
	return host.ReadFile(ctx, g.h, p, 0)
}

func (g *gatherer) acquire(ctx context.Context) error {
	select {
	case g.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gatherer) release() { <-g.sem }

// output is a command's stdout followed by its stderr.
type output struct {
	text     string
	stdout   string
	exitCode int  // -1 when unknown (captured output)
	captured bool // read from a captured host's files
}

// run runs argv with the command timeout (or less). On a read-only host it
// looks for the command's captured output instead. A command that ran and
// exited non-zero returns its output and no error: callers read the exit
// code.
func (g *gatherer) run(ctx context.Context, timeout time.Duration, argv ...string) (output, error) {
	out, _, err := g.runOnce(ctx, timeout, argv)
	return out, err
}

// runOnce runs argv with timeout (0: Options.CommandTimeout) and also
// returns the raw result, which holds what the command printed before it
// failed or was killed.
func (g *gatherer) runOnce(ctx context.Context, timeout time.Duration, argv []string) (output, *host.Result, error) {
	if timeout <= 0 {
		timeout = g.opt.CommandTimeout
	}
	if err := g.acquire(ctx); err != nil {
		return output{}, nil, err
	}
	res, err := g.h.Run(ctx, argv, host.RunOptions{Timeout: timeout})
	g.release()
	o, err := g.interpret(argv, res, err)
	return o, res, err
}

// interpret turns a Run's result into an output: see run.
func (g *gatherer) interpret(argv []string, res *host.Result, err error) (output, error) {
	if errors.Is(err, host.ErrReadOnly) {
		g.readOnly.Store(true)
		return g.captured(argv)
	}
	var cerr *host.CommandError
	if errors.As(err, &cerr) && (cerr.ExitCode == 126 || cerr.ExitCode == 127) && !errors.Is(err, host.ErrNotFound) {
		// A shell (ssh, nsenter) says the program is missing or not
		// executable the POSIX way.
		return output{}, fmt.Errorf("%w: %w", host.ErrNotFound, err)
	}
	if errors.As(err, &cerr) && res != nil && cerr.ExitCode > 0 && !cerr.TimedOut && !errors.Is(err, host.ErrNotFound) {
		return output{text: string(res.Stdout) + string(res.Stderr), stdout: string(res.Stdout), exitCode: res.ExitCode}, nil
	}
	if err != nil {
		return output{}, err
	}
	return output{text: string(res.Stdout) + string(res.Stderr), stdout: string(res.Stdout), exitCode: res.ExitCode}, nil
}

// ErrNotCaptured says that a read-only host holds no output of a command.
var ErrNotCaptured = errors.New("not captured")

// captured finds a command's output in a captured host: ferry's layout
// commands/<name>, or a sos report's sos_commands/<plugin>/<name>, where
// <name> is sos's mangled command line ("criu check --feature uffd" ->
// "criu_check_--feature_uffd").
func (g *gatherer) captured(argv []string) (output, error) {
	d, ok := g.h.(*host.Dir)
	name := MangleCommand(argv)
	if !ok {
		return output{}, fmt.Errorf("%s is read-only and %q was not captured: %w", g.h.Name(), name, ErrNotCaptured)
	}
	candidates := []string{filepath.Join(d.Root, "commands", name)}
	if m, _ := filepath.Glob(filepath.Join(d.Root, "sos_commands", "*", name)); len(m) > 0 {
		candidates = append(candidates, m...)
	}
	for _, c := range candidates {
		b, err := os.ReadFile(c)
		if err != nil {
			continue
		}
		text := string(b)
		// sos report and capture.sh record a program that is not
		// installed as this line instead of its output.
		if first := firstLineOf(text); strings.Contains(first, "failed to run command") || strings.Contains(first, "command not found") {
			return output{}, fmt.Errorf("%s: captured %s: %w: %s", g.h.Name(), name, host.ErrNotFound, strings.TrimSpace(first))
		}
		return output{text: text, stdout: text, exitCode: -1, captured: true}, nil
	}
	return output{}, fmt.Errorf("captured host holds no output of %q (looked for commands/%s and sos_commands/*/%s): %w", host.Quote(argv), name, name, ErrNotCaptured)
}

var mangleRE = regexp.MustCompile(`[^\w\-\./]+`)

// MangleCommand names a command's captured output file the way sos report
// does: the program's base name, the words joined by "_", any other
// character run replaced by "_", "/" by ".".
func MangleCommand(argv []string) string {
	if len(argv) == 0 {
		return ""
	}
	words := append([]string{path.Base(argv[0])}, argv[1:]...)
	s := mangleRE.ReplaceAllString(strings.Join(words, " "), "_")
	s = strings.ReplaceAll(s, "/", ".")
	return strings.Trim(s, "_")
}

// reason renders an error as the one-line reason of an unknown fact.
func reason(err error) string {
	if err == nil {
		return "unknown"
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "not there: " + err.Error()
	case errors.Is(err, fs.ErrPermission):
		return "permission denied: " + err.Error()
	}
	return err.Error()
}

func (g *gatherer) hostname(ctx context.Context) {
	b, err := g.read(ctx, "/proc/sys/kernel/hostname")
	if err != nil {
		out, rerr := g.run(ctx, 0, "hostname")
		if rerr != nil || out.exitCode > 0 {
			g.unknown(KeyHostname, err)
			return
		}
		b = []byte(out.text)
	}
	g.f.Hostname = strings.TrimSpace(string(b))
}
