package remote

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/host/hosttest"
	"github.com/ferry-migrate/ferry/internal/testenv"
)

// remoteHost is a host over SSH whose file system is a tmpfs of its own at
// dir: what ferry puts there is not seen here.
func remoteHost(t testing.TB) (host.Host, *hosttest.NamespacedSSHD, string) {
	t.Helper()
	d := hosttest.StartNamespacedSSHD(t)
	dir := t.TempDir()
	d.MountTmpfs(t, dir)
	h := d.Host(t, d.Options)
	return h, d, dir
}

func TestEnsureBinary(t *testing.T) {
	exe := testenv.FerryBinary(t)
	h, _, dir := remoteHost(t)
	ctx := context.Background()

	local, err := EnsureBinary(ctx, host.Local{}, exe, dir)
	if err != nil || local.Path != exe || local.Copied {
		t.Fatalf("local host: %+v, %v", local, err)
	}

	first, err := EnsureBinary(ctx, h, exe, dir)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(exe)
	if !first.Copied || first.Bytes != st.Size() || !strings.HasPrefix(first.Path, dir+"/bin/ferry-") {
		t.Errorf("first: %+v", first)
	}
	second, err := EnsureBinary(ctx, h, exe, dir)
	if err != nil || second.Copied || second.Path != first.Path {
		t.Errorf("second: %+v, %v", second, err)
	}
	t.Logf("copy %s, reuse check %s", first.Took, second.Took)
	// The copy runs there as ferry's agent would.
	if out, err := host.Output(ctx, h, second.Path, "version"); err != nil || !strings.Contains(string(out), "ferry") {
		t.Errorf("%s version: %q, %v", second.Path, out, err)
	}

	// A damaged copy is replaced, and no temporary file stays.
	if _, err := h.Run(ctx, []string{"dd", "of=" + first.Path, "bs=1", "count=4", "conv=notrunc", "status=none"}, host.RunOptions{Stdin: strings.NewReader("XXXX")}); err != nil {
		t.Fatal(err)
	}
	third, err := EnsureBinary(ctx, h, exe, dir)
	if err != nil || !third.Copied {
		t.Errorf("after damage: %+v, %v", third, err)
	}
	out, err := host.Output(ctx, h, "ls", "-A", dir+"/bin")
	if err != nil || strings.TrimSpace(string(out)) != filepath.Base(first.Path) {
		t.Errorf("bin holds %q (%v)", out, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the copy shows on this side: %v", ents)
	}
	if got := first.AgentArgv("/opt/criu"); !cmp.Equal(got, []string{first.Path, "agent", "--stdio", "--criu", "/opt/criu"}) {
		t.Errorf("agent argv %q", got)
	}

	// A dynamically linked ferry is refused before anything is copied.
	dyn, err := exec.LookPath("ls")
	if err != nil {
		t.Fatal(err)
	}
	_, err = EnsureBinary(ctx, h, dyn, dir)
	var ns *NotStaticError
	if !errors.As(err, &ns) || !strings.Contains(ns.Hint(), "make build") {
		t.Errorf("dynamic %s: %v", dyn, err)
	}
}

func TestCopyDir(t *testing.T) {
	testenv.RequireCommand(t, "tar")
	h, _, dir := remoteHost(t)
	ctx := context.Background()
	src := t.TempDir()
	files := map[string]string{"a.img": "aaaa", "sub/b.img": strings.Repeat("b", 1<<20), "inventory.img": ""}
	for name, content := range files {
		os.MkdirAll(filepath.Join(src, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := CopyDir(ctx, host.Local{}, src, h, dir); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for name := range files {
		b, err := host.ReadFile(ctx, h, filepath.Join(dir, name), 0)
		if err != nil {
			t.Fatal(err)
		}
		got[name] = string(b)
	}
	if diff := cmp.Diff(files, got); diff != "" {
		t.Errorf("copied files (-want +got):\n%s", diff)
	}
	// A receiver that cannot unpack fails the copy, without hanging the
	// sender.
	done := make(chan error, 1)
	go func() { done <- CopyDir(ctx, host.Local{}, src, h, filepath.Join(dir, "missing")) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "unpack on "+h.Name()) {
			t.Errorf("copy into a missing directory: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("copy into a missing directory hangs")
	}
	if err := Remove(ctx, h, dir+"/sub"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := host.Exists(ctx, h, dir+"/sub/b.img"); ok {
		t.Errorf("Remove left %s/sub", dir)
	}
	if err := Remove(ctx, h, "/"); err == nil {
		t.Errorf("Remove / was not refused")
	}
}

// TestKillTree kills a process tree on the remote host, found through ps
// there (its pids are the remote's own).
func TestKillTree(t *testing.T) {
	h, d, _ := remoteHost(t)
	ctx := context.Background()
	// Its own session, away from the ssh command's streams: the tree
	// outlives the command, as a restored one does.
	if _, err := h.Run(ctx, []string{"sh", "-c", "setsid sh -c 'sleep 1000 & sleep 1000 & wait' </dev/null >/dev/null 2>&1 &"}, host.RunOptions{Timeout: 30 * time.Second}); err != nil {
		t.Fatal(err)
	}
	var root int
	for deadline := time.Now().Add(10 * time.Second); root == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		out, _ := host.Output(ctx, h, "pgrep", "-x", "-P", "1", "sh")
		if f := strings.Fields(string(out)); len(f) == 1 {
			root = atoi(f[0])
		}
	}
	if root == 0 {
		t.Fatal("the tree did not start")
	}
	tree, err := Tree(ctx, h, root)
	if err != nil || len(tree) != 3 || tree[0] != root {
		t.Fatalf("tree of %d: %v, %v", root, tree, err)
	}
	if err := Runs(ctx, h, root); err != nil {
		t.Errorf("runs: %v", err)
	}
	if err := KillTree(ctx, h, root); err != nil {
		t.Fatal(err)
	}
	for _, p := range tree {
		if st, err := procState(ctx, h, p); err != nil || (st != "" && st != "Z") {
			t.Errorf("pid %d: state %q, %v", p, st, err)
		}
		if hp := d.HostPID(p); hp != 0 {
			if b, _ := os.ReadFile("/proc/" + itoa(hp) + "/stat"); !strings.Contains(string(b), ") Z") {
				t.Errorf("pid %d (here %d) still runs", p, hp)
			}
		}
	}
	if err := Runs(ctx, h, root); err == nil {
		t.Errorf("a killed tree runs")
	}
	if left, err := Tree(ctx, h, 999999); err != nil || left != nil {
		t.Errorf("tree of a missing pid: %v, %v", left, err)
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func itoa(n int) string { return strconv.Itoa(n) }

// BenchmarkEnsureBinary times putting ferry on a host over SSH: the first
// copy (with its checks) and the check that finds it there.
func BenchmarkEnsureBinary(b *testing.B) {
	exe := testenv.FerryBinary(b)
	h, _, dir := remoteHost(b)
	ctx := context.Background()
	b.Run("copy", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if err := Remove(ctx, h, dir+"/bin"); err != nil {
				b.Fatal(err)
			}
			if bin, err := EnsureBinary(ctx, h, exe, dir); err != nil || !bin.Copied {
				b.Fatalf("%+v, %v", bin, err)
			}
		}
	})
	b.Run("reuse", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if bin, err := EnsureBinary(ctx, h, exe, dir); err != nil || bin.Copied {
				b.Fatalf("%+v, %v", bin, err)
			}
		}
	})
}
