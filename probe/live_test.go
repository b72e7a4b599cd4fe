package probe_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/probe"
)

// TestGatherLocal probes this machine for real.
func TestGatherLocal(t *testing.T) {
	testenv.RequireRoot(t)
	info := testenv.CRIU(t)
	f, err := probe.Gather(context.Background(), host.Local{}, probe.Options{CRIUPath: os.Getenv("FERRY_CRIU")})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{probe.KeyKernelRelease, probe.KeyKernelArch, probe.KeyPageSize, probe.KeyCPU, probe.KeyCRIU, probe.KeyCRIUCheck, probe.KeyCRIUFeatures, probe.KeyFSMounted, probe.KeyFSSupported, probe.KeySyscalls, probe.KeyXSave, probe.KeyLSM, probe.KeyKerndatCache} {
		if !f.Known(key) {
			t.Errorf("%s unknown on the live host: %s", key, f.Why(key))
		}
	}
	if f.CRIU.Version != info.VersionString {
		t.Errorf("criu %s, testenv found %s", f.CRIU.Version, info.VersionString)
	}
	if f.Kernel.PageSize != os.Getpagesize() {
		t.Errorf("page size %d, want %d", f.Kernel.PageSize, os.Getpagesize())
	}
	if len(f.CRIU.Features) != len(probe.CRIUFeatures) {
		t.Errorf("%d features, want %d: %v (%s)", len(f.CRIU.Features), len(probe.CRIUFeatures), f.CRIU.Features, f.Why(probe.KeyCRIUFeatures+".partial"))
	}
	wantKdat := probe.KerndatAbsent
	if _, err := os.Stat("/run/criu.kdat"); err == nil {
		wantKdat = probe.KerndatPresent
	} else if _, err := os.Stat("/run/criu.kdat.tmp"); err == nil {
		wantKdat = probe.KerndatBlocked
	}
	if f.CRIU.KerndatCache != wantKdat {
		t.Errorf("kerndat cache %q, want %q", f.CRIU.KerndatCache, wantKdat)
	}
	// criu cpuinfo dump's temporary directory is gone.
	if m, _ := filepathGlob("/tmp/ferry-cpuinfo.*"); len(m) > 0 {
		t.Errorf("left behind: %v", m)
	}
	r := probe.Check(f, f, "")
	if r.Verdict != probe.VerdictCompatible {
		t.Errorf("local -> local: %s %v", r.Verdict, reduce(r))
	}
}

// TestGatherNetns probes through host.Netns, a network namespace this test
// creates: the way testbed hosts are probed.
func TestGatherNetns(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "nsenter")
	testenv.CRIU(t)
	name := fmt.Sprintf("ferry-probe-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", name, err, out)
		}
	})
	// A testbed host has its loopback up; CRIU's kernel feature
	// detection fails in a namespace without it.
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h := &host.Netns{Label: "testbed:probe", Netns: name}
	f, err := probe.Gather(ctx, h, probe.Options{CRIUPath: os.Getenv("FERRY_CRIU")})
	if err != nil {
		t.Fatal(err)
	}
	if f.Host != "testbed:probe" {
		t.Errorf("host %s", f.Host)
	}
	for _, key := range []string{probe.KeyCPU, probe.KeyCRIU, probe.KeyCRIUCheck, probe.KeyXSave, probe.KeyPageSize} {
		if !f.Known(key) {
			t.Errorf("%s unknown in the namespace: %s", key, f.Why(key))
		}
	}
	local, err := probe.Gather(ctx, host.Local{}, probe.Options{CRIUPath: os.Getenv("FERRY_CRIU")})
	if err != nil {
		t.Fatal(err)
	}
	if r := probe.Check(local, f, ""); r.Verdict != probe.VerdictCompatible {
		t.Errorf("local -> netns: %s %v", r.Verdict, reduce(r))
	}

	// A namespace that is gone is an error with a hint, not unknowns.
	gone := &host.Netns{Label: "testbed:gone", Netns: name + "-gone"}
	if _, err := probe.Gather(ctx, gone, probe.Options{}); err == nil {
		t.Error("probing a missing namespace succeeded")
	}
}

func BenchmarkGatherLocal(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.CRIU(b)
	for b.Loop() {
		if _, err := probe.Gather(context.Background(), host.Local{}, probe.Options{CRIUPath: os.Getenv("FERRY_CRIU")}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMatrix8Netns probes 8 network-namespace hosts in parallel (each
// runs its own CRIU checks) and compares all 56 directions.
func BenchmarkMatrix8Netns(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.RequireCommand(b, "ip", "nsenter")
	testenv.CRIU(b)
	var probes []probe.Probe
	for i := range 8 {
		name := fmt.Sprintf("ferry-pb%d-%d", i, os.Getpid())
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			b.Fatalf("ip netns add: %v: %s", err, out)
		}
		b.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })
		if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
			b.Fatalf("lo up: %v: %s", err, out)
		}
		h := &host.Netns{Label: fmt.Sprintf("testbed:pb%d", i), Netns: name}
		probes = append(probes, probe.Probe{Spec: h.Label, Facts: func(ctx context.Context) (*probe.Facts, error) {
			return probe.Gather(ctx, h, probe.Options{CRIUPath: os.Getenv("FERRY_CRIU")})
		}})
	}
	for b.Loop() {
		m := probe.Matrix(context.Background(), probes, "", time.Minute)
		if m.Failed() > 0 || len(m.Directions) != 56 {
			b.Fatalf("%d failed, %d directions", m.Failed(), len(m.Directions))
		}
	}
}

// BenchmarkMatrixSaved7Local1 is the usual fleet check: seven saved facts
// files and this host probed live.
func BenchmarkMatrixSaved7Local1(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.CRIU(b)
	dir := b.TempDir()
	f := gatherDir(b, "vm-6.18", "")
	var probes []probe.Probe
	for i := range 7 {
		p := filepath.Join(dir, fmt.Sprintf("h%d.json", i))
		fh, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		writeJSON(fh, f)
		fh.Close()
		probes = append(probes, probe.Probe{Spec: p, Facts: func(context.Context) (*probe.Facts, error) {
			r, err := os.Open(p)
			if err != nil {
				return nil, err
			}
			defer r.Close()
			return probe.Read(r, p)
		}})
	}
	probes = append(probes, probe.Probe{Spec: "local", Facts: func(ctx context.Context) (*probe.Facts, error) {
		return probe.Gather(ctx, host.Local{}, probe.Options{CRIUPath: os.Getenv("FERRY_CRIU")})
	}})
	for b.Loop() {
		m := probe.Matrix(context.Background(), probes, "", time.Minute)
		if m.Failed() > 0 || len(m.Directions) != 56 {
			b.Fatalf("%d failed, %d directions", m.Failed(), len(m.Directions))
		}
	}
}
