package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/probe"
	"github.com/ferry-migrate/ferry/probe/probetest"
)

// runWith runs ferry like Run does, with the factory's host resolver
// replaced when hostFn is set.
func runWith(t *testing.T, hostFn func(string) (host.Host, error), args ...string) (int, string, string) {
	t.Helper()
	streams, out, errOut := testIO()
	f := NewFactory(streams)
	if hostFn != nil {
		f.Host = hostFn
	}
	root := NewRootCmd(f)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	if err != nil {
		err = classify(err)
		printError(streams.ErrOut, err)
	}
	return exit.CodeOf(err), out.String(), errOut.String()
}

// slowHost never answers: every call waits for its context.
type slowHost struct{}

func (slowHost) Name() string { return "ssh://slow" }
func (slowHost) Run(ctx context.Context, argv []string, _ host.RunOptions) (*host.Result, error) {
	<-ctx.Done()
	return nil, &host.CommandError{Host: "ssh://slow", Argv: argv, ExitCode: -1, TimedOut: true, Err: ctx.Err()}
}
func (slowHost) Open(ctx context.Context, p string) (io.ReadCloser, error) {
	<-ctx.Done()
	return nil, fmt.Errorf("ssh://slow: open %s: %w", p, ctx.Err())
}

func withSlow(spec string) (host.Host, error) {
	if spec == "ssh://slow" {
		return slowHost{}, nil
	}
	return resolveHost(spec)
}

// saveFacts probes a captured variant with `ferry probe --root -o json`
// and writes the facts file a check reads.
func saveFacts(t *testing.T, variant string) string {
	t.Helper()
	dir := probetest.Compose(t, "vm-6.18", variant)
	code, out, errOut := runWith(t, nil, "probe", "--root", dir, "-o", "json")
	if code != 0 {
		t.Fatalf("probe --root %s: exit %d: %s", dir, code, errOut)
	}
	path := filepath.Join(t.TempDir(), "facts-"+variant+".json")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestProbeRoot(t *testing.T) {
	t.Parallel()
	dir := probetest.Compose(t, "vm-6.18", "")
	code, out, errOut := runWith(t, nil, "probe", "--root", dir, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	f, err := probe.Read(strings.NewReader(out), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	if f.Kernel.Release != "6.18.44-fc-v657" || f.CRIU.Version != "4.2.1" || f.Host != "dir:"+dir {
		t.Errorf("facts: %s %s %s", f.Kernel.Release, f.CRIU.Version, f.Host)
	}
	for _, format := range []string{"text", "yaml"} {
		code, out, errOut = runWith(t, nil, "probe", dir, "-o", format)
		if code != 0 || !strings.Contains(out, "6.18.44-fc-v657") {
			t.Errorf("-o %s: exit %d, %s\n%s", format, code, errOut, out)
		}
	}
	// A saved facts file is shown again.
	saved := filepath.Join(t.TempDir(), "a.json")
	os.WriteFile(saved, []byte(strings.Replace(mustJSON(t, f), `"hostname": "vm"`, `"hostname": "saved"`, 1)), 0o644)
	code, out, _ = runWith(t, nil, "probe", saved)
	if code != 0 || !strings.Contains(out, "(saved)") {
		t.Errorf("probe FILE: exit %d\n%s", code, out)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestProbeUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"probe", "local", "--root", dir}, exit.Usage, "both a host"},
		{[]string{"probe", "--root", "/nonexistent/x"}, exit.Usage, "not a directory"},
		{[]string{"probe", "a", "b"}, exit.Usage, "accepts at most 1 arg"},
		{[]string{"probe", dir}, exit.Failure, "no captured host there"},
		{[]string{"check", "local"}, exit.Usage, "accepts 2 arg"},
		{[]string{"check", "--matrix", "local"}, exit.Usage, "requires at least 2"},
		{[]string{"check", "local", "local", "--runtime", "docker"}, exit.Usage, `unknown runtime "docker"`},
	}
	for _, tt := range tests {
		code, _, errOut := runWith(t, nil, tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.want) || !strings.Contains(errOut, "hint: ") {
			t.Errorf("%v: exit %d, want %d with %q:\n%s", tt.args, code, tt.code, tt.want, errOut)
		}
	}
}

func TestCheckLocalLocal(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.CRIU(t)
	code, out, errOut := runWith(t, nil, "check", "local", "local")
	if code != exit.OK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.HasPrefix(out, "local -> local (criu): compatible") {
		t.Errorf("stdout:\n%s", out)
	}
}

func TestCheckSavedAndCaptured(t *testing.T) {
	t.Parallel()
	base := saveFacts(t, "")
	noAVX := saveFacts(t, "cpu-no-avx512")
	platform := saveFacts(t, "platform-flags")
	btrfs := probetest.Compose(t, "vm-6.18", "btrfs-mounted")
	noBtrfs := probetest.Compose(t, "vm-6.18", "no-btrfs")
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{"same saved host", []string{"check", base, base}, exit.OK, []string{": compatible, 0 blockers"}, nil},
		{"target lacks an instruction flag", []string{"check", base, noAVX}, exit.Incompatible,
			[]string{"BLOCKER   cpu.instruction-flags: target CPU lacks instruction-set flags of the source: avx512_bitalg,", "avx512f,", "sha_ni"},
			[]string{"1 blocking findings", "hint: "}},
		{"json verdict", []string{"check", base, noAVX, "-o", "json"}, exit.Incompatible, []string{`"verdict": "incompatible"`, `"rule": "cpu.instruction-flags"`}, nil},
		{"reverse direction", []string{"check", noAVX, base}, exit.OK, nil, nil},
		{"platform flags only", []string{"check", base, platform}, exit.OK, []string{"INFO      cpu.platform-flags"}, nil},
		{"two --root directories", []string{"check", btrfs, noBtrfs}, exit.Incompatible, []string{"fs.mounted-supported", "btrfs"}, nil},
		{"a directory and a saved file", []string{"check", btrfs, base}, exit.OK, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runWith(t, nil, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			for _, w := range tt.stdout {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.stderr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
}

func TestCheckBadInput(t *testing.T) {
	t.Parallel()
	base := saveFacts(t, "")
	b, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	truncated := write("truncated.json", string(b[:len(b)/3]))
	newer := write("newer.json", strings.Replace(string(b), probe.Schema, "ferry.facts/v2", 1))
	empty := write("empty.json", "")
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"missing file", []string{"check", base, filepath.Join(dir, "missing.json")}, []string{"missing.json", "no such file", "hint: write it with `ferry probe -o json"}},
		{"unreadable file", []string{"check", base, dir + "/"}, []string{"no captured host there", "hint: "}},
		{"truncated", []string{"check", truncated, base}, []string{"source host", "truncated.json: truncated or not JSON", "hint: re-create it"}},
		{"newer schema", []string{"check", base, newer}, []string{"target host", "schema ferry.facts/v2 is newer than this ferry's ferry.facts/v1", "hint: this file was written by a newer ferry"}},
		{"empty", []string{"check", empty, base}, []string{"empty file"}},
		{"host that times out", []string{"check", base, "ssh://slow", "--timeout", "300ms"}, []string{"target host ssh://slow", "timed out after 300ms", "hint: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runWith(t, withSlow, tt.args...)
			if code != exit.Failure {
				t.Errorf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
}

func TestCheckMatrix(t *testing.T) {
	t.Parallel()
	base := saveFacts(t, "")
	noAVX := saveFacts(t, "cpu-no-avx512")
	dir := probetest.Compose(t, "vm-6.18", "older-kernel")
	truncated := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(truncated, []byte(`{"schema": "ferry.facts/v1", "kernel": {`), 0o644)

	code, out, errOut := runWith(t, withSlow, "check", "--matrix", base, noAVX, dir, "ssh://slow", truncated, "--timeout", "500ms")
	if code != exit.Failure {
		t.Errorf("exit %d, want 1 (two hosts failed)\n%s\n%s", code, out, errOut)
	}
	for _, w := range []string{
		"ssh://slow", "FAILED: timed out after 500ms",
		"bad.json", "FAILED: facts " + truncated + ": truncated or not JSON",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("stdout lacks %q:\n%s", w, out)
		}
	}
	for _, w := range [][]string{
		{base, noAVX, "incompatible", "cpu.instruction-flags: target CPU lacks instruction-set flags of the source: avx512_bitalg"},
		{noAVX, base, "compatible"},
		{base, dir, "incompatible", "syscalls.subset: target kernel lacks syscalls"},
	} {
		if !hasRow(out, w...) {
			t.Errorf("no row with %q:\n%s", w, out)
		}
	}
	if !strings.Contains(errOut, "2 of 5 hosts could not be probed") {
		t.Errorf("stderr:\n%s", errOut)
	}
	// Three good hosts: six directions.
	code, out, _ = runWith(t, nil, "check", "--matrix", base, noAVX, dir, "-o", "json")
	var m probe.MatrixReport
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	if code != exit.OK || len(m.Directions) != 6 || m.Failed() != 0 {
		t.Errorf("exit %d, %d directions, %d failed", code, len(m.Directions), m.Failed())
	}
}

func TestCheckInventory(t *testing.T) {
	t.Parallel()
	captured := probetest.Compose(t, "vm-6.18", "")
	// The inventory's hosts resolve to captured hosts, so that the test
	// needs neither sshd nor root; db2 never answers.
	hostFn := func(spec string) (host.Host, error) {
		switch spec {
		case "local", "ssh://admin@db1.example.com:2222":
			return &host.Dir{Root: captured}, nil
		case "ssh://db2":
			return slowHost{}, nil
		}
		return nil, fmt.Errorf("unexpected host %q", spec)
	}
	inv := filepath.Join(t.TempDir(), "hosts.ini")
	os.WriteFile(inv, []byte("localhost ansible_connection=local\n[db]\ndb1 ansible_host=db1.example.com ansible_user=admin ansible_port=2222\ndb2\n"), 0o644)
	code, out, errOut := runWith(t, hostFn, "check", "--inventory", inv, "--timeout", "500ms")
	if code != exit.Failure {
		t.Errorf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, row := range [][]string{
		{"local", "ssh://admin@db1.example.com:2222", "compatible"},
		{"ssh://admin@db1.example.com:2222", "local", "compatible"},
		{"ssh://db2", "FAILED: timed out"},
	} {
		if !hasRow(out, row...) {
			t.Errorf("no row with %q:\n%s", row, out)
		}
	}
	code, _, errOut = runWith(t, nil, "check", "--inventory", filepath.Join(t.TempDir(), "none.ini"))
	if code != exit.Failure || !strings.Contains(errOut, "inventory") {
		t.Errorf("missing inventory: exit %d: %s", code, errOut)
	}
}

// hasRow reports whether one line of out holds the words in order,
// separated by blanks only.
func hasRow(out string, words ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		rest := line
		ok := true
		for i, w := range words {
			j := strings.Index(rest, w)
			if j < 0 || (i > 0 && strings.TrimSpace(rest[:j]) != "") || (i == 0 && j != 0) {
				ok = false
				break
			}
			rest = rest[j+len(w):]
		}
		if ok {
			return true
		}
	}
	return false
}

func TestIsFactsFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o644)
		return p
	}
	for p, want := range map[string]bool{
		write("a.json", "garbage"):           true, // and then refused with a clear error
		write("facts", "\n {\"schema\": 1}"): true,
		write("b.tar.gz", "\x1f\x8b\x08"):    false,
		dir:                                  false,
		filepath.Join(dir, "missing.json"):   false,
	} {
		if got := isFactsFile(p); got != want {
			t.Errorf("isFactsFile(%s) = %v", p, got)
		}
	}
}
