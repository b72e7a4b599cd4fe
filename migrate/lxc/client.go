// Package lxc drives the LXC-based container daemons, Canonical LXD and
// Incus, through their command-line clients (`lxc`, `incus`) on a host:
// stateful snapshot and restore, stateful stop and start, and live moves to
// another daemon. Every operation runs as a journal of timed steps (the
// migrate package's run store), collects the CRIU and liblxc logs the daemon
// leaves behind, lifts the lines that explain a failure, and verifies the
// outcome itself: the daemons can exit 0 and still have lost the workload.
package lxc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
)

// Client runs one daemon's CLI on a host.
type Client struct {
	Host host.Host
	// Kind is migrate.KindLXD or migrate.KindIncus.
	Kind string
	// Bin is the client binary; empty means "lxc" for LXD, "incus" for
	// Incus.
	Bin string
	// Remote is the client's remote name for the daemon ("" = local).
	Remote string
	// Timeout bounds each command; 0 means two minutes.
	Timeout time.Duration
	// Env is added to the client's environment (LXD_SOCKET, INCUS_CONF,
	// ... for a daemon that is not the host's default one).
	Env []string
	// LogRoot and LibRoot are where the daemon keeps its logs and data as
	// seen from Host; empty means the packages' paths (/var/log/lxd,
	// /var/lib/lxd, /var/log/incus, /var/lib/incus).
	LogRoot, LibRoot string
}

// NewClient returns the client for a target's kind and remote on h.
func NewClient(h host.Host, t migrate.Target) (*Client, error) {
	if t.Kind != migrate.KindLXD && t.Kind != migrate.KindIncus {
		return nil, fmt.Errorf("target %s is not an lxd or incus target", t)
	}
	return &Client{Host: h, Kind: t.Kind, Remote: t.Remote}, nil
}

func (c *Client) bin() string {
	if c.Bin != "" {
		return c.Bin
	}
	if c.Kind == migrate.KindIncus {
		return "incus"
	}
	return "lxc"
}

// Product is the daemon's name for people: "LXD" or "Incus".
func (c *Client) Product() string {
	if c.Kind == migrate.KindIncus {
		return "Incus"
	}
	return "LXD"
}

// ref is an instance reference for the CLI: "remote:name" or "name".
func (c *Client) ref(name string) string {
	if c.Remote != "" {
		return c.Remote + ":" + name
	}
	return name
}

// Name labels the daemon in journals: "lxd@local", "incus:r1@local".
func (c *Client) Name() string {
	s := c.Kind
	if c.Remote != "" {
		s += ":" + c.Remote
	}
	return s + "@" + c.Host.Name()
}

// run runs the client with args.
func (c *Client) run(ctx context.Context, args ...string) (*host.Result, error) {
	to := c.Timeout
	if to == 0 {
		to = 2 * time.Minute
	}
	return c.Host.Run(ctx, append([]string{c.bin()}, args...), host.RunOptions{Timeout: to, Env: c.Env})
}

// query GETs an API path through `lxc query` and decodes the JSON answer.
func (c *Client) query(ctx context.Context, path string, v any) error {
	p := path
	if c.Remote != "" {
		p = c.Remote + ":" + path
	}
	res, err := c.run(ctx, "query", p)
	if err != nil {
		var ce *host.CommandError
		if errors.As(err, &ce) && strings.Contains(ce.Stderr, "not found") {
			return fmt.Errorf("%s: %w", path, ErrNotFound)
		}
		return err
	}
	if err := json.Unmarshal(res.Stdout, v); err != nil {
		return fmt.Errorf("%s query %s: %w", c.bin(), path, err)
	}
	return nil
}

// ErrNotFound is an instance or snapshot the daemon does not know.
var ErrNotFound = errors.New("not found")

// Server is what a daemon says about itself (GET /1.0).
type Server struct {
	APIExtensions []string `json:"api_extensions"`
	Environment   struct {
		ServerVersion  string `json:"server_version"`
		ServerName     string `json:"server_name"`
		Storage        string `json:"storage"`
		StorageVersion string `json:"storage_version"`
		Driver         string `json:"driver"`
		DriverVersion  string `json:"driver_version"`
		KernelVersion  string `json:"kernel_version"`
	} `json:"environment"`
}

// Server asks the daemon about itself; an error means it does not answer.
func (c *Client) Server(ctx context.Context) (*Server, error) {
	var s Server
	if err := c.query(ctx, "/1.0", &s); err != nil {
		return nil, &DaemonError{Product: c.Product(), Host: c.Host.Name(), Err: err}
	}
	return &s, nil
}

// DaemonError is a daemon that does not answer.
type DaemonError struct {
	Product, Host string
	Err           error
}

func (e *DaemonError) Error() string {
	return fmt.Sprintf("%s daemon on %s does not answer: %v", e.Product, e.Host, e.Err)
}
func (e *DaemonError) Unwrap() error { return e.Err }
func (e *DaemonError) Hint() string {
	return "start the daemon (scripts/daemons.sh start " + strings.ToLower(e.Product) + ") and check that this user may use it"
}

// Instance is an instance's configuration (GET /1.0/instances/NAME).
type Instance struct {
	Name           string            `json:"name"`
	Status         string            `json:"status"`
	Stateful       bool              `json:"stateful"`
	Type           string            `json:"type"`
	ExpandedConfig map[string]string `json:"expanded_config"`
}

// State is an instance's run state (GET /1.0/instances/NAME/state).
type State struct {
	Status    string `json:"status"`
	PID       int    `json:"pid"`
	Processes int    `json:"processes"`
}

// Snapshot is one snapshot (GET /1.0/instances/NAME/snapshots/SNAP).
type Snapshot struct {
	Name     string `json:"name"`
	Stateful bool   `json:"stateful"`
}

// Instance returns the instance's configuration, ErrNotFound when absent.
func (c *Client) Instance(ctx context.Context, name string) (*Instance, error) {
	var in Instance
	if err := c.query(ctx, "/1.0/instances/"+name, &in); err != nil {
		return nil, fmt.Errorf("%s instance %s: %w", c.Product(), name, err)
	}
	return &in, nil
}

// State returns the instance's run state.
func (c *Client) State(ctx context.Context, name string) (*State, error) {
	var st State
	if err := c.query(ctx, "/1.0/instances/"+name+"/state", &st); err != nil {
		return nil, fmt.Errorf("%s instance %s: %w", c.Product(), name, err)
	}
	return &st, nil
}

// Snapshot returns one snapshot, ErrNotFound when absent.
func (c *Client) Snapshot(ctx context.Context, name, snap string) (*Snapshot, error) {
	var s Snapshot
	if err := c.query(ctx, "/1.0/instances/"+name+"/snapshots/"+snap, &s); err != nil {
		return nil, fmt.Errorf("%s snapshot %s/%s: %w", c.Product(), name, snap, err)
	}
	return &s, nil
}

// SnapshotStateful takes a stateful snapshot of a running instance.
func (c *Client) SnapshotStateful(ctx context.Context, name, snap string) error {
	if c.Kind == migrate.KindIncus {
		_, err := c.run(ctx, "snapshot", "create", c.ref(name), snap, "--stateful")
		return err
	}
	_, err := c.run(ctx, "snapshot", c.ref(name), snap, "--stateful")
	return err
}

// RestoreStateful restores a stateful snapshot WITH its state. There is no
// stateless variant here on purpose: `lxc restore` without --stateful
// silently cold-starts the instance from the snapshot's files.
func (c *Client) RestoreStateful(ctx context.Context, name, snap string) error {
	if c.Kind == migrate.KindIncus {
		_, err := c.run(ctx, "snapshot", "restore", c.ref(name), snap, "--stateful")
		return err
	}
	_, err := c.run(ctx, "restore", c.ref(name), snap, "--stateful")
	return err
}

// StopStateful stops an instance, saving its running state.
func (c *Client) StopStateful(ctx context.Context, name string) error {
	_, err := c.run(ctx, "stop", c.ref(name), "--stateful")
	return err
}

// Start starts an instance; one stopped statefully resumes from its state.
func (c *Client) Start(ctx context.Context, name string) error {
	_, err := c.run(ctx, "start", c.ref(name))
	return err
}

// Move moves a running instance live to the daemon reached as remote dst
// (same instance name).
func (c *Client) Move(ctx context.Context, name, dstRemote string) error {
	_, err := c.run(ctx, "move", c.ref(name), dstRemote+":"+name)
	return err
}

// Exec runs argv inside the instance.
func (c *Client) Exec(ctx context.Context, name string, argv ...string) (*host.Result, error) {
	return c.run(ctx, append([]string{"exec", c.ref(name), "--"}, argv...)...)
}

// Version is a daemon version, e.g. 5.0.2 or 6.0.4.
type Version struct{ Major, Minor, Patch int }

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Less orders versions.
func (v Version) Less(o Version) bool {
	if v.Major != o.Major {
		return v.Major < o.Major
	}
	if v.Minor != o.Minor {
		return v.Minor < o.Minor
	}
	return v.Patch < o.Patch
}

// ParseVersion reads "5.0.2", "6.6", "6.0.4-rc1".
func ParseVersion(s string) (Version, error) {
	var v Version
	core, _, _ := strings.Cut(strings.TrimSpace(s), "-")
	parts := strings.Split(core, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return v, fmt.Errorf("version %q: want MAJOR.MINOR[.PATCH]", s)
	}
	nums := []*int{&v.Major, &v.Minor, &v.Patch}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return Version{}, fmt.Errorf("version %q: %q is not a number", s, p)
		}
		*nums[i] = n
	}
	return v, nil
}
