// Package zoo holds the testbed's workloads: small programs, modelled on
// CRIU's ZDTM test categories, that each exercise one kind of kernel state
// and check it themselves.
//
// Every workload runs as PID 1 of its own namespaces inside a testbed
// rootfs (the launcher copies the static ferry binary there and runs
// `/ferry testbed __zoo NAME ARGS...`). Each tick (StatusInterval) it checks
// its state and rewrites StatusFile atomically with a counter that only
// grows, and OK=false with a detail once a check failed (failures are
// sticky: a workload that once saw broken state never reports healthy
// again). `ferry testbed verify` reads that file from outside: the counter
// must advance (the workload runs), OK must hold (its state is intact) and
// the counter must not go below what verify saw before (a restore continued
// the process instead of restarting it).
package zoo

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// StatusFile is where a workload writes its Status, inside its rootfs.
const StatusFile = "/status.json"

// StatusInterval is how often a workload checks itself and writes Status.
const StatusInterval = 200 * time.Millisecond

// Status is what a workload reports about itself.
type Status struct {
	Workload string `json:"workload"`
	// Pid is the workload's pid inside its own pid namespace (1).
	Pid int `json:"pid"`
	// Counter grows by one per tick whose checks ran.
	Counter uint64 `json:"counter"`
	OK      bool   `json:"ok"`
	// Detail says what was checked, or what failed.
	Detail string    `json:"detail"`
	Time   time.Time `json:"time"`
	// Addr is the start of the memory the workload guards, where it has
	// one (the mem workload): tests corrupt it through /proc/PID/mem.
	Addr uint64 `json:"addr,omitempty"`
}

// ReadStatus reads a Status file.
func ReadStatus(path string) (Status, error) {
	var s Status
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("parse %s: %w", path, err)
	}
	return s, nil
}

// Workload is one zoo program.
type Workload struct {
	Name    string
	Summary string
	// Category is the ZDTM area it stands for.
	Category string
	// Net is true when the workload uses the network (tcp): it needs its
	// own network namespace or a client.
	Net bool
	run func(ctx context.Context, r *reporter, args []string) error
}

var workloads = map[string]*Workload{}

func register(w *Workload) { workloads[w.Name] = w }

// Lookup finds a workload by name.
func Lookup(name string) (*Workload, bool) {
	w, ok := workloads[name]
	return w, ok
}

// Names lists the workloads, sorted.
func Names() []string {
	var n []string
	for k := range workloads {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// All lists the workloads, sorted by name.
func All() []*Workload {
	var all []*Workload
	for _, n := range Names() {
		all = append(all, workloads[n])
	}
	return all
}

// Run runs workload name until ctx ends or it cannot continue. It writes
// its status into dir/StatusFile (dir is "/" inside a testbed rootfs).
func Run(ctx context.Context, dir, name string, args []string) error {
	if name == treeNode {
		return runTreeNode(ctx, args)
	}
	w, ok := workloads[name]
	if !ok {
		return fmt.Errorf("unknown zoo workload %q (known: %v)", name, Names())
	}
	r := &reporter{path: filepath.Join(dir, StatusFile), st: Status{Workload: name, Pid: os.Getpid(), OK: true}}
	return w.run(ctx, r, args)
}

// reporter keeps and writes a workload's Status.
type reporter struct {
	path string
	st   Status
}

// tick records one round of checks: err == nil bumps the counter, an error
// marks the workload failed for good.
func (r *reporter) tick(detail string, err error) error {
	if err != nil && r.st.OK {
		r.st.OK = false
		r.st.Detail = err.Error()
	}
	if r.st.OK {
		r.st.Counter++
		r.st.Detail = detail
	}
	return r.write()
}

// idle rewrites the status without counting a round.
func (r *reporter) idle(detail string) error {
	if r.st.OK {
		r.st.Detail = detail
	}
	return r.write()
}

func (r *reporter) write() error {
	r.st.Time = time.Now().UTC()
	b, merr := json.Marshal(r.st)
	if merr != nil {
		return merr
	}
	tmp := r.path + ".tmp"
	if werr := os.WriteFile(tmp, b, 0o644); werr != nil {
		return werr
	}
	return os.Rename(tmp, r.path)
}

// loop calls check every StatusInterval and reports its outcome.
func (r *reporter) loop(ctx context.Context, check func() (string, error)) error {
	t := time.NewTicker(StatusInterval)
	defer t.Stop()
	for {
		detail, err := check()
		if werr := r.tick(detail, err); werr != nil {
			return fmt.Errorf("write status: %w", werr)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
