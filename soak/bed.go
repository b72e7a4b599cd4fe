package soak

import "context"

// Bed is where a soak runs: its hosts, the workloads on them, and how to
// move, check and break them. The testbed (native CRIU) and pairs of LXD or
// Incus daemons are beds. The runner owns the plan, the order and the
// records; a bed owns everything runtime-specific, faults included.
type Bed interface {
	// Hosts are the bed's hosts, in round-robin order.
	Hosts() []string
	// Where returns the host a workload runs on now.
	Where(ctx context.Context, workload string) (string, error)
	// Move migrates m.Workload from m.From to m.To in m.Mode, injecting
	// m.Fault (if any) and undoing the fault's setup before it returns. It
	// fills rec's RunID, Exit, timings, sizes, Error, Lifted and Bundle
	// (a failed move gets its bug-report bundle) and Note (what the fault
	// did). An error means the bed itself broke (not the move) and stops
	// the soak.
	Move(ctx context.Context, m MoveSpec, rec *Record) error
	// Verify checks the workload wherever it runs and returns that host.
	Verify(ctx context.Context, workload string) (string, error)
	// Bundle makes the bug-report bundle of a run whose move reported
	// success but whose workload then failed its check.
	Bundle(ctx context.Context, runID string) (string, error)
	// Faults lists the faults the bed can inject.
	Faults() []string
}

// MoveSpec is one move the runner asks of a bed.
type MoveSpec struct {
	Iteration int
	Workload  string
	From, To  string
	Mode      string
	Fault     string
}
