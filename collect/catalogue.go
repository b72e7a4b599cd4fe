package collect

import (
	"fmt"
	"strings"
	"unicode"
)

// Container runtimes.
const (
	LXD   = "lxd"
	Incus = "incus"
)

// Container is an LXD or Incus instance to collect about.
type Container struct {
	Runtime string // LXD or Incus
	Remote  string // optional client remote
	Name    string
}

func (c Container) String() string {
	if c.Remote != "" {
		return c.Runtime + ":" + c.Remote + ":" + c.Name
	}
	return c.Runtime + ":" + c.Name
}

// client is the runtime's command-line client.
func (c Container) client() string {
	if c.Runtime == Incus {
		return "incus"
	}
	return "lxc"
}

// ref is how the client names the instance: [remote:]name.
func (c Container) ref() string {
	if c.Remote != "" {
		return c.Remote + ":" + c.Name
	}
	return c.Name
}

// NameError is a container name ferry refuses: it would be used in paths
// on the host and in the bundle.
type NameError struct{ Spec, Reason string }

func (e *NameError) Error() string { return fmt.Sprintf("container %q: %s", e.Spec, e.Reason) }
func (e *NameError) Hint() string {
	return "name the container as lxd:NAME or incus:NAME (optionally lxd:REMOTE:NAME); names are letters, digits, '-', '_' and '.'"
}

// ParseContainer parses lxd:[remote:]NAME or incus:[remote:]NAME and refuses
// names that could escape a directory or hide in a terminal: "/", "..",
// control characters, a leading "-".
func ParseContainer(spec string) (Container, error) {
	runtime, rest, ok := strings.Cut(spec, ":")
	if !ok || (runtime != LXD && runtime != Incus) {
		return Container{}, &NameError{spec, "must start with lxd: or incus:"}
	}
	remote, name, hasRemote := strings.Cut(rest, ":")
	if !hasRemote {
		name, remote = remote, ""
	}
	for _, n := range []struct{ what, v string }{{"name", name}, {"remote", remote}} {
		if n.v == "" && (n.what == "name" || hasRemote) {
			return Container{}, &NameError{spec, "empty " + n.what}
		}
		if err := checkName(n.v); err != "" {
			return Container{}, &NameError{spec, n.what + " " + err}
		}
	}
	return Container{Runtime: runtime, Remote: remote, Name: name}, nil
}

func checkName(s string) string {
	switch {
	case strings.ContainsRune(s, '/') || strings.ContainsRune(s, '\\'):
		return "contains a slash"
	case strings.Contains(s, ".."):
		return `contains ".."`
	case strings.HasPrefix(s, "-") || strings.HasPrefix(s, "."):
		return "starts with '-' or '.'"
	case len(s) > 63:
		return "is longer than 63 characters"
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "contains a control character"
		}
		if !(r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r)) || r == '-' || r == '_' || r == '.') {
			return fmt.Sprintf("contains %q", r)
		}
	}
	return ""
}

// HostCollectors are the host-level artefacts, collected on every host of a
// bundle (source and target). criu is the CRIU binary to run ("criu": the
// one on the host's PATH).
func HostCollectors(criu string) []Collector {
	if criu == "" {
		criu = "criu"
	}
	return []Collector{
		Command{ID: "uname", Argv: []string{"uname", "-a"}},
		Command{ID: "dmesg", Argv: []string{"dmesg"}},
		File{ID: "mountinfo", Path: "/proc/self/mountinfo"},
		File{ID: "os-release", Path: "/etc/os-release"},
		Command{ID: "criu-version", Argv: []string{criu, "--version"}},
		Command{ID: "criu-check", Argv: []string{criu, "check", "--all"}},
		Command{ID: "lxd-info", Argv: []string{"lxc", "info"}},
		Command{ID: "incus-info", Argv: []string{"incus", "info"}},
		// Debian package, snap and Incus daemon logs: each absent or not.
		File{ID: "lxd-log", Path: "/var/log/lxd/lxd.log"},
		File{ID: "lxd-log", Path: "/var/snap/lxd/common/lxd/logs/lxd.log"},
		File{ID: "incus-log", Path: "/var/log/incus/incusd.log"},
		File{ID: "incus-log", Path: "/var/lib/incus/logs/incusd.log"},
		File{ID: "lxd-bridge", Path: "/etc/default/lxd-bridge"},
	}
}

// ContainerCollectors are the artefacts about one container, collected on
// every host (the source's logs tell about the dump, the target's about the
// restore).
func ContainerCollectors(c Container) []Collector {
	cl, ref := c.client(), c.ref()
	cs := []Collector{
		Command{ID: "container-info", File: "info-show-log.txt", Argv: []string{cl, "info", ref, "--show-log"}},
		Command{ID: "container-config", File: "config-show-expanded.yaml", Argv: []string{cl, "config", "show", "--expanded", ref}},
		Command{ID: "container-mountinfo", File: "mountinfo.txt", Argv: []string{cl, "exec", ref, "--", "cat", "/proc/self/mountinfo"}},
	}
	// The log directory, and the CRIU logs a stateful stop or snapshot
	// leaves beside its images (state/dump.log, restore.log).
	roots := []struct{ logs, lib string }{{"/var/log/lxd/", "/var/lib/lxd/"}, {"/var/snap/lxd/common/lxd/logs/", "/var/snap/lxd/common/lxd/"}}
	if c.Runtime == Incus {
		roots = []struct{ logs, lib string }{{"/var/log/incus/", "/var/lib/incus/"}, {"/var/lib/incus/logs/", ""}}
	}
	for _, r := range roots {
		cs = append(cs, Dir{ID: "container-logs", Path: r.logs + c.Name})
		if r.lib != "" {
			cs = append(cs,
				Dir{ID: "container-state-logs", Path: r.lib + "containers/" + c.Name + "/state", Pattern: "*.log"},
				Dir{ID: "container-state-logs", Path: r.lib + "containers-snapshots/" + c.Name, Pattern: "*.log"},
			)
		}
	}
	return cs
}
