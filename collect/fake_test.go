package collect

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/ferry-migrate/ferry/internal/host"
)

// fakeCmd is a canned command result.
type fakeCmd struct {
	out    string
	exit   int
	absent bool // the program does not exist
	hang   bool // runs until the context ends
}

// fakeHost serves canned files and command outputs. It fails the test on a
// command it was not given and on a command never run.
type fakeHost struct {
	t     *testing.T
	name  string
	files map[string]string
	cmds  map[string]fakeCmd

	mu   sync.Mutex
	used map[string]bool
}

func newFakeHost(t *testing.T, name string, files map[string]string, cmds map[string]fakeCmd) *fakeHost {
	h := &fakeHost{t: t, name: name, files: files, cmds: cmds, used: map[string]bool{}}
	t.Cleanup(func() {
		var unused []string
		for k := range h.cmds {
			if !h.used[k] {
				unused = append(unused, k)
			}
		}
		sort.Strings(unused)
		if len(unused) > 0 {
			t.Errorf("%s: commands never run: %q", name, unused)
		}
	})
	return h
}

func (h *fakeHost) Name() string { return h.name }

func (h *fakeHost) Run(ctx context.Context, argv []string, opt host.RunOptions) (*host.Result, error) {
	key := host.Quote(argv)
	h.mu.Lock()
	c, ok := h.cmds[key]
	h.used[key] = true
	h.mu.Unlock()
	if !ok {
		h.t.Errorf("%s: unexpected command %s", h.name, key)
		return nil, &host.CommandError{Host: h.name, Argv: argv, ExitCode: -1, Err: fmt.Errorf("unexpected")}
	}
	if c.absent {
		return nil, &host.CommandError{Host: h.name, Argv: argv, ExitCode: -1, Err: host.ErrNotFound}
	}
	res := &host.Result{Argv: argv, ExitCode: c.exit}
	if c.hang {
		<-ctx.Done()
		return res, &host.CommandError{Host: h.name, Argv: argv, ExitCode: -1, TimedOut: true, Err: ctx.Err()}
	}
	if opt.Stdout != nil {
		io.WriteString(opt.Stdout, c.out)
	} else {
		res.Stdout = []byte(c.out)
	}
	if c.exit != 0 {
		return res, &host.CommandError{Host: h.name, Argv: argv, ExitCode: c.exit, Stderr: strings.TrimSpace(c.out)}
	}
	return res, nil
}

func (h *fakeHost) Open(_ context.Context, p string) (io.ReadCloser, error) {
	s, ok := h.files[p]
	if !ok {
		return nil, fmt.Errorf("%s: %s: %w", h.name, p, fs.ErrNotExist)
	}
	return io.NopCloser(bytes.NewReader([]byte(s))), nil
}
