package probe

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/cpuinfo"
	"google.golang.org/protobuf/proto"

	"github.com/ferry-migrate/ferry/internal/host"
)

// CRIUInstructionFlags are the /proc/cpuinfo names of the bits in CRIU's
// x86_ins_capability_mask (criu/arch/x86/cpu.c), what `--cpu-cap=ins`
// requires the target to have, except CRIUMaskPlatformFlags. CRIU's mask
// also holds osxsave, which the kernel does not show in /proc/cpuinfo.
var CRIUInstructionFlags = []string{
	// CPUID_1_EDX
	"fpu", "tsc", "cx8", "sep", "cmov", "clflush", "mmx", "fxsr", "sse", "sse2",
	// CPUID_8000_0001_EDX
	"syscall", "mmxext", "rdtscp", "3dnowext", "3dnow",
	// CPUID_LNX_1 (rep_good: see CRIUMaskPlatformFlags)
	"nopl",
	// CPUID_1_ECX
	"pni", "pclmulqdq", "ssse3", "cx16", "sse4_1", "sse4_2", "movbe", "popcnt",
	"aes", "xsave", "osxsave", "avx", "f16c", "rdrand",
	// CPUID_8000_0001_ECX
	"abm", "sse4a", "misalignsse", "3dnowprefetch", "xop", "fma4", "tbm",
	// CPUID_7_0_EBX
	"fsgsbase", "bmi1", "hle", "avx2", "bmi2", "erms", "rtm", "mpx", "avx512f", "avx512dq",
	"rdseed", "adx", "clflushopt", "avx512pf", "avx512er", "avx512cd", "sha_ni", "avx512bw", "avx512vl",
	// CPUID_D_1_EAX
	"xsaveopt", "xsavec", "xgetbv1",
	// CPUID_7_0_ECX
	"avx512vbmi", "avx512_vbmi2", "gfni", "vaes", "vpclmulqdq", "avx512_vnni", "avx512_bitalg",
	"tme", "avx512_vpopcntdq", "rdpid",
	// CPUID_8000_0008_EBX
	"clzero",
	// CPUID_7_0_EDX
	"avx512_4vnniw", "avx512_4fmaps",
}

// CRIUMaskPlatformFlags are in CRIU's instruction mask but are not
// instructions user code can execute: monitor (MONITOR/MWAIT fault outside
// ring 0) and rep_good (a kernel hint that REP MOVS is fast). A target
// without them runs the process; only CRIU's optional --cpu-cap=ins
// check refuses it.
var CRIUMaskPlatformFlags = []string{"monitor", "rep_good"}

// OtherInstructionFlags are instruction-set extensions that user code can
// execute but CRIU's mask does not compare (it predates them). A process
// that uses one dies with SIGILL on a target without it.
var OtherInstructionFlags = []string{
	"fma", "lm", "lahf_lm", "pku", "ospke",
	"avx512ifma", "avx512_bf16", "avx512_fp16", "avx512_vp2intersect",
	"avx_vnni", "avx_vnni_int8", "avx_vnni_int16", "avx_ifma", "avx_ne_convert",
	"amx_bf16", "amx_tile", "amx_int8", "amx_fp16", "amx_complex",
	"sha512", "sm3", "sm4", "cmpccxadd", "movdiri", "movdir64b", "serialize",
	"waitpkg", "cldemote", "clwb", "wbnoinvd", "rdpru", "mwaitx",
	"fsrm", "fzrm", "fsrs", "fsrc", "prefetchi", "lam", "user_shstk", "avx10",
	"apx", "enqcmd", "uintr", "ptwrite",
}

var (
	criuIns      = setOf(CRIUInstructionFlags)
	otherIns     = setOf(OtherInstructionFlags)
	criuPlatform = setOf(CRIUMaskPlatformFlags)
)

func setOf(s []string) map[string]bool {
	m := make(map[string]bool, len(s))
	for _, v := range s {
		m[v] = true
	}
	return m
}

// ClassifyFlags splits cpuinfo flags into CRIU's instruction flags, other
// instruction flags and platform flags.
func ClassifyFlags(flags []string) (ins, other, platform []string) {
	ins, other, platform = []string{}, []string{}, []string{}
	for _, f := range flags {
		switch {
		case criuIns[f]:
			ins = append(ins, f)
		case otherIns[f]:
			other = append(other, f)
		default:
			platform = append(platform, f)
		}
	}
	return ins, other, platform
}

// ParseCPUInfo reads /proc/cpuinfo. Flags are those every processor has.
func ParseCPUInfo(b []byte) (CPU, error) {
	var c CPU
	var common map[string]bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	first := true
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch key {
		case "processor":
			if c.Count > 0 {
				first = false
			}
			c.Count++
		case "vendor_id", "CPU implementer":
			if first {
				c.Vendor = val
			}
		case "cpu family":
			if first {
				c.Family, _ = strconv.Atoi(val)
			}
		case "model":
			if first {
				c.Model, _ = strconv.Atoi(val)
			}
		case "stepping":
			if first {
				c.Stepping, _ = strconv.Atoi(val)
			}
		case "model name":
			if first {
				c.ModelName = val
			}
		case "flags", "Features":
			set := setOf(strings.Fields(val))
			if common == nil {
				common = set
				continue
			}
			for f := range common {
				if !set[f] {
					delete(common, f)
				}
			}
		}
	}
	if c.Count == 0 {
		return CPU{}, errors.New("no processor entries in /proc/cpuinfo")
	}
	c.Flags = uniqSorted(sortedKeys(common))
	c.InstructionFlags, c.OtherInstructionFlags, c.PlatformFlags = ClassifyFlags(c.Flags)
	return c, nil
}

// cpu runs before the parallel collectors: g.criu fills CPU.XSave later.
func (g *gatherer) cpu(cpuinfoText []byte, readErr error) {
	if readErr != nil {
		g.unknown(KeyCPU, readErr)
		g.unknown(KeyXSave, errors.New("cpuinfo unknown"))
		return
	}
	c, err := ParseCPUInfo(cpuinfoText)
	if err != nil {
		g.unknown(KeyCPU, err)
		g.unknown(KeyXSave, errors.New("cpuinfo unknown"))
		return
	}
	g.f.CPU = c
}

// xsave runs `criu cpuinfo dump` in a temporary directory on the host and
// decodes the image with go-criu.
func (g *gatherer) xsave(ctx context.Context, criuPath string) (XSave, error) {
	if _, ok := g.h.(*host.Dir); ok {
		// capture.sh runs `criu cpuinfo dump -D DIR/commands`.
		img, err := g.read(ctx, "/commands/cpuinfo.img")
		if err != nil {
			return XSave{}, fmt.Errorf("not captured: needs `criu cpuinfo dump` on the live host (or commands/cpuinfo.img): %s", shortErr(err))
		}
		x, err := DecodeCPUInfoImage(img)
		if err != nil {
			return XSave{}, err
		}
		x.Source = "captured cpuinfo.img"
		return x, nil
	}
	out, err := g.run(ctx, 0, "mktemp", "-d", "/tmp/ferry-cpuinfo.XXXXXX")
	if err != nil || out.exitCode > 0 || out.captured {
		if err == nil {
			err = fmt.Errorf("mktemp: %s", strings.TrimSpace(out.text))
		}
		return XSave{}, fmt.Errorf("needs `criu cpuinfo dump` on the live host: %w", err)
	}
	dir := strings.TrimSpace(out.text)
	defer func() {
		// Cleanup must run even when ctx is done.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.opt.CommandTimeout)
		defer cancel()
		g.h.Run(cctx, []string{"rm", "-rf", "--", dir}, host.RunOptions{})
	}()
	out, err = g.run(ctx, 0, criuPath, "cpuinfo", "dump", "-D", dir)
	if err != nil {
		return XSave{}, err
	}
	if out.exitCode != 0 {
		return XSave{}, fmt.Errorf("criu cpuinfo dump exited with code %d: %s", out.exitCode, lastLine(out.text))
	}
	img, err := host.ReadFile(ctx, g.h, dir+"/cpuinfo.img", 1<<20)
	if err != nil {
		return XSave{}, err
	}
	x, err := DecodeCPUInfoImage(img)
	if err != nil {
		return XSave{}, err
	}
	x.Source = "criu cpuinfo dump"
	return x, nil
}

// DecodeCPUInfoImage reads the xsave facts from a CRIU cpuinfo.img: the
// image magics, then one size-prefixed cpuinfo_entry protobuf.
func DecodeCPUInfoImage(b []byte) (XSave, error) {
	const (
		imgCommon  = 0x54564319
		imgService = 0x55105940
		cpuinfoMag = 0x61404013
	)
	if len(b) < 8 {
		return XSave{}, errors.New("cpuinfo.img: too short")
	}
	off := 0
	m := binary.LittleEndian.Uint32(b)
	if m == imgCommon || m == imgService {
		off = 4
		m = binary.LittleEndian.Uint32(b[off:])
	}
	if m != cpuinfoMag {
		return XSave{}, fmt.Errorf("cpuinfo.img: magic %#x is not CPUINFO", m)
	}
	off += 4
	if len(b) < off+4 {
		return XSave{}, errors.New("cpuinfo.img: no entry")
	}
	n := int(binary.LittleEndian.Uint32(b[off:]))
	off += 4
	if len(b) < off+n {
		return XSave{}, fmt.Errorf("cpuinfo.img: entry of %d bytes truncated at %d", n, len(b)-off)
	}
	var e cpuinfo.CpuinfoEntry
	if err := proto.Unmarshal(b[off:off+n], &e); err != nil {
		return XSave{}, fmt.Errorf("cpuinfo.img: %w", err)
	}
	if len(e.GetX86Entry()) != 1 {
		return XSave{}, fmt.Errorf("cpuinfo.img: %d x86 entries, want 1", len(e.GetX86Entry()))
	}
	x := e.GetX86Entry()[0]
	if x.XfeaturesMask == nil || x.XsaveSize == nil {
		return XSave{}, errors.New("cpuinfo.img: written by a CRIU without xsave fields")
	}
	return XSave{FeaturesMask: x.GetXfeaturesMask(), Size: x.GetXsaveSize(), SizeMax: x.GetXsaveSizeMax()}, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
