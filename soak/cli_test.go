package soak

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/testbed"
)

// ferryCLI returns a function that runs the ferry binary with a testbed
// and run store of the test's own (prefix plus this process's pid).
func ferryCLI(t *testing.T, prefix, criu string) func(args ...string) (int, string, string) {
	t.Helper()
	exe := testenv.FerryBinary(t)
	dir, err := os.MkdirTemp("/var/tmp", "ferry-soak-cli-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	env := append(os.Environ(), testbed.DirEnv+"="+filepath.Join(dir, "testbed"),
		testbed.PrefixEnv+"="+prefix+strconv.Itoa(os.Getpid()%10000), testbed.ExeEnv+"="+exe,
		"FERRY_RUNS="+filepath.Join(dir, "runs"), "FERRY_CRIU="+criu)
	run := func(args ...string) (int, string, string) {
		c := exec.Command(exe, args...)
		c.Env = env
		var stdout, stderr bytes.Buffer
		c.Stdout, c.Stderr = &stdout, &stderr
		err := c.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, stdout.String(), stderr.String()
	}
	t.Cleanup(func() {
		// A soak that failed half-way may have left its testbed up.
		if code, _, errOut := run("testbed", "down"); code != 0 && !strings.Contains(errOut, "not up") {
			t.Logf("cleanup: testbed down: exit %d: %s", code, errOut)
		}
	})
	return run
}

// TestSoakCI is the soak CI runs: 50 rounds over the whole zoo on a testbed
// the soak brings up and tears down itself, every fault injected once.
// Nothing may be lost, every fault must be survived and show in the
// results, and the JUnit file and the JSON lines are read back.
func TestSoakCI(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "nsenter", "nft", "mount")
	criu := testenv.CRIU(t)
	ferry := ferryCLI(t, "s", criu.Path)
	out := t.TempDir()
	junit, jsonl, metrics, html := filepath.Join(out, "xml"), filepath.Join(out, "jsonl"), filepath.Join(out, "prom"), filepath.Join(out, "html")
	const iterations = 50
	code, stdout, stderr := ferry("soak", "--iterations", "50", "--inject", "all", "--seed", "7",
		"--work-dir", filepath.Join(out, "work"), "--junit", junit, "--json", jsonl, "--metrics", metrics, "--html", html)
	if code != 0 {
		t.Fatalf("soak: exit %d\n%s\n%s", code, stdout, tail(stderr, 40))
	}
	t.Logf("soak summary:\n%s", stdout)

	// The JUnit file, read back: a case per workload per round, no failure.
	f, err := os.Open(junit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	suites, err := ReadJUnit(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(suites.Suites) != len(DefaultZoo) {
		t.Errorf("%d suites, want one per zoo workload (%d)", len(suites.Suites), len(DefaultZoo))
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
			for _, fault := range AllFaults {
				if strings.Contains(c.Name, "[fault: "+fault+"]") && c.SystemOut != nil && strings.Contains(c.SystemOut.Text, fault) {
					faults[fault] = true
				}
			}
		}
	}
	if cases != iterations*len(DefaultZoo) {
		t.Errorf("%d test cases, want %d", cases, iterations*len(DefaultZoo))
	}
	for _, fault := range AllFaults {
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
	recs, sum, err := ReadJSONLines(jf)
	if err != nil {
		t.Fatal(err)
	}
	if sum == nil || len(recs) != cases || sum.WorkloadsLost != 0 || sum.Failures != 0 ||
		sum.FaultsInjected != len(AllFaults) || sum.FaultsSurvived != len(AllFaults) || sum.Seed != 7 {
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
	// Every fault acted, and ferry runs recover brought back the workload
	// of the killed ferry.
	for _, rec := range recs {
		switch rec.Fault {
		case FaultLinkCut:
			if !strings.Contains(rec.Note, "was cut during") {
				t.Errorf("link-cut did not cut: %+v", rec)
			}
		case FaultKillMidDump:
			if !strings.Contains(rec.Note, "killed with SIGKILL") || !strings.Contains(rec.Note, "ferry runs recover") {
				t.Errorf("kill-mid-dump did not kill and recover: %+v", rec)
			}
		}
		if rec.Fault != "" && (rec.Outcome != OutcomeSurvived || rec.Exit == 0) {
			t.Errorf("%s: want a failed move, survived: %+v", rec.Fault, rec)
		}
	}
	// The soak's testbed is gone.
	if b, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(b), "ferry-s"+strconv.Itoa(os.Getpid()%10000)) {
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

// TestSoakHosts soaks a workload of a running testbed round robin over
// three hosts, and leaves the testbed (not its own) up.
func TestSoakHosts(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "nsenter", "nft")
	criu := testenv.CRIU(t)
	ferry := ferryCLI(t, "h", criu.Path)
	p := "h" + strconv.Itoa(os.Getpid()%10000)
	if code, _, errOut := ferry("testbed", "up", "--hosts", "3"); code != 0 {
		t.Fatalf("up: %s", errOut)
	}
	if code, _, errOut := ferry("testbed", "run", p+"1", "counter", "mem", "--memory", "16M"); code != 0 {
		t.Fatalf("run: %s", errOut)
	}
	code, out, errOut := ferry("soak", "--hosts", "testbed:"+p+"1,testbed:"+p+"2,testbed:"+p+"3", "--workloads", "counter",
		"--iterations", "4", "--mode", "stop-copy", "--work-dir", t.TempDir(), "--output", "json")
	if code != 0 {
		t.Fatalf("soak: exit %d\n%s", code, tail(errOut, 20))
	}
	var res Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("soak -o json: %v\n%s", err, out)
	}
	var hops []string
	for _, r := range res.Records {
		hops = append(hops, strings.TrimPrefix(r.From, p)+">"+strings.TrimPrefix(r.To, p))
		if r.Outcome != OutcomeOK || r.VerifiedOn != r.To {
			t.Errorf("move %+v", r)
		}
	}
	if diff := cmp.Diff([]string{"1>2", "2>3", "3>1", "1>2"}, hops); diff != "" {
		t.Errorf("round robin (-want +got):\n%s", diff)
	}
	// The testbed was the user's: still up, the workload on its last host.
	if code, out, errOut := ferry("testbed", "verify", "counter"); code != 0 || !strings.Contains(out, "counter on "+p+"2: ok") {
		t.Errorf("after the soak: exit %d %s%s", code, out, errOut)
	}
}

// TestSoakLeavesOthersTestbed: a soak that cannot bring up its testbed
// (one of that name is up: another soak's, or the user's) fails and leaves
// that testbed alone.
func TestSoakLeavesOthersTestbed(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "nsenter", "nft")
	criu := testenv.CRIU(t)
	ferry := ferryCLI(t, "o", criu.Path)
	p := "o" + strconv.Itoa(os.Getpid()%10000)
	if code, _, errOut := ferry("testbed", "up", "--hosts", "2"); code != 0 {
		t.Fatalf("up: %s", errOut)
	}
	if code, _, errOut := ferry("testbed", "run", p+"1", "w", "threads"); code != 0 {
		t.Fatalf("run: %s", errOut)
	}
	code, _, errOut := ferry("soak", "--iterations", "1", "--workloads", "threads", "--work-dir", t.TempDir())
	if code == 0 || !strings.Contains(errOut, "up") {
		t.Fatalf("soak over a testbed that is up: exit %d\n%s", code, errOut)
	}
	if code, out, errOut := ferry("testbed", "verify", "w"); code != 0 {
		t.Errorf("the other testbed's workload after the refused soak: exit %d %s%s", code, out, errOut)
	}
}
