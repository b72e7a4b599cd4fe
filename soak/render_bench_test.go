package soak

import (
	"io"
	"testing"
	"time"
)

// bigSoak is a night's soak: 1000 iterations of three workloads, a fault
// every 50th move and a failure every 200th.
func bigSoak() *Result {
	var recs []Record
	at := time.Duration(0)
	for it := 1; it <= 1000; it++ {
		for w, wl := range []string{"web", "counter", "redis"} {
			from, to := "tb1", "tb2"
			if it%2 == 0 {
				from, to = to, from
			}
			n := it*3 + w
			rec := move(it, wl, from, to, at, 250+n%550, 140+n%200, 50+n%90, 100+n%150)
			switch {
			case n%200 == 0:
				rec.Outcome, rec.Downtime, rec.Error = OutcomeFailed, 0, "restore on "+to+": criu restore exited 1"
				rec.Lifted = []string{"(00.063253) Error (criu/cr-restore.c:2331): Restoring FAILED."}
				rec.Bundle = "bundles/ferry-bug-" + rec.RunID + ".tar.gz"
			case n%50 == 0:
				rec.Fault = AllFaults[(n/50)%len(AllFaults)]
				rec.Outcome, rec.Downtime, rec.VerifiedOn, rec.Note = OutcomeSurvived, 0, from, "rolled back"
			}
			recs = append(recs, rec)
			at += 3 * time.Second
		}
	}
	return &Result{Summary: Summarize(Summary{Runtime: "native", Mode: "page-server", Hosts: []string{"tb1", "tb2"},
		Started: t0, Ended: t0.Add(at), Iterations: 1000}, recs), Records: recs}
}

func BenchmarkWrite(b *testing.B) {
	res := bigSoak()
	for _, bm := range []struct {
		name  string
		write func(io.Writer, *Result) error
	}{
		{"html", WriteHTML},
		{"junit", WriteJUnit},
		{"metrics", WriteMetrics},
		{"text", func(w io.Writer, r *Result) error { return r.WriteText(w) }},
		{"jsonlines", func(w io.Writer, r *Result) error {
			for i := range r.Records {
				if err := WriteJSONLine(w, &r.Records[i]); err != nil {
					return err
				}
			}
			return WriteJSONLine(w, &r.Summary)
		}},
	} {
		b.Run(bm.name, func(b *testing.B) {
			var cw countWriter
			for b.Loop() {
				if err := bm.write(&cw, res); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cw.n)/float64(b.N), "bytes/op-out")
		})
	}
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
