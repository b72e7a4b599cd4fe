package soak

import (
	"path/filepath"
	"testing"
	"time"

	goldenfile "github.com/ferry-migrate/ferry/internal/golden"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func ms(v int) time.Duration { return time.Duration(v) * time.Millisecond }

// move is a completed move with its step timings (milliseconds).
func move(it int, wl, from, to string, start time.Duration, downtime, dump, transfer, restore int) Record {
	return Record{
		Iteration: it, Workload: wl, From: from, To: to, Mode: "page-server", Outcome: OutcomeOK,
		RunID: "run-" + wl + "-" + string(rune('0'+it)), Start: t0.Add(start),
		Duration: ms(dump+transfer+restore) + 1200*time.Millisecond, Downtime: ms(downtime),
		Frozen: ms(downtime - 40), Dump: ms(dump), Transfer: ms(transfer), Restore: ms(restore),
		ImageBytes: 18 << 20, PagesWritten: 4480, VerifiedOn: to,
	}
}

// soakFixture is a soak of two workloads over five iterations between tb1
// and tb2: faults survived in iterations 2 and 4, a failed restore of
// "counter" in iteration 3 (with the CRIU lines and a bundle).
func soakFixture() *Result {
	recs := []Record{
		move(1, "web", "tb1", "tb2", 0, 312, 180, 95, 140),
		move(1, "counter", "tb1", "tb2", 3*time.Second, 268, 150, 60, 120),
		{
			Iteration: 2, Workload: "web", From: "tb2", To: "tb1", Mode: "page-server", Fault: FaultLinkCut,
			Outcome: OutcomeSurvived, RunID: "run-web-2", Exit: 4, Start: t0.Add(6 * time.Second),
			Duration: ms(3120), Dump: ms(190), Error: "migrate: page server on tb1: connection reset by peer",
			Lifted:     []string{"(00.412339) Error (criu/page-xfer.c:1022): page-xfer: Can't write the fd: Connection reset by peer"},
			VerifiedOn: "tb2", Note: "tb1's link cut during the transfer; the move rolled back and web runs on tb2",
		},
		move(2, "counter", "tb2", "tb1", 10*time.Second, 255, 148, 58, 117),
		move(3, "web", "tb2", "tb1", 13*time.Second, 540, 310, 160, 250),
		{
			Iteration: 3, Workload: "counter", From: "tb1", To: "tb2", Mode: "page-server",
			Outcome: OutcomeFailed, RunID: "run-counter-3", Exit: 4, Start: t0.Add(17 * time.Second),
			Duration: ms(2480), Dump: ms(152), Transfer: ms(61),
			Error: "restore on tb2: criu restore exited 1",
			Lifted: []string{
				"(00.062949) Error (criu/cr-restore.c:1237): Can't fork for 27407: File exists",
				"(00.063253) Error (criu/cr-restore.c:2331): Restoring FAILED.",
			},
			Bundle: "bundles/ferry-bug-run-counter-3.tar.gz", VerifiedOn: "tb1",
		},
		{
			Iteration: 4, Workload: "web", From: "tb1", To: "tb2", Mode: "page-server", Fault: FaultDiskFull,
			Outcome: OutcomeSurvived, RunID: "run-web-4", Exit: 4, Start: t0.Add(21 * time.Second),
			Duration: ms(1870), Dump: ms(170), Error: "transfer to tb2: write pages-1.img: no space left on device",
			VerifiedOn: "tb1", Note: "tb2's image directory full; the move rolled back",
		},
		move(4, "counter", "tb1", "tb2", 24*time.Second, 301, 160, 70, 131),
		move(5, "web", "tb1", "tb2", 27*time.Second, 388, 205, 110, 163),
		move(5, "counter", "tb2", "tb1", 31*time.Second, 779, 420, 180, 300),
	}
	s := Summarize(Summary{
		Runtime: "native", Mode: "page-server", Hosts: []string{"tb1", "tb2"},
		Started: t0, Ended: t0.Add(36 * time.Second), Iterations: 5,
	}, recs)
	return &Result{Summary: s, Records: recs}
}

// lostFixture is soakFixture with a sixth iteration in which web, killed
// mid-dump, verifies on no host.
func lostFixture() *Result {
	res := soakFixture()
	res.Records = append(res.Records, Record{
		Iteration: 6, Workload: "web", From: "tb2", To: "tb1", Mode: "page-server", Fault: FaultKillMidDump,
		Outcome: OutcomeLost, RunID: "run-web-6", Exit: 4, Start: t0.Add(36 * time.Second), Duration: ms(900),
		Error:  "workload web verifies on no host:\n  tb1: not found\n  tb2: frozen",
		Bundle: "/var/lib/ferry/bundles/ferry-bug-run-web-6.tar.gz",
		Note:   "ferry killed with SIGKILL while CRIU dumped",
	})
	res.Summary.Iterations, res.Summary.Stopped = 6, "workload web lost"
	res.Summary.Ended = t0.Add(37 * time.Second)
	res.Summary = Summarize(res.Summary, res.Records)
	return res
}

// golden compares got with testdata/name (go test -update rewrites it).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	goldenfile.Check(t, filepath.Join("testdata", name), got)
}
