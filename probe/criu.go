package probe

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/ferry-migrate/ferry/internal/criubin"
)

// CRIUFeatures are the `criu check --feature` names of CRIU 4.x (4.2.1's
// list, criu/cr-check.c). A CRIU that does not know a name says so, and the
// feature is recorded as unknown-to-this-version.
var CRIUFeatures = []string{
	"mnt_id", "mem_dirty_track", "aio_remap", "timerfd", "tun", "tun_ns", "userns",
	"fdinfo_lock", "seccomp_suspend", "seccomp_filters", "loginuid", "cgroupns", "autofs",
	"tcp_half_closed", "compat_cr", "uffd", "uffd-noncoop", "can_map_vdso", "sk_ns",
	"sk_unix_file", "net_diag_raw", "nsid", "link_nsid", "kcmp_epoll", "timens",
	"external_net_ns", "clone3_set_tid", "newifindex", "nftables", "has_ipt_legacy",
	"pidfd_store", "ns_pid", "apparmor_stacking", "network_lock_nftables",
	"sockopt_buf_lock", "memfd_hugetlb", "move_mount_set_group", "openat2",
	"get_rseq_conf", "ipv6_freebind", "pagemap_scan", "timer_cr_ids", "overlayfs_maps",
	"breakpoints", "pagemap_scan_guard_pages",
}

// HWBreakpointsWarning is what CRIU 4.2 and later print in `criu check` where
// hardware breakpoints do not work (CRIU 4.1 hangs at dump there).
const HWBreakpointsWarning = "Hardware breakpoints don't seem to work"

var criuMsgRE = regexp.MustCompile(`^(Error|Warn)\s*\(`)

func (g *gatherer) criu(ctx context.Context) {
	c := &g.f.CRIU
	info, err := g.findCRIU(ctx)
	if err != nil {
		g.unknown(KeyCRIU, err)
		g.unknown(KeyCRIUCheck, errors.New("no CRIU"))
		g.unknown(KeyCRIUFeatures, errors.New("no CRIU"))
		g.unknown(KeyXSave, errors.New("no CRIU to run `criu cpuinfo dump`"))
		return
	}
	c.Path, c.Version, c.VersionCode = info.Path, info.VersionString, info.Version.Int()
	argv0 := info.Path
	if argv0 == "" {
		argv0 = "criu"
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		g.kerndatCache(ctx)
	}()
	go func() {
		defer wg.Done()
		if g.criuBatch(ctx, argv0) {
			return
		}
		if ctx.Err() != nil {
			for _, k := range []string{KeyCRIUCheck, KeyCRIUFeatures, KeyXSave} {
				g.unknown(k, ctx.Err())
			}
			return
		}
		// One command each: captured hosts, hosts without sh.
		var one sync.WaitGroup
		one.Add(2)
		go func() {
			defer one.Done()
			x, err := g.xsave(ctx, argv0)
			if err != nil {
				g.unknown(KeyXSave, err)
				return
			}
			g.f.CPU.XSave = x
		}()
		go func() {
			defer one.Done()
			out, err := g.run(ctx, 0, argv0, "check")
			if err != nil {
				g.unknown(KeyCRIUCheck, err)
			} else {
				g.f.CRIU.Check = ParseCRIUCheck(out.text, out.exitCode)
			}
			g.criuFeaturesOneByOne(ctx, argv0)
		}()
		one.Wait()
	}()
	wg.Wait()
}

// findCRIU locates CRIU; on a captured host it reads the captured
// `criu --version`.
func (g *gatherer) findCRIU(ctx context.Context) (criubin.Info, error) {
	info, err := criubin.Find(ctx, g.h, g.opt.CRIUPath)
	if err == nil {
		return info, nil
	}
	out, cerr := g.run(ctx, 0, "criu", "--version")
	if cerr == nil && out.captured {
		v, perr := criubin.ParseVersion(out.text)
		if perr != nil {
			return criubin.Info{}, perr
		}
		return criubin.Info{Version: v, VersionString: v.String()}, nil
	}
	if errors.Is(cerr, ErrNotCaptured) {
		return criubin.Info{}, cerr
	}
	return criubin.Info{}, err
}

// criuBatch runs `criu check`, `criu cpuinfo dump` and every feature
// check in one command. It reports false when the host cannot run the
// batch (captured hosts, no sh), and the caller runs them one by one.
func (g *gatherer) criuBatch(ctx context.Context, argv0 string) bool {
	args := append([]string{argv0, strconv.Itoa(featureWorkers(g.f.CPU.Count))}, CRIUFeatures...)
	res, err := g.runBatch(ctx, featureScript, args...)
	if err != nil {
		return false
	}
	if out, ok := res[""]; ok {
		g.f.CRIU.Check = ParseCRIUCheck(out.text, out.exitCode)
	} else {
		g.unknown(KeyCRIUCheck, errors.New("no `criu check` output in the batch"))
	}
	feats := map[string]string{}
	for _, name := range CRIUFeatures {
		if out, ok := res[name]; ok {
			feats[name] = ParseFeatureOutput(name, out.text, out.exitCode)
		}
	}
	if len(feats) != len(CRIUFeatures) {
		g.unknown(KeyCRIUFeatures+".partial", fmt.Errorf("%d of %d features in the batch output", len(feats), len(CRIUFeatures)))
	}
	g.f.CRIU.Features = feats
	out, ok := res["=cpuinfo.img"]
	switch {
	case !ok:
		g.unknown(KeyXSave, errors.New("no cpuinfo image in the batch output"))
	case out.exitCode != 0:
		g.unknown(KeyXSave, fmt.Errorf("criu cpuinfo dump exited with code %d: %s", out.exitCode, lastLine(out.text)))
	default:
		img, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(out.text), ""))
		if err != nil {
			g.unknown(KeyXSave, fmt.Errorf("cpuinfo image: %w", err))
			break
		}
		x, err := DecodeCPUInfoImage(img)
		if err != nil {
			g.unknown(KeyXSave, err)
			break
		}
		x.Source = "criu cpuinfo dump"
		g.f.CPU.XSave = x
	}
	return true
}

func (g *gatherer) criuFeaturesOneByOne(ctx context.Context, argv0 string) {
	type result struct {
		name, state string
		err         error
	}
	results := make([]result, len(CRIUFeatures))
	var wg sync.WaitGroup
	for i, name := range CRIUFeatures {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := g.run(ctx, 0, argv0, "check", "--feature", name)
			if err != nil {
				results[i] = result{name: name, err: err}
				return
			}
			results[i] = result{name: name, state: ParseFeatureOutput(name, out.text, out.exitCode)}
		}()
	}
	wg.Wait()
	feats := map[string]string{}
	var firstErr error
	for _, r := range results {
		if r.err != nil {
			if firstErr == nil {
				firstErr = r.err
			}
			continue
		}
		feats[r.name] = r.state
	}
	if len(feats) == 0 {
		g.unknown(KeyCRIUFeatures, firstErr)
		return
	}
	if firstErr != nil {
		// Some features answered, others not: record those that did and
		// why the rest is missing.
		g.unknown(KeyCRIUFeatures+".partial", firstErr)
	}
	g.f.CRIU.Features = feats
}

// ParseFeatureOutput reads `criu check --feature NAME`: "NAME is
// supported" and exit 0 mean supported; "Unknown feature NAME" means this
// CRIU does not know the name.
func ParseFeatureOutput(name, text string, exitCode int) string {
	switch {
	case strings.Contains(text, "Unknown feature "+name) || strings.Contains(text, "unknown feature "+name):
		return FeatureUnknownName
	case strings.Contains(text, name+" is supported") && exitCode <= 0:
		return FeatureSupported
	}
	return FeatureUnsupported
}

// ParseCRIUCheck reads the output of a plain `criu check`.
func ParseCRIUCheck(text string, exitCode int) CRIUCheck {
	c := CRIUCheck{ExitCode: exitCode, Messages: []string{}}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if criuMsgRE.MatchString(line) {
			c.Messages = append(c.Messages, line)
		}
	}
	switch {
	case strings.Contains(text, "Looks good but some kernel features are missing"):
		c.Verdict = "maybe"
	case strings.Contains(text, "Looks good."):
		c.Verdict = "good"
	case exitCode == 0 && !strings.Contains(text, "Does not look good"):
		// An exit code of 0 without the usual line: trust the code.
		c.Verdict = "good"
	default:
		c.Verdict = "bad"
	}
	return c
}

// HWBreakpointsBroken reports whether CRIU said hardware breakpoints do
// not work: true, false, or unknown (ok=false).
func (c *CRIU) HWBreakpointsBroken() (broken, ok bool) {
	for _, m := range c.Check.Messages {
		if strings.Contains(m, HWBreakpointsWarning) {
			return true, true
		}
	}
	switch c.Features["breakpoints"] {
	case FeatureSupported:
		return false, true
	case FeatureUnsupported:
		return true, true
	}
	return false, false
}

func (c CRIUCheck) String() string {
	if len(c.Messages) == 0 {
		return c.Verdict
	}
	return fmt.Sprintf("%s (%s)", c.Verdict, strings.Join(c.Messages, "; "))
}

// CRIU's kernel-feature cache and the temporary file it writes first
// (criu/kerndat.c, root's paths).
const (
	kerndatCacheFile = "/run/criu.kdat"
	kerndatCacheTmp  = "/run/criu.kdat.tmp"
)

func (g *gatherer) kerndatCache(ctx context.Context) {
	if g.readOnly.Load() {
		g.unknown(KeyKerndatCache, errors.New("not captured (/run is not part of a capture)"))
		return
	}
	cache, err := g.exists(ctx, kerndatCacheFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		g.unknown(KeyKerndatCache, err)
		return
	}
	tmp, err := g.exists(ctx, kerndatCacheTmp)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		g.unknown(KeyKerndatCache, err)
		return
	}
	switch {
	case cache:
		g.f.CRIU.KerndatCache = KerndatPresent
	case tmp:
		// CRIU creates the temporary file with O_EXCL and gives up
		// when it exists: a stale one disables the cache for good.
		g.f.CRIU.KerndatCache = KerndatBlocked
	default:
		g.f.CRIU.KerndatCache = KerndatAbsent
	}
}
