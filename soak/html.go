package soak

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
)

//go:embed report.html.tmpl
var reportTemplate string

var reportTmpl = template.Must(template.New("soak").Funcs(template.FuncMap{
	"ms":   millis,
	"took": func(d time.Duration) string { return d.Round(time.Second).String() },
	"join": strings.Join,
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	},
	"svg": func(s string) template.HTML {
		// Drawn by gonum/plot's SVG writer, which escapes every text it
		// writes (workload names included): trusted markup.
		return template.HTML(s)
	},
}).Parse(reportTemplate))

// reportPage is what the HTML template renders.
type reportPage struct {
	Summary Summary
	Took    time.Duration
	Verdict string
	OK      bool
	Charts  []chart
	Moves   []Record
}

// WriteHTML writes r as one self-contained HTML page (inline CSS and SVG,
// no script, nothing loaded from elsewhere): the summary, a table of the
// workloads with their downtime percentiles, three charts drawn with
// gonum/plot (downtime per iteration, its distribution per workload, the
// mean time of the dump, transfer and restore steps) and every failed,
// lost or survived move with its fault, error, CRIU lines and a link to
// its bug-report bundle (the path as the record holds it, so a relative
// bundle path works next to the report). Every value is escaped.
func WriteHTML(w io.Writer, r *Result) error {
	cs, err := charts(r)
	if err != nil {
		return fmt.Errorf("soak report: %w", err)
	}
	page := reportPage{Summary: r.Summary, Charts: cs, OK: r.Summary.OK()}
	if el := r.Summary.Ended.Sub(r.Summary.Started); !r.Summary.Started.IsZero() && el > 0 {
		page.Took = el
	}
	switch s := r.Summary; {
	case s.WorkloadsLost > 0:
		page.Verdict = fmt.Sprintf("Failed: %s lost", plural(s.WorkloadsLost, "workload"))
	case s.Failures > 0:
		page.Verdict = fmt.Sprintf("Failed: %s", plural(s.Failures, "failed move"))
	case s.Stopped != "":
		page.Verdict = "Stopped: " + s.Stopped
	default:
		page.Verdict = "OK: every workload verified after every move"
	}
	for _, rec := range r.Records {
		if rec.Outcome != OutcomeOK || rec.Fault != "" {
			page.Moves = append(page.Moves, rec)
		}
	}
	if err := reportTmpl.Execute(w, page); err != nil {
		return fmt.Errorf("soak report: %w", err)
	}
	return nil
}
