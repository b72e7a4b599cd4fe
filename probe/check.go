package probe

import (
	"fmt"
	"sort"
	"strings"
)

// CheckSchema names the format of a check report.
const CheckSchema = "ferry.check/v1"

// Severity says how much a finding matters.
type Severity string

const (
	// Blocker: the migration cannot work.
	Blocker Severity = "blocker"
	// Warning: it can work, with a limitation or a risk.
	Warning Severity = "warning"
	// Info: worth knowing.
	Info Severity = "info"
	// Undecided: a rule that decides compatibility could not be
	// evaluated because a fact is unknown.
	Undecided Severity = "undecided"
)

// Runtimes accepted by Check.
const (
	RuntimeCRIU  = "criu"
	RuntimeLXD   = "lxd"
	RuntimeIncus = "incus"
)

// Finding is one rule's verdict on a pair of hosts.
type Finding struct {
	Rule     string   `json:"rule"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
	Hint     string   `json:"hint"`
	Source   string   `json:"source"` // the evidence on the source host
	Target   string   `json:"target"` // the evidence on the target host
}

// Verdicts of a Report.
const (
	VerdictCompatible   = "compatible"
	VerdictIncompatible = "incompatible"
	VerdictUndecided    = "undecided"
)

// Report is the comparison of two hosts.
type Report struct {
	Schema   string    `json:"schema"`
	Source   string    `json:"source"`
	Target   string    `json:"target"`
	Runtime  string    `json:"runtime"`
	Verdict  string    `json:"verdict"`
	Blockers int       `json:"blockers"`
	Warnings int       `json:"warnings"`
	Findings []Finding `json:"findings"`
}

// Thresholds the rules use.
var (
	// MinKernel is the oldest kernel CRIU supports.
	MinKernel = Version{3, 11, 0}
	// MinCRIU is the oldest CRIU ferry drives.
	MinCRIU = Version{3, 11, 0}
	// VvarVclockKernel is the first kernel with the separate [vvar_vclock]
	// mapping that CRIU before FixedVvarCRIU cannot handle.
	VvarVclockKernel = Version{6, 13, 0}
	FixedVvarCRIU    = Version{4, 1, 0}
	// BreakpointsCRIU is the first CRIU that works where hardware
	// breakpoints do not (older ones hang at dump).
	BreakpointsCRIU = Version{4, 2, 0}
	// LXDNoLiveMigration is the first Canonical LXD without container live
	// migration.
	LXDNoLiveMigration = Version{6, 6, 0}
)

// Rule compares two hosts. A rule appends findings; it may append none
// when everything is fine.
type Rule struct {
	ID string
	// Runtimes the rule applies to; empty means all.
	Runtimes []string
	Check    func(c *pair)
}

type pair struct {
	src, dst *Facts
	runtime  string
	rule     string
	findings []Finding
}

func (p *pair) add(sev Severity, msg, hint, src, dst string) {
	p.findings = append(p.findings, Finding{Rule: p.rule, Severity: sev, Message: msg, Hint: hint, Source: src, Target: dst})
}

// undecided records that facts are missing; essential rules say
// Undecided, the others Warning.
func (p *pair) unknown(sev Severity, key, what string) bool {
	s, d := p.src.Why(key), p.dst.Why(key)
	if s == "" && d == "" {
		return false
	}
	p.add(sev, fmt.Sprintf("cannot compare %s: unknown on %s", what, sides(s != "", d != "")),
		"probe the host live (as root) so that "+what+" can be read", unknownText(s), unknownText(d))
	return true
}

func sides(src, dst bool) string {
	switch {
	case src && dst:
		return "both hosts"
	case src:
		return "the source"
	}
	return "the target"
}

func unknownText(why string) string {
	if why == "" {
		return "known"
	}
	return "unknown: " + why
}

// Check compares src and dst for moving a workload from src to dst with
// runtime (criu, lxd or incus; "" means criu).
func Check(src, dst *Facts, runtime string) *Report {
	if runtime == "" {
		runtime = RuntimeCRIU
	}
	rep := &Report{Schema: CheckSchema, Source: src.Host, Target: dst.Host, Runtime: runtime, Findings: []Finding{}}
	for _, r := range Rules {
		if len(r.Runtimes) > 0 && !contains(r.Runtimes, runtime) {
			continue
		}
		p := &pair{src: src, dst: dst, runtime: runtime, rule: r.ID}
		r.Check(p)
		rep.Findings = append(rep.Findings, p.findings...)
	}
	order := map[Severity]int{Blocker: 0, Undecided: 1, Warning: 2, Info: 3}
	sort.SliceStable(rep.Findings, func(i, j int) bool {
		return order[rep.Findings[i].Severity] < order[rep.Findings[j].Severity]
	})
	undecided := false
	for _, f := range rep.Findings {
		switch f.Severity {
		case Blocker:
			rep.Blockers++
		case Warning:
			rep.Warnings++
		case Undecided:
			undecided = true
		}
	}
	switch {
	case rep.Blockers > 0:
		rep.Verdict = VerdictIncompatible
	case undecided:
		rep.Verdict = VerdictUndecided
	default:
		rep.Verdict = VerdictCompatible
	}
	return rep
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// missing returns the elements of want that have lacks, sorted.
func missing(want, have []string) []string {
	h := setOf(have)
	var out []string
	for _, w := range want {
		if !h[w] {
			out = append(out, w)
		}
	}
	sort.Strings(out)
	return out
}

func list(s []string, max int) string {
	if len(s) == 0 {
		return "none"
	}
	if max > 0 && len(s) > max {
		return strings.Join(s[:max], ", ") + fmt.Sprintf(" and %d more", len(s)-max)
	}
	return strings.Join(s, ", ")
}

func criuVersion(f *Facts) (Version, bool) {
	if !f.Known(KeyCRIU) || f.CRIU.Version == "" {
		return Version{}, false
	}
	v, err := ParseVersion(f.CRIU.Version)
	return v, err == nil
}

// Rules are all rules, in report order. IDs are stable: scripts and
// suppressions refer to them.
var Rules = []Rule{
	{ID: "arch.match", Check: func(p *pair) {
		if p.unknown(Undecided, KeyKernelArch, "the architecture") {
			return
		}
		if p.src.Kernel.Arch != p.dst.Kernel.Arch {
			p.add(Blocker, fmt.Sprintf("architectures differ: %s -> %s", p.src.Kernel.Arch, p.dst.Kernel.Arch),
				"a process can only move between hosts of the same architecture", p.src.Kernel.Arch, p.dst.Kernel.Arch)
		}
	}},
	{ID: "kernel.page-size", Check: func(p *pair) {
		if p.unknown(Undecided, KeyPageSize, "the page size") {
			return
		}
		if p.src.Kernel.PageSize != p.dst.Kernel.PageSize {
			p.add(Blocker, fmt.Sprintf("page sizes differ: %d -> %d bytes", p.src.Kernel.PageSize, p.dst.Kernel.PageSize),
				"CRIU images hold pages of the source's size: pick a target with the same page size",
				fmt.Sprint(p.src.Kernel.PageSize), fmt.Sprint(p.dst.Kernel.PageSize))
		}
	}},
	{ID: "kernel.min-version", Check: func(p *pair) {
		if p.unknown(Undecided, KeyKernelVersion, "the kernel version") {
			return
		}
		for _, side := range []struct {
			name string
			f    *Facts
		}{{"source", p.src}, {"target", p.dst}} {
			if side.f.Kernel.Version.Less(MinKernel) {
				p.add(Blocker, fmt.Sprintf("%s kernel %s is older than %s, the oldest CRIU supports", side.name, side.f.Kernel.Release, MinKernel),
					"upgrade the kernel", p.src.Kernel.Release, p.dst.Kernel.Release)
			}
		}
	}},
	{ID: "kernel.config", Check: func(p *pair) {
		if p.unknown(Warning, KeyKernelConfig, "the kernel configuration") {
			return
		}
		for _, side := range []struct {
			name string
			f    *Facts
		}{{"source", p.src}, {"target", p.dst}} {
			if side.f.Kernel.Config["CHECKPOINT_RESTORE"] != "y" {
				p.add(Blocker, side.name+" kernel is built without CONFIG_CHECKPOINT_RESTORE",
					"use a kernel built with CONFIG_CHECKPOINT_RESTORE=y", p.src.Kernel.Config["CHECKPOINT_RESTORE"], p.dst.Kernel.Config["CHECKPOINT_RESTORE"])
			}
		}
		var lacks []string
		for _, o := range []string{"NAMESPACES", "UTS_NS", "IPC_NS", "PID_NS", "NET_NS", "USER_NS", "TIME_NS",
			"UNIX_DIAG", "INET_DIAG", "PACKET_DIAG", "NETLINK_DIAG", "FHANDLE", "EVENTFD", "EPOLL", "INOTIFY_USER", "FANOTIFY", "KCMP"} {
			if s, d := p.src.Kernel.Config[o], p.dst.Kernel.Config[o]; s != "n" && d == "n" {
				lacks = append(lacks, o)
			}
		}
		if len(lacks) > 0 {
			p.add(Warning, "target kernel lacks options the source has: "+list(lacks, 0),
				"a workload that uses these (namespaces, sockets, notify fds) cannot be restored on the target",
				configEvidence(p.src, lacks), configEvidence(p.dst, lacks))
		}
	}},
	{ID: "cpu.instruction-flags", Check: func(p *pair) {
		if p.unknown(Undecided, KeyCPU, "CPU flags") {
			return
		}
		si, _, _ := ClassifyFlags(p.src.CPU.Flags)
		di, _, _ := ClassifyFlags(p.dst.CPU.Flags)
		if m := missing(si, di); len(m) > 0 {
			p.add(Blocker, "target CPU lacks instruction-set flags of the source: "+list(m, 0),
				"processes using these instructions would crash on the target (CRIU --cpu-cap=ins refuses too): pick a target CPU with them, or mask them on the source (VM CPU model)",
				cpuEvidence(p.src), cpuEvidence(p.dst))
		}
	}},
	{ID: "cpu.criu-ins-mask", Check: func(p *pair) {
		if !p.src.Known(KeyCPU) || !p.dst.Known(KeyCPU) {
			return
		}
		var src []string
		for _, f := range p.src.CPU.Flags {
			if criuPlatform[f] {
				src = append(src, f)
			}
		}
		if m := missing(src, p.dst.CPU.Flags); len(m) > 0 {
			p.add(Warning, "target CPU lacks "+list(m, 0)+": not instructions user code runs, but CRIU's --cpu-cap=ins check compares them and would refuse the restore",
				"do not pass --cpu-cap=ins (or all) to CRIU for this move; the default does not check", cpuEvidence(p.src), cpuEvidence(p.dst))
		}
	}},
	{ID: "cpu.other-instruction-flags", Check: func(p *pair) {
		if !p.src.Known(KeyCPU) || !p.dst.Known(KeyCPU) {
			return
		}
		_, so, _ := ClassifyFlags(p.src.CPU.Flags)
		_, do, _ := ClassifyFlags(p.dst.CPU.Flags)
		if m := missing(so, do); len(m) > 0 {
			p.add(Warning, "target CPU lacks instruction-set extensions CRIU does not compare: "+list(m, 0),
				"a process that picked these at start-up (libc, JITs, math libraries) dies with SIGILL on the target",
				cpuEvidence(p.src), cpuEvidence(p.dst))
		}
	}},
	{ID: "cpu.platform-flags", Check: func(p *pair) {
		if !p.src.Known(KeyCPU) || !p.dst.Known(KeyCPU) {
			return
		}
		_, _, sp := ClassifyFlags(p.src.CPU.Flags)
		_, _, dp := ClassifyFlags(p.dst.CPU.Flags)
		m, extra := missing(sp, dp), missing(dp, sp)
		if len(m)+len(extra) > 0 {
			p.add(Info, fmt.Sprintf("platform and power flags differ (not needed by user code): target lacks %s; target adds %s", list(m, 8), list(extra, 8)),
				"nothing to do: these flags do not decide whether a process can run", list(m, 0), list(extra, 0))
		}
	}},
	{ID: "cpu.vendor", Check: func(p *pair) {
		if !p.src.Known(KeyCPU) || !p.dst.Known(KeyCPU) || p.src.CPU.Vendor == p.dst.CPU.Vendor {
			return
		}
		p.add(Warning, fmt.Sprintf("CPU vendors differ: %s -> %s", p.src.CPU.Vendor, p.dst.CPU.Vendor),
			"cross-vendor moves work only when the instruction flags and xsave layout match; test the workload", p.src.CPU.ModelName, p.dst.CPU.ModelName)
	}},
	{ID: "cpu.xsave-features", Check: func(p *pair) {
		if p.unknown(Warning, KeyXSave, "xsave features") {
			return
		}
		if m := p.src.CPU.XSave.FeaturesMask &^ p.dst.CPU.XSave.FeaturesMask; m != 0 {
			p.add(Blocker, fmt.Sprintf("target CPU lacks xsave features of the source (bits %#x)", m),
				"CRIU cannot restore FPU state the target cannot hold (its fpu check says \"CPU xfeatures has unsupported bits\")",
				fmt.Sprintf("%#x", p.src.CPU.XSave.FeaturesMask), fmt.Sprintf("%#x", p.dst.CPU.XSave.FeaturesMask))
		}
	}},
	{ID: "cpu.xsave-size", Check: func(p *pair) {
		if !p.src.Known(KeyXSave) || !p.dst.Known(KeyXSave) {
			return
		}
		s, d := p.src.CPU.XSave, p.dst.CPU.XSave
		if s.Size != d.Size || s.SizeMax != d.SizeMax {
			p.add(Warning, fmt.Sprintf("xsave frame sizes differ: %d/%d -> %d/%d bytes", s.Size, s.SizeMax, d.Size, d.SizeMax),
				"CRIU's fpu check (--cpu-cap=fpu) refuses this; programs whose libc cached the source's xsave size may misbehave on the target",
				fmt.Sprintf("size %d, max %d", s.Size, s.SizeMax), fmt.Sprintf("size %d, max %d", d.Size, d.SizeMax))
		}
	}},
	{ID: "syscalls.subset", Check: func(p *pair) {
		if p.unknown(Warning, KeySyscalls, "syscalls") {
			return
		}
		if m := missing(p.src.Syscalls.Names, p.dst.Syscalls.Names); len(m) > 0 {
			p.add(Blocker, "target kernel lacks syscalls the source offers: "+list(m, 12),
				"a process that uses them fails on the target with ENOSYS: use a target kernel at least as new",
				fmt.Sprintf("%d syscalls", len(p.src.Syscalls.Names)), fmt.Sprintf("%d syscalls, missing %s", len(p.dst.Syscalls.Names), list(m, 0)))
		}
	}},
	{ID: "fs.mounted-supported", Check: func(p *pair) {
		if p.unknown(Warning, KeyFSMounted, "mounted filesystems") || p.unknown(Warning, KeyFSSupported, "supported filesystems") {
			return
		}
		var need []string
		for _, t := range p.src.Filesystems.Mounted {
			if !internalFS[t] {
				need = append(need, BaseFSType(t))
			}
		}
		if m := missing(uniqSorted(need), p.dst.Filesystems.Supported); len(m) > 0 {
			p.add(Blocker, "filesystem types mounted on the source are not supported by the target kernel: "+list(m, 0),
				"load the filesystem modules on the target (modprobe) or keep the workload off these filesystems",
				"mounted: "+list(p.src.Filesystems.Mounted, 0), "supported: "+list(p.dst.Filesystems.Supported, 0))
		}
	}},
	{ID: "host.nesting", Check: func(p *pair) {
		for _, side := range []struct {
			name string
			f    *Facts
		}{{"source", p.src}, {"target", p.dst}} {
			v := side.f.Virtualization
			if !v.Container {
				continue
			}
			p.add(Warning, fmt.Sprintf("the %s host is itself a container (%s): nested checkpoint/restore needs a privileged container", side.name, v.ContainerType),
				"run ferry and CRIU on the outer host, or give the container CAP_SYS_ADMIN, CAP_CHECKPOINT_RESTORE and its own PID namespace view",
				signs(p.src), signs(p.dst))
		}
	}},
	{ID: "lsm.apparmor", Check: func(p *pair) {
		if !p.src.Known(KeyLSM) || !p.dst.Known(KeyLSM) {
			return
		}
		if contains(p.src.LSM.Modules, "apparmor") && !contains(p.dst.LSM.Modules, "apparmor") {
			p.add(Blocker, "AppArmor is active on the source but not on the target: CRIU restores the workload's AppArmor profile and fails (\"apparmor LSM specified but apparmor not supported by kernel\")",
				"enable AppArmor on the target, or start the workload unconfined on the source",
				lsmEvidence(p.src), lsmEvidence(p.dst))
		}
	}},
	{ID: "lsm.selinux", Check: func(p *pair) {
		if !p.src.Known(KeyLSM) || !p.dst.Known(KeyLSM) || !p.dst.LSM.LSMFullList() {
			return
		}
		if contains(p.src.LSM.Modules, "selinux") && !contains(p.dst.LSM.Modules, "selinux") {
			p.add(Blocker, "SELinux is active on the source but not on the target: CRIU cannot restore the workload's SELinux contexts",
				"enable SELinux on the target, or move between hosts with the same LSMs",
				lsmEvidence(p.src), lsmEvidence(p.dst))
		}
	}},
	{ID: "criu.present", Check: func(p *pair) {
		for _, side := range []struct {
			name string
			f    *Facts
		}{{"source", p.src}, {"target", p.dst}} {
			if !side.f.Known(KeyCRIU) {
				sev := Blocker
				if !strings.Contains(side.f.Why(KeyCRIU), "not found") {
					sev = Undecided
				}
				p.add(sev, "no working CRIU on the "+side.name+" host",
					"install CRIU 4.2 or later (`make deps`), or name it with --criu", criuEvidence(p.src), criuEvidence(p.dst))
			}
		}
	}},
	{ID: "criu.min-version", Check: func(p *pair) {
		for _, side := range []struct {
			name string
			f    *Facts
		}{{"source", p.src}, {"target", p.dst}} {
			if v, ok := criuVersion(side.f); ok && v.Less(MinCRIU) {
				p.add(Blocker, fmt.Sprintf("%s CRIU %s is older than %s", side.name, v, MinCRIU),
					"install CRIU 4.2 or later", criuEvidence(p.src), criuEvidence(p.dst))
			}
		}
	}},
	{ID: "criu.target-older", Check: func(p *pair) {
		sv, ok1 := criuVersion(p.src)
		dv, ok2 := criuVersion(p.dst)
		if ok1 && ok2 && dv.Less(sv) {
			p.add(Blocker, fmt.Sprintf("target CRIU %s is older than the source's %s", dv, sv),
				"an older CRIU may not read the images a newer one writes: upgrade CRIU on the target", criuEvidence(p.src), criuEvidence(p.dst))
		}
	}},
	{ID: "criu.check", Check: func(p *pair) {
		for _, side := range []struct {
			name string
			f    *Facts
		}{{"source", p.src}, {"target", p.dst}} {
			if !side.f.Known(KeyCRIU) || !side.f.Known(KeyCRIUCheck) {
				continue
			}
			switch side.f.CRIU.Check.Verdict {
			case "bad":
				p.add(Blocker, "`criu check` fails on the "+side.name+" host",
					"run `criu check` there and fix what it reports", p.src.CRIU.Check.String(), p.dst.CRIU.Check.String())
			case "maybe":
				p.add(Warning, "`criu check` on the "+side.name+" host says some kernel features are missing",
					"run `criu check --all` there to see which", p.src.CRIU.Check.String(), p.dst.CRIU.Check.String())
			}
		}
	}},
	{ID: "criu.kerndat-cache", Check: func(p *pair) {
		for _, side := range []struct {
			name string
			f    *Facts
		}{{"source", p.src}, {"target", p.dst}} {
			if side.f.CRIU.KerndatCache == KerndatBlocked {
				p.add(Info, "CRIU's kernel-feature cache is blocked on the "+side.name+" host by a stale "+kerndatCacheTmp+": every CRIU run re-detects the kernel, adding time to each dump and restore",
					"remove "+kerndatCacheTmp+" there (a CRIU killed while saving its cache left it)", p.src.CRIU.KerndatCache, p.dst.CRIU.KerndatCache)
			}
		}
	}},
	{ID: "known.criu-vvar-vclock", Check: func(p *pair) {
		for _, side := range []struct {
			name string
			f    *Facts
		}{{"source", p.src}, {"target", p.dst}} {
			v, ok := criuVersion(side.f)
			if !ok || !side.f.Known(KeyKernelVersion) {
				continue
			}
			if v.Less(FixedVvarCRIU) && !side.f.Kernel.Version.Less(VvarVclockKernel) {
				p.add(Blocker, fmt.Sprintf("%s CRIU %s cannot run on kernel %s (separate [vvar_vclock] mapping since 6.13: \"Unexpected rt vDSO area bounds\")", side.name, v, side.f.Kernel.Release),
					"install CRIU 4.1 or later (4.2 recommended)", criuEvidence(p.src)+", kernel "+p.src.Kernel.Release, criuEvidence(p.dst)+", kernel "+p.dst.Kernel.Release)
			}
		}
	}},
	{ID: "known.criu-hw-breakpoints", Check: func(p *pair) {
		for _, side := range []struct {
			name string
			f    *Facts
		}{{"source", p.src}, {"target", p.dst}} {
			v, ok := criuVersion(side.f)
			if !ok || !v.Less(BreakpointsCRIU) {
				continue
			}
			broken, known := side.f.CRIU.HWBreakpointsBroken()
			switch {
			case broken:
				p.add(Blocker, fmt.Sprintf("%s CRIU %s hangs at dump here: hardware breakpoints do not work on this host", side.name, v),
					"install CRIU 4.2 or later, which detects this", breakpointEvidence(p.src), breakpointEvidence(p.dst))
			case !known && side.f.Virtualization.VM:
				p.add(Warning, fmt.Sprintf("%s CRIU %s cannot tell whether hardware breakpoints work in this VM; where they do not, it hangs at dump", side.name, v),
					"install CRIU 4.2 or later, whose `criu check` says so", breakpointEvidence(p.src), breakpointEvidence(p.dst))
			}
		}
	}},
	{ID: "known.no-soft-dirty", Check: func(p *pair) {
		for _, side := range []struct {
			name string
			f    *Facts
		}{{"source", p.src}, {"target", p.dst}} {
			if softDirty(side.f) == "n" {
				p.add(Warning, "no memory dirty tracking (soft-dirty) on the "+side.name+" host: no iterative pre-copy, only stop-and-copy",
					"never pre-dump here (CRIU 4.2.1 aborts and leaves memfd mappings in the workload); use a kernel with CONFIG_MEM_SOFT_DIRTY=y for shorter downtime",
					softDirtyEvidence(p.src), softDirtyEvidence(p.dst))
			}
		}
	}},
	{ID: "known.network-lock", Check: func(p *pair) {
		for _, side := range []struct {
			name string
			f    *Facts
		}{{"source", p.src}, {"target", p.dst}} {
			f := side.f
			if !f.Known(KeyNetworkLock) {
				p.add(Warning, "cannot tell which network-lock backend works on the "+side.name+" host: "+f.Why(KeyNetworkLock),
					"install iptables (iptables-restore) or nftables there", netlockEvidence(p.src), netlockEvidence(p.dst))
				continue
			}
			nft := nftLock(f)
			switch {
			case f.NetworkLock.IptablesRestore == "" && nft != "yes":
				p.add(Blocker, "no network-lock backend on the "+side.name+" host: no iptables-restore and no usable nftables lock",
					"install iptables (for iptables-restore) or nftables and use --network-lock nftables", netlockEvidence(p.src), netlockEvidence(p.dst))
			case f.NetworkLock.IptablesRestore == "":
				p.add(Info, "no iptables-restore on the "+side.name+" host: CRIU's default network lock fails there; the nftables lock works",
					"ferry passes --network-lock nftables; with raw criu, pass it yourself", netlockEvidence(p.src), netlockEvidence(p.dst))
			}
		}
	}},
	{ID: "runtime.installed", Runtimes: []string{RuntimeLXD, RuntimeIncus}, Check: func(p *pair) {
		for _, side := range []struct {
			name string
			f    *Facts
		}{{"source", p.src}, {"target", p.dst}} {
			key := "runtime." + p.runtime
			if why := side.f.Why(key); why != "" {
				p.add(Undecided, fmt.Sprintf("cannot tell whether %s is installed on the %s host", p.runtime, side.name),
					"probe the host live", runtimeEvidence(p.src, p.runtime), runtimeEvidence(p.dst, p.runtime))
				continue
			}
			rt := side.f.Runtimes[p.runtime]
			switch {
			case !rt.Installed:
				p.add(Blocker, fmt.Sprintf("%s is not installed on the %s host", p.runtime, side.name),
					"install "+p.runtime+" on both hosts", runtimeEvidence(p.src, p.runtime), runtimeEvidence(p.dst, p.runtime))
			case rt.Daemon != "answers":
				p.add(Blocker, fmt.Sprintf("the %s daemon does not answer on the %s host", p.runtime, side.name),
					"start the daemon and check `"+daemonClient(p.runtime)+" info`", runtimeEvidence(p.src, p.runtime), runtimeEvidence(p.dst, p.runtime))
			}
		}
	}},
	{ID: "runtime.version", Runtimes: []string{RuntimeLXD, RuntimeIncus}, Check: func(p *pair) {
		sv, ok1 := runtimeVersion(p.src, p.runtime)
		dv, ok2 := runtimeVersion(p.dst, p.runtime)
		if !ok1 || !ok2 {
			return
		}
		if dv.Less(sv) {
			p.add(Warning, fmt.Sprintf("target %s %s is older than the source's %s", p.runtime, dv, sv),
				"migration between different versions is best-effort: upgrade the target", runtimeEvidence(p.src, p.runtime), runtimeEvidence(p.dst, p.runtime))
		} else if sv != dv {
			p.add(Info, fmt.Sprintf("%s versions differ: %s -> %s", p.runtime, sv, dv), "", runtimeEvidence(p.src, p.runtime), runtimeEvidence(p.dst, p.runtime))
		}
	}},
	{ID: "lxd.no-live-migration", Runtimes: []string{RuntimeLXD}, Check: func(p *pair) {
		for _, side := range []struct {
			name string
			f    *Facts
		}{{"source", p.src}, {"target", p.dst}} {
			if v, ok := runtimeVersion(side.f, RuntimeLXD); ok && !v.Less(LXDNoLiveMigration) {
				p.add(Blocker, fmt.Sprintf("%s LXD %s has no container live migration (removed in 6.6: \"Live migration is not supported for containers\")", side.name, v),
					"use LXD 5.x/6.5 or earlier, or Incus, which keeps container live migration", runtimeEvidence(p.src, RuntimeLXD), runtimeEvidence(p.dst, RuntimeLXD))
			}
		}
	}},
	{ID: "incus.migration-stateful", Runtimes: []string{RuntimeIncus}, Check: func(p *pair) {
		rt := p.src.Runtimes[RuntimeIncus]
		if rt.Daemon != "answers" {
			return
		}
		if v := rt.Settings["default_profile.migration.stateful"]; v != "true" {
			p.add(Warning, "migration.stateful is not set in the source's default profile: Incus refuses stateful snapshots and stops of instances without it",
				"incus config set INSTANCE migration.stateful=true (or incus profile set default migration.stateful=true)",
				fmt.Sprintf("default profile migration.stateful=%q", v), "")
		}
	}},
}

// internalFS are filesystem types the kernel mounts without registering
// them in /proc/filesystems (namespace files, pidfds): always there.
var internalFS = setOf([]string{"nsfs", "pidfs"})

func configEvidence(f *Facts, opts []string) string {
	var parts []string
	for _, o := range opts {
		parts = append(parts, o+"="+f.Kernel.Config[o])
	}
	return strings.Join(parts, " ")
}

func cpuEvidence(f *Facts) string {
	return fmt.Sprintf("%s (%s family %d model %d), %d flags", f.CPU.ModelName, f.CPU.Vendor, f.CPU.Family, f.CPU.Model, len(f.CPU.Flags))
}

func signs(f *Facts) string {
	var s []string
	for _, sg := range f.Virtualization.Signs {
		s = append(s, sg.Source+": "+sg.Value)
	}
	return list(s, 0)
}

func criuEvidence(f *Facts) string {
	if !f.Known(KeyCRIU) {
		return "criu: " + f.Why(KeyCRIU)
	}
	path := f.CRIU.Path
	if path == "" {
		path = "criu"
	}
	return path + " " + f.CRIU.Version
}

func breakpointEvidence(f *Facts) string {
	broken, known := f.CRIU.HWBreakpointsBroken()
	switch {
	case !known:
		return criuEvidence(f) + ", breakpoints: unknown"
	case broken:
		return criuEvidence(f) + ", breakpoints: do not work"
	}
	return criuEvidence(f) + ", breakpoints: work"
}

// softDirty says "y", "n" or "" (unknown), from CRIU's mem_dirty_track
// feature, else the kernel configuration.
func softDirty(f *Facts) string {
	switch f.CRIU.Features["mem_dirty_track"] {
	case FeatureSupported:
		return "y"
	case FeatureUnsupported:
		return "n"
	}
	if f.Known(KeyKernelConfig) {
		if f.Kernel.Config["MEM_SOFT_DIRTY"] == "y" {
			return "y"
		}
		return "n"
	}
	return ""
}

func softDirtyEvidence(f *Facts) string {
	s := "mem_dirty_track: " + orUnknown(f.CRIU.Features["mem_dirty_track"])
	if f.Known(KeyKernelConfig) {
		s += ", CONFIG_MEM_SOFT_DIRTY=" + f.Kernel.Config["MEM_SOFT_DIRTY"]
	}
	return s
}

// nftLock says "yes" when CRIU's nftables lock can work: CRIU says so, or
// (CRIU unknown) nft and kernel nf_tables are there.
func nftLock(f *Facts) string {
	switch f.CRIU.Features["network_lock_nftables"] {
	case FeatureSupported:
		return "yes"
	case FeatureUnsupported:
		return "no"
	}
	if f.NetworkLock.Nft != "" && f.NetworkLock.NFTablesKernel != "n" {
		return "yes"
	}
	return "no"
}

func netlockEvidence(f *Facts) string {
	return fmt.Sprintf("iptables-restore: %s, nft: %s, network_lock_nftables: %s",
		orNone(f.NetworkLock.IptablesRestore), orNone(f.NetworkLock.Nft), orUnknown(f.CRIU.Features["network_lock_nftables"]))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func runtimeVersion(f *Facts, name string) (Version, bool) {
	rt, ok := f.Runtimes[name]
	if !ok || !rt.Installed {
		return Version{}, false
	}
	s := rt.ServerVersion
	if s == "" {
		s = rt.Version
	}
	v, err := ParseVersion(s)
	return v, err == nil
}

func runtimeEvidence(f *Facts, name string) string {
	if why := f.Why("runtime." + name); why != "" {
		return name + ": unknown: " + why
	}
	rt := f.Runtimes[name]
	if !rt.Installed {
		return name + ": not installed"
	}
	s := fmt.Sprintf("%s %s, daemon %s", name, rt.Version, rt.Daemon)
	if rt.ServerVersion != "" {
		s += " (server " + rt.ServerVersion + ")"
	}
	return s
}

func daemonClient(runtime string) string {
	if runtime == RuntimeLXD {
		return "lxc"
	}
	return runtime
}

func lsmEvidence(f *Facts) string {
	if !f.Known(KeyLSM) {
		return "unknown: " + f.Why(KeyLSM)
	}
	return list(f.LSM.Modules, 0) + " (from " + f.LSM.Source + ")"
}
