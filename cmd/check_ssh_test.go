package cmd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/host/hosttest"
	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/probe"
)

// TestCheckSSH runs probe and check against a real sshd on loopback: the
// CLI reaches the host only through ssh, as a remote machine.
func TestCheckSSH(t *testing.T) {
	testenv.CRIU(t)
	d := hosttest.StartSSHD(t)
	hostFn := func(spec string) (host.Host, error) {
		return host.New(spec, host.WithSSHOptions(d.Options))
	}
	code, out, errOut := runWith(t, hostFn, "probe", d.Spec, "-o", "json")
	if code != exit.OK {
		t.Fatalf("probe %s: exit %d: %s", d.Spec, code, errOut)
	}
	f, err := probe.Read(strings.NewReader(out), d.Spec)
	if err != nil {
		t.Fatal(err)
	}
	if f.Host != d.Spec || !f.Known(probe.KeyCRIUFeatures) || !f.Known(probe.KeyXSave) || !f.Known(probe.KeySyscalls) {
		t.Errorf("facts of %s: host %s, unknown %v", d.Spec, f.Host, f.Unknown)
	}
	code, out, errOut = runWith(t, hostFn, "check", "local", d.Spec)
	if code != exit.OK || !strings.HasPrefix(out, "local -> "+d.Spec+" (criu): compatible") {
		t.Errorf("check local %s: exit %d\n%s\n%s", d.Spec, code, out, errOut)
	}
	// An ssh host in a matrix with saved facts of a host lacking AVX-512:
	// both directions reported, one blocked.
	noAVX := saveFacts(t, "cpu-no-avx512")
	code, out, errOut = runWith(t, hostFn, "check", "--matrix", d.Spec, noAVX)
	if code != exit.OK || !hasRow(out, d.Spec, noAVX, "incompatible", "cpu.instruction-flags:") || !hasRow(out, noAVX, d.Spec, "compatible") {
		t.Errorf("matrix: exit %d\n%s\n%s", code, out, errOut)
	}
	// An Ansible inventory naming this sshd and localhost.
	inv := filepath.Join(t.TempDir(), "hosts.ini")
	os.WriteFile(inv, []byte(fmt.Sprintf("localhost ansible_connection=local\n[db]\ndb1 ansible_host=127.0.0.1 ansible_port=%d ansible_user=%s\n", d.Port, d.Target.User)), 0o644)
	code, out, errOut = runWith(t, hostFn, "check", "--inventory", inv)
	if code != exit.OK || !hasRow(out, "local", d.Spec, "compatible") || !hasRow(out, d.Spec, "local", "compatible") {
		t.Errorf("inventory: exit %d\n%s\n%s", code, out, errOut)
	}
	// A port nobody listens on: exit 1 with ssh's reason, quickly.
	dead := "ssh://" + d.Target.User + "@127.0.0.1:1"
	code, _, errOut = runWith(t, hostFn, "check", "local", dead, "--timeout", "20s")
	if code != exit.Failure || !strings.Contains(errOut, "target host "+dead) || !strings.Contains(errOut, "hint: ") {
		t.Errorf("unreachable host: exit %d: %s", code, errOut)
	}
}
