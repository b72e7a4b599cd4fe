package probe

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
)

// cgroupV1Controllers are the controller names a v1 cgroup mount's super
// options can carry.
var cgroupV1Controllers = setOf([]string{"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer",
	"blkio", "io", "pids", "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc"})

func (g *gatherer) cgroups(ctx context.Context, mounts []Mount) {
	cg := &g.f.Cgroups
	cg.V1Controllers, cg.V2Controllers = []string{}, []string{}
	v1 := false
	for _, m := range mounts {
		switch m.FSType {
		case "cgroup":
			v1 = true
			for _, o := range m.Super {
				if cgroupV1Controllers[o] || strings.HasPrefix(o, "name=") {
					cg.V1Controllers = append(cg.V1Controllers, o)
				}
			}
		case "cgroup2":
			if cg.V2Mount == "" {
				cg.V2Mount = m.Point
			}
		}
	}
	cg.V1Controllers = uniqSorted(cg.V1Controllers)
	switch {
	case v1 && cg.V2Mount != "":
		cg.Mode = "hybrid"
	case v1:
		cg.Mode = "v1"
	case cg.V2Mount != "":
		cg.Mode = "v2"
	default:
		cg.Mode = "none"
	}
	if cg.V2Mount != "" {
		b, err := g.read(ctx, path.Join(cg.V2Mount, "cgroup.controllers"))
		if err != nil {
			g.unknown(KeyCgroups+".v2_controllers", err)
			return
		}
		cg.V2Controllers = uniqSorted(strings.Fields(string(b)))
	}
}

func (g *gatherer) lsm(ctx context.Context) {
	b, err := g.read(ctx, lsmFile)
	if err == nil {
		g.f.LSM = LSM{Modules: uniqSorted(strings.Split(strings.TrimSpace(string(b)), ",")), Source: lsmFile}
		return
	}
	if !errors.Is(err, fs.ErrNotExist) {
		g.unknown(KeyLSM, err)
		return
	}
	// securityfs is not mounted: look for the two LSMs CRIU handles
	// (criu/lsm.c) where sysfs shows them.
	mods := []string{}
	aa, aerr := g.read(ctx, "/sys/module/apparmor/parameters/enabled")
	switch {
	case aerr == nil && strings.TrimSpace(string(aa)) == "Y":
		mods = append(mods, "apparmor")
	case aerr != nil && !errors.Is(aerr, fs.ErrNotExist):
		g.unknown(KeyLSM, fmt.Errorf("%s not there (securityfs not mounted) and /sys/module/apparmor unreadable: %w", lsmFile, aerr))
		return
	}
	if ok, serr := g.exists(ctx, "/sys/fs/selinux/enforce"); ok {
		mods = append(mods, "selinux")
	} else if serr != nil && !errors.Is(serr, fs.ErrNotExist) {
		g.unknown(KeyLSM, serr)
		return
	}
	if g.readOnly.Load() && len(mods) == 0 {
		// A capture without securityfs and sysfs says nothing.
		g.unknown(KeyLSM, fmt.Errorf("%s not captured", lsmFile))
		return
	}
	g.f.LSM = LSM{Modules: mods, Source: "sysfs"}
}

// networkLock looks for the programs CRIU's network lock runs.
func (g *gatherer) networkLock(ctx context.Context) {
	nl := &g.f.NetworkLock
	nl.NFTablesKernel = g.f.Kernel.Config["NF_TABLES"]
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range []struct {
		dst  *string
		name string
		arg  string
	}{{&nl.IptablesRestore, "iptables-restore", "--version"}, {&nl.Nft, "nft", "--version"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path, err := g.lookProgram(ctx, p.name, p.arg)
			if err != nil && !errors.Is(err, errProgramMissing) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			*p.dst = path
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		g.unknown(KeyNetworkLock, errors.Join(errs...))
	}
}

var errProgramMissing = errors.New("program not installed")

// lookProgram runs NAME ARG, then the sbin paths a non-root PATH lacks,
// and returns what answered. A program found nowhere is errProgramMissing;
// a host where nothing can run is another error.
func (g *gatherer) lookProgram(ctx context.Context, name string, args ...string) (string, error) {
	if path, ok := g.programs[name]; ok {
		if path == "" {
			return "", errProgramMissing
		}
		return path, nil
	}
	if pf, ok := localPathFinder(g.h); ok {
		// No process needed to learn that a program is missing; the
		// sbin directories are searched too, as a root shell would.
		for _, p := range []string{name, "/usr/sbin/" + name, "/sbin/" + name, "/usr/local/sbin/" + name} {
			if abs, err := pf.LookPath(p); err == nil {
				return abs, nil
			}
		}
		return "", errProgramMissing
	}
	var last error
	for _, p := range []string{name, "/usr/sbin/" + name, "/sbin/" + name, "/usr/local/sbin/" + name} {
		out, err := g.run(ctx, 3*time.Second, append([]string{p}, args...)...)
		if err == nil {
			if out.captured {
				return name, nil
			}
			return p, nil
		}
		if !isMissingProgram(err) {
			return "", err
		}
		last = err
	}
	if errors.Is(last, ErrNotCaptured) {
		return "", last
	}
	return "", errProgramMissing
}

// localPathFinder resolves program names for hosts that run programs from
// the local filesystem: the local machine and testbed namespaces (which
// share it).
func localPathFinder(h host.Host) (host.PathFinder, bool) {
	switch h.(type) {
	case host.Local, *host.Local, *host.Netns:
		return host.Local{}, true
	}
	// Other hosts' LookPath (ssh) costs a command per name: findPrograms
	// asks for all of them in one.
	return nil, false
}

func isMissingProgram(err error) bool {
	return errors.Is(err, host.ErrNotFound) || errors.Is(err, fs.ErrNotExist)
}

// virtualization gathers independent signs that the host is a container
// or a VM.
func (g *gatherer) virtualization(ctx context.Context, cpuinfoText []byte) {
	v := &g.f.Virtualization
	var mu sync.Mutex
	add := func(src, val, means string) {
		mu.Lock()
		defer mu.Unlock()
		v.Signs = append(v.Signs, Sign{Source: src, Value: val, Means: means})
	}
	var wg sync.WaitGroup
	do := func(fn func()) {
		wg.Add(1)
		go func() { defer wg.Done(); fn() }()
	}
	do(func() {
		if ok, _ := g.exists(ctx, "/.dockerenv"); ok {
			add("/.dockerenv", "present", "container:docker")
		}
	})
	do(func() {
		if ok, _ := g.exists(ctx, "/run/.containerenv"); ok {
			add("/run/.containerenv", "present", "container:podman")
		}
	})
	do(func() {
		b, err := g.read(ctx, "/proc/1/environ")
		if err != nil {
			return
		}
		for _, kv := range bytes.Split(b, []byte{0}) {
			if val, ok := strings.CutPrefix(string(kv), "container="); ok && val != "" {
				add("/proc/1/environ", "container="+val, "container:"+val)
			}
		}
	})
	do(func() {
		b, err := g.read(ctx, "/proc/1/cgroup")
		if err != nil {
			return
		}
		if kind := containerFromCgroup(b); kind != "" {
			add("/proc/1/cgroup", firstMatchingLine(b, kind), "container:"+kind)
		}
	})
	do(func() {
		for _, mode := range []string{"--container", "--vm"} {
			out, err := g.run(ctx, 3*time.Second, "systemd-detect-virt", mode)
			if err != nil {
				continue
			}
			val := strings.TrimSpace(out.text)
			if out.exitCode <= 0 && val != "" && val != "none" && !strings.Contains(val, " ") {
				add("systemd-detect-virt "+mode, val, strings.TrimPrefix(mode, "--")+":"+val)
			}
		}
	})
	do(func() {
		if bytes.Contains(cpuinfoText, []byte(" hypervisor")) {
			add("/proc/cpuinfo", "hypervisor flag", "vm:")
		}
	})
	do(func() {
		for _, f := range []string{"sys_vendor", "product_name", "bios_vendor"} {
			b, err := g.read(ctx, "/sys/class/dmi/id/"+f)
			if err != nil {
				continue
			}
			val := strings.TrimSpace(string(b))
			if kind := vmFromDMI(val); kind != "" {
				add("/sys/class/dmi/id/"+f, val, "vm:"+kind)
			}
		}
	})
	wg.Wait()
	sortSigns(v.Signs)
	if v.Signs == nil {
		v.Signs = []Sign{}
	}
	for _, s := range v.Signs {
		kind, typ, _ := strings.Cut(s.Means, ":")
		switch kind {
		case "container":
			v.Container = true
			if v.ContainerType == "" {
				v.ContainerType = typ
			}
		case "vm":
			v.VM = true
			if v.VMType == "" {
				v.VMType = typ
			}
		}
	}
}

func (g *gatherer) exists(ctx context.Context, p string) (bool, error) {
	if r, ok := g.files[p]; ok {
		return r.err == nil, r.err
	}
	if err := g.acquire(ctx); err != nil {
		return false, err
	}
	defer g.release()
	rc, err := g.h.Open(ctx, p)
	if err != nil {
		return false, err
	}
	rc.Close()
	return true, nil
}

func containerFromCgroup(b []byte) string {
	s := string(b)
	for _, k := range []struct{ needle, kind string }{
		{"/docker/", "docker"}, {"docker-", "docker"}, {"/libpod", "podman"}, {"/kubepods", "kubernetes"},
		{"/lxc.payload", "lxc"}, {"/lxc/", "lxc"}, {"/machine.slice/machine-", "systemd-nspawn"},
	} {
		if strings.Contains(s, k.needle) {
			return k.kind
		}
	}
	return ""
}

func firstMatchingLine(b []byte, kind string) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if containerFromCgroup(sc.Bytes()) == kind {
			return sc.Text()
		}
	}
	return ""
}

func vmFromDMI(v string) string {
	l := strings.ToLower(v)
	for _, k := range []struct{ needle, kind string }{
		{"qemu", "qemu"}, {"kvm", "kvm"}, {"vmware", "vmware"}, {"virtualbox", "oracle"},
		{"innotek", "oracle"}, {"xen", "xen"}, {"microsoft corporation", "microsoft"},
		{"amazon ec2", "amazon"}, {"google compute engine", "google"}, {"bochs", "bochs"},
		{"parallels", "parallels"}, {"openstack", "openstack"}, {"firecracker", "firecracker"},
	} {
		if strings.Contains(l, k.needle) {
			return k.kind
		}
	}
	return ""
}

func sortSigns(s []Sign) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].Source+s[j].Value < s[j-1].Source+s[j-1].Value; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// runtimeProbe says how to ask one runtime for its version and whether its
// daemon answers.
type runtimeProbe struct {
	name    string
	version []string // prints the version
	daemon  []string // asks the daemon; nil: no daemon
	parse   func(daemonOut string) (serverVersion string, err error)
}

var runtimeProbes = []runtimeProbe{
	{name: "lxd", version: []string{"lxd", "--version"}, daemon: []string{"lxc", "query", "/1.0"}, parse: serverVersionJSON},
	{name: "incus", version: []string{"incus", "--version"}, daemon: []string{"incus", "query", "/1.0"}, parse: serverVersionJSON},
	{name: "lxc", version: []string{"lxc-start", "--version"}},
	{name: "podman", version: []string{"podman", "--version"}},
	{name: "runc", version: []string{"runc", "--version"}},
	{name: "docker", version: []string{"docker", "--version"}, daemon: []string{"docker", "version", "--format", "{{.Server.Version}}"},
		parse: func(s string) (string, error) {
			s = strings.TrimSpace(s)
			if _, err := ParseVersion(s); err != nil || strings.Contains(s, " ") {
				return "", fmt.Errorf("no server version in %q", firstLineOf(s))
			}
			return s, nil
		}},
}

func serverVersionJSON(s string) (string, error) {
	var v struct {
		Environment struct {
			ServerVersion string `json:"server_version"`
		} `json:"environment"`
	}
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return "", fmt.Errorf("daemon answer is not JSON: %w", err)
	}
	return v.Environment.ServerVersion, nil
}

func (g *gatherer) runtimes(ctx context.Context) {
	var wg sync.WaitGroup
	for _, rp := range runtimeProbes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rt, err := g.runtime(ctx, rp)
			g.mu.Lock()
			defer g.mu.Unlock()
			if err != nil {
				g.f.setUnknown("runtime."+rp.name, err)
				return
			}
			g.f.Runtimes[rp.name] = rt
		}()
	}
	wg.Wait()
}

func (g *gatherer) runtime(ctx context.Context, rp runtimeProbe) (Runtime, error) {
	path, err := g.lookProgram(ctx, rp.version[0], rp.version[1:]...)
	if errors.Is(err, errProgramMissing) {
		return Runtime{Daemon: "none"}, nil
	}
	if err != nil {
		return Runtime{}, err
	}
	rt := Runtime{Installed: true, Path: path, Daemon: "none"}
	out, err := g.run(ctx, 3*time.Second, append([]string{path}, rp.version[1:]...)...)
	if err == nil {
		rt.Version = versionWord(out.text)
	}
	if rp.daemon == nil {
		return rt, nil
	}
	out, err = g.run(ctx, 3*time.Second, rp.daemon...)
	switch {
	case err != nil:
		rt.Daemon, rt.DaemonError = "no answer", err.Error()
	case out.exitCode > 0:
		rt.Daemon, rt.DaemonError = "no answer", lastLine(out.text)
	default:
		sv, perr := rp.parse(out.text)
		if perr != nil {
			rt.Daemon, rt.DaemonError = "no answer", perr.Error()
			break
		}
		rt.Daemon, rt.ServerVersion = "answers", sv
	}
	if rp.name == "incus" && rt.Daemon == "answers" {
		out, err := g.run(ctx, 3*time.Second, "incus", "profile", "get", "default", "migration.stateful")
		if err == nil && out.exitCode <= 0 {
			rt.Settings = map[string]string{"default_profile.migration.stateful": strings.TrimSpace(out.text)}
		}
	}
	return rt, nil
}

// versionWord picks the first dotted version number out of a --version
// line ("podman version 4.3.1", "runc version 1.1.5\ncommit: ...").
func versionWord(s string) string {
	for _, w := range strings.Fields(s) {
		w = strings.TrimPrefix(strings.TrimSuffix(w, ","), "v")
		if _, err := ParseVersion(w); err == nil && w[0] >= '0' && w[0] <= '9' {
			return w
		}
	}
	return strings.TrimSpace(firstLineOf(s))
}

func firstLineOf(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
