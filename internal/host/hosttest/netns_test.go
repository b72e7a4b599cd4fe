package hosttest

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ferry-migrate/ferry/internal/host"
)

// TestNamespacedSSHD reaches the namespaced sshd over its veth as a
// remote host: commands run as pid-namespace children of sshd (pid 1
// there), its mounts are its own, and the test sees its processes.
func TestNamespacedSSHD(t *testing.T) {
	d := StartNamespacedSSHD(t)
	h, err := host.New(d.Spec, host.WithSSHOptions(d.Options))
	if err != nil {
		t.Fatal(err)
	}
	defer h.(*host.SSH).Close()
	ctx := context.Background()
	out, err := host.Output(ctx, h, "cat", "/proc/1/comm")
	if err != nil || strings.TrimSpace(string(out)) != "sshd" {
		t.Errorf("pid 1 over ssh: %q, %v", out, err)
	}
	if !d.Owns(d.PID) {
		t.Errorf("sshd (pid %d) is not in its own namespace", d.PID)
	}
	if self, _ := os.Readlink("/proc/self/ns/pid"); d.Owns(os.Getpid()) || self == "" {
		t.Errorf("the test itself counts as inside the namespace")
	}
	if got := d.HostPID(1); got != d.PID {
		t.Errorf("HostPID(1) = %d, want sshd's %d", got, d.PID)
	}
	// A tmpfs mounted inside is not seen here.
	dir := t.TempDir()
	d.MountTmpfs(t, dir)
	if _, err := h.Run(ctx, []string{"touch", filepath.Join(dir, "inside")}, host.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "inside")); err == nil {
		t.Errorf("a file made in the namespace's tmpfs shows here")
	}
	if ok, err := host.Exists(ctx, h, filepath.Join(dir, "inside")); !ok || err != nil {
		t.Errorf("the file is not there over ssh: %v %v", ok, err)
	}
	// Its network holds only lo and its end of the link.
	out, err = host.Output(ctx, h, "ip", "-o", "-4", "addr", "show")
	if err != nil || !strings.Contains(string(out), d.Addr+"/30") || strings.Count(string(out), "\n") != 2 {
		t.Errorf("addresses inside: %v\n%s", err, out)
	}
	if d.Target.Port != NamespacedPort || !strings.HasSuffix(d.Spec, ":"+strconv.Itoa(NamespacedPort)) {
		t.Errorf("spec %s", d.Spec)
	}
}
