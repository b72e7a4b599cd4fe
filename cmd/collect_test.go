package cmd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ferry-migrate/ferry/collect"
	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/probe"
	"github.com/ferry-migrate/ferry/report"
	"github.com/ferry-migrate/ferry/report/bundle"
)

// TestCollectFailedRestore makes a real restore fail (the checkpointed
// process is still running: its pid clashes), bundles the run with ferry
// collect, unpacks the bundle and checks every file against the manifest,
// then summarises it with ferry report.
func TestCollectFailedRestore(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.CRIU(t)
	runs := t.TempDir()
	t.Setenv("FERRY_RUNS", runs)
	testenv.BecomeSubreaper(t)
	w := testenv.StartDumpable(t, "sleep", "1000")
	dir := filepath.Join(t.TempDir(), "ckpt")

	var cj migrate.Journal
	if code, stderr := runJSON(t, &cj, "checkpoint", "pid:"+strconv.Itoa(w.Process.Pid), "--dir", dir, "--leave-running"); code != exit.OK {
		t.Fatalf("checkpoint exit %d: %s", code, stderr)
	}
	var rj migrate.Journal
	code, stderr := runJSON(t, &rj, "restore", "--dir", dir)
	if code != exit.Migration || rj.ID == "" {
		t.Fatalf("restore over the running process: exit %d, want 4: %s", code, stderr)
	}

	out := filepath.Join(t.TempDir(), "bundle.tar.gz")
	var res CollectResult
	code, stderr = runJSON(t, &res, "collect", "--run", rj.ID, "--out", out)
	if code != exit.OK {
		t.Fatalf("collect exit %d: %s\n%+v", code, stderr, res)
	}
	if res.Bundle != out || res.Failures == nil || len(res.Failures) != 0 {
		t.Errorf("result: %+v", res)
	}

	// Unpack and check every file against the manifest.
	unpacked := filepath.Join(t.TempDir(), "x")
	if err := bundle.Unpack(context.Background(), out, unpacked); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(unpacked, bundle.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	var m bundle.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	byPath := map[string]bundle.Artefact{}
	for _, a := range m.Artefacts {
		byPath[a.Path] = a
		data, err := os.ReadFile(filepath.Join(unpacked, filepath.FromSlash(a.Path)))
		if err != nil {
			t.Errorf("%s: %v", a.Path, err)
			continue
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != a.SHA256 || int64(len(data)) != a.Size {
			t.Errorf("%s: checksum or size differs from the manifest", a.Path)
		}
	}
	archive, _ := os.ReadFile(out)
	sum := sha256.Sum256(archive)
	if line, _ := os.ReadFile(out + ".sha256"); !strings.HasPrefix(string(line), hex.EncodeToString(sum[:])+"  bundle.tar.gz") {
		t.Errorf(".sha256 = %q", line)
	}
	want := map[string]string{
		"run/run/journal.json":                `"id": "` + rj.ID + `"`,
		"run/run/command.txt":                 "$ " + host.Quote(rj.Command) + "\n",
		"run/run/restore.log":                 "Can't fork for " + strconv.Itoa(w.Process.Pid) + ": File exists",
		"local/dmesg/dmesg.txt":               "",
		"local/uname/uname.txt":               "Linux ",
		"local/mountinfo/proc-self-mountinfo": " / / ",
		"local/criu-version/criu-version.txt": "Version: ",
		"local/criu-check/criu-check.txt":     "",
	}
	for p, needle := range want {
		a, ok := byPath[p]
		if !ok {
			t.Errorf("%s: not in the bundle", p)
			continue
		}
		if a.Status != bundle.StatusOK && a.Status != bundle.StatusNonZero {
			t.Errorf("%s: status %s: %s", p, a.Status, a.Error)
		}
		data, _ := os.ReadFile(filepath.Join(unpacked, p))
		if len(data) == 0 || !strings.Contains(string(data), needle) {
			t.Errorf("%s lacks %q", p, needle)
		}
	}
	// ferry's facts of the host, still readable after redaction.
	if fb, err := os.ReadFile(filepath.Join(unpacked, "local/facts/facts.json")); err != nil {
		t.Error(err)
	} else if f, err := probe.Read(bytes.NewReader(fb), "facts.json"); err != nil || f.Kernel.Release == "" {
		t.Errorf("facts in the bundle: %v", err)
	}
	if m.Run == nil || m.Run.ID != rj.ID || m.Run.Result != migrate.RunFailed || !strings.Contains(m.Run.Error, "File exists") {
		t.Errorf("manifest run: %+v", m.Run)
	}

	// ferry report names the failure and its known issue.
	io, stdout, errOut := testIO()
	if code := Run(context.Background(), []string{"report", out, "--format", "json"}, io); code != exit.OK {
		t.Fatalf("report exit %d: %s", code, errOut)
	}
	var r report.Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.Failure == nil || r.Failure.Command != host.Quote(rj.Command) || r.Failure.Step == nil || r.Failure.Step.Name == "" {
		t.Errorf("report failure: %+v", r.Failure)
	}
	if len(r.KnownIssues) == 0 || r.KnownIssues[0].Category != "pid-conflict" {
		t.Errorf("known issues: %+v", r.KnownIssues)
	}
	io, stdout, _ = testIO()
	if code := Run(context.Background(), []string{"report", out}, io); code != exit.OK || !bytes.Contains(stdout.Bytes(), []byte("## Known issues")) {
		t.Errorf("markdown report: exit %d\n%s", code, stdout)
	}

	// What checkpoint, restore and migrate call when an operation fails:
	// the bundle lands in the run directory.
	f := NewFactory(io)
	hints := failureBundle(context.Background(), f, rj.ID)
	auto := filepath.Join(runs, rj.ID, "bundle-"+rj.ID+".tar.gz")
	if len(hints) != 1 || !strings.Contains(hints[0], auto) {
		t.Errorf("failure bundle hints: %q, want the path %s", hints, auto)
	}
	if b, err := bundle.Open(context.Background(), auto); err != nil || b.Manifest.Run == nil || b.Manifest.Run.ID != rj.ID {
		t.Errorf("failure bundle: %v", err)
	}
}

func TestCollectBadInput(t *testing.T) {
	t.Setenv("FERRY_RUNS", t.TempDir())
	tmp := t.TempDir()
	tests := []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{[]string{"collect", "--container", "lxd:../../etc"}, exit.Usage, "contains a slash"},
		{[]string{"collect", "--container", "lxd:.."}, exit.Usage, `".."`},
		{[]string{"collect", "--container", "incus:c1\x1b[2J"}, exit.Usage, "control character"},
		{[]string{"collect", "--container", "docker:c1"}, exit.Usage, "lxd: or incus:"},
		{[]string{"collect", "--max-size", "lots"}, exit.Usage, "positive size"},
		{[]string{"collect", "--compression", "xz"}, exit.Usage, "unknown compression"},
		{[]string{"collect", "--run", "nope"}, exit.Failure, "not a run id"},
		{[]string{"collect", "--target", "ssh://"}, exit.Usage, "missing host name"},
		{[]string{"report", filepath.Join(tmp, "none.tar.gz")}, exit.Failure, "no such file"},
		{[]string{"report", "x.tar.gz", "--format", "pdf"}, exit.Usage, "unknown report format"},
		{[]string{"report"}, exit.Usage, "accepts 1 arg"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			io, _, errOut := testIO()
			if got := Run(context.Background(), tt.args, io); got != tt.wantCode {
				t.Errorf("exit %d, want %d: %s", got, tt.wantCode, errOut)
			}
			if !strings.Contains(errOut.String(), tt.wantErr) || !strings.Contains(errOut.String(), "hint: ") {
				t.Errorf("stderr lacks %q or a hint:\n%s", tt.wantErr, errOut)
			}
		})
	}
}

// TestCollectPartial: collectors that cannot finish still leave a bundle,
// listed as failures, and ferry exits 5.
func TestCollectPartial(t *testing.T) {
	t.Setenv("FERRY_RUNS", t.TempDir())
	out := filepath.Join(t.TempDir(), "partial.tar.gz")
	var res CollectResult
	code, stderr := runJSON(t, &res, "collect", "--timeout", "1ns", "--out", out)
	if code != exit.Partial {
		t.Fatalf("exit %d, want 5: %s", code, stderr)
	}
	if !strings.Contains(stderr, "is partial") || !strings.Contains(stderr, "hint: ") {
		t.Errorf("stderr: %s", stderr)
	}
	if len(res.Failures) == 0 || res.Bundle != out {
		t.Errorf("result: %+v", res)
	}
	b, err := bundle.Open(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(); err != nil {
		t.Error(err)
	}
	if len(b.Manifest.Failures) != len(res.Failures) {
		t.Errorf("manifest failures %d, result %d", len(b.Manifest.Failures), len(res.Failures))
	}
}

// TestReportFindingsFromBundleFacts: the facts a bundle holds of its source
// and target (redacted, network included, as collect writes them) go
// through ferry check's rules in ferry report.
func TestReportFindingsFromBundleFacts(t *testing.T) {
	red := collect.NewRedactor(true)
	red.AddHostnames("vm")
	p := filepath.Join(t.TempDir(), "b.tar.gz")
	w, err := bundle.Create(p, bundle.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []struct{ dir, file string }{{"src", "facts-vm-6.18.json"}, {"dst", "facts-cpu-no-avx512.json"}} {
		raw, err := os.ReadFile(filepath.Join("testdata", h.file))
		if err != nil {
			t.Fatal(err)
		}
		data, _ := red.Redact(raw)
		if _, err := probe.Read(bytes.NewReader(data), h.file); err != nil {
			t.Fatalf("redacted facts no longer read: %v", err)
		}
		if _, err := w.Add(bundle.Artefact{Path: h.dir + "/facts/facts.json", Collector: host.FactsCollector, Status: bundle.StatusOK, ExitCode: -1}, data); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(bundle.Manifest{Hosts: []bundle.Host{{Name: "testbed:src", Role: "source", Dir: "src"}, {Name: "testbed:dst", Role: "target", Dir: "dst"}}}); err != nil {
		t.Fatal(err)
	}
	io, stdout, errOut := testIO()
	if code := Run(context.Background(), []string{"report", p, "--format", "json"}, io); code != exit.OK {
		t.Fatalf("report exit %d: %s", code, errOut)
	}
	var r report.Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range r.Findings {
		if f.Severity == "blocker" && f.Rule == "cpu.instruction-flags" && strings.Contains(f.Message, "avx512") {
			found = true
		}
	}
	if !found {
		t.Errorf("no cpu.instruction-flags blocker in %+v", r.Findings)
	}

	// ferry probe and ferry check read hosts from the bundle.
	var f probe.Facts
	if code, stderr := runJSON(t, &f, "probe", p+"#target"); code != exit.OK || f.Schema != probe.Schema {
		t.Errorf("probe BUNDLE#target: exit %d: %s", code, stderr)
	}
	var cr probe.Report
	if code, stderr := runJSON(t, &cr, "check", p, p+"#target"); code != exit.Incompatible || cr.Blockers == 0 {
		t.Errorf("check BUNDLE BUNDLE#target: exit %d, %d blockers: %s", code, cr.Blockers, stderr)
	}
	if code, stderr := runJSON(t, &cr, "check", p, p+"#nope"); code != exit.Usage || !strings.Contains(stderr, "no host nope") {
		t.Errorf("check with an unknown bundle host: exit %d: %s", code, stderr)
	}

	// One host: nothing to compare, said so.
	one := testBundleOneHost(t)
	io, stdout, _ = testIO()
	if code := Run(context.Background(), []string{"report", one, "--format", "json"}, io); code != exit.OK {
		t.Fatal(code)
	}
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil || len(r.Findings) != 0 || !strings.Contains(r.FindingsNote, "one host") {
		t.Errorf("one host: %v %+v %q", err, r.Findings, r.FindingsNote)
	}
	if code, stderr := runJSON(t, &f, "probe", one); code != exit.Failure || !strings.Contains(stderr, "holds no ferry facts") {
		t.Errorf("probe of a bundle without facts: exit %d: %s", code, stderr)
	}
}

func testBundleOneHost(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "one.tar.gz")
	w, err := bundle.Create(p, bundle.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Add(bundle.Artefact{Path: "local/uname/uname.txt", Collector: "uname", Command: []string{"uname", "-a"}, Status: bundle.StatusOK}, []byte("Linux vm 6.18\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(bundle.Manifest{Hosts: []bundle.Host{{Name: "local", Role: "host", Dir: "local"}}}); err != nil {
		t.Fatal(err)
	}
	return p
}

// BenchmarkCollectCommand is `ferry collect` as users run it (with the
// facts of each host): this machine alone, and a testbed pair (two network
// namespaces, needs root).
func BenchmarkCollectCommand(b *testing.B) {
	b.Setenv("FERRY_RUNS", b.TempDir())
	bench := func(b *testing.B, extra ...string) {
		dir := b.TempDir()
		var size int64
		for i := 0; b.Loop(); i++ {
			out := filepath.Join(dir, "b"+strconv.Itoa(i)+".tar.gz")
			io, _, errOut := testIO()
			if code := Run(context.Background(), append([]string{"collect", "--out", out}, extra...), io); code != exit.OK && code != exit.Partial {
				b.Fatalf("exit %d: %s", code, errOut)
			}
			st, err := os.Stat(out)
			if err != nil {
				b.Fatal(err)
			}
			size = st.Size()
			os.Remove(out)
		}
		b.ReportMetric(float64(size), "bundle-bytes")
	}
	b.Run("local", func(b *testing.B) { bench(b) })
	b.Run("testbed-pair", func(b *testing.B) {
		if os.Geteuid() != 0 {
			b.Skip("needs root")
		}
		for _, n := range []string{"cbench-a", "cbench-b"} {
			if out, err := exec.Command("ip", "netns", "add", "ferry-"+n).CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
			b.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", "ferry-"+n).Run() })
			_ = exec.Command("ip", "netns", "exec", "ferry-"+n, "ip", "link", "set", "lo", "up").Run()
		}
		bench(b, "--source", "testbed:cbench-a", "--target", "testbed:cbench-b")
	})
}
