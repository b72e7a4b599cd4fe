package probe_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/host/hosttest"
	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/probe"
)

// TestGatherSSH probes this machine through a real sshd on loopback: every
// file and command goes over ssh, as for a remote host.
func TestGatherSSH(t *testing.T) {
	testenv.CRIU(t)
	d := hosttest.StartSSHD(t)
	h := d.Host(t, d.Options)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	f, err := probe.Gather(ctx, h, probe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// One connection for the whole probe: every command shares it.
	t.Logf("probe over ssh: %s, %d logins", time.Since(start), d.Logins())
	if n := d.Logins(); n != 1 {
		t.Errorf("%d ssh logins for one probe, want 1 (commands beyond sshd's MaxSessions open new connections)", n)
	}
	if f.Host != d.Spec {
		t.Errorf("host %q, want %q", f.Host, d.Spec)
	}
	for _, key := range []string{probe.KeyKernelRelease, probe.KeyKernelArch, probe.KeyPageSize, probe.KeyCPU, probe.KeyCRIU,
		probe.KeyCRIUCheck, probe.KeyCRIUFeatures, probe.KeyXSave, probe.KeySyscalls, probe.KeyFSMounted, probe.KeyKerndatCache, probe.KeyNetworkLock} {
		if !f.Known(key) {
			t.Errorf("%s unknown over ssh: %s", key, f.Why(key))
		}
	}
	if len(f.CRIU.Features) != len(probe.CRIUFeatures) {
		t.Errorf("%d features over ssh (%s)", len(f.CRIU.Features), f.Why(probe.KeyCRIUFeatures+".partial"))
	}
	local, err := probe.Gather(ctx, host.Local{}, probe.Options{CRIUPath: os.Getenv("FERRY_CRIU")})
	if err != nil {
		t.Fatal(err)
	}
	// The same machine seen two ways: the same facts where it matters.
	if f.Kernel.Release != local.Kernel.Release || len(f.Syscalls.Names) != len(local.Syscalls.Names) || f.CRIU.Version != local.CRIU.Version ||
		f.CPU.XSave != local.CPU.XSave || f.NetworkLock != local.NetworkLock {
		t.Errorf("ssh and local facts differ:\nssh   %s %d %s %+v %+v\nlocal %s %d %s %+v %+v",
			f.Kernel.Release, len(f.Syscalls.Names), f.CRIU.Version, f.CPU.XSave, f.NetworkLock,
			local.Kernel.Release, len(local.Syscalls.Names), local.CRIU.Version, local.CPU.XSave, local.NetworkLock)
	}
	for _, pair := range [][2]*probe.Facts{{local, f}, {f, local}} {
		if r := probe.Check(pair[0], pair[1], ""); r.Verdict != probe.VerdictCompatible {
			t.Errorf("%s -> %s: %s %v", r.Source, r.Target, r.Verdict, reduce(r))
		}
	}
}

func BenchmarkGatherSSH(b *testing.B) {
	testenv.CRIU(b)
	d := hosttest.StartSSHD(b)
	h := d.Host(b, d.Options)
	for b.Loop() {
		if _, err := probe.Gather(context.Background(), h, probe.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
