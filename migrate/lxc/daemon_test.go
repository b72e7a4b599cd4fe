package lxc_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-migrate/ferry/internal/daemontest"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/lxc"
	"github.com/ferry-migrate/ferry/report/explain"
)

func TestMain(m *testing.M) {
	code := m.Run()
	daemontest.Teardown()
	os.Exit(code)
}

var kinds = []string{migrate.KindLXD, migrate.KindIncus}

func newRunner(t *testing.T) *lxc.Runner {
	return &lxc.Runner{Store: newStore(t), Command: []string{"ferry", "test"}}
}

func newStore(t testing.TB) migrate.Store { return migrate.Store{Dir: t.TempDir()} }

func snapshotDelete(c *lxc.Client, name, snap string) []string {
	if c.Kind == migrate.KindIncus {
		return []string{"incus", "snapshot", "delete", name, snap}
	}
	return []string{"lxc", "delete", name + "/" + snap}
}

func hostOpts() host.RunOptions { return host.RunOptions{} }

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// runOK runs op and fails the test with the journal when it did not succeed.
func runOK(t *testing.T, r *lxc.Runner, op lxc.Op) *migrate.Journal {
	t.Helper()
	start := time.Now()
	j, err := r.Run(ctxFor(t), op)
	if err != nil {
		t.Fatalf("%s %s: %v\njournal: %+v", op.Kind, op.Instance, err, j)
	}
	var steps []string
	for _, s := range j.Steps {
		steps = append(steps, fmt.Sprintf("%s %s", s.Name, s.Duration.Round(time.Millisecond)))
	}
	t.Logf("%s %s: ok in %s (%s)", op.Kind, op.Instance, time.Since(start).Round(time.Millisecond), strings.Join(steps, ", "))
	return j
}

// Stock configuration: the stateful snapshot works, the stateful restore
// fails with the known console problem and ferry says so.
func TestStockRestoreFailsWithConsoleCause(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			c := daemontest.Daemon(t, kind)
			name := daemontest.Name("stock")
			daemontest.Launch(t, c, name, daemontest.Stock)
			daemontest.StartCounter(t, c, name)
			r := newRunner(t)

			runOK(t, r, lxc.Op{Kind: lxc.OpSnapshot, Client: c, Instance: name, Snapshot: "s1"})

			j, err := r.Run(ctxFor(t), lxc.Op{Kind: lxc.OpRestore, Client: c, Instance: name, Snapshot: "s1"})
			if err == nil {
				t.Fatalf("stock stateful restore succeeded; want the console failure (canonical/lxd#9396)")
			}
			var op *migrate.OpError
			if !errors.As(err, &op) || op.Step != lxc.OpRestore {
				t.Fatalf("error %v: want an OpError at step %s", err, lxc.OpRestore)
			}
			var f *migrate.Failure
			if !errors.As(err, &f) {
				t.Fatalf("error %v carries no migrate.Failure", err)
			}
			if len(f.Lifted) == 0 || !strings.Contains(f.Lifted[0], "lxc.console.path configured on source host but not target") {
				t.Fatalf("lifted lines %q: want the console line first", f.Lifted)
			}
			if j.Result != migrate.RunFailed {
				t.Errorf("journal result %q, want %q", j.Result, migrate.RunFailed)
			}
			last := j.Steps[len(j.Steps)-1]
			if last.Name != lxc.OpRestore || last.Log == "" || len(last.Lifted) == 0 {
				t.Errorf("journal's last step %+v: want the restore with its log and lifted lines", last)
			}
			b, rerr := os.ReadFile(filepath.Join(op.RunDir, last.Log))
			if rerr != nil {
				t.Fatal(rerr)
			}
			ms := explain.Explain([]explain.Input{{Name: last.Log, Text: string(b)}})
			if len(ms) == 0 || ms[0].ID != "lxc-console-path-mismatch" {
				t.Errorf("explain on %s: %+v, want lxc-console-path-mismatch first", last.Log, ms)
			}
			if !strings.Contains(j.Workload, "Stopped") {
				t.Errorf("workload %q: the failed restore leaves the container stopped and the journal must say so", j.Workload)
			}
		})
	}
}

// Without a console: stateful snapshot and restore carry the process on.
func TestNoConsoleSnapshotRestore(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			c := daemontest.Daemon(t, kind)
			name := daemontest.Name("snap")
			daemontest.Launch(t, c, name, daemontest.NoConsole)
			daemontest.StartCounter(t, c, name)
			r := newRunner(t)

			at, err := daemontest.Counter(context.Background(), c, name)
			if err != nil {
				t.Fatal(err)
			}
			runOK(t, r, lxc.Op{Kind: lxc.OpSnapshot, Client: c, Instance: name, Snapshot: "s1"})
			time.Sleep(time.Second)
			j := runOK(t, r, lxc.Op{Kind: lxc.OpRestore, Client: c, Instance: name, Snapshot: "s1", Check: daemontest.CounterCarriesOn(at)})
			checkContinuityChecked(t, j)
		})
	}
}

// Without a console: stateful stop and start carry the process on.
func TestNoConsoleStopStart(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			c := daemontest.Daemon(t, kind)
			name := daemontest.Name("stop")
			daemontest.Launch(t, c, name, daemontest.NoConsole)
			daemontest.StartCounter(t, c, name)
			r := newRunner(t)

			at, err := daemontest.Counter(context.Background(), c, name)
			if err != nil {
				t.Fatal(err)
			}
			j := runOK(t, r, lxc.Op{Kind: lxc.OpStop, Client: c, Instance: name})
			if !strings.Contains(j.Workload, "stopped, state saved") {
				t.Errorf("workload %q after the stateful stop", j.Workload)
			}
			j = runOK(t, r, lxc.Op{Kind: lxc.OpStart, Client: c, Instance: name, Check: daemontest.CounterCarriesOn(at)})
			checkContinuityChecked(t, j)
		})
	}
}

// checkContinuityChecked wants the verify step to have compared processes
// recorded by the earlier run (the counter besides init).
func checkContinuityChecked(t *testing.T, j *migrate.Journal) {
	t.Helper()
	for _, s := range j.Steps {
		if s.Name == migrate.StepVerify {
			if !strings.Contains(s.Notes["continuity"], "processes carried on") {
				t.Errorf("verify notes %q: want the recorded processes compared", s.Notes)
			}
			return
		}
	}
	t.Errorf("journal has no verify step: %+v", j.Steps)
}

// Incus with idmapped mounts on: the restore exits 0 but the root
// filesystem is unwritable. ferry must report it as failed, with the cause.
func TestIdmappedRestoreIsCaught(t *testing.T) {
	c := daemontest.DaemonIdmapped(t)
	t.Cleanup(func() { daemontest.Daemon(t, migrate.KindIncus) })
	name := daemontest.Name("idmap")
	daemontest.Launch(t, c, name, daemontest.NoConsole)
	daemontest.StartCounter(t, c, name)
	r := newRunner(t)

	runOK(t, r, lxc.Op{Kind: lxc.OpSnapshot, Client: c, Instance: name, Snapshot: "s1"})
	j, err := r.Run(ctxFor(t), lxc.Op{Kind: lxc.OpRestore, Client: c, Instance: name, Snapshot: "s1"})
	if err == nil {
		t.Fatal("restore with idmapped mounts reported success; the root filesystem is unwritable")
	}
	var op *migrate.OpError
	if !errors.As(err, &op) || op.Step != migrate.StepVerify {
		t.Fatalf("error %v: want a failure at the verify step (the daemon exited 0)", err)
	}
	var we *lxc.WritableError
	if !errors.As(err, &we) || !we.Overflow {
		t.Fatalf("error %v: want a WritableError naming the idmapped root mount", err)
	}
	if !strings.Contains(we.Hint(), "INCUS_IDMAPPED_MOUNTS_DISABLE") {
		t.Errorf("hint %q does not name the fix", we.Hint())
	}
	if j.Result != migrate.RunFailed {
		t.Errorf("journal result %q", j.Result)
	}
}

// A live move to a second daemon (its own network and mount namespace, same
// paths) and back: the process carries on both ways.
func TestMoveAndBack(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			a, b := daemontest.Pair(t, kind)
			name := daemontest.Name("move")
			daemontest.Launch(t, a, name, daemontest.NoConsole)
			daemontest.StartCounter(t, a, name)
			r := newRunner(t)

			at, err := daemontest.Counter(context.Background(), a, name)
			if err != nil {
				t.Fatal(err)
			}
			j := runOK(t, r, lxc.Op{Kind: lxc.OpMove, Client: a, Instance: name, Dest: b, DestRemote: "b", Check: daemontest.CounterCarriesOn(at)})
			checkContinuityChecked(t, j)
			checkMoveLogs(t, j)

			at, err = daemontest.Counter(context.Background(), b, name)
			if err != nil {
				t.Fatal(err)
			}
			j = runOK(t, r, lxc.Op{Kind: lxc.OpMove, Client: b, Instance: name, Dest: a, DestRemote: "a", Check: daemontest.CounterCarriesOn(at)})
			checkContinuityChecked(t, j)
			checkMoveLogs(t, j)
		})
	}
}

// checkMoveLogs wants both sides' CRIU logs in the run: the source's dump
// log is deleted with the moved instance, ferry must have copied it first.
func checkMoveLogs(t *testing.T, j *migrate.Journal) {
	t.Helper()
	var logs []string
	for _, s := range j.Steps {
		if s.Name == lxc.OpMove {
			for _, v := range s.Notes {
				logs = append(logs, v)
			}
		}
	}
	all := strings.Join(logs, "\n")
	for _, want := range []string{"source-migration_dump_", "target-migration_restore_"} {
		if !strings.Contains(all, want) {
			t.Errorf("move step logs %q: no %s*.log", logs, want)
		}
	}
}
