package testbed

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkUpDown measures bringing a 2-host testbed up and down.
func BenchmarkUpDown(b *testing.B) {
	tb := newTestbed(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := tb.Up(ctx, 2); err != nil {
			b.Fatal(err)
		}
		if _, err := tb.Down(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMoveRaw moves a mem workload back and forth between two hosts
// with raw CRIU and reports dump and restore time per move.
func BenchmarkMoveRaw(b *testing.B) {
	for _, mib := range []int64{64, 512} {
		b.Run(fmt.Sprintf("mem-%dMiB", mib), func(b *testing.B) {
			tb := newTestbed(b)
			ctx := context.Background()
			if _, err := tb.Up(ctx, 2); err != nil {
				b.Fatal(err)
			}
			if _, err := tb.Run(ctx, RunRequest{Host: tb.HostName(1), Name: "m", Zoo: "mem", Memory: mib << 20}); err != nil {
				b.Fatal(err)
			}
			if r, err := tb.Verify(ctx, "m"); err != nil || !r.OK {
				b.Fatalf("verify: %+v %v", r, err)
			}
			var dump, restore, cp float64
			i := 0
			for b.Loop() {
				to := tb.HostName(2 - i%2)
				i++
				res, err := tb.MoveRaw(ctx, "m", to)
				if err != nil {
					b.Fatal(err)
				}
				dump += res.Dump.Seconds()
				restore += res.Restore.Seconds()
				cp += res.Copy.Seconds()
			}
			if r, err := tb.Verify(ctx, "m"); err != nil || !r.OK {
				b.Fatalf("verify after %d moves: %+v %v", i, r, err)
			}
			b.ReportMetric(dump/float64(i)*1000, "dump-ms/op")
			b.ReportMetric(cp/float64(i)*1000, "copy-ms/op")
			b.ReportMetric(restore/float64(i)*1000, "restore-ms/op")
		})
	}
}
