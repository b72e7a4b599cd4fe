package daemontest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/lxc"
)

// NSHost is one daemon of a Pair seen as a machine of its own: commands run
// inside the daemon's network AND mount namespaces (nsenter --target PID
// --net --mount), where the daemon's data and logs are at the packages'
// paths (/var/lib/KIND, /var/log/KIND) and its socket is the client's
// default one, as on a host that runs one daemon. That is how ferry's CLI,
// which knows only host specs, sees a daemon; Env (the client configuration
// that knows the pair's remotes) is added to every command. Files are read
// from inside the namespaces too.
type NSHost struct {
	Label string
	PID   int
	Env   []string
}

var _ host.Host = (*NSHost)(nil)

// PairHost returns the NSHost of a Pair client's daemon, named label.
func PairHost(t testing.TB, c *lxc.Client, label string) *NSHost {
	t.Helper()
	if c.LogRoot == "" {
		t.Fatalf("client %s is not one of a Pair", c.Name())
	}
	pidFile := filepath.Join(filepath.Dir(c.LogRoot), "pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the daemon's pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", pidFile, err)
	}
	conf := "LXD_CONF"
	if c.Kind == migrate.KindIncus {
		conf = "INCUS_CONF"
	}
	var env []string
	if v := envValue(c.Env, conf); v != "" {
		env = append(env, conf+"="+v)
	}
	return &NSHost{Label: label, PID: pid, Env: env}
}

func (h *NSHost) Name() string { return h.Label }

func (h *NSHost) argv(argv []string) []string {
	return append([]string{"nsenter", "--target", strconv.Itoa(h.PID), "--net", "--mount", "--"}, argv...)
}

func (h *NSHost) Run(ctx context.Context, argv []string, opt host.RunOptions) (*host.Result, error) {
	opt.Env = append(append([]string(nil), h.Env...), opt.Env...)
	res, err := host.Local{}.Run(ctx, h.argv(argv), opt)
	if res != nil {
		res.Argv = argv
	}
	var ce *host.CommandError
	if errors.As(err, &ce) {
		ce.Host, ce.Argv = h.Label, argv
		if ce.ExitCode == 127 && strings.Contains(ce.Stderr, "No such file") {
			ce.Err = fmt.Errorf("%w: %s", host.ErrNotFound, argv[0])
		}
	}
	return res, err
}

func (h *NSHost) Open(ctx context.Context, path string) (io.ReadCloser, error) {
	res, err := h.Run(ctx, []string{"cat", "--", path}, host.RunOptions{})
	if err != nil {
		var ce *host.CommandError
		if errors.As(err, &ce) && strings.Contains(ce.Stderr, "No such file") {
			return nil, fmt.Errorf("%s: open %s: %w", h.Label, path, fs.ErrNotExist)
		}
		return nil, err
	}
	return io.NopCloser(strings.NewReader(string(res.Stdout))), nil
}
