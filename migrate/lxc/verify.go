package lxc

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Process is one process inside an instance, as its own /proc shows it.
type Process struct {
	PID     int
	Cmdline string
}

func (p Process) String() string { return strconv.Itoa(p.PID) + " " + p.Cmdline }

// psScript lists the instance's processes from its /proc without ps (which
// differs between busybox and procps): pid, a tab, the command line. A
// process in a stopped state (T, or t: held by a tracer) gets a line
// "stopped", pid, state before it. It leaves out itself and its children
// (tr). A fixed script: no data in it.
const psScript = `for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = $$ ] && continue; ` +
	`read -r s < $d/stat 2>/dev/null || continue; s=${s##*) }; set -- $s; [ "$2" = $$ ] && continue; ` +
	`case $1 in t|T) printf 'stopped\t%s\t%s\n' "$p" "$1";; esac; ` +
	`printf '%s\t' "$p"; tr '\0' ' ' < $d/cmdline 2>/dev/null; echo; done`

// Processes lists the processes running inside an instance.
func (c *Client) Processes(ctx context.Context, name string) ([]Process, error) {
	ps, _, err := c.processes(ctx, name)
	return ps, err
}

// processes lists the processes and the pids of those stopped.
func (c *Client) processes(ctx context.Context, name string) ([]Process, map[int]string, error) {
	res, err := c.Exec(ctx, name, "sh", "-c", psScript)
	if err != nil {
		return nil, nil, fmt.Errorf("list the processes of %s: %w", name, err)
	}
	return parseProcesses(string(res.Stdout)), parseStopped(string(res.Stdout)), nil
}

// parseStopped reads psScript's "stopped" lines: pid -> state.
func parseStopped(out string) map[int]string {
	stopped := map[int]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 || f[0] != "stopped" {
			continue
		}
		if n, err := strconv.Atoi(f[1]); err == nil {
			stopped[n] = f[2]
		}
	}
	return stopped
}

// StoppedError is an instance whose processes are all there but some do
// not run: stopped, or held by a tracer. Measured with LXD 5.0.2: a move
// whose target cannot run CRIU leaves the source's processes seized by the
// source's CRIU dump, which never ends; the instance says Running.
type StoppedError struct {
	Instance, Where string
	Stopped         []Process
}

func (e *StoppedError) Error() string {
	var ps []string
	for _, p := range e.Stopped {
		ps = append(ps, p.String())
	}
	return fmt.Sprintf("instance %s on %s runs, but %d of its processes are stopped or held by a tracer (a CRIU that did not finish?): %s",
		e.Instance, e.Where, len(e.Stopped), strings.Join(ps, "; "))
}
func (e *StoppedError) Hint() string {
	return "look for a criu process still tracing them (TracerPid in /proc/PID/status); the run directory holds the daemons' logs"
}

func parseProcesses(out string) []Process {
	var ps []Process
	for _, line := range strings.Split(out, "\n") {
		pid, cmd, ok := strings.Cut(line, "\t")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(pid))
		if err != nil {
			continue
		}
		ps = append(ps, Process{PID: n, Cmdline: strings.TrimSpace(cmd)})
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].PID < ps[j].PID })
	return ps
}

// StableProcesses lists the processes twice, apart by gap, and keeps those
// in both: the long-lived ones whose survival says the state carried on
// (a counter's short `sleep` children come and go).
func (c *Client) StableProcesses(ctx context.Context, name string, gap time.Duration) ([]Process, error) {
	a, err := c.Processes(ctx, name)
	if err != nil {
		return nil, err
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(gap):
	}
	b, err := c.Processes(ctx, name)
	if err != nil {
		return nil, err
	}
	var out []Process
	for _, p := range a {
		for _, q := range b {
			if p == q {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// encodeProcesses and decodeProcesses keep a process list in a journal note.
func encodeProcesses(ps []Process) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func decodeProcesses(s string) []Process {
	var ps []Process
	for _, line := range strings.Split(s, "\n") {
		pid, cmd, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(pid); err == nil {
			ps = append(ps, Process{PID: n, Cmdline: cmd})
		}
	}
	return ps
}

// LostStateError is an operation that "succeeded" but whose workload did
// not carry on: processes that ran before are gone (a cold start).
type LostStateError struct {
	Instance string
	Missing  []Process
}

func (e *LostStateError) Error() string {
	var ms []string
	for _, p := range e.Missing {
		ms = append(ms, fmt.Sprintf("%d (%s)", p.PID, p.Cmdline))
	}
	return fmt.Sprintf("instance %s runs, but its processes did not carry on (cold start or lost state): missing %s", e.Instance, strings.Join(ms, ", "))
}
func (e *LostStateError) Hint() string {
	return "the daemon reported success but the running state was lost; the CRIU logs in the run directory show what it did"
}

// checkContinuity says whether every process in before runs now.
func checkContinuity(name string, before, now []Process) error {
	var missing []Process
	for _, p := range before {
		found := false
		for _, q := range now {
			if p == q {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return &LostStateError{Instance: name, Missing: missing}
	}
	return nil
}

// WritableError is an instance whose root filesystem cannot be written
// after a restore.
type WritableError struct {
	Product, Instance, Output string
	// Overflow is set when the root directory shows as owned by the
	// overflow uid (65534, nobody): the root mount lost its idmapping.
	Overflow bool
}

func (e *WritableError) Error() string {
	s := fmt.Sprintf("instance %s runs, but its root filesystem is not writable: %s", e.Instance, e.Output)
	if e.Overflow {
		s += " (its files show as uid 65534: the root mount lost its idmapping)"
	}
	return s
}
func (e *WritableError) Hint() string {
	if e.Product == "Incus" {
		return "CRIU 4.2.1 drops the idmapped root mount on restore: start incusd with INCUS_IDMAPPED_MOUNTS_DISABLE=1 (scripts/daemons.sh does)"
	}
	return "check the container's root mount (/proc/1/mountinfo inside it) and the daemon's idmap settings"
}

// checkWritable touches a file in the instance's root directory.
func (c *Client) checkWritable(ctx context.Context, name string) error {
	const probe = "/.ferry-verify-write"
	res, err := c.Exec(ctx, name, "touch", probe)
	if err == nil {
		_, _ = c.Exec(ctx, name, "rm", "-f", probe)
		return nil
	}
	out := strings.TrimSpace(err.Error())
	if res != nil && len(res.Stderr) > 0 {
		out = strings.TrimSpace(string(res.Stderr))
	}
	we := &WritableError{Product: c.Product(), Instance: name, Output: out}
	if st, err := c.Exec(ctx, name, "stat", "-c", "%u", "/bin"); err == nil && strings.TrimSpace(string(st.Stdout)) == "65534" {
		we.Overflow = true
	}
	return we
}

// StatusMismatchError is an instance not in the state an operation should
// have left it in.
type StatusMismatchError struct {
	Instance, Where, Status, Want, After string
}

func (e *StatusMismatchError) Error() string {
	return fmt.Sprintf("after %s, instance %s on %s is %s, not %s", e.After, e.Instance, e.Where, e.Status, e.Want)
}
func (e *StatusMismatchError) Hint() string {
	return "the daemon's exit code said success; ferry trusts the instance's state instead. The run directory holds the daemon's logs"
}

// verifyRunning checks that the instance runs on c, that the processes in
// before carried on and that its root filesystem is writable. It returns
// notes for the journal.
func (c *Client) verifyRunning(ctx context.Context, name, after string, before []Process) (map[string]string, error) {
	notes := map[string]string{}
	st, err := c.State(ctx, name)
	if err != nil {
		return notes, err
	}
	notes["status"] = st.Status
	if st.Status != "Running" {
		return notes, &StatusMismatchError{Instance: name, Where: c.Name(), Status: st.Status, Want: "Running", After: after}
	}
	now, stopped, err := c.processes(ctx, name)
	switch {
	case err != nil && before != nil:
		return notes, err
	case err != nil:
		notes["continuity"] = "not checked: processes cannot be listed: " + err.Error()
	case before == nil:
		notes["processes"] = encodeProcesses(now)
		notes["continuity"] = "not checked: no process list recorded before"
	case len(before) <= 1:
		notes["processes"] = encodeProcesses(now)
		notes["continuity"] = "weak: only init ran before"
		if err := checkContinuity(name, before, now); err != nil {
			return notes, err
		}
	default:
		notes["processes"] = encodeProcesses(now)
		if err := checkContinuity(name, before, now); err != nil {
			return notes, err
		}
		notes["continuity"] = fmt.Sprintf("%d processes carried on", len(before))
	}
	if len(stopped) > 0 {
		se := &StoppedError{Instance: name, Where: c.Name()}
		for _, p := range now {
			if st, ok := stopped[p.PID]; ok {
				se.Stopped = append(se.Stopped, Process{PID: p.PID, Cmdline: p.Cmdline + " (state " + st + ")"})
			}
		}
		return notes, se
	}
	if err := c.checkWritable(ctx, name); err != nil {
		return notes, err
	}
	notes["rootfs"] = "writable"
	return notes, nil
}

// instanceGone checks that a moved instance left the source.
func (c *Client) instanceGone(ctx context.Context, name string) error {
	in, err := c.Instance(ctx, name)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return err
	}
	return fmt.Errorf("instance %s is still on %s (%s) after the move", name, c.Name(), in.Status)
}

// VerifyRunning is the check the runner makes after an operation, on its
// own: the instance runs, the processes of before (a list a run's
// record-processes step noted, see DecodeProcesses) carried on, and its
// root filesystem is writable. The notes say what was checked.
func (c *Client) VerifyRunning(ctx context.Context, name string, before []Process) (map[string]string, error) {
	return c.verifyRunning(ctx, name, "the last operation", before)
}

// DecodeProcesses reads a process list as a journal's record-processes and
// verify steps note it ("processes").
func DecodeProcesses(s string) []Process { return decodeProcesses(s) }
