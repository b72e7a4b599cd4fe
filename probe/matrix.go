package probe

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// MatrixSchema names the format of a matrix report.
const MatrixSchema = "ferry.matrix/v1"

// Probe is one host of a matrix: a spec and a way to get its facts
// (probing a live host, or reading a saved file).
type Probe struct {
	Spec  string
	Facts func(ctx context.Context) (*Facts, error)
}

// HostResult is how probing one matrix host went.
type HostResult struct {
	Spec     string  `json:"spec"`
	Host     string  `json:"host"`
	OK       bool    `json:"ok"`
	Error    string  `json:"error,omitempty"`
	Seconds  float64 `json:"seconds"`
	TimedOut bool    `json:"timed_out"`
}

// Direction is one ordered pair of a matrix.
type Direction struct {
	Source   string   `json:"source"`
	Target   string   `json:"target"`
	Verdict  string   `json:"verdict"`
	Blockers []string `json:"blockers"` // "rule: message"
	Warnings int      `json:"warnings"`
}

// MatrixReport says which directions between hosts are possible.
type MatrixReport struct {
	Schema     string       `json:"schema"`
	Runtime    string       `json:"runtime"`
	Hosts      []HostResult `json:"hosts"`
	Directions []Direction  `json:"directions"`
}

// Failed counts the hosts that could not be probed.
func (m *MatrixReport) Failed() int {
	n := 0
	for _, h := range m.Hosts {
		if !h.OK {
			n++
		}
	}
	return n
}

// Matrix probes every host in parallel, each bounded by timeout, and
// compares every ordered pair of the hosts that answered. A host that
// fails or times out is reported; the others still are.
func Matrix(ctx context.Context, probes []Probe, runtime string, timeout time.Duration) *MatrixReport {
	if runtime == "" {
		runtime = RuntimeCRIU
	}
	rep := &MatrixReport{Schema: MatrixSchema, Runtime: runtime, Hosts: make([]HostResult, len(probes)), Directions: []Direction{}}
	facts := make([]*Facts, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			start := time.Now()
			type res struct {
				f   *Facts
				err error
			}
			ch := make(chan res, 1)
			go func() {
				f, err := p.Facts(hctx)
				ch <- res{f, err}
			}()
			var r res
			select {
			case r = <-ch:
			case <-hctx.Done():
				// A probe that ignores its context must not hold up the
				// others.
				r = res{err: hctx.Err()}
			}
			hr := HostResult{Spec: p.Spec, Host: p.Spec, Seconds: time.Since(start).Seconds()}
			switch {
			case r.err != nil:
				hr.Error = r.err.Error()
				hr.TimedOut = hctx.Err() == context.DeadlineExceeded
				if hr.TimedOut {
					hr.Error = fmt.Sprintf("timed out after %s: %v", timeout, r.err)
				}
			default:
				hr.OK = true
				hr.Host = r.f.Host
				facts[i] = r.f
			}
			rep.Hosts[i] = hr
		}()
	}
	wg.Wait()
	for i := range probes {
		for j := range probes {
			if i == j || facts[i] == nil || facts[j] == nil {
				continue
			}
			c := Check(facts[i], facts[j], runtime)
			d := Direction{Source: probes[i].Spec, Target: probes[j].Spec, Verdict: c.Verdict, Blockers: []string{}, Warnings: c.Warnings}
			for _, f := range c.Findings {
				if f.Severity == Blocker || f.Severity == Undecided {
					d.Blockers = append(d.Blockers, f.Rule+": "+f.Message)
				}
			}
			rep.Directions = append(rep.Directions, d)
		}
	}
	return rep
}

// WriteText shows the hosts, then one line per direction.
func (m *MatrixReport) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "HOST\tPROBED\tTIME\n")
	for _, h := range m.Hosts {
		st := "ok"
		if !h.OK {
			st = "FAILED: " + h.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2fs\n", h.Spec, st, h.Seconds)
	}
	fmt.Fprintf(tw, "\nSOURCE\tTARGET\tVERDICT\tWHY\n")
	for _, d := range m.Directions {
		why := fmt.Sprintf("%d warnings", d.Warnings)
		if len(d.Blockers) > 0 {
			why = strings.Join(d.Blockers, "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.Source, d.Target, d.Verdict, why)
	}
	return tw.Flush()
}
