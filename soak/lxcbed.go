package soak

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferry-migrate/ferry/collect"
	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/lxc"
)

// LXCEnd is one of the two daemons of an LXCBed.
type LXCEnd struct {
	// Host is the end's name in the soak (Hosts, Where, records).
	Host string
	// Client reaches this daemon. A move FROM this end runs this client's
	// CLI (lxc move), so its client configuration must know the other
	// end's remote.
	Client *lxc.Client
	// Remote is this daemon's remote name as the OTHER end's client knows
	// it: the move to this end is `lxc move NAME REMOTE:NAME`.
	Remote string
	// Daemon, when set, runs commands with the daemon's own view of the
	// filesystem (its host over ssh; in tests the daemon's mount
	// namespace). Faults are injected there, and bundles collect host
	// artefacts there (else on Client.Host).
	Daemon host.Host
	// CRIU is the path of the criu the daemon runs, as Daemon sees it;
	// empty means the first criu on the PATH of the daemon process found
	// on Daemon (lxc.Client.DaemonCRIU). FaultCRIUMissing needs Daemon.
	CRIU string
}

// LXCBed is a soak bed made of two LXD or Incus daemons (Kind) that move
// instances between them live with the daemon's own move, journaled and
// verified by migrate/lxc's runner. Workloads are instance names; they must
// exist, running on one of the two daemons, before the soak starts (the bed
// creates none). The daemons' move is a stop-copy: the only mode is
// migrate.ModeStopCopy.
//
// Timings come from the daemon's CRIU logs the runner copies into the run:
// LXD and Incus run the final transfer and the target's restore from CRIU's
// post-dump action script on the source, while the source is frozen, so
// the source's dump log alone spans the downtime (see moveTimings).
type LXCBed struct {
	Kind string
	Ends [2]LXCEnd
	// Store holds the runs' journals and logs.
	Store migrate.Store
	// Command is recorded in every journal.
	Command []string
	// Check, when set, is an extra check of a workload after a move and in
	// Verify (tests check a counter there).
	Check func(ctx context.Context, c *lxc.Client, name string) error
	// Collectors are added to every bug-report bundle (ferry's CLI adds
	// the host facts).
	Collectors []collect.Collector
	// Ferry is the version written in bundles.
	Ferry string
	Now   func() time.Time

	mu sync.Mutex
	// baseline holds, per workload, the processes that must carry on: the
	// list the last move recorded before it ran, or the first Verify's.
	baseline map[string][]lxc.Process
}

var _ Bed = (*LXCBed)(nil)

// NewLXCBed returns the bed of two daemons of kind (migrate.KindLXD or
// migrate.KindIncus) whose runs go into store.
func NewLXCBed(kind string, a, b LXCEnd, store migrate.Store) (*LXCBed, error) {
	if kind != migrate.KindLXD && kind != migrate.KindIncus {
		return nil, fmt.Errorf("soak bed: %q is not lxd or incus", kind)
	}
	for _, e := range []LXCEnd{a, b} {
		switch {
		case e.Host == "":
			return nil, errors.New("soak bed: an end without a host name")
		case e.Client == nil || e.Client.Kind != kind:
			return nil, fmt.Errorf("soak bed: end %s has no %s client", e.Host, kind)
		case e.Remote == "":
			return nil, fmt.Errorf("soak bed: end %s has no remote name", e.Host)
		}
	}
	if a.Host == b.Host {
		return nil, fmt.Errorf("soak bed: both ends are named %s", a.Host)
	}
	return &LXCBed{Kind: kind, Ends: [2]LXCEnd{a, b}, Store: store, baseline: map[string][]lxc.Process{}}, nil
}

func (b *LXCBed) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

func (b *LXCBed) end(name string) (*LXCEnd, error) {
	for i := range b.Ends {
		if b.Ends[i].Host == name {
			return &b.Ends[i], nil
		}
	}
	return nil, fmt.Errorf("soak bed: no host %q (hosts: %s, %s)", name, b.Ends[0].Host, b.Ends[1].Host)
}

// Hosts are the two ends' names.
func (b *LXCBed) Hosts() []string { return []string{b.Ends[0].Host, b.Ends[1].Host} }

// Faults are the faults this bed injects: criu-missing when both ends have
// Daemon set. The daemons run CRIU and carry the images themselves, so the
// bed has no honest way yet to cut the transfer link, kill ferry mid-dump
// (ferry does not dump) or fill the daemon's image directory.
func (b *LXCBed) Faults() []string {
	for _, e := range b.Ends {
		if e.Daemon == nil {
			return nil
		}
	}
	return []string{FaultCRIUMissing}
}

// Where returns the end whose daemon has the instance Running; an
// instance running on both or neither is an error.
func (b *LXCBed) Where(ctx context.Context, workload string) (string, error) {
	var running, seen []string
	for _, e := range b.Ends {
		st, err := e.Client.State(ctx, workload)
		if err != nil {
			if errors.Is(err, lxc.ErrNotFound) {
				continue
			}
			return "", err
		}
		seen = append(seen, e.Host+" ("+st.Status+")")
		if st.Status == "Running" {
			running = append(running, e.Host)
		}
	}
	switch len(running) {
	case 1:
		return running[0], nil
	case 0:
		if len(seen) == 0 {
			return "", fmt.Errorf("%s is on neither %s nor %s", workload, b.Ends[0].Host, b.Ends[1].Host)
		}
		return "", fmt.Errorf("%s runs nowhere: %s", workload, strings.Join(seen, ", "))
	}
	return "", fmt.Errorf("%s runs on both %s", workload, strings.Join(running, " and "))
}

// Move moves the instance with the runner's OpMove and fills rec from the
// journal. A failed move is recorded (Exit 4, or 1 when refused at
// preflight, with its bundle); only a broken bed returns an error, a fault
// that could not be undone included.
func (b *LXCBed) Move(ctx context.Context, m MoveSpec, rec *Record) (err error) {
	from, err := b.end(m.From)
	if err != nil {
		return err
	}
	to, err := b.end(m.To)
	if err != nil {
		return err
	}
	if m.Mode != "" && m.Mode != migrate.ModeStopCopy {
		return fmt.Errorf("soak bed: %s moves are the daemon's own stop-copy; mode %s is not available", b.Kind, m.Mode)
	}
	if m.Fault != "" {
		undo, note, err := b.inject(ctx, m.Fault, to)
		if err != nil {
			return err
		}
		rec.Note = note
		defer func() {
			if uerr := undo(); uerr != nil {
				rec.Note += "; undoing the fault failed: " + uerr.Error()
				if err == nil {
					err = fmt.Errorf("soak bed: undo %s on %s: %w", m.Fault, to.Host, uerr)
				}
			}
		}()
	}
	r := &lxc.Runner{Store: b.Store, Command: b.Command, Now: b.Now}
	j, err := r.Run(ctx, lxc.Op{Kind: lxc.OpMove, Client: from.Client, Instance: m.Workload,
		Dest: to.Client, DestRemote: to.Remote, Check: b.Check})
	if j == nil {
		// No journal: the run store itself failed.
		return fmt.Errorf("soak bed: %w", err)
	}
	rec.RunID = j.ID
	b.remember(m.Workload, j)
	timings(b.Store.RunDir(j.ID), j, rec)
	if err == nil {
		rec.Exit = exit.OK
		return nil
	}
	rec.Exit = exit.Migration
	var op *migrate.OpError
	if errors.As(err, &op) && op.Step == migrate.StepPreflight {
		rec.Exit = exit.Failure
	}
	rec.Error = err.Error()
	var f *migrate.Failure
	if errors.As(err, &f) {
		rec.Lifted = f.Lifted
	}
	if rec.Exit == exit.Migration {
		p, berr := b.Bundle(ctx, j.ID)
		if berr != nil {
			rec.Note = strings.TrimPrefix(rec.Note+"; no bundle: "+berr.Error(), "; ")
		}
		rec.Bundle = p
	}
	return nil
}

// remember keeps the processes the move recorded before it ran: after the
// move, or after its rollback, those must carry on.
func (b *LXCBed) remember(workload string, j *migrate.Journal) {
	for _, s := range j.Steps {
		if s.Name == lxc.StepRecord && s.Result == migrate.StepOK {
			if ps := lxc.DecodeProcesses(s.Notes["processes"]); len(ps) > 0 {
				b.mu.Lock()
				b.baseline[workload] = ps
				b.mu.Unlock()
			}
		}
	}
}

// Verify finds where the instance runs and makes the runner's check there:
// running, the processes recorded before the last move carried on (the
// first Verify of a workload records them), root filesystem writable, then
// Check.
func (b *LXCBed) Verify(ctx context.Context, workload string) (string, error) {
	where, err := b.Where(ctx, workload)
	if err != nil {
		return "", err
	}
	e, _ := b.end(where)
	b.mu.Lock()
	before := b.baseline[workload]
	b.mu.Unlock()
	if before == nil {
		ps, err := e.Client.StableProcesses(ctx, workload, 400*time.Millisecond)
		if err != nil {
			return "", err
		}
		b.mu.Lock()
		b.baseline[workload] = ps
		b.mu.Unlock()
		before = ps
	}
	if _, err := e.Client.VerifyRunning(ctx, workload, before); err != nil {
		return "", err
	}
	if b.Check != nil {
		if err := b.Check(ctx, e.Client, workload); err != nil {
			return "", err
		}
	}
	return where, nil
}

// Bundle collects the run's bug-report bundle from both ends, the run's
// source first.
func (b *LXCBed) Bundle(ctx context.Context, runID string) (string, error) {
	j, err := b.Store.Load(runID)
	if err != nil {
		return "", err
	}
	src, dst := b.Ends[0], b.Ends[1]
	if j.Source == dst.Client.Name() {
		src, dst = dst, src
	}
	hostOf := func(e LXCEnd) host.Host {
		if e.Daemon != nil {
			return e.Daemon
		}
		return e.Client.Host
	}
	targets := []collect.Target{{Host: hostOf(src), Role: collect.RoleSource}, {Host: hostOf(dst), Role: collect.RoleTarget}}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	p, err := collect.ForRun(ctx, targets, b.Store, runID, collect.Options{Now: b.Now, Ferry: b.Ferry}, b.Collectors...)
	var partial *collect.PartialError
	if err != nil && errors.As(err, &partial) {
		return p, nil // incomplete, still a bundle
	}
	return p, err
}

// inject sets a fault up on the target end and returns its undo.
func (b *LXCBed) inject(ctx context.Context, fault string, to *LXCEnd) (func() error, string, error) {
	switch fault {
	case FaultCRIUMissing:
		if to.Daemon == nil {
			return nil, "", fmt.Errorf("soak bed: %s needs the target's daemon host", fault)
		}
		path := to.CRIU
		if path == "" {
			path = (&lxc.Client{Host: to.Daemon, Kind: b.Kind}).DaemonCRIU(ctx)
		}
		if path == "" {
			return nil, "", fmt.Errorf("soak bed: %s: cannot tell which criu the %s daemon on %s runs", fault, b.Kind, to.Host)
		}
		return criuMissing(ctx, to.Daemon, to.Host, path)
	}
	return nil, "", fmt.Errorf("soak bed: %s daemons cannot have fault %q injected (only %s)", b.Kind, fault, strings.Join(b.Faults(), ", "))
}

// criuMissingScript stands in for the target daemon's criu.
const criuMissingScript = "#!/bin/sh\necho 'ferry soak: injected fault criu-missing: CRIU does not run on this host' >&2\nexit 1\n"

// criuMissing binds a script that fails over the criu the target daemon
// runs, where the daemon sees it (its mount namespace or host); the
// daemon's restore then cannot run CRIU. The undo unmounts it and removes
// the script.
func criuMissing(ctx context.Context, h host.Host, name, criu string) (func() error, string, error) {
	script := "/tmp/ferry-soak-fault-criu-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if _, err := h.Run(ctx, []string{"tee", script}, host.RunOptions{Stdin: strings.NewReader(criuMissingScript)}); err != nil {
		return nil, "", fmt.Errorf("soak bed: fault %s: %w", FaultCRIUMissing, err)
	}
	rm := func() error {
		_, err := h.Run(context.WithoutCancel(ctx), []string{"rm", "-f", script}, host.RunOptions{})
		return err
	}
	if _, err := h.Run(ctx, []string{"chmod", "755", script}, host.RunOptions{}); err != nil {
		_ = rm()
		return nil, "", fmt.Errorf("soak bed: fault %s: %w", FaultCRIUMissing, err)
	}
	if _, err := h.Run(ctx, []string{"mount", "--bind", script, criu}, host.RunOptions{}); err != nil {
		_ = rm()
		return nil, "", fmt.Errorf("soak bed: fault %s: %w", FaultCRIUMissing, err)
	}
	undo := func() error {
		_, err := h.Run(context.WithoutCancel(ctx), []string{"umount", criu}, host.RunOptions{})
		return errors.Join(err, rm())
	}
	return undo, fmt.Sprintf("%s: %s on %s replaced by a script that fails", FaultCRIUMissing, criu, name), nil
}

// timings fills rec's timings from the move step and the CRIU logs the
// runner copied into the run directory (see moveTimings).
func timings(runDir string, j *migrate.Journal, rec *Record) {
	var step *migrate.Step
	for i := range j.Steps {
		if j.Steps[i].Name == lxc.OpMove {
			step = &j.Steps[i]
		}
	}
	if step == nil {
		return
	}
	var dumpLog, restoreLog string
	for _, v := range step.Notes {
		rel, _, _ := strings.Cut(v, " <- ")
		base := filepath.Base(rel)
		switch {
		case strings.HasPrefix(base, "source-migration_dump_"):
			dumpLog = filepath.Join(runDir, rel)
		case strings.HasPrefix(base, "target-migration_restore_"):
			restoreLog = filepath.Join(runDir, rel)
		}
	}
	read := func(p string) string {
		if p == "" {
			return ""
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return ""
		}
		return string(b)
	}
	t := moveTimings(read(dumpLog), read(restoreLog))
	if j.Result != migrate.RunOK {
		t.Downtime = 0 // the move did not complete
	}
	rec.Downtime, rec.Frozen, rec.Dump, rec.Transfer, rec.Restore = t.Downtime, t.Frozen, t.Dump, t.Transfer, t.Restore
}

// moveTiming holds the durations read from a daemon move's CRIU logs.
type moveTiming struct {
	Downtime, Frozen, Dump, Transfer, Restore time.Duration
}

// moveTimings reads a daemon move's timings from the source's dump log and
// the target's restore log (CRIU's "(SS.ssssss)" stamps, relative to each
// CRIU's start). LXD and Incus dump with a post-dump action script that
// sends the images, has the target restore them and returns when it did;
// only then does the source CRIU end ("Unfreezing tasks", the source's
// tasks killed). So, in the source's log:
//
//   - Dump: CRIU's start to "Running post-dump scripts" (images written);
//   - Frozen and Downtime: the first "freezing" line to the end of the log:
//     the workload is frozen on the source until the target resumed it
//     (the target's own reply included: an upper bound by the time the
//     reply takes);
//   - Restore: the target's log, its start to "Restore finished";
//   - Transfer: the post-dump script's time less Restore (the images' final
//     sync and the daemons' protocol).
//
// A missing marker leaves the durations that need it 0.
func moveTimings(dumpLog, restoreLog string) moveTiming {
	var t moveTiming
	var freeze, postDump, end time.Duration = -1, -1, -1
	for _, line := range strings.Split(dumpLog, "\n") {
		ts, ok := criuStamp(line)
		if !ok {
			continue
		}
		end = ts
		switch {
		case freeze < 0 && strings.Contains(strings.ToLower(line), "freezing"):
			freeze = ts
		case postDump < 0 && strings.Contains(line, "Running post-dump scripts"):
			postDump = ts
		}
	}
	for _, line := range strings.Split(restoreLog, "\n") {
		if ts, ok := criuStamp(line); ok && strings.Contains(line, "Restore finished") {
			t.Restore = ts
		}
	}
	if postDump >= 0 {
		t.Dump = postDump
		if end > postDump && t.Restore > 0 && end-postDump > t.Restore {
			t.Transfer = end - postDump - t.Restore
		}
	}
	if freeze >= 0 && end > freeze {
		t.Frozen = end - freeze
		t.Downtime = t.Frozen
	}
	return t
}

// criuStamp reads the "(SS.ssssss)" time a CRIU log line starts with.
func criuStamp(line string) (time.Duration, bool) {
	if len(line) < 3 || line[0] != '(' {
		return 0, false
	}
	stamp, _, ok := strings.Cut(line[1:], ")")
	if !ok {
		return 0, false
	}
	sec, frac, ok := strings.Cut(stamp, ".")
	if !ok {
		return 0, false
	}
	s, err1 := strconv.Atoi(sec)
	us, err2 := strconv.Atoi(frac)
	if err1 != nil || err2 != nil || len(frac) != 6 {
		return 0, false
	}
	return time.Duration(s)*time.Second + time.Duration(us)*time.Microsecond, true
}
