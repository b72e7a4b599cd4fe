package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/testbed"
)

// BenchmarkMigrateDowntime moves a mem workload of 64, 256 and 1024 MiB
// back and forth between two testbed hosts: by hand with raw CRIU commands
// (dump, copy the rootfs, restore: the baseline), and with ferry migrate in
// each mode. It reports the downtime per move: for the baseline dump + copy
// + restore as MoveRaw times them, for ferry the journal's downtime (from
// the start of the dump until the restored workload runs).
//
//	go test -run '^$' -bench MigrateDowntime -benchtime 5x ./cmd
func BenchmarkMigrateDowntime(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.CRIU(b)
	for _, mib := range []int{64, 256, 1024} {
		for _, mode := range []string{"raw", migrate.ModeStopCopy, migrate.ModePageServer} {
			b.Run(fmt.Sprintf("%dMiB/%s", mib, mode), func(b *testing.B) {
				ferry := ownTestbed(b, "b")
				p := os.Getenv(testbed.PrefixEnv)
				if code, _, errOut := ferry("testbed", "up", "--hosts", "2"); code != 0 {
					b.Fatal(errOut)
				}
				if code, _, errOut := ferry("testbed", "run", p+"1", "m", "mem", "--memory", fmt.Sprintf("%dM", mib)); code != 0 {
					b.Fatal(errOut)
				}
				// The workload fills its memory before its first status:
				// only a verified one has all its pages to move.
				if code, out, errOut := ferry("testbed", "verify", "m"); code != 0 {
					b.Fatalf("verify: %s%s", out, errOut)
				}
				tb, err := testbed.FromEnv(os.Getenv)
				if err != nil {
					b.Fatal(err)
				}
				tb.CRIU = testenv.CRIU(b).Path
				var down, frozen, dump time.Duration
				i := 0
				for b.Loop() {
					to := fmt.Sprintf("%s%d", p, 2-i%2)
					i++
					if mode == "raw" {
						res, err := tb.MoveRaw(context.Background(), "m", to)
						if err != nil {
							b.Fatal(err)
						}
						down += res.Dump + res.Copy + res.Restore
						dump += res.Dump
						continue
					}
					code, out, errOut := ferry("migrate", "testbed:m", "--to", "testbed:"+to, "--mode", mode, "--output", "json")
					var j migrate.Journal
					if code != 0 || json.Unmarshal([]byte(out), &j) != nil || j.Stats == nil {
						b.Fatalf("migrate: exit %d: %s", code, errOut)
					}
					down += j.Stats.Downtime
					frozen += j.Stats.FrozenTime
					for _, st := range j.Steps {
						if st.Name == migrate.StepDump {
							dump += st.Duration
						}
					}
				}
				if code, out, errOut := ferry("testbed", "verify", "m"); code != 0 {
					b.Fatalf("verify after %d moves: %s%s", i, out, errOut)
				}
				b.ReportMetric(float64(down.Milliseconds())/float64(i), "downtime-ms/op")
				b.ReportMetric(float64(dump.Milliseconds())/float64(i), "dump-ms/op")
				if frozen > 0 {
					b.ReportMetric(float64(frozen.Milliseconds())/float64(i), "frozen-ms/op")
				}
			})
		}
	}
}
