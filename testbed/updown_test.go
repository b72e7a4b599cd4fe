package testbed

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
)

// TestUpDownUp brings a testbed up with workloads running (one moved, so
// that CRIU has left its nftables tables and restored trees around), takes
// it down, checks the machine for anything left, and does it again.
func TestUpDownUp(t *testing.T) {
	tb := newTestbed(t)
	ctx := context.Background()
	nftBefore := nftTables(t)
	for round := 1; round <= 2; round++ {
		start := time.Now()
		st, err := tb.Up(ctx, 3)
		t.Logf("round %d: up took %s", round, time.Since(start).Round(time.Millisecond))
		if err != nil {
			t.Fatalf("round %d: up: %v", round, err)
		}
		if len(st.Hosts) != 3 {
			t.Fatalf("round %d: %d hosts", round, len(st.Hosts))
		}
		// A second up says so and changes nothing.
		if _, err := tb.Up(ctx, 2); err == nil || !strings.Contains(err.Error(), "already up") {
			t.Errorf("second up: %v", err)
		}
		s, err := tb.Status(ctx)
		if err != nil || !s.Up || len(s.Hosts) != 3 {
			t.Fatalf("status after a refused second up: %+v %v", s, err)
		}
		for _, h := range s.Hosts {
			if !h.Present {
				t.Errorf("host %s has no namespace", h.Name)
			}
		}
		// The private addresses exist inside the hosts only (that the
		// hosts reach each other, the tcp pair below shows).
		out, err := host.Output(ctx, tb.Host(tb.HostName(3)), "ip", "-o", "addr", "show", "dev", "eth0")
		if err != nil || !strings.Contains(string(out), "10.251.0.3/24") {
			t.Errorf("host 3's eth0: %s %v", out, err)
		}
		out, err = host.Output(ctx, host.Local{}, "ip", "-o", "addr")
		if err != nil || strings.Contains(string(out), "10.251.") || strings.Contains(string(out), "10.252.") {
			t.Errorf("testbed addresses on the machine's own network: %s %v", out, err)
		}
		for _, req := range []RunRequest{
			{Host: tb.HostName(1), Name: "srv", Zoo: "tcp"},
			{Host: tb.HostName(2), Name: "cli", Zoo: "tcp-client", Args: []string{"srv"}, Net: NetHost},
			{Host: tb.HostName(1), Name: "tree", Zoo: "tree"},
		} {
			if _, err := tb.Run(ctx, req); err != nil {
				t.Fatalf("run %s: %v", req.Name, err)
			}
		}
		mustVerify(t, tb, "srv")
		if _, err := tb.MoveRaw(ctx, "srv", tb.HostName(3)); err != nil {
			t.Fatal(err)
		}
		mustVerify(t, tb, "cli")
		mustVerify(t, tb, "srv")
		if pids := TestbedProcesses(st.ID, nil); len(pids) < 3 {
			t.Errorf("only %d marked processes while workloads run: %v", len(pids), pids)
		}

		// What a crashed move would leave: CRIU's lock table in a host.
		if err := run(ctx, tb.Host(tb.HostName(2)), "nft", "add", "table", "inet", "CRIU-left-by-test"); err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		rep, err := tb.Down(ctx)
		t.Logf("round %d: down took %s: %+v", round, time.Since(start).Round(time.Millisecond), rep)
		if err != nil {
			t.Fatalf("round %d: down: %v", round, err)
		}
		if len(rep.Netns) != 4 || len(rep.Workloads) != 3 || len(rep.NftTables) != 1 || !strings.Contains(rep.NftTables[0], "CRIU-left-by-test") {
			t.Errorf("down report: %+v", rep)
		}
		if left := leftovers(t, tb, st.ID, nftBefore); len(left) > 0 {
			t.Errorf("round %d: left after down:\n%s", round, strings.Join(left, "\n"))
		}
		// Down again: nothing to do, no error.
		rep, err = tb.Down(ctx)
		if err != nil || len(rep.Netns)+len(rep.Processes)+len(rep.Workloads) != 0 {
			t.Errorf("second down: %+v %v", rep, err)
		}
	}
}

func TestRunRefusals(t *testing.T) {
	tb := newTestbed(t)
	ctx := context.Background()
	h := tb.HostName(1)
	if _, err := tb.Run(ctx, RunRequest{Host: h, Name: "early", Zoo: "mem"}); !errors.Is(err, ErrDown) {
		t.Errorf("run before up: %v", err)
	}
	if _, err := tb.Up(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Run(ctx, RunRequest{Host: h, Name: "w", Zoo: "shm"}); err != nil {
		t.Fatal(err)
	}
	var ue *UsageError
	tests := []struct {
		name    string
		req     RunRequest
		wantErr string
		usage   bool
	}{
		{"same name", RunRequest{Host: h, Name: "w", Zoo: "mem"}, `a workload named "w" already runs`, false},
		{"unknown host", RunRequest{Host: "nohost", Name: "x", Zoo: "mem"}, `no testbed host "nohost"`, false},
		{"unknown zoo", RunRequest{Host: h, Name: "x", Zoo: "nope"}, `unknown zoo workload "nope"`, true},
		{"bad name", RunRequest{Host: h, Name: "../x", Zoo: "mem"}, "workload name", true},
		{"bad net", RunRequest{Host: h, Name: "x", Zoo: "mem", Net: "bridge"}, "--net", true},
		{"memory on a non-mem", RunRequest{Host: h, Name: "x", Zoo: "shm", Memory: 1 << 20}, "--memory", true},
		{"nothing", RunRequest{Host: h, Name: "x"}, "either a zoo workload or a command", true},
		{"dynamic program", RunRequest{Host: h, Name: "x", Command: []string{"/bin/sleep", "100"}}, "dynamically linked", false},
		{"client of nothing", RunRequest{Host: h, Name: "x", Zoo: "tcp-client", Args: []string{"nosrv"}}, `no workload "nosrv"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tb.Run(ctx, tt.req)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if got := errors.As(err, &ue); got != tt.usage {
				t.Errorf("usage error = %v, want %v", got, tt.usage)
			}
		})
	}
	// Refusals leave no rootfs behind, and the first workload untouched.
	ents, _ := os.ReadDir(tb.hostRoot(h) + "/rootfs")
	if len(ents) != 1 || ents[0].Name() != "w" {
		t.Errorf("rootfs dirs after refusals: %v", ents)
	}
	mustVerify(t, tb, "w")
	pid := workloadPid(t, tb, "w")
	if err := tb.Kill(ctx, "w"); err != nil {
		t.Fatal(err)
	}
	reaped(t, pid)
	if err := tb.Kill(ctx, "w"); !errors.Is(err, errNoSuchWorkload) {
		t.Errorf("second kill: %v", err)
	}
	l, err := tb.Ps(ctx)
	if err != nil || len(l.Workloads) != 0 {
		t.Errorf("ps after kill: %+v %v", l, err)
	}
}

// TestDownWithoutState: a testbed whose files are gone (deleted by hand, a
// crash) is still taken down: its namespaces by name, its processes by the
// marker in their environment.
func TestDownWithoutState(t *testing.T) {
	tb := newTestbed(t)
	ctx := context.Background()
	nftBefore := nftTables(t)
	st, err := tb.Up(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []RunRequest{
		{Host: tb.HostName(1), Name: "own", Zoo: "tree"},
		{Host: tb.HostName(2), Name: "shared", Zoo: "pipes", Net: NetHost},
	} {
		if _, err := tb.Run(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	// The workloads keep writing their status files: retry.
	for i := 0; ; i++ {
		err := os.RemoveAll(tb.Dir)
		if err == nil {
			break
		}
		if i == 50 {
			t.Fatal(err)
		}
	}
	if s, err := tb.Status(ctx); err != nil || s.Up {
		t.Errorf("status without files: %+v %v", s, err)
	}
	if _, err := os.Stat(tb.Dir); err == nil {
		t.Error("status created the testbed directory")
	}
	rep, err := tb.Down(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Netns) != 3 || len(rep.Processes) < 2 {
		t.Errorf("down: %+v", rep)
	}
	if left := leftovers(t, tb, st.ID, nftBefore); len(left) > 0 {
		t.Errorf("left after down:\n%s", strings.Join(left, "\n"))
	}
}
