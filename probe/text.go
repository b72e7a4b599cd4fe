package probe

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteText shows the facts compactly, one line per fact; unknown facts
// say why.
func (f *Facts) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	val := func(key, v string) string {
		if why := f.Why(key); why != "" {
			return "unknown (" + why + ")"
		}
		return v
	}
	k := f.Kernel
	line("host", f.Host+" ("+val(KeyHostname, f.Hostname)+")")
	line("kernel", val(KeyKernelRelease, k.Release)+" "+val(KeyKernelArch, k.Arch)+", page size "+val(KeyPageSize, fmt.Sprint(k.PageSize)))
	cfg := "from " + k.ConfigSource + ":"
	for _, o := range ConfigOptions {
		if k.Config[o] != "y" {
			cfg += " " + o + "=" + k.Config[o]
		}
	}
	if !strings.Contains(cfg, "=") {
		cfg += " all checkpoint/restore options set"
	}
	line("kernel config", val(KeyKernelConfig, cfg))
	line("syscalls", val(KeySyscalls, fmt.Sprintf("%d (from %s)", len(f.Syscalls.Names), f.Syscalls.Source)))
	c := f.CPU
	line("cpu", val(KeyCPU, fmt.Sprintf("%s, %s family %d model %d stepping %d, %d cpus", c.ModelName, c.Vendor, c.Family, c.Model, c.Stepping, c.Count)))
	if f.Known(KeyCPU) {
		line("  instruction flags", fmt.Sprintf("%d compared by CRIU: %s", len(c.InstructionFlags), strings.Join(c.InstructionFlags, " ")))
		line("  other instruction flags", list(c.OtherInstructionFlags, 0))
		line("  platform flags", fmt.Sprintf("%d: %s", len(c.PlatformFlags), strings.Join(c.PlatformFlags, " ")))
	}
	line("  xsave", val(KeyXSave, fmt.Sprintf("features %#x, size %d, max %d", c.XSave.FeaturesMask, c.XSave.Size, c.XSave.SizeMax)))
	cr := f.CRIU
	path := cr.Path
	if path == "" {
		path = "(captured)"
	}
	line("criu", val(KeyCRIU, cr.Version+" "+path))
	if f.Known(KeyCRIU) {
		line("  criu check", val(KeyCRIUCheck, cr.Check.String()))
		var sup, unsup, unk []string
		for _, n := range sortedKeys(cr.Features) {
			switch cr.Features[n] {
			case FeatureSupported:
				sup = append(sup, n)
			case FeatureUnsupported:
				unsup = append(unsup, n)
			default:
				unk = append(unk, n)
			}
		}
		kd := cr.KerndatCache
		if kd == KerndatBlocked {
			kd += " by a stale " + kerndatCacheTmp + " (every criu run re-detects the kernel; remove the file)"
		}
		line("  kerndat cache", val(KeyKerndatCache, kd))
		line("  features", val(KeyCRIUFeatures, fmt.Sprintf("%d supported; unsupported: %s; unknown to this CRIU: %s", len(sup), list(unsup, 0), list(unk, 0))))
	}
	fsys := f.Filesystems
	line("filesystems", val(KeyFSSupported, fmt.Sprintf("%d supported", len(fsys.Supported)))+"; mounted: "+val(KeyFSMounted, strings.Join(fsys.Mounted, " ")))
	v := f.Virtualization
	virt := "bare metal or unknown"
	switch {
	case v.Container && v.VM:
		virt = "container" + paren(v.ContainerType) + " in a VM" + paren(v.VMType)
	case v.Container:
		virt = "container" + paren(v.ContainerType)
	case v.VM:
		virt = "VM" + paren(v.VMType)
	}
	if len(v.Signs) > 0 {
		virt += ": " + signs(f)
	}
	line("virtualization", val(KeyVirtualization, virt))
	cg := f.Cgroups
	line("cgroups", val(KeyCgroups, fmt.Sprintf("%s; v1: %s; v2: %s", cg.Mode, list(cg.V1Controllers, 0), list(cg.V2Controllers, 0))))
	line("lsm", val(KeyLSM, lsmEvidence(f)))
	line("network lock", val(KeyNetworkLock, fmt.Sprintf("iptables-restore: %s, nft: %s, kernel nf_tables: %s", orNone(f.NetworkLock.IptablesRestore), orNone(f.NetworkLock.Nft), orUnknown(f.NetworkLock.NFTablesKernel))))
	line("runtimes", "")
	for _, rp := range runtimeProbes {
		line("  "+rp.name, strings.TrimPrefix(runtimeEvidence(f, rp.name), rp.name+": "))
	}
	return tw.Flush()
}

// WriteText shows the verdict, then one block per finding.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "%s -> %s (%s): %s, %d blockers, %d warnings\n", r.Source, r.Target, r.Runtime, r.Verdict, r.Blockers, r.Warnings)
	for _, f := range r.Findings {
		fmt.Fprintf(w, "\n%-9s %s: %s\n", strings.ToUpper(string(f.Severity)), f.Rule, f.Message)
		if f.Hint != "" {
			fmt.Fprintf(w, "  hint:   %s\n", f.Hint)
		}
		if f.Source != "" {
			fmt.Fprintf(w, "  source: %s\n", f.Source)
		}
		if f.Target != "" {
			fmt.Fprintf(w, "  target: %s\n", f.Target)
		}
	}
	_, err := fmt.Fprintln(w)
	return err
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}
