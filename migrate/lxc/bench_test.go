package lxc_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/ferry-migrate/ferry/internal/daemontest"
	"github.com/ferry-migrate/ferry/migrate/lxc"
)

// BenchmarkStatefulOps measures each journaled operation end to end (the
// daemon's own work, log collection and ferry's verification) on a busybox
// container with a counter, against the real daemons.
func BenchmarkStatefulOps(b *testing.B) {
	for _, kind := range kinds {
		b.Run(kind, func(b *testing.B) {
			c := daemontest.Daemon(b, kind)
			name := daemontest.Name("bench")
			daemontest.Launch(b, c, name, daemontest.NoConsole)
			daemontest.StartCounter(b, c, name)
			r := &lxc.Runner{Store: newStore(b)}
			run := func(op lxc.Op) {
				if _, err := r.Run(context.Background(), op); err != nil {
					b.Fatal(err)
				}
			}
			b.Run("snapshot+restore", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					snap := fmt.Sprintf("b%d", i)
					run(lxc.Op{Kind: lxc.OpSnapshot, Client: c, Instance: name, Snapshot: snap})
					run(lxc.Op{Kind: lxc.OpRestore, Client: c, Instance: name, Snapshot: snap})
					b.StopTimer()
					_, _ = c.Host.Run(context.Background(), snapshotDelete(c, name, snap), hostOpts())
					b.StartTimer()
				}
			})
			b.Run("stop+start", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					run(lxc.Op{Kind: lxc.OpStop, Client: c, Instance: name})
					run(lxc.Op{Kind: lxc.OpStart, Client: c, Instance: name})
				}
			})
		})
	}
}
