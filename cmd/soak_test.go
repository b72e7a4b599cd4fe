package cmd

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/soak"
	"github.com/ferry-migrate/ferry/testbed"
)

// TestSoakCI is the soak CI runs: 50 rounds over the whole zoo on a testbed
// the soak brings up and tears down itself, every fault injected once.
// Nothing may be lost, every fault must be survived and show in the
// results, and the JUnit file and the JSON lines are read back.
func TestSoakCI(t *testing.T) {
	requireTestbed(t)
	ferry := ownTestbed(t, "s")
	out := t.TempDir()
	junit, jsonl, metrics, html := filepath.Join(out, "soak.xml"), filepath.Join(out, "soak.jsonl"), filepath.Join(out, "soak.prom"), filepath.Join(out, "soak.html")
	const iterations = 50
	code, stdout, stderr := ferry("soak", "--iterations", "50", "--inject", "all", "--seed", "7",
		"--work-dir", filepath.Join(out, "work"), "--junit", junit, "--json", jsonl, "--metrics", metrics, "--html", html)
	if code != exit.OK {
		t.Fatalf("soak: exit %d\n%s\n%s", code, stdout, tail(stderr, 40))
	}
	t.Logf("soak summary:\n%s", stdout)

	// The JUnit file, read back: a case per workload per round, no failure.
	f, err := os.Open(junit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	suites, err := soak.ReadJUnit(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(suites.Suites) != len(soak.DefaultZoo) {
		t.Errorf("%d suites, want one per zoo workload (%d)", len(suites.Suites), len(soak.DefaultZoo))
	}
	cases, faults := 0, map[string]bool{}
	for _, s := range suites.Suites {
		if s.Failures != 0 || s.Errors != 0 || len(s.Cases) != iterations {
			t.Errorf("suite %s: %d cases, %d failures, %d errors; want %d cases and none failed", s.Name, len(s.Cases), s.Failures, s.Errors, iterations)
		}
		for _, c := range s.Cases {
			cases++
			if c.Failure != nil {
				t.Errorf("%s: %s failed: %s", s.Name, c.Name, c.Failure.Message)
			}
			for _, fault := range soak.AllFaults {
				if strings.Contains(c.Name, "[fault: "+fault+"]") && c.SystemOut != nil && strings.Contains(c.SystemOut.Text, fault) {
					faults[fault] = true
				}
			}
		}
	}
	if cases != iterations*len(soak.DefaultZoo) {
		t.Errorf("%d test cases, want %d", cases, iterations*len(soak.DefaultZoo))
	}
	for _, fault := range soak.AllFaults {
		if !faults[fault] {
			t.Errorf("fault %s does not show in the JUnit file", fault)
		}
	}

	// The JSON lines: the same moves, and a summary with nothing lost.
	jf, err := os.Open(jsonl)
	if err != nil {
		t.Fatal(err)
	}
	defer jf.Close()
	recs, sum, err := soak.ReadJSONLines(jf)
	if err != nil {
		t.Fatal(err)
	}
	if sum == nil || len(recs) != cases || sum.WorkloadsLost != 0 || sum.Failures != 0 ||
		sum.FaultsInjected != len(soak.AllFaults) || sum.FaultsSurvived != len(soak.AllFaults) || sum.Seed != 7 {
		t.Errorf("JSON lines: %d records, summary %+v", len(recs), sum)
	}
	for _, w := range sum.Workloads {
		if w.DowntimeP50 <= 0 || w.DowntimeMax < w.DowntimeP95 || w.DowntimeP95 < w.DowntimeP50 {
			t.Errorf("%s: downtimes p50 %s p95 %s max %s", w.Workload, w.DowntimeP50, w.DowntimeP95, w.DowntimeMax)
		}
	}
	t.Logf("%d moves, %.1f moves a minute", sum.Moves, sum.MovesPerMinute)
	for _, p := range []string{metrics, html} {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", p, err)
		}
	}
	// The soak's testbed is gone.
	if b, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(b), "ferry-"+os.Getenv(testbed.PrefixEnv)) {
		t.Errorf("the soak left its testbed behind:\n%s", b)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func TestSoakUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"soak", "--inject", "meteor"}, `unknown fault "meteor"`},
		{[]string{"soak", "--inject", "disk-full@99", "--iterations", "5"}, "iteration must be 1..5"},
		{[]string{"soak", "--workloads", "mem=lots"}, "want a positive size"},
		{[]string{"soak", "--workloads", "tcp-client"}, "not a zoo workload"},
		{[]string{"soak", "--mode", "lazy"}, "lazy pages over the network fail"},
		{[]string{"soak", "--iterations", "0"}, "nothing to soak"},
		{[]string{"soak", "--runtime", "docker"}, `unknown runtime "docker"`},
		{[]string{"soak", "--hosts", "testbed:tb1,testbed:tb2"}, "--hosts needs --workloads"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			io, _, errOut := testIO()
			if code := Run(context.Background(), tt.args, io); code != exit.Usage {
				t.Errorf("exit %d, want 2: %s", code, errOut)
			}
			if !strings.Contains(errOut.String(), tt.want) || !strings.Contains(errOut.String(), "hint: ") {
				t.Errorf("stderr lacks %q or a hint:\n%s", tt.want, errOut)
			}
		})
	}
}
