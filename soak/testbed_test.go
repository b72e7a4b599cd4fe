package soak

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/testbed"
)

// newTestbedBed brings up a testbed of its own with specs and returns a
// bed over it; the testbed goes down when the test ends.
func newTestbedBed(t testing.TB, prefix string, specs []WorkloadSpec) *TestbedBed {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "nsenter", "nft", "mount")
	criu := testenv.CRIU(t)
	exe := testenv.FerryBinary(t)
	dir := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err == nil && fs.Flags&unix.ST_NODEV != 0 {
		var err error
		if dir, err = os.MkdirTemp("/var/tmp", "ferry-soak-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	tb := &testbed.Testbed{Dir: dir, Prefix: fmt.Sprintf("%s%d", prefix, os.Getpid()%10000), Exe: exe, CRIU: criu.Path, Local: host.Local{}}
	t.Cleanup(func() {
		if rep, err := tb.Down(context.Background()); err != nil {
			t.Errorf("testbed down: %v (%+v)", err, rep)
		}
	})
	hosts, companions, err := StartTestbed(context.Background(), tb, specs)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	return &TestbedBed{TB: tb, Exe: exe, CRIU: criu.Path, HostNames: hosts, RunsDir: filepath.Join(work, "runs"),
		WorkDir: work, Companions: companions, Host: host.Local{}}
}

// TestTestbedFaults injects every fault into real moves on the testbed:
// each must be survived (the workload runs and passes its check
// afterwards), show in its record, and leave nothing behind.
func TestTestbedFaults(t *testing.T) {
	bed := newTestbedBed(t, "sf", []WorkloadSpec{{Zoo: "mem", Memory: 256 << 20}, {Zoo: "tcp"}})
	var inject []Injection
	for i, f := range AllFaults {
		inject = append(inject, Injection{Fault: f, Iteration: i + 2, Workload: "mem"})
	}
	// The TCP workload's restore fails too: it must be restored on its
	// source (its sockets stay in repair mode after the dump).
	inject = append(inject, Injection{Fault: FaultRestoreFailure, Iteration: 2, Workload: "tcp"})
	r := &Runner{Bed: bed, Workloads: []string{"mem", "tcp"}, Iterations: len(AllFaults) + 1, Mode: ModeAlternate,
		Inject: inject, Runtime: "criu", OnRecord: func(rec Record) {
			var b strings.Builder
			ProgressLine(&b, rec, 0)
			t.Log(strings.TrimSpace(b.String()))
		}}
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := res.Summary
	if s.FaultsInjected != len(inject) || s.FaultsSurvived != len(inject) || s.Failures != 0 || s.WorkloadsLost != 0 || !s.OK() {
		t.Errorf("summary %+v", s)
	}
	seen := map[string]bool{}
	for _, rec := range res.Records {
		if rec.Fault == "" {
			if rec.Outcome != OutcomeOK || rec.Downtime <= 0 || rec.ImageBytes <= 0 || rec.RunID == "" {
				t.Errorf("clean move %+v", rec)
			}
			continue
		}
		seen[rec.Fault] = true
		if rec.Outcome != OutcomeSurvived || rec.Exit == 0 || rec.VerifiedOn != rec.From || rec.Error == "" {
			t.Errorf("%s: want a failed move survived on its source: %+v", rec.Fault, rec)
		}
		switch rec.Fault {
		case FaultLinkCut, FaultKillMidDump:
			// The fault acted: the link was cut, ferry was killed.
			if !strings.Contains(rec.Note, "was cut") && !strings.Contains(rec.Note, "killed with SIGKILL") {
				t.Errorf("%s did not act: %q", rec.Fault, rec.Note)
			}
		}
		if rec.Fault == FaultKillMidDump && !strings.Contains(rec.Note, "ferry runs recover") {
			t.Errorf("kill-mid-dump was not recovered: %q", rec.Note)
		}
		if rec.Exit == 4 && rec.Bundle == "" {
			t.Errorf("%s: a failed move without its bug-report bundle", rec.Fault)
		}
	}
	for _, f := range AllFaults {
		if !seen[f] {
			t.Errorf("fault %s never injected", f)
		}
	}
	// Nothing left behind: no CRIU lock tables, no tmpfs, no stray images.
	for _, h := range append(bed.HostNames, bed.TB.HostName(3)) {
		out, err := exec.Command("ip", "netns", "exec", bed.TB.Host(h).Netns, "nft", "list", "tables").CombinedOutput()
		if err != nil || strings.Contains(string(out), "CRIU-") {
			t.Errorf("%s: nft tables: %v\n%s", h, err, out)
		}
		imgs, _ := filepath.Glob(filepath.Join(bed.TB.HostRoot(h), "images", "*"))
		if len(imgs) > 0 {
			t.Errorf("images left on %s: %v", h, imgs)
		}
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), "ferry-soak-disk-full") {
		t.Error("the disk-full tmpfs is still mounted")
	}
}
