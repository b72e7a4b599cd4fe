package soak

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWriteJUnitGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, lostFixture()); err != nil {
		t.Fatal(err)
	}
	golden(t, "junit.xml", buf.Bytes())
}

// TestJUnitRoundTrip writes a small soak and parses it back: counts,
// names, the failure of a failed and of a lost move, the system-out of a
// survived fault and the suite properties.
func TestJUnitRoundTrip(t *testing.T) {
	recs := []Record{
		{Iteration: 1, Workload: "web", From: "tb1", To: "tb2", Mode: "page-server", Outcome: OutcomeOK, Start: t0, Duration: ms(1615), Downtime: ms(312)},
		{Iteration: 1, Workload: "db", From: "tb1", To: "tb2", Mode: "page-server", Outcome: OutcomeFailed, Start: t0.Add(ms(2000)), Duration: ms(2480),
			RunID: "run-db-1", Error: "restore on tb2: criu restore exited 1",
			Lifted: []string{"(00.063253) Error (criu/cr-restore.c:2331): Restoring FAILED."},
			Bundle: "bundles/ferry-bug-run-db-1.tar.gz", VerifiedOn: "tb1"},
		{Iteration: 2, Workload: "web", From: "tb2", To: "tb1", Mode: "page-server", Fault: FaultCRIUMissing, Outcome: OutcomeSurvived,
			Start: t0.Add(ms(5000)), Duration: ms(500), Error: "criu not found on tb1", VerifiedOn: "tb2", Note: "criu hidden on tb1; the move stopped before the dump"},
		{Iteration: 2, Workload: "db", From: "tb1", To: "tb2", Mode: "page-server", Fault: FaultRestoreFailure, Outcome: OutcomeLost,
			Start: t0.Add(ms(6000)), Duration: ms(3001), Error: "workload db verifies on no host"},
	}
	res := &Result{Summary: Summarize(Summary{Runtime: "native", Mode: "page-server", Hosts: []string{"tb1", "tb2"}, Started: t0}, recs), Records: recs}
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, res); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJUnit(&buf)
	if err != nil {
		t.Fatal(err)
	}
	props := []JUnitProperty{{"runtime", "native"}, {"mode", "page-server"}, {"hosts", "tb1,tb2"}}
	want := &JUnitSuites{
		Name: "ferry-soak", Tests: 4, Failures: 2, Time: "7.596",
		Suites: []JUnitSuite{
			{Name: "ferry-soak/web", Tests: 2, Time: "2.115", Timestamp: "2026-11-29T12:00:00", Properties: props, Cases: []JUnitCase{
				{Name: "iteration 1: tb1 -> tb2 (page-server)", Classname: "ferry.soak.web", Time: "1.615"},
				{Name: "iteration 2: tb2 -> tb1 (page-server) [fault: criu-missing]", Classname: "ferry.soak.web", Time: "0.500",
					SystemOut: &JUnitOutput{"fault injected: criu-missing\nwhat happened: criu hidden on tb1; the move stopped before the dump\n" +
						"error: criu not found on tb1\nworkload verified on: tb2\n"}},
			}},
			{Name: "ferry-soak/db", Tests: 2, Failures: 2, Time: "5.481", Timestamp: "2026-11-29T12:00:02", Properties: props, Cases: []JUnitCase{
				{Name: "iteration 1: tb1 -> tb2 (page-server)", Classname: "ferry.soak.db", Time: "2.480", Failure: &JUnitFailure{
					Message: "restore on tb2: criu restore exited 1", Type: OutcomeFailed,
					Text: "restore on tb2: criu restore exited 1\n(00.063253) Error (criu/cr-restore.c:2331): Restoring FAILED.\n" +
						"workload verified on: tb1\nrun: run-db-1\nbundle: bundles/ferry-bug-run-db-1.tar.gz\n",
				}},
				{Name: "iteration 2: tb1 -> tb2 (page-server) [fault: restore-failure]", Classname: "ferry.soak.db", Time: "3.001", Failure: &JUnitFailure{
					Message: "workload db verifies on no host", Type: OutcomeLost,
					Text: "workload db verifies on no host\nworkload verified on: no host\n",
				}},
			}},
		},
	}
	if diff := cmp.Diff(want, got, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".XMLName" }, cmp.Ignore())); diff != "" {
		t.Errorf("junit (-want +got):\n%s", diff)
	}
}

// TestJUnitEscapes: markup, quotes and control bytes from a workload name or
// a CRIU log stay data: the document parses and gives the text back.
func TestJUnitEscapes(t *testing.T) {
	name := `<script>alert("x")</script>&`
	recs := []Record{{Iteration: 1, Workload: name, From: "tb1", To: "tb2", Outcome: OutcomeFailed,
		Error: "dump: \"quoted\" & <b>bold</b>\nsecond line", Lifted: []string{"Error (criu/x.c:1): \x1b[31mred\x1b[0m ]]>"}}}
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, &Result{Records: recs}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "<script>") {
		t.Errorf("raw markup in the XML:\n%s", buf.String())
	}
	got, err := ReadJUnit(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Suites) != 1 || len(got.Suites[0].Cases) != 1 || got.Suites[0].Cases[0].Failure == nil {
		t.Fatalf("parsed back: %+v", got)
	}
	if got.Suites[0].Name != "ferry-soak/"+name {
		t.Errorf("suite name %q", got.Suites[0].Name)
	}
	f := got.Suites[0].Cases[0].Failure
	if f.Message != recs[0].Error {
		t.Errorf("message %q, want %q", f.Message, recs[0].Error)
	}
	// ESC is not allowed in XML 1.0: it comes back as U+FFFD.
	if !strings.Contains(f.Text, "\uFFFD[31mred\uFFFD[0m ]]>") {
		t.Errorf("failure text %q", f.Text)
	}
}

func TestJUnitEmpty(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, &Result{}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJUnit(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got.Tests != 0 || len(got.Suites) != 0 || got.Time != "0.000" {
		t.Errorf("empty soak: %+v", got)
	}
}

func TestReadJUnitBroken(t *testing.T) {
	if _, err := ReadJUnit(strings.NewReader(`<testsuites><testsuite name="x">`)); err == nil {
		t.Error("a cut-off document parsed")
	}
}
