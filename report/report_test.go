package report

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	goldenfile "github.com/ferry-migrate/ferry/internal/golden"
	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/report/bundle"
)

var created = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func testdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// testBundle writes a bundle like the one of a restore that failed with a
// pid clash, collected from a source and a target host.
func testBundle(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ferry-bundle-20261129T120000-restore-abc123.tar.gz")
	w, err := bundle.Create(p, bundle.WriterOptions{ModTime: created})
	if err != nil {
		t.Fatal(err)
	}
	j := migrate.Journal{
		Schema: migrate.JournalSchema, ID: "20261129T120000-restore-abc123", Operation: "restore",
		Command: []string{"ferry", "restore", "--dir", "/tmp/ckpt"}, Driver: "criu", Target: "pid:27407",
		Source: "local", Started: created, Ended: created.Add(time.Second), Result: migrate.RunFailed,
		Error: "restore: criu restore: Error (criu/cr-restore.c:1237): Can't fork for 27407: File exists",
		Steps: []migrate.Step{
			{Name: "preflight", Host: "local", Result: migrate.StepOK},
			{Name: "restore", Host: "local", Result: migrate.StepFailed, Log: "restore.log",
				Error:  "criu restore: (00.062949) Error (criu/cr-restore.c:1237): Can't fork for 27407: File exists",
				Lifted: []string{"(00.062949) Error (criu/cr-restore.c:1237): Can't fork for 27407: File exists"}},
		},
	}
	journal, _ := json.MarshalIndent(j, "", "  ")
	type entry struct {
		a    bundle.Artefact
		data string
	}
	cmd := func(host, dir, collector, file string, argv []string, data string, status string, exit int) entry {
		return entry{bundle.Artefact{Path: dir + "/" + collector + "/" + file, Host: host, Collector: collector, Command: argv, Status: status, ExitCode: exit, Duration: 5 * time.Millisecond}, data}
	}
	file := func(host, dir, collector, src, data, status string) entry {
		return entry{bundle.Artefact{Path: dir + "/" + collector + "/" + strings.ReplaceAll(strings.TrimPrefix(src, "/"), "/", "-"), Host: host, Collector: collector, Source: src, Status: status, ExitCode: -1}, data}
	}
	var es []entry
	for _, h := range []struct{ name, dir, uname, criu, check, lxd string }{
		{"testbed:src", "testbed-src", "Linux src 6.18.44-fc-v782 #1 SMP PREEMPT_DYNAMIC x86_64 GNU/Linux\n", "Version: 4.2.1\n", "Looks good.\n", testdata(t, "lxc-info.txt")},
		{"testbed:dst", "testbed-dst", "Linux dst 6.1.0-27-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.115-1 x86_64 GNU/Linux\n", "Version: 3.17.1\n", "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds\n", ""},
	} {
		es = append(es,
			cmd(h.name, h.dir, "uname", "uname.txt", []string{"uname", "-a"}, h.uname, bundle.StatusOK, 0),
			cmd(h.name, h.dir, "criu-version", "criu-version.txt", []string{"criu", "--version"}, h.criu, bundle.StatusOK, 0),
			file(h.name, h.dir, "os-release", "/etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n", bundle.StatusOK),
			file(h.name, h.dir, "lxd-bridge", "/etc/default/lxd-bridge", "", bundle.StatusAbsent),
		)
		if h.lxd != "" {
			es = append(es, cmd(h.name, h.dir, "lxd-info", "lxd-info.txt", []string{"lxc", "info"}, h.lxd, bundle.StatusOK, 0))
		} else {
			es = append(es, cmd(h.name, h.dir, "lxd-info", "lxd-info.txt", []string{"lxc", "info"}, "", bundle.StatusAbsent, -1))
		}
		status, exit := bundle.StatusOK, 0
		if strings.Contains(h.check, "Error") {
			status, exit = bundle.StatusNonZero, 1
		}
		es = append(es, cmd(h.name, h.dir, "criu-check", "criu-check.txt", []string{"criu", "check", "--all"}, h.check, status, exit))
	}
	es = append(es,
		entry{bundle.Artefact{Path: "run/run/journal.json", Host: "local", Collector: "run", Source: "/var/lib/ferry/runs/x/journal.json", Status: bundle.StatusOK, ExitCode: -1}, string(journal)},
		entry{bundle.Artefact{Path: "run/run/restore.log", Host: "local", Collector: "run", Source: "/var/lib/ferry/runs/x/restore.log", Status: bundle.StatusOK, ExitCode: -1, Truncated: true, OriginalSize: 99999}, testdata(t, "criu-4.2.1-restore-pid-clash.log")},
		entry{bundle.Artefact{Path: "testbed-dst/dmesg/dmesg.txt", Host: "testbed:dst", Collector: "dmesg", Command: []string{"dmesg"}, Status: bundle.StatusFailed, ExitCode: -1, Error: "cut at the 30s timeout <script>alert(1)</script>"}, "[0.0] booting | <script>alert(1)</script>\n"},
	)
	for _, e := range es {
		if _, err := w.Add(e.a, []byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	_, err = w.Close(bundle.Manifest{
		Created: created, Ferry: "v0.1.0-test",
		Hosts:    []bundle.Host{{Name: "testbed:src", Role: "source", Dir: "testbed-src"}, {Name: "testbed:dst", Role: "target", Dir: "testbed-dst"}},
		Run:      &bundle.Run{ID: j.ID, Operation: j.Operation, Command: j.Command, Target: j.Target, Result: j.Result, Error: j.Error},
		Failures: []string{"testbed-dst/dmesg/dmesg.txt: cut at the 30s timeout <script>alert(1)</script>"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func build(t *testing.T) *Report {
	t.Helper()
	b, err := bundle.Open(context.Background(), testBundle(t))
	if err != nil {
		t.Fatal(err)
	}
	return Build(b, Options{})
}

func TestReportGolden(t *testing.T) {
	t.Parallel()
	r := build(t)
	for _, f := range []struct{ format, file string }{{Markdown, "report.md"}, {JSON, "report.json"}} {
		var buf bytes.Buffer
		if err := Render(&buf, r, f.format); err != nil {
			t.Fatal(err)
		}
		golden(t, f.file, buf.Bytes())
	}
	// Findings from the probe rules, when the caller can compute them.
	b, err := bundle.Open(context.Background(), testBundle(t))
	if err != nil {
		t.Fatal(err)
	}
	withFindings := Build(b, Options{Findings: func(*bundle.Bundle) ([]Finding, string) {
		return []Finding{{Severity: "blocker", Rule: "criu-vvar-vclock", Message: "CRIU 3.17.1 on the target cannot handle kernel 6.1's vDSO | layout",
			Hint: "upgrade CRIU to 4.1 or later", Source: "criu 4.2.1", Target: "criu 3.17.1"}}, ""
	}})
	var buf bytes.Buffer
	if err := Render(&buf, withFindings, Markdown); err != nil {
		t.Fatal(err)
	}
	golden(t, "report-findings.md", buf.Bytes())

	// What the report must say.
	if r.Failure == nil || r.Failure.Command != "ferry restore --dir /tmp/ckpt" || r.Failure.Step == nil || r.Failure.Step.Name != "restore" {
		t.Errorf("failure: %+v", r.Failure)
	}
	if len(r.KnownIssues) == 0 || r.KnownIssues[0].Category != "pid-conflict" {
		t.Errorf("known issues: %+v", r.KnownIssues)
	}
	facts := map[string][]string{}
	for _, f := range r.Facts {
		facts[f.Name] = f.Values
	}
	want := map[string][]string{
		"kernel": {"6.18.44-fc-v782", "6.1.0-27-amd64"},
		"criu":   {"4.2.1", "3.17.1"},
		"lxd":    {"5.0.2", "absent"},
	}
	for k, v := range want {
		if diff := cmp.Diff(v, facts[k]); diff != "" {
			t.Errorf("fact %s (-want +got):\n%s", k, diff)
		}
	}
}

// TestJSONFields locks the report's JSON field set.
func TestJSONFields(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := Render(&buf, build(t), JSON); err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	want := []string{"artefacts", "bundle", "container", "created", "facts", "failure", "ferry", "findings", "findings_note", "hosts", "incomplete", "known_issues", "redact_network", "schema"}
	if diff := cmp.Diff(want, keys, cmpSorted); diff != "" {
		t.Errorf("JSON fields (-want +got):\n%s", diff)
	}
}

var cmpSorted = cmp.Transformer("sort", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})

// TestHTMLInChromium renders the page in a real headless browser and checks
// the DOM it built: every section, the facts table, the known issue, and
// that text from the bundle stayed text (no script element from a log).
func TestHTMLInChromium(t *testing.T) {
	var buf bytes.Buffer
	if err := Render(&buf, build(t), HTML); err != nil {
		t.Fatal(err)
	}
	dom := testenv.ChromiumDOM(t, buf.Bytes())
	for _, want := range []string{
		`<section id="failure">`, `<section id="hosts">`, `<section id="findings">`, `<section id="known-issues">`, `<section id="artefacts">`,
		`$ ferry restore --dir /tmp/ckpt`,
		`<th>kernel</th><td>6.18.44-fc-v782</td><td>6.1.0-27-amd64</td>`,
		`<strong>pid-conflict</strong>`,
		`<td><code>run/run/restore.log</code></td>`,
		`&lt;script&gt;alert(1)&lt;/script&gt;`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the DOM lacks %q", want)
		}
	}
	if strings.Count(dom, `class="artefact"`) != 15 {
		t.Errorf("artefact rows: %d, want 15", strings.Count(dom, `class="artefact"`))
	}
	if strings.Contains(dom, "<script") {
		t.Error("the DOM holds a script element")
	}
}

// golden compares got with testdata/name (go test -update rewrites it).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	goldenfile.Check(t, filepath.Join("testdata", name), got)
}
