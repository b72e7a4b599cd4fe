// Package host is the one seam through which ferry touches a machine: every
// command it runs and every file it reads goes through a Host. Implementations
// are the local machine, a remote machine over the system's OpenSSH client, a
// network namespace of the testbed, and read-only hosts captured on disk.
package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"
)

// DefaultTimeout bounds a command run without RunOptions.Timeout and without
// a deadline on its context.
const DefaultTimeout = 2 * time.Minute

// Host runs commands and reads files on one machine.
//
// Run takes an argv, never a shell string: no implementation lets an argument
// be interpreted by a shell (the SSH host quotes each word for the remote
// shell). Run waits for the command; when ctx is done or the timeout fires the
// whole process group is killed and a *CommandError with TimedOut set is
// returned. A command that ran and exited non-zero returns its *Result AND a
// *CommandError, so callers that expect failure can still read the output.
//
// Open returns an error matching fs.ErrNotExist when the file is absent.
type Host interface {
	// Name is a short, stable label used in logs, journals and bundles:
	// "local", "ssh://user@db1:22", "testbed:tb1", "dir:/path".
	Name() string
	Run(ctx context.Context, argv []string, opt RunOptions) (*Result, error)
	Open(ctx context.Context, path string) (io.ReadCloser, error)
}

// RunOptions tunes one Run. The zero value runs with no stdin, captured
// stdout and stderr, and DefaultTimeout.
type RunOptions struct {
	Stdin io.Reader
	// Stdout and Stderr, when set, receive the stream as it comes instead of
	// (Stdout) or in addition to (Stderr) the captured Result fields. Stderr
	// is always captured, so that errors can quote it.
	Stdout io.Writer
	Stderr io.Writer
	// Timeout bounds the run; 0 means DefaultTimeout, negative means only
	// the context bounds it.
	Timeout time.Duration
	// Env adds KEY=VALUE pairs to the command's environment.
	Env []string
}

// Result is what a finished command left behind.
type Result struct {
	Argv     []string      `json:"argv"`
	Stdout   []byte        `json:"-"`
	Stderr   []byte        `json:"-"`
	ExitCode int           `json:"exit_code"`
	Duration time.Duration `json:"duration_ns"`
}

// CommandError says which command failed on which host and why: it exited
// non-zero, timed out, or could not start (Err is then exec.ErrNotFound, a
// permission error, ...).
type CommandError struct {
	Host     string
	Argv     []string
	ExitCode int    // -1 when the command did not exit by itself
	Stderr   string // trimmed: the last lines, at most a few hundred bytes
	TimedOut bool
	Timeout  time.Duration
	Err      error
}

func (e *CommandError) Error() string {
	cmd := Quote(e.Argv)
	switch {
	case e.TimedOut:
		return fmt.Sprintf("%s: %s timed out after %s", e.Host, cmd, e.Timeout)
	case e.ExitCode < 0 && e.Err != nil:
		return fmt.Sprintf("%s: %s: %v", e.Host, cmd, e.Err)
	case e.Stderr != "":
		return fmt.Sprintf("%s: %s exited with code %d: %s", e.Host, cmd, e.ExitCode, e.Stderr)
	default:
		return fmt.Sprintf("%s: %s exited with code %d", e.Host, cmd, e.ExitCode)
	}
}

func (e *CommandError) Unwrap() error { return e.Err }

// Hint tells the user what to do about the most common causes.
func (e *CommandError) Hint() string {
	switch {
	case e.TimedOut:
		return "the command did not finish in time; check the host's load, or raise the timeout"
	case errors.Is(e.Err, ErrNotFound):
		return fmt.Sprintf("install %q on %s or put it on PATH (make deps installs ferry's dependencies)", firstWord(e.Argv), e.Host)
	}
	return ""
}

// ErrNotFound is wrapped by a CommandError whose program does not exist on
// the host.
var ErrNotFound = errors.New("executable not found")

// ErrReadOnly is returned by Run on hosts that can only be read (captured
// facts, bundles, directories).
var ErrReadOnly = errors.New("read-only host: cannot run commands")

// Output runs argv and returns its stdout; a non-zero exit is an error.
func Output(ctx context.Context, h Host, argv ...string) ([]byte, error) {
	res, err := h.Run(ctx, argv, RunOptions{})
	if err != nil {
		return nil, err
	}
	return res.Stdout, nil
}

// ReadFile reads a whole file from h, at most limit bytes (0: 64 MiB); a
// longer file is an error rather than a silent cut.
func ReadFile(ctx context.Context, h Host, path string, limit int64) ([]byte, error) {
	if limit <= 0 {
		limit = 64 << 20
	}
	rc, err := h.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", h.Name(), path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: read %s: larger than %d bytes", h.Name(), path, limit)
	}
	return b, nil
}

// Exists reports whether path exists on h. Errors other than "not there"
// are returned.
func Exists(ctx context.Context, h Host, path string) (bool, error) {
	rc, err := h.Open(ctx, path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	rc.Close()
	return true, nil
}

// Quote renders argv as one POSIX shell word list: for display, and for the
// SSH transport where the remote side has a shell. Words made only of safe
// characters stay bare; others are single-quoted.
func Quote(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(QuoteWord(a))
	}
	return b.String()
}

// QuoteWord quotes one word for a POSIX shell.
func QuoteWord(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// trimStderr keeps the tail of stderr that fits in an error line.
func trimStderr(b []byte) string {
	const max = 400
	s := strings.TrimSpace(string(bytes.ToValidUTF8(b, []byte("?"))))
	if len(s) > max {
		s = "..." + s[len(s)-max:]
	}
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " | ")), " ")
}

func firstWord(argv []string) string {
	if len(argv) == 0 {
		return ""
	}
	return argv[0]
}
