package probe

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"strings"
)

// syscallPrefixes are the entry-point prefixes of /proc/kallsyms, newest
// first: the per-architecture wrappers (4.17 and later), then plain sys_.
var syscallPrefixes = []string{"__x64_sys_", "__arm64_sys_", "__s390x_sys_", "__riscv_sys_", "__powerpc_sys_", "sys_"}

func (g *gatherer) syscalls(ctx context.Context) {
	b, err := g.read(ctx, "/proc/kallsyms")
	if err != nil {
		g.unknown(KeySyscalls, err)
		return
	}
	names, err := ParseKallsyms(b)
	if err != nil {
		g.unknown(KeySyscalls, err)
		return
	}
	g.f.Syscalls = Syscalls{Source: "/proc/kallsyms", Names: names}
}

// ParseKallsyms lists the syscalls whose entry points /proc/kallsyms names.
// It refuses a file whose addresses are all zero (kptr_restrict hides them
// from this user: the list could be incomplete).
func ParseKallsyms(b []byte) ([]string, error) {
	byPrefix := map[string][]string{}
	real := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	lines := 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		lines++
		if !real && strings.Trim(f[0], "0") != "" {
			real = true
		}
		if f[1] != "T" && f[1] != "t" {
			continue
		}
		for _, p := range syscallPrefixes {
			if name, ok := strings.CutPrefix(f[2], p); ok && name != "" && !strings.Contains(name, ".") {
				byPrefix[p] = append(byPrefix[p], name)
				break
			}
		}
	}
	if lines == 0 {
		return nil, errors.New("/proc/kallsyms is empty")
	}
	if !real {
		return nil, errors.New("/proc/kallsyms shows only zero addresses (kptr_restrict): run as root to list syscalls")
	}
	for _, p := range syscallPrefixes {
		if len(byPrefix[p]) > 0 {
			return uniqSorted(byPrefix[p]), nil
		}
	}
	return nil, errors.New("no syscall entry points in /proc/kallsyms")
}
