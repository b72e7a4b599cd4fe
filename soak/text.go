package soak

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes the summary a person reads at the end of a soak: the
// totals, a table of the workloads (moves and downtime percentiles in
// milliseconds), the moves that failed with their error and bundle, and a
// verdict line.
func (r *Result) WriteText(w io.Writer) error {
	s := r.Summary
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(cells ...any) {
		for i, c := range cells {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, c)
		}
		fmt.Fprint(tw, "\n")
	}
	row("runtime:", orDash(s.Runtime))
	row("mode:", orDash(s.Mode))
	row("hosts:", orDash(strings.Join(s.Hosts, ", ")))
	if !s.Started.IsZero() {
		row("started:", s.Started.UTC().Format(time.RFC3339))
	}
	if el := s.Ended.Sub(s.Started); !s.Started.IsZero() && el > 0 {
		row("took:", el.Round(time.Second))
	}
	row("iterations:", s.Iterations)
	row("moves:", s.Moves)
	row("moves per minute:", fmt.Sprintf("%.1f", s.MovesPerMinute))
	row("failures:", s.Failures)
	row("faults injected:", s.FaultsInjected)
	row("faults survived:", s.FaultsSurvived)
	row("workloads lost:", s.WorkloadsLost)
	if s.Stopped != "" {
		row("stopped:", s.Stopped)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if len(s.Workloads) > 0 {
		fmt.Fprintln(w)
		row("WORKLOAD", "MOVES", "OK", "FAILED", "SURVIVED", "LOST", "P50 MS", "P95 MS", "MAX MS", "MEAN MS")
		for _, wl := range s.Workloads {
			lost := "no"
			if wl.Lost {
				lost = "YES"
			}
			row(oneLine(wl.Workload), wl.Moves, wl.OK, wl.Failures, wl.Survived, lost,
				millis(wl.DowntimeP50), millis(wl.DowntimeP95), millis(wl.DowntimeMax), millis(wl.DowntimeMean))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	failed := r.failed()
	if len(failed) > 0 {
		fmt.Fprintf(w, "\nfailed moves:\n")
		for _, rec := range failed {
			fmt.Fprintf(w, "  iteration %d, %s: %s: %s\n", rec.Iteration, oneLine(rec.Workload), hops(rec), rec.Outcome)
			if rec.Error != "" {
				// A multi-line error keeps its lines, indented under the first.
				fmt.Fprintf(w, "    error: %s\n", strings.ReplaceAll(strings.TrimSpace(rec.Error), "\n", "\n           "))
			}
			for _, l := range rec.Lifted {
				fmt.Fprintf(w, "    criu: %s\n", oneLine(l))
			}
			if rec.RunID != "" {
				fmt.Fprintf(w, "    run: %s\n", rec.RunID)
			}
			if rec.Bundle != "" {
				fmt.Fprintf(w, "    bundle: %s\n", rec.Bundle)
			}
		}
	}

	verdict := "ok"
	switch {
	case s.WorkloadsLost > 0:
		verdict = fmt.Sprintf("FAILED: %s lost, %s", plural(s.WorkloadsLost, "workload"), plural(s.Failures, "failed move"))
	case s.Failures > 0:
		verdict = fmt.Sprintf("FAILED: %s", plural(s.Failures, "failed move"))
	case s.Stopped != "":
		verdict = "STOPPED: " + s.Stopped
	}
	_, err := fmt.Fprintf(w, "\nsoak %s\n", verdict)
	return err
}

// failed returns the records whose outcome is failed or lost.
func (r *Result) failed() []Record {
	var out []Record
	for _, rec := range r.Records {
		if rec.Outcome == OutcomeFailed || rec.Outcome == OutcomeLost {
			out = append(out, rec)
		}
	}
	return out
}

// caseName names a move in test reports:
// "iteration 3: tb1 -> tb2 (page-server) [fault: link-cut]".
func caseName(rec Record) string {
	return fmt.Sprintf("iteration %d: %s", rec.Iteration, hops(rec))
}

// hops is "tb1 -> tb2 (page-server)", with " [fault: NAME]" when one was
// injected.
func hops(rec Record) string {
	s := rec.From + " -> " + rec.To
	if rec.Mode != "" {
		s += " (" + rec.Mode + ")"
	}
	if rec.Fault != "" {
		s += " [fault: " + rec.Fault + "]"
	}
	return s
}

func millis(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%d", d.Round(time.Millisecond).Milliseconds())
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a value on its line of a table or list.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
