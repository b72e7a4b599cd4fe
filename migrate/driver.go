// Package migrate runs checkpoint, restore and migration as a journal of
// timed steps with rollback. Drivers do the runtime-specific work: native
// CRIU (through go-criu), LXD and Incus.
package migrate

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Target kinds.
const (
	KindPID     = "pid"
	KindTestbed = "testbed"
	KindLXD     = "lxd"
	KindIncus   = "incus"
)

// Target names a workload.
type Target struct {
	Kind   string
	PID    int    // pid:N
	Name   string // testbed:NAME, lxd:NAME, incus:NAME
	Remote string // lxd:REMOTE:NAME
}

func (t Target) String() string {
	switch {
	case t.Kind == KindPID:
		return "pid:" + strconv.Itoa(t.PID)
	case t.Remote != "":
		return t.Kind + ":" + t.Remote + ":" + t.Name
	}
	return t.Kind + ":" + t.Name
}

var targetName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// TargetError is a target spec ferry cannot parse: a usage error.
type TargetError struct{ Spec, Reason string }

func (e *TargetError) Error() string { return fmt.Sprintf("target %q: %s", e.Spec, e.Reason) }
func (e *TargetError) Hint() string {
	return "a target is pid:N (a process tree), testbed:NAME, lxd:[remote:]NAME or incus:[remote:]NAME"
}

// ParseTarget parses pid:N, testbed:NAME, lxd:[remote:]NAME, incus:[remote:]NAME.
func ParseTarget(s string) (Target, error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok || rest == "" {
		return Target{}, &TargetError{s, "missing kind or name"}
	}
	switch kind {
	case KindPID:
		n, err := strconv.Atoi(rest)
		if err != nil || n < 1 {
			return Target{}, &TargetError{s, "pid must be a positive number"}
		}
		return Target{Kind: kind, PID: n}, nil
	case KindTestbed:
		if !targetName.MatchString(rest) {
			return Target{}, &TargetError{s, "bad workload name"}
		}
		return Target{Kind: kind, Name: rest}, nil
	case KindLXD, KindIncus:
		remote, name, hasRemote := strings.Cut(rest, ":")
		if !hasRemote {
			name, remote = remote, ""
		}
		if !targetName.MatchString(name) || (hasRemote && !targetName.MatchString(remote)) {
			return Target{}, &TargetError{s, "bad instance or remote name"}
		}
		return Target{Kind: kind, Name: name, Remote: remote}, nil
	}
	return Target{}, &TargetError{s, "unknown kind " + strconv.Quote(kind)}
}

// Driver checkpoints and restores workloads of one runtime.
//
// Checkpoint: on error the workload is left as it was (CRIU resumes a tree
// it failed to dump); on success it is stopped, unless LeaveRunning or
// LeaveStopped asked otherwise. Restore: on error nothing of the restored
// tree is left running. Both are safe to cancel through ctx with the same
// guarantees.
type Driver interface {
	Name() string
	Checkpoint(ctx context.Context, req CheckpointRequest) (*CheckpointResult, error)
	Restore(ctx context.Context, req RestoreRequest) (*RestoreResult, error)
}

// Preflighter is implemented by drivers that can refuse a checkpoint before
// anything is frozen (a missing pid, a thread, a tree CRIU cannot dump).
type Preflighter interface {
	PreflightCheckpoint(ctx context.Context, req CheckpointRequest) error
}

// CheckpointRequest asks for one dump.
type CheckpointRequest struct {
	Target    Target
	ImagesDir string
	// LogDir receives the CRIU log (dump.log); empty means ImagesDir.
	LogDir         string
	LeaveRunning   bool
	LeaveStopped   bool
	TCPEstablished bool
	ShellJob       bool
	// NetworkLock is "nftables" (the default: no iptables binaries on
	// many hosts), "iptables" or "skip".
	NetworkLock string
	External    []string
	// PageServer, when set, sends memory pages to CRIU's page server on
	// the target instead of into ImagesDir.
	PageServer *PageServer `json:",omitempty"`
}

// PageServer is where a CRIU page server listens.
type PageServer struct {
	Address string
	Port    int
}

// CheckpointResult describes a finished dump.
type CheckpointResult struct {
	Log    string // path of the CRIU log
	Stats  Stats
	Frozen time.Time // when the tree was frozen (ferry's clock)
}

// RestoreRequest asks for one restore.
type RestoreRequest struct {
	ImagesDir      string
	LogDir         string
	Root           string
	TCPEstablished bool
	ShellJob       bool
	NetworkLock    string
	External       []string
}

// RestoreResult describes a restored tree.
type RestoreResult struct {
	PID   int
	Log   string
	Stats Stats
	// Fixups are the changes made to the images to work around known
	// CRIU defects before the restore, one line each.
	Fixups []string `json:",omitempty"`
}

// Failure is a driver error that carries the CRIU log and the lines lifted
// from it, so the journal and the user see the cause, not CRIU's summary.
type Failure struct {
	Op     string
	Log    string
	Lifted []string
	Err    error
}

func (f *Failure) Error() string {
	if len(f.Lifted) > 0 {
		return "criu " + f.Op + ": " + f.Lifted[0]
	}
	return "criu " + f.Op + ": " + strings.Join(strings.Fields(f.Err.Error()), " ")
}

func (f *Failure) Unwrap() error { return f.Err }

func (f *Failure) Hint() string {
	if f.Log != "" {
		return "the CRIU log is " + f.Log + "; `ferry explain " + f.Log + "` names known causes"
	}
	return ""
}
