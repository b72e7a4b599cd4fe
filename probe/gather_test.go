package probe_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	goldenfile "github.com/ferry-migrate/ferry/internal/golden"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/probe"
	"github.com/ferry-migrate/ferry/probe/probetest"
)

// gatherDir probes a composed captured host and names it after the variant
// so that the result does not depend on the temporary path.
func gatherDir(t testing.TB, base, variant string) *probe.Facts {
	t.Helper()
	dir := probetest.Compose(t, base, variant)
	f, err := probe.Gather(context.Background(), &host.Dir{Root: dir}, probe.Options{})
	if err != nil {
		t.Fatalf("gather %s+%s: %v", base, variant, err)
	}
	f.Host = "dir:" + filepath.Base(dir)
	return f
}

// TestGatherCaptured probes the real capture of this machine and its
// variants from disk and compares the facts with golden JSON.
func TestGatherCaptured(t *testing.T) {
	t.Parallel()
	for _, variant := range []string{"", "older-kernel", "cpu-no-avx512", "platform-flags", "btrfs-mounted", "no-btrfs", "cgroup-v1", "in-container"} {
		name := variant
		if name == "" {
			name = "vm-6.18"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := gatherDir(t, "vm-6.18", variant)
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetIndent("", "  ")
			if err := enc.Encode(f); err != nil {
				t.Fatal(err)
			}
			golden(t, name+".json", buf.Bytes())
		})
	}
}

// TestGatherCapturedFacts spells out the facts each variant exists for, so
// that a wrong golden file cannot hide them.
func TestGatherCapturedFacts(t *testing.T) {
	t.Parallel()
	base := gatherDir(t, "vm-6.18", "")
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"release", base.Kernel.Release, "6.18.44-fc-v657"},
		{"version", base.Kernel.Version, probe.Version{Major: 6, Minor: 18, Patch: 44}},
		{"arch", base.Kernel.Arch, "x86_64"},
		{"page size", base.Kernel.PageSize, 4096},
		{"config source", base.Kernel.ConfigSource, "/proc/config.gz"},
		{"soft-dirty", base.Kernel.Config["MEM_SOFT_DIRTY"], "n"},
		{"checkpoint_restore", base.Kernel.Config["CHECKPOINT_RESTORE"], "y"},
		{"syscalls", len(base.Syscalls.Names) > 400, true},
		{"vendor", base.CPU.Vendor, "AuthenticAMD"},
		{"xsave", base.CPU.XSave, probe.XSave{FeaturesMask: 0xe5, Size: 2432, SizeMax: 2432, Source: "captured cpuinfo.img"}},
		{"criu", base.CRIU.Version, "4.2.1"},
		{"criu check", base.CRIU.Check.Verdict, "good"},
		{"mem_dirty_track", base.CRIU.Features["mem_dirty_track"], probe.FeatureUnsupported},
		{"uffd", base.CRIU.Features["uffd"], probe.FeatureSupported},
		{"features", len(base.CRIU.Features), len(probe.CRIUFeatures)},
		{"cgroups", base.Cgroups.Mode, "hybrid"},
		{"container", base.Virtualization.ContainerType, "docker"},
		{"vm", base.Virtualization.VMType, "kvm"},
		{"iptables-restore", base.NetworkLock.IptablesRestore, ""},
		{"nft", base.NetworkLock.Nft, "nft"},
		{"lsm unknown", base.Known(probe.KeyLSM), false},
		{"lxd", base.Runtimes["lxd"].Installed, false},
		{"docker daemon", base.Runtimes["docker"].Daemon, "no answer"},
	}
	old := gatherDir(t, "vm-6.18", "older-kernel")
	checks = append(checks, []struct {
		name string
		got  any
		want any
	}{
		{"old release", old.Kernel.Version, probe.Version{Major: 5, Minor: 10, Patch: 0}},
		{"old config source", old.Kernel.ConfigSource, "/boot/config-5.10.0-28-amd64"},
		{"old arch from uname -m", old.Kernel.Arch, "x86_64"},
		{"old criu", old.CRIU.Version, "3.15.0"},
		{"old breakpoints", old.CRIU.Features["breakpoints"], probe.FeatureUnknownName},
		{"old soft-dirty", old.CRIU.Features["mem_dirty_track"], probe.FeatureSupported},
		{"old xsave unknown", old.Known(probe.KeyXSave), false},
		{"old iptables-restore", old.NetworkLock.IptablesRestore, "iptables-restore"},
		{"old fewer syscalls", len(old.Syscalls.Names) < len(base.Syscalls.Names), true},
	}...)
	cg := gatherDir(t, "vm-6.18", "cgroup-v1")
	ct := gatherDir(t, "vm-6.18", "in-container")
	bt := gatherDir(t, "vm-6.18", "btrfs-mounted")
	checks = append(checks, []struct {
		name string
		got  any
		want any
	}{
		{"cgroup v1", cg.Cgroups.Mode, "v1"},
		{"container type", ct.Virtualization.ContainerType, "lxc"},
		{"container cgroups", ct.Cgroups.Mode, "none"},
		{"container mounts", ct.Filesystems.Mounted, []string{"devpts", "devtmpfs", "ext4", "proc", "sysfs", "tmpfs"}},
		{"btrfs mounted", contains(bt.Filesystems.Mounted, "btrfs"), true},
	}...)
	for _, c := range checks {
		if diff := cmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestGatherNotACapture(t *testing.T) {
	t.Parallel()
	_, err := probe.Gather(context.Background(), &host.Dir{Root: t.TempDir()}, probe.Options{})
	if err == nil {
		t.Fatal("an empty directory probed without error")
	}
	if h, ok := err.(interface{ Hint() string }); !ok || h.Hint() == "" {
		t.Errorf("error %v carries no hint", err)
	}
	if _, err := probe.Gather(context.Background(), &host.Dir{Root: "/nonexistent/ferry"}, probe.Options{}); err == nil {
		t.Error("a missing directory probed without error")
	}
}

// TestFactsFieldSet locks the JSON field set of the facts and of the check
// report: a change to it is a schema change.
func TestFactsFieldSet(t *testing.T) {
	t.Parallel()
	f := gatherDir(t, "vm-6.18", "")
	rep := probe.Check(f, f, "")
	mrep := probe.Matrix(context.Background(), []probe.Probe{
		{Spec: "a", Facts: func(context.Context) (*probe.Facts, error) { return f, nil }},
		{Spec: "b", Facts: func(context.Context) (*probe.Facts, error) { return f, nil }},
	}, "", 0)
	var buf bytes.Buffer
	for _, v := range []struct {
		name string
		v    any
	}{{"facts", f}, {"check", rep}, {"matrix", mrep}} {
		b, err := json.Marshal(v.v)
		if err != nil {
			t.Fatal(err)
		}
		var m any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, p := range fieldPaths(v.name, m) {
			buf.WriteString(p + "\n")
		}
	}
	golden(t, "fields.txt", buf.Bytes())
}

// fieldPaths lists the object keys of v as dotted paths; map-valued fields
// whose keys are data (config options, features, runtimes, unknown) are
// shown as <key>.
func fieldPaths(prefix string, v any) []string {
	dataMaps := map[string]bool{"facts.kernel.config": true, "facts.criu.features": true, "facts.runtimes": true, "facts.unknown": true, "facts.runtimes.<key>.settings": true}
	seen := map[string]bool{}
	var out []string
	var walk func(p string, v any)
	walk = func(p string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if dataMaps[p] {
				for _, val := range x {
					walk(p+".<key>", val)
				}
				return
			}
			for k, val := range x {
				walk(p+"."+k, val)
			}
		case []any:
			for _, e := range x {
				walk(p+"[]", e)
			}
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	walk(prefix, v)
	sortStrings(out)
	return out
}

// TestGatherSosLayout reads a captured host laid out as a sos report:
// command outputs under sos_commands/<plugin>/, /proc/mounts instead of
// mountinfo, no CRIU output at all.
func TestGatherSosLayout(t *testing.T) {
	t.Parallel()
	dir := probetest.Compose(t, "vm-6.18", "")
	mustRename := func(from, to string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, to)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, from), filepath.Join(dir, to)); err != nil {
			t.Fatal(err)
		}
	}
	mustRename("commands/uname_-a", "sos_commands/kernel/uname_-a")
	mustRename("commands/systemd-detect-virt_--vm", "sos_commands/systemd/systemd-detect-virt_--vm")
	mi, err := probe.ParseMountinfo(readTestdata(t, "proc/self/mountinfo"))
	if err != nil {
		t.Fatal(err)
	}
	var mounts bytes.Buffer
	for _, m := range mi {
		opts := "rw"
		if len(m.Super) > 0 {
			opts = strings.Join(m.Super, ",")
		}
		fmt.Fprintf(&mounts, "%s %s %s %s 0 0\n", m.Source, m.Point, m.FSType, opts)
	}
	os.WriteFile(filepath.Join(dir, "proc/mounts"), mounts.Bytes(), 0o644)
	for _, p := range []string{"commands", "proc/self/mountinfo", "proc/sys/kernel/arch"} {
		os.RemoveAll(filepath.Join(dir, p))
	}

	f, err := probe.Gather(context.Background(), &host.Dir{Root: dir}, probe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f.Kernel.Arch != "x86_64" {
		t.Errorf("arch %q from sos_commands/kernel/uname_-a (%s)", f.Kernel.Arch, f.Why(probe.KeyKernelArch))
	}
	if f.Filesystems.MountedSource != "/proc/mounts" || !contains(f.Filesystems.Mounted, "ext4") {
		t.Errorf("mounts from %q: %v", f.Filesystems.MountedSource, f.Filesystems.Mounted)
	}
	if f.Cgroups.Mode != "hybrid" || !contains(f.Cgroups.V1Controllers, "memory") {
		t.Errorf("cgroups from /proc/mounts: %+v", f.Cgroups)
	}
	if f.Virtualization.VMType != "kvm" {
		t.Errorf("vm type %q from sos_commands/systemd", f.Virtualization.VMType)
	}
	if f.Kernel.PageSize != 4096 {
		t.Errorf("x86_64 page size %d", f.Kernel.PageSize)
	}
	for _, key := range []string{probe.KeyCRIU, probe.KeyCRIUCheck, probe.KeyCRIUFeatures, "runtime.lxd"} {
		if f.Known(key) {
			t.Errorf("%s known without any captured output", key)
		}
	}
	if why := f.Why(probe.KeyCRIU); !strings.Contains(why, "sos_commands/*/criu_--version") {
		t.Errorf("criu unknown without saying where ferry looked: %s", why)
	}
	// Undecided, not compatible: whether CRIU works is unknown.
	r := probe.Check(f, f, "")
	if r.Verdict != probe.VerdictUndecided || find(r, "criu.present") == nil {
		t.Errorf("verdict %s: %v", r.Verdict, reduce(r))
	}
}

// TestText locks the text forms of facts and of a check report.
func TestText(t *testing.T) {
	t.Parallel()
	base := gatherDir(t, "vm-6.18", "")
	noavx := gatherDir(t, "vm-6.18", "cpu-no-avx512")
	var buf bytes.Buffer
	if err := base.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	golden(t, "vm-6.18.txt", buf.Bytes())
	buf.Reset()
	if err := probe.Check(base, noavx, "").WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	golden(t, "check-vm-6.18-to-cpu-no-avx512.txt", buf.Bytes())
	buf.Reset()
	m := probe.Matrix(context.Background(), []probe.Probe{
		{Spec: "a.json", Facts: func(context.Context) (*probe.Facts, error) { return base, nil }},
		{Spec: "b.json", Facts: func(context.Context) (*probe.Facts, error) { return noavx, nil }},
	}, "", time.Minute)
	for i := range m.Hosts {
		m.Hosts[i].Seconds = 0
	}
	if err := m.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	golden(t, "matrix.txt", buf.Bytes())
}

// TestGatherDiskImage reads a root filesystem without /proc (a mounted disk
// image): the kernel and its configuration come from /boot, the rest is
// unknown, nothing is guessed.
func TestGatherDiskImage(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	cfg := probetest.Compose(t, "vm-6.18", "older-kernel")
	b, err := os.ReadFile(filepath.Join(cfg, "boot", "config-5.10.0-28-amd64"))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, "boot"), 0o755)
	os.WriteFile(filepath.Join(root, "boot", "config-5.10.0-28-amd64"), b, 0o644)
	f, err := probe.Gather(context.Background(), &host.Dir{Root: root}, probe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f.Kernel.Release != "5.10.0-28-amd64" || f.Kernel.ConfigSource != "/boot/config-5.10.0-28-amd64" || f.Kernel.Config["MEM_SOFT_DIRTY"] != "y" {
		t.Errorf("kernel %q from %q", f.Kernel.Release, f.Kernel.ConfigSource)
	}
	for _, key := range []string{probe.KeyCPU, probe.KeySyscalls, probe.KeyFSMounted, probe.KeyCRIU, probe.KeyKernelArch} {
		if f.Known(key) {
			t.Errorf("%s known in a bare disk image", key)
		}
	}
	// Two kernels installed: which one runs is unknown.
	os.WriteFile(filepath.Join(root, "boot", "config-6.1.0-13-amd64"), b, 0o644)
	f, err = probe.Gather(context.Background(), &host.Dir{Root: root}, probe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f.Known(probe.KeyKernelRelease) {
		t.Errorf("release %q chosen among two kernels", f.Kernel.Release)
	}
}

// golden compares got with testdata/golden/name (go test -update rewrites it).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	goldenfile.Check(t, filepath.Join("testdata", "golden", name), got)
}
