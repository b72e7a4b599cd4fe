package probe

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ferry-migrate/ferry/internal/host"
)

// ConfigOptions are the kernel options that matter for checkpoint/restore,
// without the CONFIG_ prefix.
var ConfigOptions = []string{
	"CHECKPOINT_RESTORE",
	"NAMESPACES", "UTS_NS", "IPC_NS", "USER_NS", "PID_NS", "NET_NS", "TIME_NS", "CGROUPS",
	"FHANDLE", "EVENTFD", "EPOLL", "INOTIFY_USER", "FANOTIFY", "KCMP",
	"USERFAULTFD", "MEM_SOFT_DIRTY",
	"UNIX_DIAG", "INET_DIAG", "INET_UDP_DIAG", "INET_RAW_DIAG", "PACKET_DIAG", "NETLINK_DIAG",
	"NF_TABLES", "NF_TABLES_INET", "NETFILTER_XT_MARK", "IP_NF_IPTABLES",
	"TUN", "MEMCG", "SECCOMP", "BPF_SYSCALL", "HAVE_HW_BREAKPOINT",
	"OVERLAY_FS", "AUTOFS_FS", "BINFMT_MISC",
}

func (g *gatherer) kernel(ctx context.Context) {
	k := &g.f.Kernel
	if b, err := g.read(ctx, "/proc/sys/kernel/osrelease"); err == nil {
		k.Release = strings.TrimSpace(string(b))
	} else if out, rerr := g.run(ctx, 0, "uname", "-r"); rerr == nil && out.exitCode <= 0 {
		k.Release = strings.TrimSpace(out.text)
	}
	if b, err := g.read(ctx, "/proc/version"); err == nil {
		k.VersionString = strings.TrimSpace(string(b))
		if k.Release == "" {
			// "Linux version 6.18.44-fc-v657 (builder@...) ..."
			if f := strings.Fields(k.VersionString); len(f) >= 3 && f[1] == "version" {
				k.Release = f[2]
			}
		}
	} else {
		g.unknown("kernel.version_string", err)
	}
	if k.Release == "" {
		k.Release = g.imageRelease()
	}
	if k.Release == "" {
		g.unknown(KeyKernelRelease, errors.New("neither /proc/sys/kernel/osrelease, /proc/version nor uname -r could be read"))
		g.unknown(KeyKernelVersion, errors.New("kernel release unknown"))
	} else if v, err := ParseVersion(k.Release); err == nil {
		k.Version = v
	} else {
		g.unknown(KeyKernelVersion, err)
	}

	if arch, err := g.arch(ctx); err == nil {
		k.Arch = arch
	} else {
		g.unknown(KeyKernelArch, err)
	}
	if ps, err := g.pageSize(ctx); err == nil {
		k.PageSize = ps
	} else if ps, ok := fixedPageSize[k.Arch]; ok {
		// These architectures have one base page size: a fact of the
		// architecture, not a guess.
		k.PageSize = ps
	} else {
		g.unknown(KeyPageSize, err)
	}
}

// fixedPageSize lists architectures whose kernels have only one base page
// size (arm64, ppc64, loongarch, mips have several).
var fixedPageSize = map[string]int{"x86_64": 4096, "i686": 4096, "i386": 4096, "s390x": 4096}

func (g *gatherer) arch(ctx context.Context) (string, error) {
	if b, err := g.read(ctx, "/proc/sys/kernel/arch"); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	out, err := g.run(ctx, 0, "uname", "-m")
	if err == nil && out.exitCode <= 0 && strings.TrimSpace(out.text) != "" {
		return strings.TrimSpace(out.text), nil
	}
	if aout, aerr := g.run(ctx, 0, "uname", "-a"); aerr == nil {
		// "Linux h 6.1.0 #1 SMP ... x86_64 GNU/Linux"
		f := strings.Fields(aout.text)
		if n := len(f); n >= 2 && f[n-1] == "GNU/Linux" {
			return f[n-2], nil
		}
	}
	if err == nil {
		err = errors.New("uname -m printed nothing")
	}
	return "", fmt.Errorf("no /proc/sys/kernel/arch and uname -m failed: %w", err)
}

func (g *gatherer) pageSize(ctx context.Context) (int, error) {
	out, err := g.run(ctx, 0, "getconf", "PAGESIZE")
	if err == nil && out.exitCode <= 0 {
		if n, perr := strconv.Atoi(strings.TrimSpace(out.text)); perr == nil && n > 0 {
			return n, nil
		}
	}
	b, serr := g.read(ctx, "/proc/self/smaps")
	if serr != nil {
		if err == nil {
			err = fmt.Errorf("getconf PAGESIZE printed %q", strings.TrimSpace(out.text))
		}
		return 0, fmt.Errorf("getconf PAGESIZE: %v; /proc/self/smaps: %w", err, serr)
	}
	return parseSmapsPageSize(b)
}

// parseSmapsPageSize reads the first "KernelPageSize: 4 kB" line.
func parseSmapsPageSize(b []byte) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "KernelPageSize:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 2 && f[1] == "kB" {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 0 {
				return n * 1024, nil
			}
		}
	}
	return 0, errors.New("no KernelPageSize line in /proc/self/smaps")
}

// kernelConfig reads /proc/config.gz, else /boot/config-<release>.
func (g *gatherer) kernelConfig(ctx context.Context) {
	k := &g.f.Kernel
	var errs []string
	if b, err := g.read(ctx, "/proc/config.gz"); err == nil {
		zr, zerr := gzip.NewReader(bytes.NewReader(b))
		if zerr == nil {
			plain, rerr := io.ReadAll(zr)
			if rerr == nil {
				k.Config = ParseConfig(plain)
				k.ConfigSource = "/proc/config.gz"
				return
			}
			zerr = rerr
		}
		errs = append(errs, "/proc/config.gz: "+zerr.Error())
	} else {
		errs = append(errs, "/proc/config.gz: "+shortErr(err))
	}
	rel := k.Release
	if rel == "" {
		if b, err := g.read(ctx, "/proc/sys/kernel/osrelease"); err == nil {
			rel = strings.TrimSpace(string(b))
		} else {
			rel = g.imageRelease()
		}
	}
	if rel != "" {
		p := "/boot/config-" + rel
		if b, err := g.read(ctx, p); err == nil {
			k.Config = ParseConfig(b)
			k.ConfigSource = p
			return
		} else {
			errs = append(errs, p+": "+shortErr(err))
		}
	}
	g.unknown(KeyKernelConfig, errors.New("no readable kernel configuration ("+strings.Join(errs, "; ")+")"))
}

func shortErr(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "not there"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	}
	return err.Error()
}

// ParseConfig extracts ConfigOptions from a kernel .config: "y", "m", or
// "n" for "# CONFIG_X is not set" and for options the file does not name.
func ParseConfig(b []byte) map[string]string {
	want := map[string]bool{}
	for _, o := range ConfigOptions {
		want[o] = true
	}
	cfg := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if name, ok := strings.CutPrefix(line, "# CONFIG_"); ok {
			if n, ok := strings.CutSuffix(name, " is not set"); ok && want[n] {
				cfg[n] = "n"
			}
			continue
		}
		name, val, ok := strings.Cut(strings.TrimPrefix(line, "CONFIG_"), "=")
		if !ok || !strings.HasPrefix(line, "CONFIG_") || !want[name] {
			continue
		}
		cfg[name] = strings.Trim(val, `"`)
	}
	for o := range want {
		if _, ok := cfg[o]; !ok {
			cfg[o] = "n"
		}
	}
	return cfg
}

// imageRelease is the kernel release of a captured host without /proc (a
// mounted disk image): the one /boot/config-RELEASE there. With several
// kernels installed which one runs is unknown.
func (g *gatherer) imageRelease() string {
	d, ok := g.h.(*host.Dir)
	if !ok {
		return ""
	}
	m, _ := filepath.Glob(filepath.Join(d.Root, "boot", "config-*"))
	if len(m) != 1 {
		return ""
	}
	return strings.TrimPrefix(filepath.Base(m[0]), "config-")
}
