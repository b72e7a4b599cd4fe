package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// NetnsDir is where `ip netns` keeps named network namespaces.
const NetnsDir = "/run/netns"

// Netns is a host made of a named network namespace on the local machine: the
// testbed's simulated hosts. Commands run inside the namespace through
// nsenter; files are the local machine's, except the per-namespace network
// views (/proc/net, /sys/class/net), which are read from inside.
type Netns struct {
	// Label is the host's name in ferry ("testbed:tb1").
	Label string
	// Netns is the name under /run/netns.
	Netns string
}

var _ Host = (*Netns)(nil)

func (n *Netns) Name() string { return n.Label }

// Path is the namespace's bind-mount file.
func (n *Netns) Path() string { return NetnsDir + "/" + n.Netns }

// Argv is the local command line that runs argv inside the namespace.
func (n *Netns) Argv(argv []string) []string {
	return append([]string{"nsenter", "--net=" + n.Path(), "--"}, argv...)
}

func (n *Netns) Run(ctx context.Context, argv []string, opt RunOptions) (*Result, error) {
	if err := n.check(); err != nil {
		return nil, err
	}
	res, err := execRun(ctx, n.Label, n.Argv(argv), opt)
	if res != nil {
		res.Argv = argv
	}
	var cerr *CommandError
	if errors.As(err, &cerr) {
		cerr.Argv = argv
		// nsenter reports a missing program as exit 127 on stderr.
		if cerr.ExitCode == 127 && strings.Contains(cerr.Stderr, "No such file") {
			cerr.Err = fmt.Errorf("%w: %s", ErrNotFound, argv[0])
		}
	}
	return res, err
}

func (n *Netns) Open(ctx context.Context, path string) (io.ReadCloser, error) {
	if err := n.check(); err != nil {
		return nil, err
	}
	if !netnsLocal(path) {
		return Local{}.Open(ctx, path)
	}
	res, err := n.Run(ctx, []string{"cat", "--", path}, RunOptions{})
	if err != nil {
		var cerr *CommandError
		if errors.As(err, &cerr) && strings.Contains(cerr.Stderr, "No such file") {
			return nil, fmt.Errorf("%s: open %s: %w", n.Label, path, fs.ErrNotExist)
		}
		return nil, err
	}
	return io.NopCloser(strings.NewReader(string(res.Stdout))), nil
}

func (n *Netns) check() error {
	if _, err := os.Stat(n.Path()); err != nil {
		return &missingNetns{label: n.Label, path: n.Path(), err: err}
	}
	return nil
}

// netnsLocal reports whether path shows something that differs per network
// namespace.
func netnsLocal(path string) bool {
	for _, p := range []string{"/proc/net/", "/proc/self/net/", "/sys/class/net/"} {
		if strings.HasPrefix(path, p) || path+"/" == p {
			return true
		}
	}
	return false
}

type missingNetns struct {
	label, path string
	err         error
}

func (e *missingNetns) Error() string {
	return fmt.Sprintf("%s: network namespace %s does not exist", e.label, e.path)
}
func (e *missingNetns) Unwrap() error { return e.err }
func (e *missingNetns) Hint() string {
	return "start the testbed with `ferry testbed up`, or list its hosts with `ferry testbed status`"
}
