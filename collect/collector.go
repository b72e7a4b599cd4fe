// Package collect gathers the artefacts of a bug report from hosts: command
// outputs, files and log directories, each by one Collector run on a
// host.Host with a timeout and a size cap (the tail kept), redacted before
// anything is written, into a bundle (see report/bundle).
package collect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/report/bundle"
)

// Limits bound one collector's work. The time limit comes with the context.
type Limits struct {
	// MaxSize caps each file a collector produces; the tail is kept.
	MaxSize int64
}

// Output is one file a collector produced, before redaction.
type Output struct {
	// Name is the file's name under the collector's directory; "/"
	// separates sub-directories. Each part is made safe when written.
	Name string
	// Command is the argv run, or Source the file read.
	Command []string
	Source  string
	Data    []byte
	// ExitCode of Command; -1 for files and commands that did not exit.
	ExitCode     int
	Truncated    bool
	OriginalSize int64 // -1 when unknown
	// Absent: the file or the command does not exist on the host.
	Absent bool
	// NonZero: the command ran and exited non-zero (Err says how).
	NonZero bool
	// Err is why the output could not be collected (whole or in part).
	Err error
	// Binary outputs (CRIU's protobuf stats files) are not redacted: they
	// hold numbers only, and replacing bytes would corrupt them.
	Binary   bool
	Duration time.Duration
}

// Collector produces one artefact (or a small set of them: a directory, a
// run's logs) from a host. Collect never panics on a host error: what
// failed is in the outputs' Err. It must stop when ctx is done, keeping what
// it has.
type Collector interface {
	// Name is the collector's directory in the bundle: "uname", "dmesg".
	Name() string
	Collect(ctx context.Context, h host.Host, lim Limits) []Output
}

// Command runs one command; stdout and stderr are kept together, in order.
type Command struct {
	ID   string
	File string // the output's name; default ID + ".txt"
	Argv []string
}

func (c Command) Name() string { return c.ID }

func (c Command) Collect(ctx context.Context, h host.Host, lim Limits) []Output {
	name := c.File
	if name == "" {
		name = c.ID + ".txt"
	}
	return []Output{runCommand(ctx, h, c.Argv, name, lim)}
}

func runCommand(ctx context.Context, h host.Host, argv []string, name string, lim Limits) Output {
	out := Output{Name: name, Command: argv, ExitCode: -1, OriginalSize: -1}
	t := newTail(lim.MaxSize)
	start := time.Now()
	res, err := h.Run(ctx, argv, host.RunOptions{Stdout: t, Stderr: t, Timeout: -1})
	out.Duration = time.Since(start)
	out.Data, out.Truncated = t.Bytes()
	out.OriginalSize = t.total
	if res != nil {
		out.ExitCode = res.ExitCode
	}
	var ce *host.CommandError
	switch {
	case err == nil:
	case errors.Is(err, host.ErrNotFound):
		out.Absent = true
	case errors.As(err, &ce) && ce.ExitCode == 127 && len(out.Data) == 0:
		out.Absent = true // a remote shell's "command not found"
	case errors.As(err, &ce) && !ce.TimedOut && ce.ExitCode > 0:
		out.NonZero = true
		out.Err = err
	default:
		out.Err = err
	}
	return out
}

// File reads one file.
type File struct {
	ID   string
	Path string
}

func (f File) Name() string { return f.ID }

func (f File) Collect(ctx context.Context, h host.Host, lim Limits) []Output {
	return []Output{readFile(ctx, h, f.Path, fileName(f.Path), lim)}
}

// fileName names a file read from path p: its path without the leading
// slash, slashes made dashes ("var-log-lxd-lxd.log"), unique within a
// collector.
func fileName(p string) string {
	return strings.ReplaceAll(strings.TrimPrefix(path.Clean("/"+p), "/"), "/", "-")
}

func readFile(ctx context.Context, h host.Host, p, name string, lim Limits) Output {
	if _, remote := h.(*host.SSH); remote && lim.MaxSize > 0 {
		return readRemoteFile(ctx, h, p, name, lim)
	}
	out := Output{Name: name, Source: p, ExitCode: -1, OriginalSize: -1}
	start := time.Now()
	t := newTail(lim.MaxSize)
	// Open and read in the background so that an open or a read that
	// blocks (a fifo, a hung remote) is cut by the context: closing the
	// file ends the read; a blocked open is left behind.
	var (
		mu     sync.Mutex
		rc     io.ReadCloser
		closed bool
	)
	done := make(chan error, 1)
	go func() {
		f, err := h.Open(ctx, p)
		if err != nil {
			done <- err
			return
		}
		mu.Lock()
		rc = f
		if closed {
			f.Close()
		}
		mu.Unlock()
		seekTail(f, t, lim.MaxSize)
		_, err = io.Copy(t, f)
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		err = fmt.Errorf("%s: read %s: %w", h.Name(), p, ctx.Err())
	}
	mu.Lock()
	closed = true
	if rc != nil {
		rc.Close()
	}
	mu.Unlock()
	out.Duration = time.Since(start)
	if errors.Is(err, fs.ErrNotExist) {
		out.Absent = true
		return out
	}
	out.Data, out.Truncated = t.Bytes()
	out.OriginalSize = t.total
	if err != nil {
		out.Err = fmt.Errorf("read %s: %w", p, err)
	}
	return out
}

// readRemoteFile reads the tail of a file on a remote host with tail -c,
// streamed: an SSH host's Open reads the whole file into memory first, and
// gigabytes of log must not cross the network for the last 25 MiB.
func readRemoteFile(ctx context.Context, h host.Host, p, name string, lim Limits) Output {
	out := Output{Name: name, Source: p, ExitCode: -1, OriginalSize: -1}
	start := time.Now()
	defer func() { out.Duration = time.Since(start) }()
	t := newTail(lim.MaxSize)
	_, err := h.Run(ctx, []string{"tail", "-c", strconv.FormatInt(lim.MaxSize, 10), "--", p}, host.RunOptions{Stdout: t, Timeout: -1, Env: []string{"LC_ALL=C"}})
	var ce *host.CommandError
	if errors.As(err, &ce) && ce.ExitCode > 0 && strings.Contains(ce.Stderr, "No such file or directory") {
		out.Absent = true
		return out
	}
	out.Data, out.Truncated = t.Bytes()
	out.OriginalSize = t.total
	// A full cap may be a cut: ask for the size (one more round trip,
	// only then). /proc files say 0 and are never cut by tail.
	if err == nil && int64(len(out.Data)) == lim.MaxSize {
		if res, serr := h.Run(ctx, []string{"stat", "-L", "-c", "%s", "--", p}, host.RunOptions{Timeout: -1, Env: []string{"LC_ALL=C"}}); serr == nil {
			if size, perr := strconv.ParseInt(strings.TrimSpace(string(res.Stdout)), 10, 64); perr == nil && size > lim.MaxSize {
				out.Truncated, out.OriginalSize = true, size
			}
		}
	}
	if err != nil {
		out.Err = fmt.Errorf("read %s: %w", p, err)
	}
	return out
}

// seekTail skips straight to the tail of a seekable file with a known size
// (not /proc files, which say 0) instead of reading gigabytes.
func seekTail(f io.Reader, t *tail, max int64) {
	type statSeeker interface {
		io.Seeker
		Stat() (fs.FileInfo, error)
	}
	ss, ok := f.(statSeeker)
	if !ok || max <= 0 {
		return
	}
	st, err := ss.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() <= max {
		return
	}
	if _, err := ss.Seek(st.Size()-max, io.SeekStart); err == nil {
		t.mu.Lock()
		t.total = st.Size() - max
		t.truncated = true
		t.mu.Unlock()
	}
}

// Dir reads every regular file under a directory (a container's log
// directory), listed with find on the host, each capped.
type Dir struct {
	ID   string
	Path string
	// Pattern, when set, keeps only the files whose name matches this
	// find -name pattern ("*.log": CRIU logs beside image files).
	Pattern string
	// MaxFiles bounds how many files are read (default 200).
	MaxFiles int
}

func (d Dir) Name() string { return d.ID }

func (d Dir) Collect(ctx context.Context, h host.Host, lim Limits) []Output {
	max := d.MaxFiles
	if max <= 0 {
		max = 200
	}
	// -H: the directory itself may be a symlink (LXD's containers/<c>
	// points into its storage pool); nothing below it is followed.
	argv := []string{"find", "-H", d.Path, "-xdev", "-type", "f"}
	if d.Pattern != "" {
		argv = append(argv, "-name", d.Pattern)
	}
	argv = append(argv, "-print0")
	res, err := h.Run(ctx, argv, host.RunOptions{Timeout: -1})
	if err != nil {
		var ce *host.CommandError
		if errors.As(err, &ce) && strings.Contains(ce.Stderr, "No such file or directory") {
			return []Output{{Name: fileName(d.Path), Source: d.Path, ExitCode: -1, OriginalSize: -1, Absent: true}}
		}
		return []Output{{Name: fileName(d.Path), Command: argv, Source: d.Path, ExitCode: -1, OriginalSize: -1, Err: err}}
	}
	var outs []Output
	root := path.Clean(d.Path)
	for _, p := range strings.Split(string(res.Stdout), "\x00") {
		if p == "" {
			continue
		}
		if len(outs) == max {
			outs = append(outs, Output{Name: fileName(d.Path) + "/_more-files", Source: d.Path, ExitCode: -1, OriginalSize: -1,
				Err: fmt.Errorf("%s: more than %d files, the rest skipped", d.Path, max)})
			break
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(path.Clean(p), root), "/")
		if rel == "" || !strings.HasPrefix(path.Clean(p), root+"/") {
			continue // find printed something outside the directory
		}
		outs = append(outs, readFile(ctx, h, p, fileName(d.Path)+"/"+rel, lim))
	}
	if len(outs) == 0 {
		return []Output{{Name: fileName(d.Path), Source: d.Path, ExitCode: -1, OriginalSize: -1, Absent: true}}
	}
	return outs
}

// tail keeps the last max bytes written to it (max <= 0: everything). It
// is safe for concurrent writers (a command's stdout and stderr).
type tail struct {
	mu        sync.Mutex
	max       int64
	buf       []byte
	total     int64
	truncated bool
}

func newTail(max int64) *tail { return &tail{max: max} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	t.total += int64(n)
	if t.max <= 0 {
		t.buf = append(t.buf, p...)
		return n, nil
	}
	if int64(len(p)) >= t.max {
		t.truncated = t.truncated || t.total > t.max
		t.buf = append(t.buf[:0], p[int64(len(p))-t.max:]...)
		return n, nil
	}
	t.buf = append(t.buf, p...)
	// Let the buffer grow to twice the cap before shifting: amortised
	// constant work per byte.
	if int64(len(t.buf)) > 2*t.max {
		t.truncated = true
		t.buf = append(t.buf[:0], t.buf[int64(len(t.buf))-t.max:]...)
	}
	return n, nil
}

// Bytes returns the kept tail and whether anything was dropped.
func (t *tail) Bytes() ([]byte, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.max > 0 && int64(len(t.buf)) > t.max {
		t.truncated = true
		return append([]byte(nil), t.buf[int64(len(t.buf))-t.max:]...), true
	}
	return append([]byte(nil), t.buf...), t.truncated
}

// safeName makes an output name safe inside the bundle: each part
// sanitised, no empty or dot parts.
func safeName(name string) string {
	var parts []string
	for _, p := range strings.Split(name, "/") {
		if p == "" || p == "." || p == ".." {
			continue
		}
		parts = append(parts, bundle.SafeComponent(p))
	}
	if len(parts) == 0 {
		return "_"
	}
	return strings.Join(parts, "/")
}

// Func produces one artefact with a function run on the host: ferry's own
// view of it (the host's facts as JSON). Fn must honour ctx.
type Func struct {
	ID   string
	File string
	Fn   func(ctx context.Context, h host.Host) ([]byte, error)
}

func (f Func) Name() string { return f.ID }

func (f Func) Collect(ctx context.Context, h host.Host, lim Limits) []Output {
	out := Output{Name: f.File, Source: "ferry:" + f.ID, ExitCode: -1, OriginalSize: -1}
	start := time.Now()
	data, err := f.Fn(ctx, h)
	out.Duration = time.Since(start)
	out.OriginalSize = int64(len(data))
	if lim.MaxSize > 0 && int64(len(data)) > lim.MaxSize {
		data, out.Truncated = data[int64(len(data))-lim.MaxSize:], true
	}
	out.Data, out.Err = data, err
	return []Output{out}
}
