package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-migrate/ferry/testbed/zoo"
)

// mustVerify fails the test unless the workload's self-check passes.
func mustVerify(t *testing.T, tb *Testbed, name string) *VerifyResult {
	t.Helper()
	r, err := tb.Verify(context.Background(), name)
	if err != nil {
		t.Fatalf("verify %s: %v", name, err)
	}
	if !r.OK {
		t.Fatalf("verify %s: %+v\nsupervisor logs: %s", name, r, supervisorLogs(tb, name))
	}
	return r
}

func supervisorLogs(tb *Testbed, name string) string {
	var b strings.Builder
	ents, _ := os.ReadDir(tb.Dir + "/logs")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), name+"-") && strings.HasSuffix(e.Name(), ".log") {
			data, _ := os.ReadFile(tb.Dir + "/logs/" + e.Name())
			fmt.Fprintf(&b, "\n--- %s\n%s", e.Name(), data)
		}
	}
	return b.String()
}

// TestZooMoves starts every zoo workload (plus a command and a workload
// sharing its host's network) on host 1, verifies it, moves it to host 2
// with raw CRIU, and verifies it again: its counter must continue.
func TestZooMoves(t *testing.T) {
	tb := newTestbed(t)
	ctx := context.Background()
	if _, err := tb.Up(ctx, 2); err != nil {
		t.Fatal(err)
	}
	h1, h2 := tb.HostName(1), tb.HostName(2)
	type launch struct {
		req  RunRequest
		move bool
	}
	var runs []launch
	for _, w := range zoo.All() {
		switch w.Name {
		case "tcp-client":
			// Runs on host 2 in the host's network: its address stays.
			continue
		case "mem":
			runs = append(runs, launch{RunRequest{Host: h1, Name: "mem", Zoo: "mem", Memory: 64 << 20}, true})
		default:
			runs = append(runs, launch{RunRequest{Host: h1, Name: w.Name, Zoo: w.Name}, true})
		}
	}
	runs = append(runs,
		launch{RunRequest{Host: h2, Name: "tcp-client", Zoo: "tcp-client", Args: []string{"tcp"}, Net: NetHost}, false},
		launch{RunRequest{Host: h1, Name: "mem-hostnet", Zoo: "mem", Memory: 8 << 20, Net: NetHost}, true},
		// Any static program after --: here ferry itself.
		launch{RunRequest{Host: h1, Name: "command", Command: []string{tb.Exe, "testbed", "__zoo", "threads"}}, true},
	)
	for _, l := range runs {
		if _, err := tb.Run(ctx, l.req); err != nil {
			t.Fatalf("run %s: %v", l.req.Name, err)
		}
	}
	for _, l := range runs {
		mustVerify(t, tb, l.req.Name)
	}
	for _, l := range runs {
		if !l.move {
			continue
		}
		t.Run(l.req.Name, func(t *testing.T) {
			before := mustVerify(t, tb, l.req.Name)
			oldPid := workloadPid(t, tb, l.req.Name)
			res, err := tb.MoveRaw(ctx, l.req.Name, h2)
			if err != nil {
				t.Fatalf("move %s: %v", l.req.Name, err)
			}
			// The dumped tree was reaped on the source.
			reaped(t, oldPid)
			t.Logf("%s: dump %s, copy %s, restore %s; deleted CRIU tables %v", l.req.Name, res.Dump.Round(time.Millisecond), res.Copy.Round(time.Millisecond), res.Restore.Round(time.Millisecond), res.NftTables)
			after := mustVerify(t, tb, l.req.Name)
			if l.req.Zoo != "" && after.Counter <= before.Counter {
				t.Errorf("counter %d after the move, %d before", after.Counter, before.Counter)
			}
			if after.Host != h2 {
				t.Errorf("runs on %s after the move, want %s", after.Host, h2)
			}
		})
	}
	// The client kept its connection while the server moved.
	mustVerify(t, tb, "tcp-client")
	mustVerify(t, tb, "tcp")

	// A restored tree is reaped when it ends (by the supervisor that ran
	// CRIU, not by the machine's slow PID 1).
	pid := workloadPid(t, tb, "tree")
	if err := tb.Kill(ctx, "tree"); err != nil {
		t.Fatal(err)
	}
	reaped(t, pid)
}

func workloadPid(t *testing.T, tb *Testbed, name string) int {
	t.Helper()
	st, err := tb.load()
	if err != nil || st == nil || st.workload(name) == nil {
		t.Fatalf("state of %s: %v", name, err)
	}
	return st.workload(name).Pid
}

// TestVerifyCanFail breaks workloads on purpose: verify must say so.
func TestVerifyCanFail(t *testing.T) {
	tb := newTestbed(t)
	ctx := context.Background()
	if _, err := tb.Up(ctx, 1); err != nil {
		t.Fatal(err)
	}
	h := tb.HostName(1)
	for _, name := range []string{"mem", "threads"} {
		if _, err := tb.Run(ctx, RunRequest{Host: h, Name: name, Zoo: name}); err != nil {
			t.Fatal(err)
		}
		mustVerify(t, tb, name)
	}
	st, err := tb.load()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("corrupted memory", func(t *testing.T) {
		w := st.workload("mem")
		s, err := zoo.ReadStatus(w.Rootfs + zoo.StatusFile)
		if err != nil || s.Addr == 0 {
			t.Fatalf("status %+v: %v", s, err)
		}
		f, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", w.Pid), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		// A page far from the one the workload rewrites first.
		if _, err := f.WriteAt([]byte{0xde, 0xad}, int64(s.Addr)+4096*1000+17); err != nil {
			t.Fatal(err)
		}
		r, err := tb.Verify(ctx, "mem")
		if err != nil {
			t.Fatal(err)
		}
		if r.OK || !strings.Contains(strings.Join(r.Problems, " "), "page 1000") {
			t.Errorf("verify after corrupting page 1000: %+v", r)
		}
	})

	t.Run("stopped", func(t *testing.T) {
		w := st.workload("threads")
		if err := syscall.Kill(w.Pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		defer syscall.Kill(w.Pid, syscall.SIGCONT)
		r, err := tb.Verify(ctx, "threads")
		if err != nil {
			t.Fatal(err)
		}
		if r.OK || !strings.Contains(strings.Join(r.Problems, " "), "counter stuck") {
			t.Errorf("verify of a stopped workload: %+v", r)
		}
	})

	t.Run("killed", func(t *testing.T) {
		w := st.workload("threads")
		if err := syscall.Kill(w.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitGone([]int{w.Pid}, 5*time.Second)
		r, err := tb.Verify(ctx, "threads")
		if err != nil {
			t.Fatal(err)
		}
		if r.OK || r.Running {
			t.Errorf("verify of a killed workload: %+v", r)
		}
	})

	t.Run("tcp without a client", func(t *testing.T) {
		if _, err := tb.Run(ctx, RunRequest{Host: h, Name: "lonely", Zoo: "tcp"}); err != nil {
			t.Fatal(err)
		}
		r, err := tb.Verify(ctx, "lonely")
		if err != nil {
			t.Fatal(err)
		}
		if r.OK {
			t.Errorf("a tcp server without a client verified: %+v", r)
		}
	})

	if _, err := tb.Verify(ctx, "nosuch"); !errors.Is(err, errNoSuchWorkload) {
		t.Errorf("verify of an unknown workload: %v", err)
	}
}

// TestMoveFallsBack: a restore that fails on the target (its veth name is
// taken there) leaves the workload running on its source, restored from
// the same images, with CRIU's error in hand.
func TestMoveFallsBack(t *testing.T) {
	tb := newTestbed(t)
	ctx := context.Background()
	if _, err := tb.Up(ctx, 2); err != nil {
		t.Fatal(err)
	}
	h1, h2 := tb.HostName(1), tb.HostName(2)
	w, err := tb.Run(ctx, RunRequest{Host: h1, Name: "shm", Zoo: "shm"})
	if err != nil {
		t.Fatal(err)
	}
	before := mustVerify(t, tb, "shm")
	if err := run(ctx, tb.Host(h2), "ip", "link", "add", w.Veth, "type", "veth", "peer", "name", "taken"); err != nil {
		t.Fatal(err)
	}
	res, err := tb.MoveRaw(ctx, "shm", h2)
	var ce *CRIUError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "runs again on "+h1) || len(ce.Lines) == 0 {
		t.Fatalf("move onto a taken veth name: %v", err)
	}
	t.Logf("expected failure: %v", err)
	if res == nil || !res.FellBack {
		t.Fatalf("result: %+v", res)
	}
	after := mustVerify(t, tb, "shm")
	if after.Host != h1 || after.Counter <= before.Counter {
		t.Errorf("after the fallback: %+v (before: %+v)", after, before)
	}
}
