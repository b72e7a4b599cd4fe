package soak

import (
	"bytes"
	"testing"

	"github.com/ferry-migrate/ferry/internal/output"
)

// internal/output prints a Result in text through WriteText.
var _ output.Texter = (*Result)(nil)

func TestWriteText(t *testing.T) {
	lost := lostFixture()

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
