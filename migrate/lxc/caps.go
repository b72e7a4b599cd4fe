package lxc

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ferry-migrate/ferry/internal/criubin"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
)

// Capabilities is what one daemon can do for stateful operations.
type Capabilities struct {
	Product       string `json:"product"`
	Version       string `json:"version"`
	Storage       string `json:"storage"`
	Driver        string `json:"driver"`
	DriverVersion string `json:"driver_version"`
	// CRIU is the CRIU version on the daemon's host ("" when none answers).
	CRIU string `json:"criu"`
	// Stateful says whether stateful snapshots, stateful stop and live
	// moves of containers are possible at all with this daemon version;
	// Why says why not.
	Stateful bool   `json:"stateful"`
	Why      string `json:"why,omitempty"`
}

// MinCRIU is the oldest CRIU that works on this kind of machine (kernel >=
// 6.13 vDSO layout; CRIU 3.17 cannot start, 4.1 hangs without hardware
// breakpoints).
var MinCRIU = criubin.Version{Major: 4, Minor: 2}

// lxdNoLiveMigration is the Canonical LXD release that removed container
// live migration (and with it stateful container snapshots and stops).
var lxdNoLiveMigration = Version{Major: 6, Minor: 6}

// Probe asks the daemon and the host what is possible.
func (c *Client) Probe(ctx context.Context) (*Capabilities, error) {
	s, err := c.Server(ctx)
	if err != nil {
		return nil, err
	}
	caps := &Capabilities{
		Product: c.Product(), Version: s.Environment.ServerVersion, Storage: s.Environment.Storage,
		Driver: s.Environment.Driver, DriverVersion: s.Environment.DriverVersion, Stateful: true,
	}
	v, err := ParseVersion(s.Environment.ServerVersion)
	if err != nil {
		return caps, fmt.Errorf("%s on %s: %w", c.Product(), c.Host.Name(), err)
	}
	if c.Kind == migrate.KindLXD && !v.Less(lxdNoLiveMigration) {
		caps.Stateful = false
		caps.Why = fmt.Sprintf("LXD %s: Canonical LXD removed container live migration and stateful container operations in 6.6", v)
	}
	if c.Remote == "" {
		// The CRIU that counts is the one the daemon finds on ITS PATH
		// (Incus' /etc/default/incus puts Debian's broken criu first).
		info, err := criubin.Find(ctx, c.Host, c.daemonCRIU(ctx))
		switch {
		case err != nil:
			caps.Stateful, caps.Why = false, "no CRIU on "+c.Host.Name()+": "+err.Error()
		default:
			caps.CRIU = info.VersionString
			if info.Version.Less(MinCRIU) && caps.Stateful {
				caps.Stateful = false
				caps.Why = fmt.Sprintf("the %s daemon runs CRIU %s (%s) on %s, older than %s, which this kernel needs", c.Product(), info.VersionString, info.Path, c.Host.Name(), MinCRIU)
			}
		}
	}
	return caps, nil
}

// CapabilityError refuses an operation the daemon cannot do.
type CapabilityError struct {
	Op, Why string
}

func (e *CapabilityError) Error() string { return e.Op + " is not possible: " + e.Why }
func (e *CapabilityError) Hint() string {
	return "use Incus or LXD before 6.6 with CRIU 4.2 or later first on the daemon's PATH (scripts/daemons.sh)"
}

// StatefulConfigError is an Incus instance without migration.stateful.
type StatefulConfigError struct {
	Product, Instance string
}

func (e *StatefulConfigError) Error() string {
	return fmt.Sprintf("%s instance %s has migration.stateful unset: stateful snapshots and stops are refused", e.Product, e.Instance)
}
func (e *StatefulConfigError) Hint() string {
	return "stop the instance, then `incus config set " + e.Instance + " migration.stateful=true`"
}

// StatusError is an instance in the wrong state for an operation.
type StatusError struct {
	Instance, Status, Want, Op string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("instance %s is %s; %s needs it %s", e.Instance, e.Status, e.Op, e.Want)
}

// preflight checks the daemon, the capability, the instance's status and,
// for Incus stateful snapshot and stop, migration.stateful.
func (c *Client) preflight(ctx context.Context, op, name, wantStatus string, needStatefulConfig bool) (*Capabilities, *Instance, error) {
	caps, err := c.Probe(ctx)
	if err != nil {
		return nil, nil, err
	}
	if !caps.Stateful {
		return caps, nil, &CapabilityError{Op: op, Why: caps.Why}
	}
	in, err := c.Instance(ctx, name)
	if err != nil {
		return caps, nil, err
	}
	if in.Type != "" && in.Type != "container" {
		return caps, in, fmt.Errorf("instance %s is a %s; ferry drives containers only", name, in.Type)
	}
	if wantStatus != "" && in.Status != wantStatus {
		return caps, in, &StatusError{Instance: name, Status: in.Status, Want: wantStatus, Op: op}
	}
	if needStatefulConfig && c.Kind == migrate.KindIncus && in.ExpandedConfig["migration.stateful"] != "true" {
		return caps, in, &StatefulConfigError{Product: c.Product(), Instance: name}
	}
	return caps, in, nil
}

var errNoSnapshot = errors.New("snapshot has no saved state")

// DaemonCRIU is the criu the daemon on the client's host runs: the first
// on the daemon's PATH, or "" when the daemon process or its environment
// cannot be read.
func (c *Client) DaemonCRIU(ctx context.Context) string { return c.daemonCRIU(ctx) }

// daemonCRIU is the criu the local daemon's PATH finds first, or "" when
// the daemon process or its environment cannot be read (then the caller's
// PATH decides).
func (c *Client) daemonCRIU(ctx context.Context) string {
	name := "lxd"
	if c.Kind == migrate.KindIncus {
		name = "incusd"
	}
	out, err := host.Output(ctx, c.Host, "pgrep", "-o", "-x", name)
	if err != nil {
		return ""
	}
	pid := strings.TrimSpace(string(out))
	env, err := host.ReadFile(ctx, c.Host, "/proc/"+pid+"/environ", 1<<20)
	if err != nil {
		return ""
	}
	for _, kv := range strings.Split(string(env), "\x00") {
		path, ok := strings.CutPrefix(kv, "PATH=")
		if !ok {
			continue
		}
		for _, dir := range strings.Split(path, ":") {
			if dir == "" {
				continue
			}
			if ok, _ := host.Exists(ctx, c.Host, dir+"/criu"); ok {
				return dir + "/criu"
			}
		}
	}
	return ""
}
