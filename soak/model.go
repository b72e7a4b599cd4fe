// Package soak runs long migration loops for CI: every workload moved back
// and forth between hosts, verified after every move, with faults injected
// at chosen iterations, and the results written as JUnit XML, JSON lines,
// OpenMetrics text and an HTML report with charts.
package soak

import (
	"math"
	"sort"
	"time"
)

// ResultSchema versions the JSON form of a Result and of its JSON lines.
const ResultSchema = "ferry.soak/v1"

// Outcomes of one move.
const (
	// OutcomeOK: moved, and the workload verified on the target.
	OutcomeOK = "ok"
	// OutcomeSurvived: a fault was injected and the workload verified
	// afterwards, on the source (the move rolled back) or on the target.
	OutcomeSurvived = "survived"
	// OutcomeFailed: a move without a fault failed, or the workload failed
	// its check where ferry said it runs; it still runs somewhere.
	OutcomeFailed = "failed"
	// OutcomeLost: the workload verifies on no host.
	OutcomeLost = "lost"
)

// Faults the soak can inject.
const (
	FaultLinkCut        = "link-cut"        // the target's link goes down during the page-server transfer
	FaultKillMidDump    = "kill-mid-dump"   // ferry is killed with SIGKILL while CRIU dumps
	FaultDiskFull       = "disk-full"       // the target's image directory is a tiny tmpfs
	FaultCRIUMissing    = "criu-missing"    // CRIU does not run on the target
	FaultRestoreFailure = "restore-failure" // the restore fails on the target (its network device name taken)
)

// AllFaults lists every fault, in the order `--inject all` spreads them.
var AllFaults = []string{FaultLinkCut, FaultKillMidDump, FaultDiskFull, FaultCRIUMissing, FaultRestoreFailure}

// Record is one move of one workload in one iteration.
type Record struct {
	Iteration int       `json:"iteration"`
	Workload  string    `json:"workload"`
	From      string    `json:"from"`
	To        string    `json:"to"`
	Mode      string    `json:"mode"`
	Fault     string    `json:"fault,omitempty"`
	Outcome   string    `json:"outcome"`
	RunID     string    `json:"run_id,omitempty"`
	Exit      int       `json:"exit"`
	Start     time.Time `json:"start"`
	// Duration is the wall time of the move and its check.
	Duration time.Duration `json:"duration_ns"`
	// Downtime is from the source being frozen until the workload ran on
	// the target (0 when the move did not complete).
	Downtime time.Duration `json:"downtime_ns"`
	// Frozen is CRIU's frozen time; Dump, Transfer and Restore are the
	// durations of the journal's steps.
	Frozen       time.Duration `json:"frozen_ns"`
	Dump         time.Duration `json:"dump_ns"`
	Transfer     time.Duration `json:"transfer_ns"`
	Restore      time.Duration `json:"restore_ns"`
	ImageBytes   int64         `json:"image_bytes"`
	PagesWritten uint64        `json:"pages_written"`
	// Error is why the move failed; Lifted the CRIU log lines behind it.
	Error  string   `json:"error,omitempty"`
	Lifted []string `json:"lifted,omitempty"`
	// Bundle is the bug-report bundle made for a failed move.
	Bundle string `json:"bundle,omitempty"`
	// VerifiedOn is the host where the workload passed its check after
	// the move ("" when it passed nowhere).
	VerifiedOn string `json:"verified_on,omitempty"`
	// Note says what an injected fault did, or anything else worth a line.
	Note string `json:"note,omitempty"`
}

// WorkloadSummary sums up one workload's moves.
type WorkloadSummary struct {
	Workload     string        `json:"workload"`
	Moves        int           `json:"moves"`
	OK           int           `json:"ok"`
	Failures     int           `json:"failures"`
	Survived     int           `json:"survived"`
	Lost         bool          `json:"lost"`
	DowntimeP50  time.Duration `json:"downtime_p50_ns"`
	DowntimeP95  time.Duration `json:"downtime_p95_ns"`
	DowntimeMax  time.Duration `json:"downtime_max_ns"`
	DowntimeMean time.Duration `json:"downtime_mean_ns"`
}

// Summary sums up a soak.
type Summary struct {
	Schema         string            `json:"schema"`
	Runtime        string            `json:"runtime"`
	Mode           string            `json:"mode"`
	Hosts          []string          `json:"hosts"`
	Started        time.Time         `json:"started"`
	Ended          time.Time         `json:"ended"`
	Iterations     int               `json:"iterations"`
	Moves          int               `json:"moves"`
	Failures       int               `json:"failures"`
	FaultsInjected int               `json:"faults_injected"`
	FaultsSurvived int               `json:"faults_survived"`
	WorkloadsLost  int               `json:"workloads_lost"`
	MovesPerMinute float64           `json:"moves_per_minute"`
	Workloads      []WorkloadSummary `json:"workloads"`
	// Seed drew the random fault iterations: --seed repeats them.
	Seed uint64 `json:"seed,omitempty"`
	// Stopped says why the soak ended before its planned end (a failure
	// without --keep-going, an interrupt).
	Stopped string `json:"stopped,omitempty"`
}

// OK reports whether the soak found nothing wrong.
func (s Summary) OK() bool { return s.Failures == 0 && s.WorkloadsLost == 0 && s.Stopped == "" }

// Result is a finished (or stopped) soak.
type Result struct {
	Summary Summary  `json:"summary"`
	Records []Record `json:"records"`
}

// Summarize computes the summary figures of records in place of s's
// counters (Runtime, Mode, Hosts, Started, Ended, Iterations and Stopped are
// kept). Downtime percentiles count only completed moves.
func Summarize(s Summary, records []Record) Summary {
	s.Schema = ResultSchema
	s.Moves, s.Failures, s.FaultsInjected, s.FaultsSurvived, s.WorkloadsLost = len(records), 0, 0, 0, 0
	byName := map[string]*WorkloadSummary{}
	var order []string
	downtimes := map[string][]time.Duration{}
	for _, r := range records {
		w := byName[r.Workload]
		if w == nil {
			w = &WorkloadSummary{Workload: r.Workload}
			byName[r.Workload] = w
			order = append(order, r.Workload)
		}
		w.Moves++
		if r.Fault != "" {
			s.FaultsInjected++
		}
		switch r.Outcome {
		case OutcomeOK:
			w.OK++
		case OutcomeSurvived:
			w.Survived++
			s.FaultsSurvived++
		case OutcomeFailed:
			w.Failures++
			s.Failures++
		case OutcomeLost:
			w.Failures++
			s.Failures++
			w.Lost = true
		}
		if r.Downtime > 0 {
			downtimes[r.Workload] = append(downtimes[r.Workload], r.Downtime)
		}
	}
	s.Workloads = s.Workloads[:0:0]
	for _, name := range order {
		w := byName[name]
		d := downtimes[name]
		w.DowntimeP50, w.DowntimeP95, w.DowntimeMax, w.DowntimeMean = Percentile(d, 50), Percentile(d, 95), Percentile(d, 100), mean(d)
		if w.Lost {
			s.WorkloadsLost++
		}
		s.Workloads = append(s.Workloads, *w)
	}
	if el := s.Ended.Sub(s.Started); el > 0 {
		s.MovesPerMinute = math.Round(float64(len(records))/el.Minutes()*10) / 10
	}
	return s
}

// Percentile is the nearest-rank p-th percentile of d (0 for none).
func Percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	if rank < 1 {
		rank = 1
	}
	return s[rank-1]
}

func mean(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	var sum time.Duration
	for _, v := range d {
		sum += v
	}
	return sum / time.Duration(len(d))
}
