package probe

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync"

	"github.com/ferry-migrate/ferry/internal/host"
)

// syscallPrefixes are the entry-point prefixes of /proc/kallsyms, newest
// first: the per-architecture wrappers (4.17 and later), then plain sys_.
var syscallPrefixes = []string{"__x64_sys_", "__arm64_sys_", "__s390x_sys_", "__riscv_sys_", "__powerpc_sys_", "sys_"}

func (g *gatherer) syscalls(ctx context.Context) {
	names, err := g.readSyscalls(ctx)
	if err != nil {
		g.unknown(KeySyscalls, err)
		return
	}
	g.f.Syscalls = Syscalls{Source: "/proc/kallsyms", Names: names}
}

// localKallsyms remembers the local kernel's syscalls by boot id: reading
// /proc/kallsyms costs ~60 ms of kernel time here, and the local machine
// and every testbed namespace on it read the very same file.
var localKallsyms struct {
	mu     sync.Mutex
	bootID string
	names  []string
}

func (g *gatherer) readSyscalls(ctx context.Context) ([]string, error) {
	local := false
	switch g.h.(type) {
	case host.Local, *host.Local, *host.Netns:
		local = true
	}
	var bootID string
	if local {
		if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
			bootID = strings.TrimSpace(string(b))
		}
		localKallsyms.mu.Lock()
		defer localKallsyms.mu.Unlock()
		if bootID != "" && localKallsyms.bootID == bootID {
			return localKallsyms.names, nil
		}
	}
	b, err := g.read(ctx, "/proc/kallsyms")
	if err != nil {
		return nil, err
	}
	names, err := ParseKallsyms(b)
	if err != nil {
		return nil, err
	}
	if local && bootID != "" {
		localKallsyms.bootID, localKallsyms.names = bootID, names
	}
	return names, nil
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
		line := sc.Bytes()
		lines++
		if !real {
			if addr, _, ok := bytes.Cut(line, []byte(" ")); ok && len(bytes.Trim(addr, "0")) > 0 {
				real = true
			}
		}
		// Most of the 100,000+ lines are not syscalls: skip them before
		// splitting.
		if !bytes.Contains(line, []byte("sys_")) {
			continue
		}
		f := strings.Fields(string(line))
		if len(f) < 3 {
			continue
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
