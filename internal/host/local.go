package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Local is the machine ferry runs on.
type Local struct{}

var _ Host = Local{}

func (Local) Name() string { return "local" }

func (Local) Open(_ context.Context, path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	return f, nil
}

func (l Local) Run(ctx context.Context, argv []string, opt RunOptions) (*Result, error) {
	return execRun(ctx, l.Name(), argv, opt)
}

// execRun runs argv as a local process in its own process group, so that a
// timeout kills everything it started (ssh, nsenter and their children).
func execRun(ctx context.Context, name string, argv []string, opt RunOptions) (*Result, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("%s: empty command", name)
	}
	timeout := opt.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The negative pid is the process group.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 2 * time.Second
	if len(opt.Env) > 0 {
		cmd.Env = append(os.Environ(), opt.Env...)
	}
	cmd.Stdin = opt.Stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	if opt.Stdout != nil {
		cmd.Stdout = opt.Stdout
	}
	cmd.Stderr = &stderr
	if opt.Stderr != nil {
		cmd.Stderr = io.MultiWriter(&stderr, opt.Stderr)
	}

	start := time.Now()
	err := cmd.Run()
	res := &Result{
		Argv:     argv,
		Stdout:   stdout.Bytes(),
		Stderr:   stderr.Bytes(),
		ExitCode: -1,
		Duration: time.Since(start),
	}
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	if err == nil {
		return res, nil
	}
	cerr := &CommandError{Host: name, Argv: argv, ExitCode: res.ExitCode, Stderr: trimStderr(res.Stderr), Err: err}
	switch {
	case ctx.Err() != nil:
		cerr.ExitCode = -1
		cerr.Err = ctx.Err()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			cerr.TimedOut = true
			cerr.Timeout = timeout
		}
	case errors.Is(err, exec.ErrNotFound):
		cerr.Err = fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return res, cerr
}

// LookPath resolves a program name on the local PATH.
func (Local) LookPath(name string) (string, error) { return exec.LookPath(name) }

// PathFinder is implemented by hosts that can resolve a program name to the
// absolute path they would run.
type PathFinder interface {
	LookPath(name string) (string, error)
}
