package probe

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"strings"
)

func (g *gatherer) filesystems(ctx context.Context) {
	fsys := &g.f.Filesystems
	if b, err := g.read(ctx, "/proc/filesystems"); err == nil {
		fsys.Supported = ParseFilesystems(b)
	} else {
		g.unknown(KeyFSSupported, err)
	}
	mounts, src, err := g.mounts(ctx)
	if err != nil {
		g.unknown(KeyFSMounted, err)
		g.unknown(KeyCgroups, err)
		return
	}
	fsys.MountedSource = src
	types := make([]string, 0, len(mounts))
	for _, m := range mounts {
		types = append(types, m.FSType)
	}
	fsys.Mounted = uniqSorted(types)
	g.cgroups(ctx, mounts)
}

// Mount is one line of mountinfo (or /proc/mounts).
type Mount struct {
	Point  string
	FSType string
	Source string
	// Super holds the super-block options (cgroup v1 controllers).
	Super []string
}

func (g *gatherer) mounts(ctx context.Context) ([]Mount, string, error) {
	var errs []error
	for _, p := range []string{"/proc/self/mountinfo", "/proc/1/mountinfo"} {
		b, err := g.read(ctx, p)
		if err == nil {
			m, perr := ParseMountinfo(b)
			if perr == nil {
				return m, p, nil
			}
			err = perr
		}
		errs = append(errs, err)
	}
	for _, p := range []string{"/proc/mounts", "/etc/mtab"} {
		b, err := g.read(ctx, p)
		if err == nil {
			m, perr := ParseMounts(b)
			if perr == nil {
				return m, p, nil
			}
			err = perr
		}
		errs = append(errs, err)
	}
	return nil, "", errors.Join(errs...)
}

// ParseFilesystems lists the types of /proc/filesystems ("nodev\tproc").
func ParseFilesystems(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		out = append(out, f[len(f)-1])
	}
	return uniqSorted(out)
}

// ParseMountinfo reads /proc/PID/mountinfo:
// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue".
func ParseMountinfo(b []byte) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		left, right, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		lf, rf := strings.Fields(left), strings.Fields(right)
		if len(lf) < 5 || len(rf) < 1 {
			continue
		}
		m := Mount{Point: unescapeMount(lf[4]), FSType: rf[0]}
		if len(rf) > 1 {
			m.Source = rf[1]
		}
		if len(rf) > 2 {
			m.Super = strings.Split(rf[2], ",")
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, errors.New("no mounts in mountinfo")
	}
	return out, nil
}

// ParseMounts reads /proc/mounts: "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0".
func ParseMounts(b []byte) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		out = append(out, Mount{Source: f[0], Point: unescapeMount(f[1]), FSType: f[2], Super: strings.Split(f[3], ",")})
	}
	if len(out) == 0 {
		return nil, errors.New("no mounts")
	}
	return out, nil
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// BaseFSType maps a mounted type to the name /proc/filesystems uses:
// "fuse.sshfs" is served by "fuse".
func BaseFSType(t string) string {
	if i := strings.IndexByte(t, '.'); i > 0 {
		return t[:i]
	}
	return t
}
