package inspect

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

type sectionMask uint

const (
	showTree sectionMask = 1 << iota
	showFiles
	showSockets
	showMounts
	showMemory
	showStats
	showChecks

	defaultSections = showTree
	allSections     = showTree | showFiles | showSockets | showMounts | showMemory | showStats | showChecks
)

// Sections selects what a Checkpoint shows, as text and in JSON/YAML.
type Sections struct {
	Tree, Files, Sockets, Mounts, Memory, Stats, All bool
}

// Select keeps the chosen sections; none chosen keeps the summary and the
// process tree. Findings are kept by Check.
func (c *Checkpoint) Select(s Sections) {
	m := sectionMask(0)
	for _, x := range []struct {
		on bool
		m  sectionMask
	}{{s.Tree, showTree}, {s.Files, showFiles}, {s.Sockets, showSockets}, {s.Mounts, showMounts}, {s.Memory, showMemory}, {s.Stats, showStats}} {
		if x.on {
			m |= x.m
		}
	}
	if s.All {
		m = allSections &^ showChecks
	}
	if m == 0 {
		m = defaultSections
	}
	c.show = m | c.show&showChecks
	if m&showTree == 0 {
		c.Processes = nil
	}
	if m&showFiles == 0 {
		c.Files = nil
	}
	if m&showSockets == 0 {
		c.Sockets = nil
	}
	if m&showMounts == 0 {
		c.Mounts = nil
	}
	if m&showMemory == 0 {
		c.Memory = nil
	}
	if m&showStats == 0 {
		c.Stats = nil
	}
	if c.show&showChecks == 0 {
		c.Findings = nil
	}
}

// HumanBytes renders n in binary units.
func HumanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for i := n / unit; i >= unit; i /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// WriteText shows the checkpoint as a tree.
func (c *Checkpoint) WriteText(w io.Writer) error {
	s := c.Summary
	fmt.Fprintf(w, "checkpoint %s\n", c.Dir)
	if c.Run != "" {
		fmt.Fprintf(w, "  run:       %s\n", c.Run)
	}
	fmt.Fprintf(w, "  images:    version %d, %s on disk\n", c.ImageVersion, HumanBytes(uint64(s.ImageBytes)))
	if c.Parent != "" {
		fmt.Fprintf(w, "  parent:    %s (pre-dump)\n", c.Parent)
	}
	fmt.Fprintf(w, "  processes: %d (%d threads)\n", s.Processes, s.Threads)
	fmt.Fprintf(w, "  memory:    %d pages, %s", s.Pages, HumanBytes(s.Bytes))
	if s.ParentPages > 0 {
		fmt.Fprintf(w, " (+%d pages in the parent pre-dump)", s.ParentPages)
	}
	fmt.Fprintf(w, "\n  files:     %d, sockets: %d, mounts: %d\n", s.Files, s.Sockets, s.Mounts)
	if c.show&showTree != 0 {
		fmt.Fprintln(w, "\nprocess tree:")
		c.writeTree(w)
	}
	if c.show&showMemory != 0 {
		fmt.Fprintln(w, "\nmemory:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  PID\tVMAS\tPAGES\tBYTES\tPARENT PAGES\tLAZY PAGES")
		for _, m := range c.Memory {
			fmt.Fprintf(tw, "  %d\t%d\t%d\t%s\t%d\t%d\n", m.PID, m.VMAs, m.Pages, HumanBytes(m.Bytes), m.ParentPages, m.LazyPages)
		}
		tw.Flush()
	}
	if c.show&showFiles != 0 {
		fmt.Fprintln(w, "\nfiles:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  PID\tFD\tTYPE\tPOS\tPATH")
		for _, f := range c.Files {
			p := f.Path
			if f.Ghost {
				p += fmt.Sprintf(" (deleted, %s saved)", HumanBytes(f.GhostSize))
			}
			fmt.Fprintf(tw, "  %d\t%d\t%s\t%d\t%s\n", f.PID, f.FD, f.Type, f.Pos, p)
		}
		tw.Flush()
	}
	if c.show&showSockets != 0 {
		fmt.Fprintln(w, "\nsockets:")
		if len(c.Sockets) == 0 {
			fmt.Fprintln(w, "  none")
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		if len(c.Sockets) > 0 {
			fmt.Fprintln(tw, "  PID\tFD\tKIND\tSTATE\tLOCAL\tPEER")
		}
		for _, k := range c.Sockets {
			peer := k.Peer
			if k.External {
				peer += " (external)"
			}
			fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\t%s\t%s\n", k.PID, k.FD, k.Kind, k.State, dash(k.Local), dash(peer))
		}
		tw.Flush()
	}
	if c.show&showMounts != 0 {
		fmt.Fprintln(w, "\nmounts:")
		if len(c.Mounts) == 0 {
			fmt.Fprintln(w, "  none (the tree shares its host's mount namespace)")
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, m := range c.Mounts {
			ext := ""
			if m.External {
				ext = " (external)"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s%s\n", m.Mountpoint, orUnknown(m.FSType), m.Source, ext)
		}
		tw.Flush()
	}
	if c.show&showStats != 0 {
		fmt.Fprintln(w, "\nstatistics:")
		if st := c.Stats; st == nil {
			fmt.Fprintln(w, "  none (no stats-dump or stats-restore in the directory)")
		} else {
			fmt.Fprintf(w, "  dump:    freezing %s, frozen %s, memdump %s, memwrite %s, pages scanned %d, written %d\n",
				st.FreezingTime, st.FrozenTime, st.MemdumpTime, st.MemwriteTime, st.PagesScanned, st.PagesWritten)
			if st.RestoreTime > 0 {
				fmt.Fprintf(w, "  restore: %s, forking %s, pages restored %d\n", st.RestoreTime, st.ForkingTime, st.PagesRestored)
			}
		}
	}
	if c.show&showChecks != 0 {
		fmt.Fprintln(w, "\nchecks:")
		if len(c.Findings) == 0 {
			fmt.Fprintln(w, "  nothing known to break a restore")
		}
		for _, f := range c.Findings {
			mark := "note"
			if f.Problem {
				mark = "PROBLEM"
			}
			where := ""
			if f.PID != 0 {
				where = fmt.Sprintf(" pid %d fd %d:", f.PID, f.FD)
			}
			fmt.Fprintf(w, "  %s %s:%s %s\n", mark, f.Kind, where, f.Detail)
			if f.Fix != "" {
				fmt.Fprintf(w, "    fix: %s\n", f.Fix)
			}
		}
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "(type not recorded)"
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *Checkpoint) writeTree(w io.Writer) {
	kids := map[uint32][]Process{}
	in := map[uint32]bool{}
	for _, p := range c.Processes {
		in[p.PID] = true
	}
	var roots []Process
	for _, p := range c.Processes {
		if in[p.PPID] && p.PPID != p.PID {
			kids[p.PPID] = append(kids[p.PPID], p)
		} else {
			roots = append(roots, p)
		}
	}
	var walk func(p Process, prefix string, last, root bool, depth int)
	walk = func(p Process, prefix string, last, root bool, depth int) {
		branch, next := "", ""
		if !root {
			branch, next = "├── ", "│   "
			if last {
				branch, next = "└── ", "    "
			}
		}
		cmd := p.Comm
		if len(p.Cmdline) > 0 {
			cmd = strings.Join(p.Cmdline, " ")
		}
		extra := ""
		if p.Threads > 1 {
			extra = fmt.Sprintf(", %d threads", p.Threads)
		}
		if p.State != "alive" {
			extra += ", " + p.State
		}
		fmt.Fprintf(w, "  %s%s%d %s (%s%s)\n", prefix, branch, p.PID, cmd, p.Comm, extra)
		ks := kids[p.PID]
		sort.Slice(ks, func(i, j int) bool { return ks[i].PID < ks[j].PID })
		if depth > 4096 {
			return
		}
		for i, k := range ks {
			walk(k, prefix+next, i == len(ks)-1, false, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, "", true, true, 0)
	}
}
