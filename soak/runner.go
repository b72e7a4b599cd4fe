package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-migrate/ferry/migrate"
)

// ModeAlternate alternates stop-copy (odd iterations) and page-server (even
// iterations).
const ModeAlternate = "alternate"

// Injection is one fault planned for one iteration; Workload empty means
// the first workload of that iteration's round.
type Injection struct {
	Fault     string `json:"fault"`
	Iteration int    `json:"iteration"`
	Workload  string `json:"workload,omitempty"`
}

// InjectError is an --inject item ferry cannot parse.
type InjectError struct{ Item, Reason string }

func (e *InjectError) Error() string { return fmt.Sprintf("--inject %q: %s", e.Item, e.Reason) }
func (e *InjectError) Hint() string {
	return "an item is FAULT, FAULT@ITERATION or FAULT@ITERATION:WORKLOAD, or all; faults: " + strings.Join(AllFaults, ", ")
}

// ParseInject parses --inject items: "all" (every fault once, at random
// iterations), FAULT (at a random iteration), FAULT@N (at iteration N) and
// FAULT@N:WORKLOAD. Random iterations are drawn from 2..iterations (the
// first iteration is the clean baseline) with rng; with no iteration count
// (a --duration soak) they go at iterations 2, 3, ... in order.
func ParseInject(items []string, iterations int, rng *rand.Rand) ([]Injection, error) {
	var out []Injection
	var random []string
	for _, it := range items {
		it = strings.TrimSpace(it)
		if it == "" {
			continue
		}
		if it == "all" {
			random = append(random, AllFaults...)
			continue
		}
		fault, at, hasAt := strings.Cut(it, "@")
		if !known(fault) {
			return nil, &InjectError{it, "unknown fault " + strconv.Quote(fault)}
		}
		if !hasAt {
			random = append(random, fault)
			continue
		}
		n, workload, _ := strings.Cut(at, ":")
		i, err := strconv.Atoi(n)
		if err != nil || i < 1 || (iterations > 0 && i > iterations) {
			return nil, &InjectError{it, fmt.Sprintf("iteration must be 1..%d", max(iterations, 1))}
		}
		out = append(out, Injection{Fault: fault, Iteration: i, Workload: workload})
	}
	next := 2
	for _, f := range random {
		i := next
		if iterations >= 2 {
			i = 2 + rng.IntN(iterations-1)
		} else if iterations == 1 {
			i = 1
		}
		next++
		out = append(out, Injection{Fault: f, Iteration: i})
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Iteration < out[b].Iteration })
	return out, nil
}

func known(f string) bool {
	for _, k := range AllFaults {
		if k == f {
			return true
		}
	}
	return false
}

// Runner runs a soak on a bed.
type Runner struct {
	Bed       Bed
	Workloads []string
	// Iterations bounds the soak; Duration bounds it in time (an iteration
	// that started finishes). At least one must be set.
	Iterations int
	Duration   time.Duration
	// Mode is migrate.ModeStopCopy, migrate.ModePageServer or
	// ModeAlternate.
	Mode      string
	Inject    []Injection
	KeepGoing bool
	Runtime   string
	// OnRecord sees every record as it is made (JSON lines, progress).
	OnRecord func(Record)
	Now      func() time.Time
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Run soaks until the iterations or the duration are done, a move fails
// (unless KeepGoing), or ctx ends. The result is complete in every case; the
// error is set only when the bed itself broke.
func (r *Runner) Run(ctx context.Context) (*Result, error) {
	if r.Iterations <= 0 && r.Duration <= 0 {
		return nil, errors.New("soak: give --iterations or --duration")
	}
	if len(r.Workloads) == 0 {
		return nil, errors.New("soak: no workloads")
	}
	hosts := r.Bed.Hosts()
	if len(hosts) < 2 {
		return nil, fmt.Errorf("soak: needs two hosts or more, has %d", len(hosts))
	}
	supported := map[string]bool{}
	for _, f := range r.Bed.Faults() {
		supported[f] = true
	}
	for _, in := range r.Inject {
		if !supported[in.Fault] {
			return nil, &InjectError{in.Fault, "this runtime cannot inject it (it can: " + strings.Join(r.Bed.Faults(), ", ") + ")"}
		}
		if in.Workload != "" && !contains(r.Workloads, in.Workload) {
			return nil, &InjectError{in.Fault + "@" + strconv.Itoa(in.Iteration) + ":" + in.Workload, "no such workload in this soak (" + strings.Join(r.Workloads, ", ") + ")"}
		}
	}
	res := &Result{Summary: Summary{Runtime: r.Runtime, Mode: r.Mode, Hosts: hosts, Started: r.now()}}
	finish := func(err error) (*Result, error) {
		res.Summary.Ended = r.now()
		res.Summary = Summarize(res.Summary, res.Records)
		return res, err
	}
	where := map[string]string{}
	for _, w := range r.Workloads {
		h, err := r.Bed.Where(ctx, w)
		if err != nil {
			return finish(fmt.Errorf("soak: workload %s: %w", w, err))
		}
		where[w] = h
	}
	lost := map[string]bool{}
	pending := append([]Injection(nil), r.Inject...)
	deadline := time.Time{}
	if r.Duration > 0 {
		deadline = res.Summary.Started.Add(r.Duration)
	}
	for it := 1; r.Iterations <= 0 || it <= r.Iterations; it++ {
		if !deadline.IsZero() && !r.now().Before(deadline) {
			break
		}
		if err := ctx.Err(); err != nil {
			res.Summary.Stopped = "interrupted in iteration " + strconv.Itoa(it)
			break
		}
		res.Summary.Iterations = it
		faults := r.faultsFor(it, &pending)
		for _, w := range r.Workloads {
			if lost[w] {
				continue
			}
			if ctx.Err() != nil {
				break
			}
			m := MoveSpec{Iteration: it, Workload: w, From: where[w], To: nextHost(hosts, where[w]), Mode: r.modeFor(it), Fault: faults[w]}
			if m.Fault == FaultLinkCut {
				// The link is cut while pages stream to the page server.
				m.Mode = migrate.ModePageServer
			}
			rec, err := r.move(ctx, m)
			if err != nil {
				res.Records = append(res.Records, rec)
				return finish(err)
			}
			if rec.VerifiedOn != "" {
				where[w] = rec.VerifiedOn
			}
			if rec.Outcome == OutcomeLost {
				lost[w] = true
			}
			res.Records = append(res.Records, rec)
			if r.OnRecord != nil {
				r.OnRecord(rec)
			}
			if (rec.Outcome == OutcomeFailed || rec.Outcome == OutcomeLost) && !r.KeepGoing {
				res.Summary.Stopped = fmt.Sprintf("iteration %d: %s %s; --keep-going goes on after failures", it, w, rec.Outcome)
				return finish(nil)
			}
		}
		if len(lost) == len(r.Workloads) {
			res.Summary.Stopped = "every workload is lost"
			break
		}
	}
	for _, in := range pending {
		if in.Iteration <= res.Summary.Iterations {
			continue
		}
		// A --duration soak ended before a planned fault: say so.
		if res.Summary.Stopped == "" && r.Iterations <= 0 {
			res.Summary.Stopped = fmt.Sprintf("the soak ended before iteration %d, where %s was planned", in.Iteration, in.Fault)
		}
	}
	return finish(nil)
}

// faultsFor takes the injections planned for iteration it off pending and
// assigns each to a workload (the one named, else the first free one).
// Injections that find no free workload move to the next iteration.
func (r *Runner) faultsFor(it int, pending *[]Injection) map[string]string {
	out := map[string]string{}
	var due, rest []Injection
	for _, in := range *pending {
		if in.Iteration > it {
			rest = append(rest, in)
		} else {
			due = append(due, in)
		}
	}
	// Injections that name their workload go first.
	sort.SliceStable(due, func(a, b int) bool { return due[a].Workload != "" && due[b].Workload == "" })
	for _, in := range due {
		w := in.Workload
		if w == "" {
			for _, cand := range r.Workloads {
				if out[cand] == "" {
					w = cand
					break
				}
			}
		}
		if w == "" || out[w] != "" || !contains(r.Workloads, w) {
			in.Iteration = it + 1
			rest = append(rest, in)
			continue
		}
		out[w] = in.Fault
	}
	*pending = rest
	return out
}

func (r *Runner) modeFor(it int) string {
	switch r.Mode {
	case ModeAlternate:
		if it%2 == 0 {
			return migrate.ModePageServer
		}
		return migrate.ModeStopCopy
	case "":
		return migrate.ModeStopCopy
	}
	return r.Mode
}

// move runs one move and its check and classifies the outcome.
func (r *Runner) move(ctx context.Context, m MoveSpec) (Record, error) {
	rec := Record{Iteration: m.Iteration, Workload: m.Workload, From: m.From, To: m.To, Mode: m.Mode, Fault: m.Fault, Start: r.now()}
	if err := r.Bed.Move(ctx, m, &rec); err != nil {
		rec.Outcome, rec.Error = OutcomeFailed, err.Error()
		return rec, fmt.Errorf("soak: iteration %d, %s: %w", m.Iteration, m.Workload, err)
	}
	// The workload must pass its check wherever it ended up; a second try
	// rules out a check that raced the restore.
	on, verr := r.Bed.Verify(context.WithoutCancel(ctx), m.Workload)
	if verr != nil {
		time.Sleep(time.Second)
		on, verr = r.Bed.Verify(context.WithoutCancel(ctx), m.Workload)
	}
	rec.Duration = r.now().Sub(rec.Start)
	if verr != nil {
		rec.Outcome = OutcomeLost
		rec.Error = joinNonEmpty(rec.Error, "check after the move: "+verr.Error())
	} else {
		rec.VerifiedOn = on
		moved := rec.Exit == 0
		switch {
		case m.Fault != "":
			rec.Outcome = OutcomeSurvived
			if moved && rec.Note == "" {
				rec.Note = "the move succeeded despite the fault"
			}
		case !moved:
			rec.Outcome = OutcomeFailed
		case on != m.To:
			rec.Outcome = OutcomeFailed
			rec.Error = joinNonEmpty(rec.Error, fmt.Sprintf("the move reported success but %s runs on %s", m.Workload, on))
		default:
			rec.Outcome = OutcomeOK
		}
	}
	if (rec.Outcome == OutcomeFailed || rec.Outcome == OutcomeLost) && rec.Bundle == "" && rec.RunID != "" {
		if p, err := r.Bed.Bundle(context.WithoutCancel(ctx), rec.RunID); err == nil {
			rec.Bundle = p
		} else {
			rec.Note = joinNonEmpty(rec.Note, "no bundle: "+err.Error())
		}
	}
	return rec, nil
}

func nextHost(hosts []string, from string) string {
	for i, h := range hosts {
		if h == from {
			return hosts[(i+1)%len(hosts)]
		}
	}
	return hosts[0]
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func joinNonEmpty(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// ProgressLine is the one-line account of a record for stderr.
func ProgressLine(w io.Writer, rec Record, total int) {
	of := ""
	if total > 0 {
		of = "/" + strconv.Itoa(total)
	}
	line := fmt.Sprintf("[%d%s] %s %s -> %s (%s)", rec.Iteration, of, rec.Workload, rec.From, rec.To, rec.Mode)
	if rec.Fault != "" {
		line += " fault " + rec.Fault
	}
	line += ": " + rec.Outcome
	if rec.Downtime > 0 {
		line += fmt.Sprintf(", downtime %d ms", rec.Downtime.Milliseconds())
	}
	if rec.VerifiedOn != "" && rec.Outcome != OutcomeOK {
		line += ", runs on " + rec.VerifiedOn
	}
	if rec.Error != "" && rec.Outcome != OutcomeOK {
		line += ": " + rec.Error
	}
	fmt.Fprintln(w, line)
}
