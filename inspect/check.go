package inspect

import (
	"fmt"
	"sort"
	"strings"
)

// Finding is something in the images known to cause trouble on restore.
type Finding struct {
	Kind   string `json:"kind"` // ghost-file, external-unix-socket, tcp-established
	PID    uint32 `json:"pid"`
	FD     uint32 `json:"fd"`
	Detail string `json:"detail"`
	// Problem is true when the restore fails as things stand, false for
	// what only needs the right options.
	Problem bool   `json:"problem"`
	Fix     string `json:"fix,omitempty"`
}

// CheckOptions are how the checkpoint would be restored.
type CheckOptions struct {
	// GhostLimit is the --ghost-limit in bytes (0: CRIU's default).
	GhostLimit uint64
	// TCPEstablished is whether the restore passes --tcp-established.
	TCPEstablished bool
	// Target and TargetFilesystems are the restoring host and the
	// filesystems its kernel supports (/proc/filesystems); nil skips
	// the filesystem check.
	Target            string
	TargetFilesystems []string
}

// Check lists what in c is known to cause trouble on restore.
func (c *Checkpoint) Check(o CheckOptions) []Finding {
	c.Findings = check(c, o)
	c.show |= showChecks
	return c.Findings
}

func check(c *Checkpoint, o CheckOptions) []Finding {
	limit := o.GhostLimit
	if limit == 0 {
		limit = DefaultGhostLimit
	}
	var out []Finding
	for _, f := range c.Files {
		if !f.Ghost {
			continue
		}
		fd := Finding{Kind: "ghost-file", PID: f.PID, FD: f.FD,
			Detail: fmt.Sprintf("%s is deleted but open; CRIU saved its %d bytes in the images (ghost limit %d)", f.Path, f.GhostSize, limit)}
		if f.GhostSize > limit {
			fd.Problem = true
			fd.Fix = fmt.Sprintf("dump with --ghost-limit %d or more", f.GhostSize)
		}
		out = append(out, fd)
	}
	for _, s := range c.Sockets {
		switch {
		case s.External:
			out = append(out, Finding{Kind: "external-unix-socket", PID: s.PID, FD: s.FD, Problem: true,
				Detail: fmt.Sprintf("%s socket %s is connected to %s outside the checkpoint", s.Kind, orNone(s.Local), s.Peer),
				Fix:    "restore with --ext-unix-sk, or with an inherited fd (--inherit-fd) for the peer"})
		case (s.Kind == "tcp" || s.Kind == "tcp6") && s.State == "ESTABLISHED":
			f := Finding{Kind: "tcp-established", PID: s.PID, FD: s.FD, Problem: !o.TCPEstablished,
				Detail: fmt.Sprintf("established TCP connection %s -> %s", s.Local, s.Peer)}
			if c.Summary.TCPClose {
				// Dumped with --tcp-close: CRIU restores it closed.
				f.Problem = false
				f.Detail += " (dumped with --tcp-close: it is restored closed)"
			} else if !o.TCPEstablished {
				f.Fix = "restore with --tcp-established, on a host where " + s.Local + " can be bound"
			}
			out = append(out, f)
		}
	}
	if o.TargetFilesystems != nil {
		out = append(out, checkFilesystems(c, o)...)
	}
	return out
}

// fsBase is the kernel filesystem behind a mount's type: fuse.sshfs is
// fuse to /proc/filesystems.
func fsBase(t string) string {
	if b, _, ok := strings.Cut(t, "."); ok {
		return b
	}
	return t
}

// checkFilesystems lists the dumped mounts and the open files on them
// whose filesystem the target's kernel does not support.
func checkFilesystems(c *Checkpoint, o CheckOptions) []Finding {
	have := map[string]bool{}
	for _, f := range o.TargetFilesystems {
		have[f] = true
	}
	if len(c.Mounts) == 0 {
		return []Finding{{Kind: "filesystems-unknown",
			Detail: "the images hold no mount table (the tree shares its host's mount namespace): the filesystems of its files are not recorded, so they are not checked against " + o.Target}}
	}
	var out []Finding
	missing := map[uint32]string{}
	var names []string
	for _, m := range c.Mounts {
		if t := fsBase(m.FSType); t != "" && !have[t] { // "": CRIU did not record it
			missing[m.ID] = m.FSType
			names = append(names, m.Mountpoint+" ("+m.FSType+")")
		}
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, Finding{Kind: "filesystem", Problem: true,
			Detail: fmt.Sprintf("mount %s: %s does not support this filesystem", n, o.Target),
			Fix:    "load the filesystem's module on " + o.Target + " (modprobe) or restore elsewhere"})
	}
	for _, f := range c.Files {
		if t, ok := missing[uint32(f.MountID)]; ok && f.MountID >= 0 {
			out = append(out, Finding{Kind: "file-filesystem", PID: f.PID, FD: f.FD, Problem: true,
				Detail: fmt.Sprintf("%s is on %s, which %s does not support", f.Path, t, o.Target)})
		}
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "(unnamed)"
	}
	return s
}
