package soak

import (
	"bytes"
	"testing"
	"time"
)

func TestWriteText(t *testing.T) {
	lost := soakFixture()
	lost.Records = append(lost.Records, Record{
		Iteration: 6, Workload: "web", From: "tb2", To: "tb1", Mode: "page-server", Fault: FaultKillMidDump,
		Outcome: OutcomeLost, RunID: "run-web-6", Exit: 4, Start: t0.Add(36 * time.Second), Duration: ms(900),
		Error:  "workload web verifies on no host:\n  tb1: not found\n  tb2: frozen",
		Bundle: "/var/lib/ferry/bundles/ferry-bug-run-web-6.tar.gz",
	})
	lost.Summary.Iterations, lost.Summary.Stopped = 6, "workload web lost"
	lost.Summary = Summarize(lost.Summary, lost.Records)

	clean := soakFixture()
	clean.Records = []Record{clean.Records[0], clean.Records[1], clean.Records[3]}
	clean.Summary.Iterations = 2
	clean.Summary = Summarize(clean.Summary, clean.Records)

	tests := []struct {
		name   string
		res    *Result
		golden string
	}{
		{"a failed move", soakFixture(), "text-failed.txt"},
		{"a lost workload", lost, "text-lost.txt"},
		{"all ok", clean, "text-ok.txt"},
		{"no moves", &Result{Summary: Summarize(Summary{Runtime: "lxd", Mode: "stop-copy", Hosts: []string{"tb1", "tb2"}, Stopped: "interrupted"}, nil)}, "text-empty.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tt.res.WriteText(&buf); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.golden, buf.Bytes())
		})
	}
}
