package daemontest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/lxc"
)

// StateDir is where scripts/daemons.sh keeps the namespaced daemons.
const StateDir = "/var/lib/ferry"

// Pair starts two daemons of kind, each in its own network and mount
// namespace with the same paths (scripts/daemons.sh ns-start), linked by a
// veth, with addresses that exist only inside those namespaces. It returns
// one client for each, both run inside the first namespace from one client
// configuration that knows the remotes "a" (unix socket) and "b" (HTTPS,
// trusted). Everything is stopped and removed when the test ends.
func Pair(t testing.TB, kind string) (a, b *lxc.Client) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.CRIU(t)
	testenv.RequireCommand(t, "ip", "nsenter", "unshare")
	if !installed(kind) {
		testenv.Missing(t, "%s is not installed (scripts/daemons.sh install %s)", kind, kind)
	}
	sh, err := script()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	acquire(t)
	mu.Unlock()
	wrapper, err := writeWrapper()
	if err != nil {
		t.Fatal(err)
	}
	path := "FERRY_DAEMON_PATH=" + wrapper + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	na, nb := Name("fa")[:9], Name("fb")[:9]
	conf := filepath.Join(StateDir, "ns", "client-"+kind)
	t.Cleanup(func() {
		for _, n := range []string{na, nb} {
			_ = exec.Command(sh, "ns-stop", kind, n).Run()
		}
		_ = os.RemoveAll(conf)
	})
	_ = os.RemoveAll(conf)
	for _, h := range []struct{ name, addr string }{{na, "10.251.0.1/32"}, {nb, "10.251.0.2/32"}} {
		if err := runErr([]string{path}, sh, "ns-start", kind, h.name, h.addr); err != nil {
			testenv.Missing(t, "cannot start a namespaced %s daemon: %v", kind, err)
		}
	}
	run(t, nil, sh, "ns-link", na, nb)

	envA, envB := nsEnv(t, sh, kind, na), nsEnv(t, sh, kind, nb)
	ha := &host.Netns{Label: "ns:" + na, Netns: "ferry-" + na}
	hb := &host.Netns{Label: "ns:" + nb, Netns: "ferry-" + nb}
	ctx := context.Background()
	cli := func(h host.Host, env []string, args ...string) string {
		t.Helper()
		res, err := h.Run(ctx, append([]string{bin(&lxc.Client{Kind: kind})}, args...), host.RunOptions{Env: env})
		if err != nil {
			t.Fatalf("%s: %v", strings.Join(args, " "), err)
		}
		return string(res.Stdout)
	}
	// A token from B for the client; the client adds B over HTTPS and A
	// over its unix socket.
	trust := []string{"config", "trust", "add", "--name", "ferry-" + na}
	if kind == migrate.KindIncus {
		trust = []string{"config", "trust", "add", "ferry-" + na}
	}
	out := cli(hb, envB, trust...)
	f := strings.Fields(out)
	if len(f) == 0 {
		t.Fatalf("no trust token from %s: %q", nb, out)
	}
	cli(ha, envA, "remote", "add", "b", f[len(f)-1])
	cli(ha, envA, "remote", "add", "a", "unix://"+envValue(envA, socketVar(kind)))

	mk := func(remote, n string) *lxc.Client {
		d := filepath.Join(StateDir, "ns", n)
		return &lxc.Client{Host: ha, Kind: kind, Remote: remote, Env: envA,
			LogRoot: filepath.Join(d, "log"), LibRoot: filepath.Join(d, "lib")}
	}
	return mk("a", na), mk("b", nb)
}

func socketVar(kind string) string {
	if kind == migrate.KindIncus {
		return "INCUS_SOCKET"
	}
	return "LXD_SOCKET"
}

func nsEnv(t testing.TB, sh, kind, name string) []string {
	t.Helper()
	out, err := exec.Command(sh, "ns-env", kind, name).Output()
	if err != nil {
		t.Fatalf("ns-env %s: %v", name, err)
	}
	return strings.Fields(string(out))
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}
