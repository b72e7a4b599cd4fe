package host

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLocalRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := Local{}

	res, err := h.Run(ctx, []string{"sh", "-c", `printf out; printf err >&2; exit 0`}, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "out" || string(res.Stderr) != "err" || res.ExitCode != 0 {
		t.Errorf("got %+v", res)
	}

	// argv words reach the program unchanged: no shell in between.
	weird := []string{"a b", "$(id)", "'q'", "`x`", ";", ""}
	res, err = h.Run(ctx, append([]string{"printf", `%s\n`}, weird...), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(strings.Join(weird, "\n")+"\n", string(res.Stdout)); diff != "" {
		t.Errorf("argv changed (-want +got):\n%s", diff)
	}

	res, err = h.Run(ctx, []string{"cat"}, RunOptions{Stdin: strings.NewReader("in"), Env: []string{"X=1"}})
	if err != nil || string(res.Stdout) != "in" {
		t.Errorf("stdin: %q %v", res.Stdout, err)
	}
}

func TestLocalRunErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := Local{}

	res, err := h.Run(ctx, []string{"sh", "-c", "echo boom >&2; exit 3"}, RunOptions{})
	var ce *CommandError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *CommandError", err)
	}
	if res == nil || res.ExitCode != 3 || ce.ExitCode != 3 || ce.Stderr != "boom" {
		t.Errorf("exit error: res=%+v err=%+v", res, ce)
	}
	if want := `local: sh -c 'echo boom >&2; exit 3' exited with code 3: boom`; err.Error() != want {
		t.Errorf("message:\n got %s\nwant %s", err, want)
	}

	start := time.Now()
	_, err = h.Run(ctx, []string{"sh", "-c", "sleep 30 & sleep 30"}, RunOptions{Timeout: 200 * time.Millisecond})
	if !errors.As(err, &ce) || !ce.TimedOut || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: err = %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("timeout took %s: the process group was not killed", d)
	}
	if ce.Hint() == "" {
		t.Error("timeout error has no hint")
	}

	_, err = h.Run(ctx, []string{"/nonexistent/prog"}, RunOptions{})
	if !errors.Is(err, ErrNotFound) && !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing program: err = %v", err)
	}
	_, err = h.Run(ctx, []string{"no-such-program-ferry"}, RunOptions{})
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &ce) || !strings.Contains(ce.Hint(), "install") {
		t.Errorf("program not on PATH: err = %v", err)
	}
	if _, err := h.Run(ctx, nil, RunOptions{}); err == nil {
		t.Error("empty argv accepted")
	}
}

func TestLocalOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := Local{}
	b, err := ReadFile(ctx, h, "/proc/self/status", 0)
	if err != nil || !strings.Contains(string(b), "Pid:") {
		t.Fatalf("read /proc/self/status: %v", err)
	}
	if _, err := h.Open(ctx, "/nonexistent"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if ok, err := Exists(ctx, h, "/nonexistent"); ok || (err != nil) {
		t.Errorf("Exists(missing) = %v, %v", ok, err)
	}
	if _, err := ReadFile(ctx, h, "/proc/self/status", 10); err == nil {
		t.Error("ReadFile over its limit succeeded")
	}
}

func TestDir(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "proc/version"), []byte("Linux version 6.18"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A file beside the root that a traversal would reach.
	if err := os.WriteFile(filepath.Join(filepath.Dir(root), "secret"), []byte("no"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &Dir{Root: root}
	b, err := ReadFile(ctx, d, "/proc/version", 0)
	if err != nil || string(b) != "Linux version 6.18" {
		t.Fatalf("read: %q %v", b, err)
	}
	for _, p := range []string{"../secret", "/../secret", "proc/../../secret"} {
		if rc, err := d.Open(ctx, p); err == nil {
			b, _ := io.ReadAll(rc)
			t.Errorf("Open(%q) escaped the root: %q", p, b)
		}
	}
	if _, err := d.Run(ctx, []string{"true"}, RunOptions{}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Run on a dir host: %v", err)
	}
}

func TestParseSpec(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		spec    string
		want    Spec
		wantErr string
	}{
		{"local", Spec{Local: true}, ""},
		{"ssh://db1", Spec{SSH: &SSHTarget{Host: "db1"}}, ""},
		{"ssh://root@db1:2222", Spec{SSH: &SSHTarget{User: "root", Host: "db1", Port: 2222}}, ""},
		{"ssh://[::1]:22", Spec{SSH: &SSHTarget{Host: "::1", Port: 22}}, ""},
		{"testbed:tb1", Spec{Testbed: "tb1"}, ""},
		{dir, Spec{Dir: dir}, ""},
		{"", Spec{}, "empty host"},
		{"ssh://", Spec{}, "missing host name"},
		{"ssh://h:0", Spec{}, "port must be"},
		{"ssh://h:99999", Spec{}, "port must be"},
		{"ssh://u:pw@h", Spec{}, "passwords"},
		{"ssh://-oProxyCommand=x", Spec{}, "cannot start with '-'"},
		{"ssh://h/path", Spec{}, "no path"},
		{"testbed:", Spec{}, "testbed host name"},
		{"testbed:../x", Spec{}, "testbed host name"},
		{"http://h", Spec{}, "unknown scheme"},
		{"nosuchhost-or-dir", Spec{}, "not a known host form"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			t.Parallel()
			got, err := ParseSpec(tt.spec)
			if tt.wantErr != "" {
				var se *SpecError
				if !errors.As(err, &se) || !strings.Contains(err.Error(), tt.wantErr) || se.Hint() == "" {
					t.Fatalf("err = %v, want SpecError containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if got := (SSHTarget{User: "u", Host: "::1", Port: 22}).String(); got != "ssh://u@[::1]:22" {
		t.Errorf("String = %s", got)
	}
}

func TestQuote(t *testing.T) {
	t.Parallel()
	got := Quote([]string{"criu", "dump", "-t", "42", "a b", "it's", ""})
	want := `criu dump -t 42 'a b' 'it'\''s' ''`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
