package soak

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	tests := []struct {
		d    []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 95, 7 * time.Millisecond},
		{ms(5, 1, 4, 2, 3), 50, 3 * time.Millisecond},
		{ms(5, 1, 4, 2, 3), 100, 5 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20), 95, 19 * time.Millisecond},
		{ms(3, 1), 0, 1 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := Percentile(tt.d, tt.p); got != tt.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", tt.d, tt.p, got, tt.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	recs := []Record{
		{Iteration: 1, Workload: "a", Outcome: OutcomeOK, Downtime: 300 * time.Millisecond},
		{Iteration: 1, Workload: "b", Outcome: OutcomeOK, Downtime: 100 * time.Millisecond},
		{Iteration: 2, Workload: "a", Outcome: OutcomeSurvived, Fault: FaultDiskFull},
		{Iteration: 2, Workload: "b", Outcome: OutcomeFailed, Error: "boom"},
		{Iteration: 3, Workload: "a", Outcome: OutcomeOK, Downtime: 200 * time.Millisecond},
		{Iteration: 3, Workload: "b", Outcome: OutcomeLost},
	}
	got := Summarize(Summary{Started: t0, Ended: t0.Add(30 * time.Second), Iterations: 3}, recs)
	want := Summary{
		Schema: ResultSchema, Started: t0, Ended: t0.Add(30 * time.Second), Iterations: 3,
		Moves: 6, Failures: 2, FaultsInjected: 1, FaultsSurvived: 1, WorkloadsLost: 1, MovesPerMinute: 12,
		Workloads: []WorkloadSummary{
			{Workload: "a", Moves: 3, OK: 2, Survived: 1, DowntimeP50: 200 * time.Millisecond, DowntimeP95: 300 * time.Millisecond, DowntimeMax: 300 * time.Millisecond, DowntimeMean: 250 * time.Millisecond},
			{Workload: "b", Moves: 3, OK: 1, Failures: 2, Lost: true, DowntimeP50: 100 * time.Millisecond, DowntimeP95: 100 * time.Millisecond, DowntimeMax: 100 * time.Millisecond, DowntimeMean: 100 * time.Millisecond},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Summarize (-want +got):\n%s", diff)
	}
	if got.OK() {
		t.Error("a soak with failures and a lost workload is OK")
	}
}
