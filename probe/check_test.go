package probe_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-migrate/ferry/probe"
)

// finding is a finding reduced to what the tests compare.
type finding struct {
	Rule     string
	Severity probe.Severity
}

func reduce(r *probe.Report) []finding {
	out := []finding{}
	for _, f := range r.Findings {
		out = append(out, finding{f.Rule, f.Severity})
	}
	return out
}

func find(r *probe.Report, rule string) *probe.Finding {
	for i := range r.Findings {
		if r.Findings[i].Rule == rule {
			return &r.Findings[i]
		}
	}
	return nil
}

// baseline findings of this machine against itself: it is a container in
// a VM without soft-dirty and without iptables-restore.
var baseline = []finding{
	{"host.nesting", probe.Warning}, {"host.nesting", probe.Warning},
	{"known.no-soft-dirty", probe.Warning}, {"known.no-soft-dirty", probe.Warning},
	{"known.network-lock", probe.Info}, {"known.network-lock", probe.Info},
}

func TestCheckCaptured(t *testing.T) {
	t.Parallel()
	facts := map[string]*probe.Facts{}
	for _, v := range []string{"", "older-kernel", "cpu-no-avx512", "platform-flags", "btrfs-mounted", "no-btrfs", "cgroup-v1", "in-container"} {
		facts[v] = gatherDir(t, "vm-6.18", v)
	}
	tests := []struct {
		name        string
		src, dst    string
		verdict     string
		want        []finding // all findings, in report order
		wantInRule  string    // a rule whose message must contain wantText
		wantText    []string
		notInReport []string
	}{
		{name: "same host", src: "", dst: "", verdict: probe.VerdictCompatible, want: baseline},
		{name: "target lacks avx512", src: "", dst: "cpu-no-avx512", verdict: probe.VerdictIncompatible,
			wantInRule:  "cpu.instruction-flags",
			wantText:    []string{"avx512f", "avx512bw", "sha_ni", "vaes", "gfni", "vpclmulqdq"},
			notInReport: []string{"cpu.xsave-size"}},
		{name: "source lacks avx512: fine", src: "cpu-no-avx512", dst: "", verdict: probe.VerdictCompatible,
			notInReport: []string{"cpu.instruction-flags"}},
		{name: "platform flags only", src: "", dst: "platform-flags", verdict: probe.VerdictCompatible,
			want:       append(append([]finding{}, baseline[:4]...), finding{"cpu.platform-flags", probe.Info}, baseline[4], baseline[5]),
			wantInRule: "cpu.platform-flags", wantText: []string{"hypervisor", "constant_tsc", "aperfmperf"}},
		{name: "btrfs mounted, target has no btrfs", src: "btrfs-mounted", dst: "no-btrfs", verdict: probe.VerdictIncompatible,
			wantInRule: "fs.mounted-supported", wantText: []string{"btrfs"}},
		{name: "btrfs mounted, target has btrfs", src: "btrfs-mounted", dst: "", verdict: probe.VerdictCompatible},
		{name: "newer kernel to older", src: "", dst: "older-kernel", verdict: probe.VerdictIncompatible,
			wantInRule: "syscalls.subset", wantText: []string{"clone3", "and 25 more"}},
		{name: "older kernel to newer", src: "older-kernel", dst: "", verdict: probe.VerdictCompatible,
			wantInRule: "known.criu-hw-breakpoints", wantText: []string{"3.15.0 cannot tell"},
			notInReport: []string{"syscalls.subset", "criu.target-older", "known.criu-vvar-vclock"}},
		{name: "cgroup v1 target", src: "", dst: "cgroup-v1", verdict: probe.VerdictCompatible, want: baseline},
		{name: "in a container", src: "in-container", dst: "", verdict: probe.VerdictCompatible,
			wantInRule: "host.nesting", wantText: []string{"lxc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := probe.Check(facts[tt.src], facts[tt.dst], "")
			if r.Verdict != tt.verdict {
				t.Errorf("verdict %s, want %s: %v", r.Verdict, tt.verdict, reduce(r))
			}
			if tt.want != nil {
				if diff := cmp.Diff(tt.want, reduce(r)); diff != "" {
					t.Errorf("findings (-want +got):\n%s", diff)
				}
			}
			if tt.wantInRule != "" {
				f := find(r, tt.wantInRule)
				if f == nil {
					t.Fatalf("no %s finding: %v", tt.wantInRule, reduce(r))
				}
				for _, w := range tt.wantText {
					if !strings.Contains(f.Message, w) {
						t.Errorf("%s message lacks %q: %s", tt.wantInRule, w, f.Message)
					}
				}
				if f.Hint == "" || f.Source == "" || f.Target == "" {
					t.Errorf("%s lacks hint or evidence: %+v", tt.wantInRule, f)
				}
				if tt.wantInRule == "syscalls.subset" && !strings.Contains(f.Target, "openat2") {
					t.Errorf("target evidence does not list every missing syscall: %s", f.Target)
				}
			}
			for _, rule := range tt.notInReport {
				if f := find(r, rule); f != nil {
					t.Errorf("unexpected %s: %s", rule, f.Message)
				}
			}
		})
	}
}

// mutate returns a deep-enough copy of f changed by fn.
func mutate(t *testing.T, f *probe.Facts, fn func(*probe.Facts)) *probe.Facts {
	t.Helper()
	c := *f
	c.Unknown = map[string]string{}
	for k, v := range f.Unknown {
		c.Unknown[k] = v
	}
	c.CRIU.Features = map[string]string{}
	for k, v := range f.CRIU.Features {
		c.CRIU.Features[k] = v
	}
	c.Runtimes = map[string]probe.Runtime{}
	for k, v := range f.Runtimes {
		c.Runtimes[k] = v
	}
	c.Kernel.Config = map[string]string{}
	for k, v := range f.Kernel.Config {
		c.Kernel.Config[k] = v
	}
	fn(&c)
	return &c
}

func TestCheckRules(t *testing.T) {
	t.Parallel()
	base := gatherDir(t, "vm-6.18", "")
	tests := []struct {
		name     string
		runtime  string
		src, dst func(*probe.Facts)
		rule     string
		sev      probe.Severity
		text     string
	}{
		{name: "arch", dst: func(f *probe.Facts) { f.Kernel.Arch = "aarch64" }, rule: "arch.match", sev: probe.Blocker, text: "x86_64 -> aarch64"},
		{name: "arch unknown", dst: func(f *probe.Facts) { f.Unknown[probe.KeyKernelArch] = "uname failed" }, rule: "arch.match", sev: probe.Undecided, text: "unknown on the target"},
		{name: "page size", dst: func(f *probe.Facts) { f.Kernel.PageSize = 16384 }, rule: "kernel.page-size", sev: probe.Blocker, text: "4096 -> 16384"},
		{name: "old kernel", dst: func(f *probe.Facts) { f.Kernel.Version = probe.Version{3, 10, 0}; f.Kernel.Release = "3.10.0" }, rule: "kernel.min-version", sev: probe.Blocker, text: "3.10.0"},
		{name: "no checkpoint_restore", dst: func(f *probe.Facts) { f.Kernel.Config["CHECKPOINT_RESTORE"] = "n" }, rule: "kernel.config", sev: probe.Blocker, text: "CONFIG_CHECKPOINT_RESTORE"},
		{name: "target lacks time ns", dst: func(f *probe.Facts) { f.Kernel.Config["TIME_NS"] = "n" }, rule: "kernel.config", sev: probe.Warning, text: "TIME_NS"},
		{name: "cpu unknown", src: func(f *probe.Facts) { f.Unknown[probe.KeyCPU] = "no cpuinfo" }, rule: "cpu.instruction-flags", sev: probe.Undecided, text: "unknown on the source"},
		{name: "other instruction flags", dst: func(f *probe.Facts) { f.CPU.Flags = without(f.CPU.Flags, "avx_vnni") }, rule: "cpu.other-instruction-flags", sev: probe.Warning, text: "avx_vnni"},
		{name: "monitor is not a blocker", src: func(f *probe.Facts) { f.CPU.Flags = append(f.CPU.Flags, "monitor") },
			rule: "cpu.criu-ins-mask", sev: probe.Warning, text: "monitor"},
		{name: "monitor is not an instruction flag", src: func(f *probe.Facts) { f.CPU.Flags = append(f.CPU.Flags, "monitor") },
			rule: "cpu.instruction-flags", sev: "", text: ""},
		{name: "vendor", dst: func(f *probe.Facts) { f.CPU.Vendor = "GenuineIntel" }, rule: "cpu.vendor", sev: probe.Warning, text: "AuthenticAMD -> GenuineIntel"},
		{name: "xfeatures", dst: func(f *probe.Facts) { f.CPU.XSave.FeaturesMask = 0x7 }, rule: "cpu.xsave-features", sev: probe.Blocker, text: "0xe0"},
		{name: "xsave size", dst: func(f *probe.Facts) { f.CPU.XSave.Size = 1088 }, rule: "cpu.xsave-size", sev: probe.Warning, text: "2432/2432 -> 1088/2432"},
		{name: "xsave unknown", dst: func(f *probe.Facts) { f.Unknown[probe.KeyXSave] = "no criu" }, rule: "cpu.xsave-features", sev: probe.Warning, text: "cannot compare"},
		{name: "syscalls", dst: func(f *probe.Facts) { f.Syscalls.Names = without(f.Syscalls.Names, "mseal") }, rule: "syscalls.subset", sev: probe.Blocker, text: "mseal"},
		{name: "syscalls unknown", dst: func(f *probe.Facts) { f.Unknown[probe.KeySyscalls] = "kptr_restrict" }, rule: "syscalls.subset", sev: probe.Warning, text: "cannot compare syscalls"},
		{name: "fuse subtype", src: func(f *probe.Facts) { f.Filesystems.Mounted = append(f.Filesystems.Mounted, "fuse.sshfs") },
			dst: func(f *probe.Facts) { f.Filesystems.Supported = without(f.Filesystems.Supported, "fuse") }, rule: "fs.mounted-supported", sev: probe.Blocker, text: "fuse"},
		{name: "nsfs is never in /proc/filesystems", src: func(f *probe.Facts) { f.Filesystems.Mounted = append(f.Filesystems.Mounted, "nsfs") },
			rule: "fs.mounted-supported", sev: "", text: ""},
		{name: "apparmor on source only", src: setLSM("sysfs", []string{"apparmor"}),
			dst: setLSM("sysfs", []string{}), rule: "lsm.apparmor", sev: probe.Blocker, text: "apparmor LSM specified"},
		{name: "apparmor on target only", dst: setLSM("sysfs", []string{"apparmor"}),
			src: setLSM("sysfs", []string{}), rule: "lsm.apparmor", sev: "", text: ""},
		{name: "selinux needs the target's full list", src: setLSM("/sys/kernel/security/lsm", []string{"selinux"}),
			dst: setLSM("sysfs", []string{}), rule: "lsm.selinux", sev: "", text: ""},
		{name: "selinux", src: setLSM("/sys/kernel/security/lsm", []string{"selinux"}),
			dst: setLSM("/sys/kernel/security/lsm", []string{"lockdown", "capability"}), rule: "lsm.selinux", sev: probe.Blocker, text: "SELinux"},
		{name: "no criu", dst: func(f *probe.Facts) { f.Unknown[probe.KeyCRIU] = "local: criu not found (looked for ...)" }, rule: "criu.present", sev: probe.Blocker, text: "target"},
		{name: "criu min", src: func(f *probe.Facts) { f.CRIU.Version = "3.10.0" }, rule: "criu.min-version", sev: probe.Blocker, text: "3.10.0"},
		{name: "criu target older", dst: func(f *probe.Facts) { f.CRIU.Version = "4.1.1" }, rule: "criu.target-older", sev: probe.Blocker, text: "4.1.1"},
		{name: "criu check bad", dst: func(f *probe.Facts) { f.CRIU.Check.Verdict = "bad" }, rule: "criu.check", sev: probe.Blocker, text: "fails on the target"},
		{name: "kerndat cache blocked", dst: func(f *probe.Facts) { f.CRIU.KerndatCache = probe.KerndatBlocked }, rule: "criu.kerndat-cache", sev: probe.Info, text: "stale /run/criu.kdat.tmp"},
		{name: "vvar_vclock", src: func(f *probe.Facts) { f.CRIU.Version = "3.17.1" }, dst: func(f *probe.Facts) { f.CRIU.Version = "3.17.1" },
			rule: "known.criu-vvar-vclock", sev: probe.Blocker, text: "vvar_vclock"},
		{name: "vvar_vclock fine on 6.12", src: func(f *probe.Facts) { f.CRIU.Version = "4.0.0"; f.Kernel.Version = probe.Version{6, 12, 0} },
			dst: func(f *probe.Facts) { f.CRIU.Version = "4.0.0"; f.Kernel.Version = probe.Version{6, 12, 0} }, rule: "known.criu-vvar-vclock", sev: "", text: ""},
		{name: "hw breakpoints with criu 4.1", src: func(f *probe.Facts) {
			f.CRIU.Version = "4.1.1"
			f.CRIU.Check.Messages = []string{"Warn  (criu/kerndat.c:1900): " + probe.HWBreakpointsWarning}
		}, dst: func(f *probe.Facts) { f.CRIU.Version = "4.1.1" }, rule: "known.criu-hw-breakpoints", sev: probe.Blocker, text: "hangs at dump"},
		{name: "hw breakpoints with criu 4.2: fine", src: func(f *probe.Facts) {
			f.CRIU.Check.Messages = []string{"Warn  (criu/kerndat.c:1900): " + probe.HWBreakpointsWarning}
		}, rule: "known.criu-hw-breakpoints", sev: "", text: ""},
		{name: "hw breakpoints unknown in a VM", src: func(f *probe.Facts) { f.CRIU.Version = "4.1.1"; delete(f.CRIU.Features, "breakpoints") },
			dst: func(f *probe.Facts) { f.CRIU.Version = "4.1.1" }, rule: "known.criu-hw-breakpoints", sev: probe.Warning, text: "cannot tell"},
		{name: "no network lock", dst: func(f *probe.Facts) {
			f.NetworkLock.Nft = ""
			f.CRIU.Features["network_lock_nftables"] = probe.FeatureUnsupported
		},
			rule: "known.network-lock", sev: probe.Blocker, text: "no iptables-restore and no usable nftables lock"},
		{name: "iptables-restore present", src: func(f *probe.Facts) { f.NetworkLock.IptablesRestore = "/usr/sbin/iptables-restore" },
			dst: func(f *probe.Facts) { f.NetworkLock.IptablesRestore = "/usr/sbin/iptables-restore" }, rule: "known.network-lock", sev: "", text: ""},
		{name: "lxd missing", runtime: "lxd", rule: "runtime.installed", sev: probe.Blocker, text: "lxd is not installed"},
		{name: "lxd 6.6", runtime: "lxd",
			src: func(f *probe.Facts) {
				f.Runtimes["lxd"] = probe.Runtime{Installed: true, Version: "6.6", Daemon: "answers", ServerVersion: "6.6"}
			},
			dst: func(f *probe.Facts) {
				f.Runtimes["lxd"] = probe.Runtime{Installed: true, Version: "6.6", Daemon: "answers", ServerVersion: "6.6"}
			},
			rule: "lxd.no-live-migration", sev: probe.Blocker, text: "no container live migration"},
		{name: "lxd daemon down", runtime: "lxd",
			src: func(f *probe.Facts) {
				f.Runtimes["lxd"] = probe.Runtime{Installed: true, Version: "5.0.2", Daemon: "no answer"}
			},
			dst: func(f *probe.Facts) {
				f.Runtimes["lxd"] = probe.Runtime{Installed: true, Version: "5.0.2", Daemon: "answers", ServerVersion: "5.0.2"}
			},
			rule: "runtime.installed", sev: probe.Blocker, text: "does not answer on the source"},
		{name: "incus stateful", runtime: "incus",
			src: func(f *probe.Facts) {
				f.Runtimes["incus"] = probe.Runtime{Installed: true, Version: "6.0.4", Daemon: "answers", ServerVersion: "6.0.4", Settings: map[string]string{"default_profile.migration.stateful": ""}}
			},
			dst: func(f *probe.Facts) {
				f.Runtimes["incus"] = probe.Runtime{Installed: true, Version: "6.0.4", Daemon: "answers", ServerVersion: "6.0.4"}
			},
			rule: "incus.migration-stateful", sev: probe.Warning, text: "migration.stateful"},
		{name: "incus older target", runtime: "incus",
			src: func(f *probe.Facts) {
				f.Runtimes["incus"] = probe.Runtime{Installed: true, Version: "6.0.4", Daemon: "answers", ServerVersion: "6.7"}
			},
			dst: func(f *probe.Facts) {
				f.Runtimes["incus"] = probe.Runtime{Installed: true, Version: "6.0.4", Daemon: "answers", ServerVersion: "6.0.4"}
			},
			rule: "runtime.version", sev: probe.Warning, text: "older"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src, dst := base, base
			if tt.src != nil {
				src = mutate(t, base, tt.src)
			}
			if tt.dst != nil {
				dst = mutate(t, base, tt.dst)
			}
			r := probe.Check(src, dst, tt.runtime)
			f := find(r, tt.rule)
			if tt.sev == "" {
				if f != nil {
					t.Fatalf("unexpected %s: %s", tt.rule, f.Message)
				}
				return
			}
			if f == nil {
				t.Fatalf("no %s finding in %v", tt.rule, reduce(r))
			}
			if f.Severity != tt.sev || !strings.Contains(f.Message, tt.text) {
				t.Errorf("got %s %q, want %s containing %q", f.Severity, f.Message, tt.sev, tt.text)
			}
			wantVerdict := map[probe.Severity]string{probe.Blocker: probe.VerdictIncompatible, probe.Undecided: probe.VerdictUndecided}[tt.sev]
			if wantVerdict != "" && r.Verdict != wantVerdict {
				t.Errorf("verdict %s, want %s", r.Verdict, wantVerdict)
			}
		})
	}
}

func without(s []string, drop string) []string {
	var out []string
	for _, v := range s {
		if v != drop {
			out = append(out, v)
		}
	}
	return out
}

func TestRuleIDsStable(t *testing.T) {
	t.Parallel()
	var ids []string
	seen := map[string]bool{}
	for _, r := range probe.Rules {
		if seen[r.ID] {
			t.Errorf("duplicate rule %s", r.ID)
		}
		seen[r.ID] = true
		ids = append(ids, r.ID)
	}
	golden(t, "rules.txt", []byte(strings.Join(ids, "\n")+"\n"))
}

func TestMatrix(t *testing.T) {
	t.Parallel()
	ok := gatherDir(t, "vm-6.18", "")
	noavx := gatherDir(t, "vm-6.18", "cpu-no-avx512")
	fixed := func(f *probe.Facts) func(context.Context) (*probe.Facts, error) {
		return func(context.Context) (*probe.Facts, error) { return f, nil }
	}
	probes := []probe.Probe{
		{Spec: "a", Facts: fixed(ok)},
		{Spec: "slow", Facts: func(ctx context.Context) (*probe.Facts, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}},
		{Spec: "stuck", Facts: func(ctx context.Context) (*probe.Facts, error) {
			// Ignores its context: the matrix must not wait for it.
			time.Sleep(time.Hour)
			return nil, nil
		}},
		{Spec: "broken", Facts: func(context.Context) (*probe.Facts, error) { return nil, errors.New("ssh: connection refused") }},
		{Spec: "b", Facts: fixed(noavx)},
	}
	m := probe.Matrix(context.Background(), probes, "", 300*time.Millisecond)
	type hostRow struct {
		Spec     string
		OK       bool
		TimedOut bool
	}
	var hosts []hostRow
	for _, h := range m.Hosts {
		hosts = append(hosts, hostRow{h.Spec, h.OK, h.TimedOut})
		if !h.OK && h.Error == "" {
			t.Errorf("%s failed without an error", h.Spec)
		}
	}
	wantHosts := []hostRow{{"a", true, false}, {"slow", false, true}, {"stuck", false, true}, {"broken", false, false}, {"b", true, false}}
	if diff := cmp.Diff(wantHosts, hosts); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
	if m.Failed() != 3 {
		t.Errorf("Failed = %d", m.Failed())
	}
	type dir struct{ Src, Dst, Verdict string }
	var dirs []dir
	for _, d := range m.Directions {
		dirs = append(dirs, dir{d.Source, d.Target, d.Verdict})
	}
	want := []dir{{"a", "b", probe.VerdictIncompatible}, {"b", "a", probe.VerdictCompatible}}
	if diff := cmp.Diff(want, dirs); diff != "" {
		t.Errorf("directions (-want +got):\n%s", diff)
	}
	if len(m.Directions) > 0 && !strings.Contains(strings.Join(m.Directions[0].Blockers, " "), "avx512f") {
		t.Errorf("a -> b blockers do not name the flag: %v", m.Directions[0].Blockers)
	}
}

// setLSM sets a known LSM fact.
func setLSM(source string, mods []string) func(*probe.Facts) {
	return func(f *probe.Facts) {
		f.LSM = probe.LSM{Modules: mods, Source: source}
		delete(f.Unknown, probe.KeyLSM)
	}
}
