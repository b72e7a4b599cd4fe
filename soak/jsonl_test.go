package soak

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func writeLines(t *testing.T, res *Result) []byte {
	t.Helper()
	var buf bytes.Buffer
	for i := range res.Records {
		if err := WriteJSONLine(&buf, res.Records[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteJSONLine(&buf, &res.Summary); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestJSONLinesRoundTrip writes a soak as the runner does and reads it
// back; the golden file locks the field set of both kinds of line.
func TestJSONLinesRoundTrip(t *testing.T) {
	res := soakFixture()
	out := writeLines(t, res)
	golden(t, "soak.jsonl", out)
	if n := bytes.Count(out, []byte("\n")); n != len(res.Records)+1 {
		t.Errorf("%d lines, want %d", n, len(res.Records)+1)
	}
	recs, sum, err := ReadJSONLines(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(res.Records, recs); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&res.Summary, sum); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
}

func TestWriteJSONLineForms(t *testing.T) {
	rec := Record{Iteration: 7, Workload: "web <b>", Outcome: OutcomeOK, Downtime: ms(250)}
	for _, v := range []any{rec, &rec} {
		var buf bytes.Buffer
		if err := WriteJSONLine(&buf, v); err != nil {
			t.Fatalf("%T: %v", v, err)
		}
		if !strings.HasPrefix(buf.String(), `{"type":"record","iteration":7,"workload":"web <b>",`) {
			t.Errorf("%T: %s", v, buf.String())
		}
	}
	for _, v := range []any{Summary{Moves: 1}, &Summary{Moves: 1}} {
		var buf bytes.Buffer
		if err := WriteJSONLine(&buf, v); err != nil {
			t.Fatalf("%T: %v", v, err)
		}
		if !strings.HasPrefix(buf.String(), `{"type":"summary",`) {
			t.Errorf("%T: %s", v, buf.String())
		}
	}
	var buf bytes.Buffer
	if err := WriteJSONLine(&buf, &Result{}); err == nil || buf.Len() != 0 {
		t.Errorf("a Result as a json line: err %v, wrote %q", err, buf.String())
	}
}

func TestReadJSONLines(t *testing.T) {
	const (
		r1  = `{"type":"record","iteration":1,"workload":"web","outcome":"ok","downtime_ns":312000000}`
		r2  = `{"type":"record","iteration":2,"workload":"web","outcome":"failed","error":"boom"}`
		sum = `{"type":"summary","schema":"ferry.soak/v1","moves":2,"failures":1}`
	)
	want1 := Record{Iteration: 1, Workload: "web", Outcome: OutcomeOK, Downtime: ms(312)}
	want2 := Record{Iteration: 2, Workload: "web", Outcome: OutcomeFailed, Error: "boom"}
	tests := []struct {
		name    string
		in      string
		records []Record
		summary *Summary
		err     string
	}{
		{name: "empty"},
		{name: "records and summary", in: r1 + "\n\n" + r2 + "\n" + sum + "\n",
			records: []Record{want1, want2}, summary: &Summary{Schema: ResultSchema, Moves: 2, Failures: 1}},
		{name: "no summary, no final newline", in: r1 + "\n" + r2, records: []Record{want1, want2}},
		{name: "cut off in the last line", in: r1 + "\n" + r2[:30], records: []Record{want1}, err: "json line 2: "},
		{name: "unknown type", in: r1 + "\n" + `{"type":"event"}` + "\n", records: []Record{want1}, err: `json line 2: type "event"`},
		{name: "no type", in: `{"iteration":1}`, err: `json line 1: type ""`},
		{name: "two summaries", in: sum + "\n" + sum + "\n",
			summary: &Summary{Schema: ResultSchema, Moves: 2, Failures: 1}, err: "json line 2: a second summary"},
		{name: "wrong field type", in: `{"type":"record","iteration":"one"}`, err: "json line 1: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, sum, err := ReadJSONLines(strings.NewReader(tt.in))
			if tt.err == "" && err != nil {
				t.Fatalf("error: %v", err)
			}
			if tt.err != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.err)) {
				t.Errorf("error %v, want one starting %q", err, tt.err)
			}
			if diff := cmp.Diff(tt.records, recs); diff != "" {
				t.Errorf("records (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.summary, sum); diff != "" {
				t.Errorf("summary (-want +got):\n%s", diff)
			}
		})
	}
}
