package host

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
)

// Dir is a read-only host whose files live under Root: an unpacked ferry
// bundle, an unpacked sos report, a mounted disk image. Open("/proc/cpuinfo")
// reads Root/proc/cpuinfo; Run always fails with ErrReadOnly.
type Dir struct {
	Root string
}

var _ Host = (*Dir)(nil)

func (d *Dir) Name() string { return "dir:" + d.Root }

func (d *Dir) Open(_ context.Context, p string) (io.ReadCloser, error) {
	// path.Clean of a rooted path never climbs above "/", so the result
	// stays inside Root.
	full := filepath.Join(d.Root, filepath.FromSlash(path.Clean("/"+p)))
	f, err := os.Open(full)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.Name(), err)
	}
	return f, nil
}

func (d *Dir) Run(_ context.Context, argv []string, _ RunOptions) (*Result, error) {
	return nil, &CommandError{Host: d.Name(), Argv: argv, ExitCode: -1, Err: ErrReadOnly}
}
