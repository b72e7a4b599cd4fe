package soak

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// WriteMetrics writes r as OpenMetrics text for node_exporter's textfile
// collector (write it to a temporary file in the collector's directory,
// then rename it to NAME.prom). The text is also valid Prometheus text
// format 0.0.4, which is what that collector parses: no timestamps, no
// units line, only gauges and a summary, and it ends with "# EOF".
//
// Totals are gauges (ferry_soak_moves, _failures, _faults_injected,
// _faults_survived, _workloads_lost, _moves_per_minute, _iterations and
// _last_run_timestamp_seconds, the soak's end). Per workload,
// ferry_soak_workload_moves{workload,outcome} counts moves by outcome (all
// four outcomes, zeros included) and the summary
// ferry_soak_downtime_seconds{workload,quantile="0.5"|"0.95"|"1"} with
// _sum and _count holds the downtime of completed moves (quantiles NaN
// when none completed). ferry_soak_faults{fault,outcome} counts the moves
// of each fault (every fault of AllFaults, and any other one recorded) by
// outcome.
func WriteMetrics(w io.Writer, r *Result) error {
	s := r.Summary
	bw := bufio.NewWriter(w)
	m := metricWriter{w: bw}

	last := s.Ended
	if last.IsZero() {
		last = s.Started
	}
	var lastSeconds float64
	if !last.IsZero() {
		lastSeconds = float64(last.UnixNano()) / 1e9
	}
	for _, g := range []struct {
		name, help string
		v          float64
	}{
		{"ferry_soak_iterations", "Iterations the last soak ran.", float64(s.Iterations)},
		{"ferry_soak_moves", "Moves the last soak made.", float64(s.Moves)},
		{"ferry_soak_failures", "Moves of the last soak that failed or lost their workload.", float64(s.Failures)},
		{"ferry_soak_faults_injected", "Faults the last soak injected.", float64(s.FaultsInjected)},
		{"ferry_soak_faults_survived", "Injected faults after which the workload still verified.", float64(s.FaultsSurvived)},
		{"ferry_soak_workloads_lost", "Workloads of the last soak that verified on no host (must be 0).", float64(s.WorkloadsLost)},
		{"ferry_soak_moves_per_minute", "Moves per minute of the last soak.", s.MovesPerMinute},
		{"ferry_soak_last_run_timestamp_seconds", "When the last soak ended, in seconds since the epoch.", lastSeconds},
	} {
		m.family(g.name, "gauge", g.help)
		m.sample(g.name, nil, g.v)
	}

	outcomes := []string{OutcomeOK, OutcomeSurvived, OutcomeFailed, OutcomeLost}
	workloads := workloadNames(r)
	byOutcome := map[[2]string]int{}
	downtimes := downtimesOf(r.Records)
	faults := append([]string(nil), AllFaults...)
	known := map[string]bool{}
	for _, f := range AllFaults {
		known[f] = true
	}
	var extra []string
	byFault := map[[2]string]int{}
	for _, rec := range r.Records {
		byOutcome[[2]string{rec.Workload, rec.Outcome}]++
		if rec.Fault != "" {
			byFault[[2]string{rec.Fault, rec.Outcome}]++
			if !known[rec.Fault] {
				known[rec.Fault] = true
				extra = append(extra, rec.Fault)
			}
		}
	}
	sort.Strings(extra)
	faults = append(faults, extra...)

	m.family("ferry_soak_workload_moves", "gauge", "Moves of each workload in the last soak, by outcome.")
	for _, wl := range workloads {
		for _, o := range outcomes {
			m.sample("ferry_soak_workload_moves", []string{"workload", wl, "outcome", o}, float64(byOutcome[[2]string{wl, o}]))
		}
	}

	m.family("ferry_soak_downtime_seconds", "summary", "Downtime of the completed moves of each workload in the last soak.")
	quantiles := map[string]WorkloadSummary{}
	for _, ws := range s.Workloads {
		quantiles[ws.Workload] = ws
	}
	for _, wl := range workloads {
		d := downtimes[wl]
		ws, ok := quantiles[wl]
		if !ok {
			ws = WorkloadSummary{DowntimeP50: Percentile(d, 50), DowntimeP95: Percentile(d, 95), DowntimeMax: Percentile(d, 100)}
		}
		for _, q := range []struct {
			q string
			v time.Duration
		}{{"0.5", ws.DowntimeP50}, {"0.95", ws.DowntimeP95}, {"1", ws.DowntimeMax}} {
			v := q.v.Seconds()
			if len(d) == 0 {
				v = math.NaN()
			}
			m.sample("ferry_soak_downtime_seconds", []string{"workload", wl, "quantile", q.q}, v)
		}
		var sum time.Duration
		for _, v := range d {
			sum += v
		}
		m.sample("ferry_soak_downtime_seconds_sum", []string{"workload", wl}, sum.Seconds())
		m.sample("ferry_soak_downtime_seconds_count", []string{"workload", wl}, float64(len(d)))
	}

	m.family("ferry_soak_faults", "gauge", "Moves of the last soak with each fault injected, by outcome.")
	for _, f := range faults {
		for _, o := range outcomes {
			m.sample("ferry_soak_faults", []string{"fault", f, "outcome", o}, float64(byFault[[2]string{f, o}]))
		}
	}
	fmt.Fprint(bw, "# EOF\n")
	return bw.Flush()
}

// workloadNames lists the workloads of r in the order the summary, then
// the records, first name them.
func workloadNames(r *Result) []string {
	var names []string
	seen := map[string]bool{}
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	for _, ws := range r.Summary.Workloads {
		add(ws.Workload)
	}
	for _, rec := range r.Records {
		add(rec.Workload)
	}
	return names
}

// downtimesOf returns the downtimes of the completed moves (Downtime > 0,
// as Summarize counts them) of each workload.
func downtimesOf(records []Record) map[string][]time.Duration {
	d := map[string][]time.Duration{}
	for _, rec := range records {
		if rec.Downtime > 0 {
			d[rec.Workload] = append(d[rec.Workload], rec.Downtime)
		}
	}
	return d
}

type metricWriter struct{ w io.Writer }

func (m metricWriter) family(name, typ, help string) {
	fmt.Fprintf(m.w, "# HELP %s %s\n# TYPE %s %s\n", name, escapeHelp(help), name, typ)
}

// sample writes name{labels} value; labels are name, value pairs.
func (m metricWriter) sample(name string, labels []string, v float64) {
	var b strings.Builder
	b.WriteString(name)
	if len(labels) > 0 {
		b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `%s="%s"`, labels[i], escapeLabel(labels[i+1]))
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(formatValue(v))
	b.WriteByte('\n')
	io.WriteString(m.w, b.String())
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }

// formatValue writes v the way both formats read it: NaN, +Inf, -Inf, a
// whole number as digits, or the shortest decimal form.
func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
