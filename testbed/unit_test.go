package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-migrate/ferry/internal/host"
)

func TestLogErrors(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/restore-failed.log")
	if err != nil {
		t.Fatal(err)
	}
	got := logErrors(strings.NewReader(string(b)))
	want := []string{
		"(00.062949) Error (criu/cr-restore.c:1237): Can't fork for 27407: File exists",
		"(00.063253) Error (criu/cr-restore.c:2331): Restoring FAILED.",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestReadStat(t *testing.T) {
	t.Parallel()
	s, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.PPid != os.Getppid() || s.StartTime == 0 || s.State == 'Z' {
		t.Errorf("stat of self: %+v", s)
	}
	if !alive(os.Getpid(), s.StartTime) || alive(os.Getpid(), s.StartTime+1) {
		t.Error("alive does not tell a reused pid from the same process")
	}
	if alive(0, 0) || alive(-1, 0) {
		t.Error("pid 0 or -1 alive")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"", "Tb", "1tb", "toolongprefix", "t-b"} {
		tb := &Testbed{Dir: "/x", Prefix: p}
		var ue *UsageError
		if err := tb.validate(); !errors.As(err, &ue) {
			t.Errorf("prefix %q: %v", p, err)
		}
	}
	tb := &Testbed{Dir: "/x", Prefix: "tb"}
	for ns, want := range map[string]bool{
		"ferry-tb1": true, "ferry-tb12": true, "ferry-tb-sw": true,
		"ferry-tb": false, "ferry-tbx": false, "ferry-tb1x": false, "ferry-tbt1": false, "tb1": false,
	} {
		if got := tb.ours(ns); got != want {
			t.Errorf("ours(%q) = %v, want %v", ns, got, want)
		}
	}
}

// TestPreflightMissing: up names what is missing and how to get it.
func TestPreflightMissing(t *testing.T) {
	if os.Geteuid() != 0 {
		tb := &Testbed{Dir: t.TempDir(), Prefix: "tb", Local: host.Local{}}
		_, err := tb.Preflight(context.Background())
		var me *MissingError
		if !errors.As(err, &me) || !strings.Contains(me.Hint(), "root") {
			t.Errorf("not root: %v", err)
		}
		return
	}
	bin := t.TempDir()
	for _, p := range []string{"ip", "nsenter", "nft"} {
		if path, err := lookPath(p); err == nil {
			if err := os.Symlink(path, filepath.Join(bin, p)); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name, path, criu, want, hint string
	}{
		{"no iproute2", t.TempDir(), "", "ip (iproute2)", "apt-get install iproute2"},
		{"no criu", bin, "/nonexistent/criu", "CRIU", "make deps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PATH", tt.path)
			tb := &Testbed{Dir: t.TempDir(), Prefix: "tb", CRIU: tt.criu, Local: host.Local{}}
			// A developer's own testbed may use the same prefix: only
			// namespaces that appear count.
			before := map[string]bool{}
			for _, ns := range tb.leftoverNetns() {
				before[ns] = true
			}
			_, err := tb.Up(context.Background(), 2)
			var me *MissingError
			if !errors.As(err, &me) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(me.Hint(), tt.hint) {
				t.Fatalf("err = %v, want a MissingError about %q with hint %q", err, tt.want, tt.hint)
			}
			for _, ns := range tb.leftoverNetns() {
				if !before[ns] {
					t.Errorf("a refused up created %s", ns)
				}
			}
		})
	}
}

func lookPath(p string) (string, error) { return exec.LookPath(p) }

// TestJSONFields locks the field sets of the testbed's output models:
// scripts read them.
func TestJSONFields(t *testing.T) {
	t.Parallel()
	tests := []struct {
		v    any
		want []string
	}{
		{Status{}, []string{"dir", "hosts", "up", "workloads"}},
		{HostStatus{}, []string{"addr", "name", "netns", "port", "present", "root", "workloads"}},
		{PsEntry{Veth: "v"}, []string{"addr", "host", "moves", "name", "net", "pid", "program", "rootfs", "running", "veth"}},
		{VerifyResult{}, []string{"counter", "detail", "host", "name", "ok", "previous", "problems", "running"}},
		{DownReport{}, []string{"netns", "nft_tables", "processes", "workloads"}},
		{MoveResult{}, []string{"copy_ns", "dump_log", "dump_ns", "fell_back", "from", "images", "name", "nft_tables", "pid", "restore_log", "restore_ns", "to"}},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.v)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		var got []string
		for k := range m {
			got = append(got, k)
		}
		sort.Strings(got)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%T fields (-want +got):\n%s", tt.v, diff)
		}
	}
}
