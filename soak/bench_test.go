package soak

import (
	"context"
	"testing"
)

// BenchmarkSoakMem64 measures how many moves a minute a soak makes of the
// 64 MiB mem workload between two testbed hosts, each move a real
// `ferry migrate` followed by the soak's check (the target: 20 a
// minute), in each mode. It reports moves/min and the median downtime.
//
//	go test ./soak -run '^$' -bench SoakMem64 -benchtime 30x
func BenchmarkSoakMem64(b *testing.B) {
	for _, mode := range []string{"stop-copy", "page-server"} {
		b.Run(mode, func(b *testing.B) {
			bed := newTestbedBed(b, "sb", []WorkloadSpec{{Zoo: "mem", Memory: 64 << 20}})
			r := &Runner{Bed: bed, Workloads: []string{"mem"}, Iterations: b.N, Mode: mode, Runtime: "criu"}
			b.ResetTimer()
			res, err := r.Run(context.Background())
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if !res.Summary.OK() {
				b.Fatalf("soak failed: %+v", res.Summary)
			}
			b.ReportMetric(float64(len(res.Records))/b.Elapsed().Minutes(), "moves/min")
			b.ReportMetric(float64(res.Summary.Workloads[0].DowntimeP50.Milliseconds()), "p50-downtime-ms")
			b.ReportMetric(float64(res.Summary.Workloads[0].DowntimeP95.Milliseconds()), "p95-downtime-ms")
		})
	}
}
