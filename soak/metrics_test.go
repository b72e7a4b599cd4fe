package soak

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parseMetrics parses text as node_exporter's textfile collector does and
// flattens it to "name{label="value",...}" -> value, and name -> type.
func parseMetrics(t *testing.T, text []byte) (map[string]float64, map[string]string) {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("expfmt: %v\n%s", err, text)
	}
	values, types := map[string]float64{}, map[string]string{}
	key := func(name string, pairs []*dto.LabelPair, extra ...string) string {
		var ls []string
		for _, l := range pairs {
			ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
		}
		for i := 0; i < len(extra); i += 2 {
			ls = append(ls, fmt.Sprintf("%s=%q", extra[i], extra[i+1]))
		}
		sort.Strings(ls)
		if len(ls) == 0 {
			return name
		}
		return name + "{" + strings.Join(ls, ",") + "}"
	}
	for name, f := range fams {
		types[name] = strings.ToLower(f.GetType().String())
		if f.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_GAUGE:
				values[key(name, m.GetLabel())] = m.GetGauge().GetValue()
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					values[key(name, m.GetLabel(), "quantile", fmt.Sprint(q.GetQuantile()))] = q.GetValue()
				}
				values[key(name+"_sum", m.GetLabel())] = s.GetSampleSum()
				values[key(name+"_count", m.GetLabel())] = float64(s.GetSampleCount())
			default:
				t.Errorf("%s: unexpected type %v", name, f.GetType())
			}
		}
	}
	return values, types
}

func TestWriteMetrics(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteMetrics(&buf, lostFixture()); err != nil {
		t.Fatal(err)
	}
	golden(t, "metrics.prom", buf.Bytes())
	if !strings.HasSuffix(buf.String(), "\n# EOF\n") {
		t.Error("the text does not end with # EOF")
	}
	values, types := parseMetrics(t, buf.Bytes())

	want := map[string]float64{
		"ferry_soak_iterations":                                            6,
		"ferry_soak_moves":                                                 11,
		"ferry_soak_failures":                                              2,
		"ferry_soak_faults_injected":                                       3,
		"ferry_soak_faults_survived":                                       2,
		"ferry_soak_workloads_lost":                                        1,
		"ferry_soak_moves_per_minute":                                      17.8,
		"ferry_soak_last_run_timestamp_seconds":                            float64(t0.Unix() + 37),
		`ferry_soak_workload_moves{outcome="ok",workload="web"}`:           3,
		`ferry_soak_workload_moves{outcome="survived",workload="web"}`:     2,
		`ferry_soak_workload_moves{outcome="failed",workload="web"}`:       0,
		`ferry_soak_workload_moves{outcome="lost",workload="web"}`:         1,
		`ferry_soak_workload_moves{outcome="ok",workload="counter"}`:       4,
		`ferry_soak_workload_moves{outcome="survived",workload="counter"}`: 0,
		`ferry_soak_workload_moves{outcome="failed",workload="counter"}`:   1,
		`ferry_soak_workload_moves{outcome="lost",workload="counter"}`:     0,
		`ferry_soak_downtime_seconds{quantile="0.5",workload="web"}`:       0.388,
		`ferry_soak_downtime_seconds{quantile="0.95",workload="web"}`:      0.54,
		`ferry_soak_downtime_seconds{quantile="1",workload="web"}`:         0.54,
		`ferry_soak_downtime_seconds_sum{workload="web"}`:                  1.24,
		`ferry_soak_downtime_seconds_count{workload="web"}`:                3,
		`ferry_soak_downtime_seconds{quantile="0.5",workload="counter"}`:   0.268,
		`ferry_soak_downtime_seconds{quantile="0.95",workload="counter"}`:  0.779,
		`ferry_soak_downtime_seconds{quantile="1",workload="counter"}`:     0.779,
		`ferry_soak_downtime_seconds_sum{workload="counter"}`:              1.603,
		`ferry_soak_downtime_seconds_count{workload="counter"}`:            4,
	}
	for _, f := range AllFaults {
		for _, o := range []string{OutcomeOK, OutcomeSurvived, OutcomeFailed, OutcomeLost} {
			want[fmt.Sprintf(`ferry_soak_faults{fault=%q,outcome=%q}`, f, o)] = 0
		}
	}
	want[`ferry_soak_faults{fault="link-cut",outcome="survived"}`] = 1
	want[`ferry_soak_faults{fault="disk-full",outcome="survived"}`] = 1
	want[`ferry_soak_faults{fault="kill-mid-dump",outcome="lost"}`] = 1
	if diff := cmp.Diff(want, values, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
	if types["ferry_soak_downtime_seconds"] != "summary" || types["ferry_soak_moves"] != "gauge" {
		t.Errorf("types: %v", types)
	}
}

// TestWriteMetricsEdges: label values that need escaping, a fault outside
// AllFaults, a workload with no completed move (NaN quantiles) and a soak
// with no moves at all.
func TestWriteMetricsEdges(t *testing.T) {
	odd := "we\"b\\1\nx"
	recs := []Record{
		{Iteration: 1, Workload: odd, Fault: "clock-skew", Outcome: OutcomeSurvived},
		{Iteration: 1, Workload: "db", Outcome: OutcomeOK, Downtime: ms(420)},
	}
	tests := []struct {
		name string
		res  *Result
		want map[string]float64
	}{
		{"odd", &Result{Summary: Summarize(Summary{}, recs), Records: recs}, map[string]float64{
			`ferry_soak_workload_moves{outcome="survived",workload="we\"b\\1\nx"}`: 1,
			`ferry_soak_downtime_seconds{quantile="0.5",workload="we\"b\\1\nx"}`:   math.NaN(),
			`ferry_soak_downtime_seconds_count{workload="we\"b\\1\nx"}`:            0,
			`ferry_soak_downtime_seconds{quantile="0.95",workload="db"}`:           0.42,
			`ferry_soak_faults{fault="clock-skew",outcome="survived"}`:             1,
			`ferry_soak_faults{fault="restore-failure",outcome="lost"}`:            0,
			"ferry_soak_last_run_timestamp_seconds":                                0,
		}},
		{"empty", &Result{Summary: Summarize(Summary{Started: t0}, nil)}, map[string]float64{
			"ferry_soak_moves":                                       0,
			"ferry_soak_last_run_timestamp_seconds":                  float64(t0.Unix()),
			`ferry_soak_faults{fault="link-cut",outcome="survived"}`: 0,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteMetrics(&buf, tt.res); err != nil {
				t.Fatal(err)
			}
			values, _ := parseMetrics(t, buf.Bytes())
			got := map[string]float64{}
			for k := range tt.want {
				if v, ok := values[k]; ok {
					got[k] = v
				}
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateNaNs()); diff != "" {
				t.Errorf("metrics (-want +got):\n%s\n%s", diff, buf.String())
			}
		})
	}
}
