package soak

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// fakeBed moves workloads in a map; fail and lose pick moves that go
// wrong.
type fakeBed struct {
	hosts  []string
	at     map[string]string
	faults []string
	// fail makes the move of (iteration, workload) fail and stay.
	fail map[[2]any]bool
	// lose makes the workload fail every check after that move.
	lose    map[[2]any]bool
	lost    map[string]bool
	moves   []MoveSpec
	bundles []string
	clock   *time.Time
}

func (b *fakeBed) Hosts() []string { return b.hosts }
func (b *fakeBed) Faults() []string {
	return b.faults
}
func (b *fakeBed) Where(_ context.Context, w string) (string, error) {
	if h, ok := b.at[w]; ok {
		return h, nil
	}
	return "", errors.New("no such workload")
}
func (b *fakeBed) Move(_ context.Context, m MoveSpec, rec *Record) error {
	b.moves = append(b.moves, m)
	if b.clock != nil {
		*b.clock = b.clock.Add(10 * time.Second)
	}
	rec.RunID = "run-" + m.Workload
	key := [2]any{m.Iteration, m.Workload}
	if b.lose[key] {
		b.lost[m.Workload] = true
	}
	if m.Fault != "" || b.fail[key] {
		rec.Exit, rec.Error = 4, "criu restore: boom"
		if m.Fault == FaultCRIUMissing {
			rec.Exit = 1
		}
		return nil
	}
	b.at[m.Workload] = m.To
	rec.Downtime = time.Duration(100*m.Iteration) * time.Millisecond
	return nil
}
func (b *fakeBed) Verify(_ context.Context, w string) (string, error) {
	if b.lost[w] {
		return "", errors.New(w + " is not running")
	}
	return b.at[w], nil
}
func (b *fakeBed) Bundle(_ context.Context, id string) (string, error) {
	b.bundles = append(b.bundles, id)
	return "/b/" + id + ".tar.gz", nil
}

func newFake(hosts ...string) *fakeBed {
	return &fakeBed{hosts: hosts, at: map[string]string{"a": hosts[0], "b": hosts[0]}, faults: AllFaults,
		fail: map[[2]any]bool{}, lose: map[[2]any]bool{}, lost: map[string]bool{}}
}

type brief struct {
	It               int
	W, From, To      string
	Mode, Fault, Out string
}

func briefs(rs []Record) []brief {
	var out []brief
	for _, r := range rs {
		out = append(out, brief{r.Iteration, r.Workload, r.From, r.To, r.Mode, r.Fault, r.Outcome})
	}
	return out
}

func TestRunnerRoundRobinAndFaults(t *testing.T) {
	bed := newFake("h1", "h2", "h3")
	r := &Runner{Bed: bed, Workloads: []string{"a", "b"}, Iterations: 3, Mode: ModeAlternate,
		Inject: []Injection{{Fault: FaultLinkCut, Iteration: 2}, {Fault: FaultDiskFull, Iteration: 2, Workload: "a"}}}
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []brief{
		{1, "a", "h1", "h2", "stop-copy", "", OutcomeOK},
		{1, "b", "h1", "h2", "stop-copy", "", OutcomeOK},
		// The disk-full injection named a; the link cut takes the next free
		// workload and forces the page server.
		{2, "a", "h2", "h3", "page-server", FaultDiskFull, OutcomeSurvived},
		{2, "b", "h2", "h3", "page-server", FaultLinkCut, OutcomeSurvived},
		{3, "a", "h2", "h3", "stop-copy", "", OutcomeOK},
		{3, "b", "h2", "h3", "stop-copy", "", OutcomeOK},
	}
	if diff := cmp.Diff(want, briefs(res.Records)); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	s := res.Summary
	if s.Iterations != 3 || s.FaultsInjected != 2 || s.FaultsSurvived != 2 || s.Failures != 0 || !s.OK() {
		t.Errorf("summary %+v", s)
	}
	if len(bed.bundles) != 0 {
		t.Errorf("bundles for survived faults: %v", bed.bundles)
	}
}

func TestRunnerFailures(t *testing.T) {
	t.Run("a failure stops the soak and gets a bundle", func(t *testing.T) {
		bed := newFake("h1", "h2")
		bed.fail[[2]any{2, "a"}] = true
		var seen []Record
		r := &Runner{Bed: bed, Workloads: []string{"a", "b"}, Iterations: 5, OnRecord: func(rec Record) { seen = append(seen, rec) }}
		res, err := r.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Records) != 3 || res.Records[2].Outcome != OutcomeFailed || res.Records[2].Bundle != "/b/run-a.tar.gz" {
			t.Fatalf("records %+v", res.Records)
		}
		if !strings.Contains(res.Summary.Stopped, "--keep-going") || res.Summary.OK() {
			t.Errorf("summary %+v", res.Summary)
		}
		if len(seen) != 3 {
			t.Errorf("OnRecord saw %d records", len(seen))
		}
	})
	t.Run("keep going; a lost workload is moved no more", func(t *testing.T) {
		bed := newFake("h1", "h2")
		bed.fail[[2]any{1, "a"}] = true
		bed.lose[[2]any{2, "b"}] = true
		r := &Runner{Bed: bed, Workloads: []string{"a", "b"}, Iterations: 3, KeepGoing: true}
		res, err := r.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		want := []brief{
			{1, "a", "h1", "h2", "stop-copy", "", OutcomeFailed},
			{1, "b", "h1", "h2", "stop-copy", "", OutcomeOK},
			{2, "a", "h1", "h2", "stop-copy", "", OutcomeOK},
			{2, "b", "h2", "h1", "stop-copy", "", OutcomeLost},
			{3, "a", "h2", "h1", "stop-copy", "", OutcomeOK},
		}
		if diff := cmp.Diff(want, briefs(res.Records)); diff != "" {
			t.Errorf("records (-want +got):\n%s", diff)
		}
		if res.Summary.WorkloadsLost != 1 || res.Summary.Failures != 2 || res.Summary.Stopped != "" {
			t.Errorf("summary %+v", res.Summary)
		}
	})
	t.Run("a fault the bed cannot inject is refused", func(t *testing.T) {
		bed := newFake("h1", "h2")
		bed.faults = []string{FaultRestoreFailure}
		_, err := (&Runner{Bed: bed, Workloads: []string{"a"}, Iterations: 2, Inject: []Injection{{Fault: FaultLinkCut, Iteration: 2}}}).Run(context.Background())
		var ie *InjectError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), "cannot inject") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestRunnerDuration(t *testing.T) {
	clock := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	bed := newFake("h1", "h2")
	bed.clock = &clock
	r := &Runner{Bed: bed, Workloads: []string{"a"}, Duration: 35 * time.Second, Now: func() time.Time { return clock },
		Inject: []Injection{{Fault: FaultKillMidDump, Iteration: 9}}}
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Moves take 10 s: iterations start at 0, 10, 20 and 30 s.
	if res.Summary.Iterations != 4 || len(res.Records) != 4 {
		t.Errorf("iterations %d, records %d", res.Summary.Iterations, len(res.Records))
	}
	if !strings.Contains(res.Summary.Stopped, "before iteration 9") {
		t.Errorf("a planned fault that never ran is not reported: %q", res.Summary.Stopped)
	}
	if res.Summary.MovesPerMinute != 6 {
		t.Errorf("moves per minute %v", res.Summary.MovesPerMinute)
	}
}

func TestParseInject(t *testing.T) {
	tests := []struct {
		items      []string
		iterations int
		want       []Injection
		err        string
	}{
		{items: []string{"disk-full@3", "link-cut@2:mem"}, iterations: 5,
			want: []Injection{{Fault: FaultLinkCut, Iteration: 2, Workload: "mem"}, {Fault: FaultDiskFull, Iteration: 3}}},
		{items: []string{"kill-mid-dump", "criu-missing"}, iterations: 0,
			want: []Injection{{Fault: FaultKillMidDump, Iteration: 2}, {Fault: FaultCRIUMissing, Iteration: 3}}},
		{items: []string{"restore-failure"}, iterations: 1, want: []Injection{{Fault: FaultRestoreFailure, Iteration: 1}}},
		{items: []string{"nope"}, iterations: 5, err: `unknown fault "nope"`},
		{items: []string{"disk-full@9"}, iterations: 5, err: "iteration must be 1..5"},
		{items: []string{"disk-full@x"}, iterations: 5, err: "iteration must be"},
	}
	for _, tt := range tests {
		got, err := ParseInject(tt.items, tt.iterations, rand.New(rand.NewPCG(1, 2)))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%v: err %v, want %q", tt.items, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tt.items, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%v (-want +got):\n%s", tt.items, diff)
		}
	}
	// all: every fault once, at iterations 2..N.
	got, err := ParseInject([]string{"all"}, 50, rand.New(rand.NewPCG(3, 4)))
	if err != nil {
		t.Fatal(err)
	}
	var faults []string
	for _, in := range got {
		faults = append(faults, in.Fault)
		if in.Iteration < 2 || in.Iteration > 50 {
			t.Errorf("%s at iteration %d", in.Fault, in.Iteration)
		}
	}
	if diff := cmp.Diff(AllFaults, faults, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("all (-want +got):\n%s", diff)
	}
}
