// Package inspect reads a directory of CRIU images (a checkpoint) without
// CRIU: its process tree with command lines, memory, open files, sockets,
// mounts and CRIU's dump and restore statistics, and what in it is known
// to cause trouble on restore.
package inspect

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	ghostfile "github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/inventory"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mnt"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	remapfilepath "github.com/checkpoint-restore/go-criu/v8/crit/images/remap-file-path"

	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/criu"
)

// PageSize is the size of one page in pages-*.img.
var PageSize = uint64(os.Getpagesize())

// DefaultGhostLimit is CRIU's default --ghost-limit: deleted-but-open
// files larger than this are refused at dump.
const DefaultGhostLimit = 1 << 20

// Checkpoint is what a directory of CRIU images holds.
type Checkpoint struct {
	Dir string `json:"dir"`
	// Run is the ferry run whose images these are, if inspected by id.
	Run          string      `json:"run,omitempty"`
	ImageVersion uint32      `json:"image_version"`
	Parent       string      `json:"parent,omitempty"` // pre-dump directory the images refer to
	Summary      Summary     `json:"summary"`
	Processes    []Process   `json:"processes,omitempty"`
	Memory       []Memory    `json:"memory,omitempty"`
	Files        []File      `json:"files,omitempty"`
	Sockets      []Socket    `json:"sockets,omitempty"`
	Mounts       []Mount     `json:"mounts,omitempty"`
	Stats        *Stats      `json:"stats,omitempty"`
	Findings     []Finding   `json:"findings,omitempty"`
	show         sectionMask // what WriteText shows
}

// Summary are the totals of a checkpoint.
type Summary struct {
	Processes   int    `json:"processes"`
	Threads     int    `json:"threads"`
	Pages       uint64 `json:"pages"`
	Bytes       uint64 `json:"bytes"`
	ParentPages uint64 `json:"parent_pages"`
	Files       int    `json:"files"`
	Sockets     int    `json:"sockets"`
	Mounts      int    `json:"mounts"`
	ImageBytes  int64  `json:"image_bytes"`
	TCPClose    bool   `json:"tcp_close,omitempty"`
}

// Process is one task of the dumped tree.
type Process struct {
	PID     uint32   `json:"pid"`
	PPID    uint32   `json:"ppid"`
	PGID    uint32   `json:"pgid"`
	SID     uint32   `json:"sid"`
	Threads int      `json:"threads"`
	Comm    string   `json:"comm"`
	Cmdline []string `json:"cmdline,omitempty"`
	State   string   `json:"state"`
}

// Memory is the memory CRIU saved of one process. Pages are in this
// directory's pages-*.img; ParentPages stay in the parent pre-dump's
// images; LazyPages are left for lazy migration.
type Memory struct {
	PID         uint32 `json:"pid"`
	VMAs        int    `json:"vmas"`
	Pages       uint64 `json:"pages"`
	Bytes       uint64 `json:"bytes"`
	ParentPages uint64 `json:"parent_pages"`
	ParentBytes uint64 `json:"parent_bytes"`
	LazyPages   uint64 `json:"lazy_pages,omitempty"`
}

// File is one open file descriptor.
type File struct {
	PID   uint32 `json:"pid"`
	FD    uint32 `json:"fd"`
	Type  string `json:"type"`
	Path  string `json:"path,omitempty"`
	Pos   uint64 `json:"pos"`
	Flags uint32 `json:"flags"`
	Size  uint64 `json:"size,omitempty"`
	// Ghost: deleted but open; CRIU saved its contents (GhostSize bytes).
	Ghost     bool   `json:"ghost,omitempty"`
	GhostSize uint64 `json:"ghost_size,omitempty"`
	MountID   int32  `json:"mnt_id"`
}

// Socket is one socket a process holds.
type Socket struct {
	PID   uint32 `json:"pid"`
	FD    uint32 `json:"fd"`
	Kind  string `json:"kind"` // unix/stream, tcp6, udp, ...
	State string `json:"state"`
	Local string `json:"local,omitempty"`
	Peer  string `json:"peer,omitempty"`
	Ino   uint32 `json:"ino"`
	// External: a unix socket whose peer is outside the dumped tree.
	External bool `json:"external,omitempty"`
}

// Mount is one mount of a dumped mount namespace.
type Mount struct {
	ID         uint32 `json:"id"`
	Parent     uint32 `json:"parent"`
	Mountpoint string `json:"mountpoint"`
	FSType     string `json:"fstype"`
	Source     string `json:"source"`
	Root       string `json:"root"`
	Options    string `json:"options,omitempty"`
	External   bool   `json:"external,omitempty"`
}

// Stats are CRIU's stats-dump and stats-restore figures.
type Stats = migrate.Stats

// Load reads the images in dir. It never panics on bad input: corrupt,
// truncated or foreign files are an *ImageError naming the file.
func Load(dir string) (c *Checkpoint, err error) {
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, fmt.Errorf("%s: internal error decoding the images (please report it): %v", dir, r)
		}
	}()
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	l := &loader{d: dirImages{dir}, c: &Checkpoint{Dir: dir, show: defaultSections}}
	if err := l.load(); err != nil {
		return nil, err
	}
	return l.c, nil
}

type loader struct {
	d         dirImages
	c         *Checkpoint
	files     map[uint32]*fdinfo.FileEntry
	ghost     map[uint32]uint64 // file id -> ghost size
	ghostSeen map[uint32]bool
}

func (l *loader) load() error {
	b, err := l.d.need("inventory.img")
	if err != nil {
		return err
	}
	inv, err := decodeOne[inventory.InventoryEntry]("inventory.img", b, magicInventory)
	if err != nil {
		return err
	}
	c := l.c
	c.ImageVersion = inv.GetImgVersion()
	c.Summary.TCPClose = inv.GetTcpClose()
	if p, err := os.Readlink(filepath.Join(c.Dir, "parent")); err == nil {
		c.Parent = p
	}
	if b, err = l.d.need("pstree.img"); err != nil {
		return err
	}
	tree, err := decodeAll[pstree.PstreeEntry]("pstree.img", b, magicPstree)
	if err != nil {
		return err
	}
	if len(tree) == 0 {
		return &ImageError{File: "pstree.img", Reason: "no processes"}
	}
	if err := l.loadFiles(); err != nil {
		return err
	}
	mntns := map[uint32]bool{}
	for _, t := range tree {
		if err := l.loadProcess(t, mntns); err != nil {
			return err
		}
	}
	ns := make([]uint32, 0, len(mntns))
	for id := range mntns {
		ns = append(ns, id)
	}
	sort.Slice(ns, func(i, j int) bool { return ns[i] < ns[j] })
	for _, id := range ns {
		if err := l.loadMounts(id); err != nil {
			return err
		}
	}
	markExternal(c.Sockets)
	stats, err := loadStats(c.Dir)
	if err != nil {
		return err
	}
	c.Stats = stats
	c.Summary.ImageBytes = criu.ImageBytes(c.Dir)
	c.Summary.Processes = len(c.Processes)
	c.Summary.Files, c.Summary.Sockets, c.Summary.Mounts = len(c.Files), len(c.Sockets), len(c.Mounts)
	for _, p := range c.Processes {
		c.Summary.Threads += p.Threads
	}
	for _, m := range c.Memory {
		c.Summary.Pages += m.Pages
		c.Summary.ParentPages += m.ParentPages
	}
	c.Summary.Bytes = c.Summary.Pages * PageSize
	c.Findings = check(c, CheckOptions{})
	return nil
}

// AddStats reads CRIU's statistics from dir when the images directory
// has none: over RPC, CRIU writes them into its work directory (a ferry
// run's directory).
func (c *Checkpoint) AddStats(dir string) error {
	if c.Stats != nil {
		return nil
	}
	s, err := loadStats(dir)
	if err != nil {
		return err
	}
	c.Stats = s
	return nil
}

func loadStats(dir string) (*Stats, error) {
	var s Stats
	if err := criu.DumpStats(dir, &s); err != nil {
		return nil, &ImageError{File: "stats-dump", Reason: "undecodable", Err: err}
	}
	if err := criu.RestoreStats(dir, &s); err != nil {
		return nil, &ImageError{File: "stats-restore", Reason: "undecodable", Err: err}
	}
	if s == (Stats{}) {
		return nil, nil
	}
	return &s, nil
}

// loadFiles reads files.img (all open files by id) and the ghost files
// behind deleted-but-open ones.
func (l *loader) loadFiles() error {
	l.files = map[uint32]*fdinfo.FileEntry{}
	l.ghost = map[uint32]uint64{}
	l.ghostSeen = map[uint32]bool{}
	b, ok, err := l.d.read("files.img")
	if err != nil {
		return err
	}
	if ok {
		fs, err := decodeAll[fdinfo.FileEntry]("files.img", b, magicFiles)
		if err != nil {
			return err
		}
		for _, f := range fs {
			l.files[f.GetId()] = f
		}
	}
	b, ok, err = l.d.read("remap-fpath.img")
	if err != nil || !ok {
		return err
	}
	remaps, err := decodeAll[remapfilepath.RemapFilePathEntry]("remap-fpath.img", b, magicRemapPath)
	if err != nil {
		return err
	}
	for _, r := range remaps {
		if r.GetRemapType() != remapfilepath.RemapType_GHOST {
			continue
		}
		name := fmt.Sprintf("ghost-file-%d.img", r.GetRemapId())
		b, err := l.d.need(name)
		if err != nil {
			// Name the image that points there too: either may be the
			// damaged one.
			return fmt.Errorf("remap-fpath.img names ghost file %d: %w", r.GetRemapId(), err)
		}
		size, err := ghostSize(name, b)
		if err != nil {
			return err
		}
		l.ghost[r.GetOrigId()] = size
		l.ghostSeen[r.GetOrigId()] = true
	}
	return nil
}

// ghostSize reads the size of a deleted file CRIU saved: the entry's size
// field, or for old images the bytes that follow the entry.
func ghostSize(name string, b []byte) (uint64, error) {
	rest, err := checkMagic(name, b, magicGhostFile)
	if err != nil {
		return 0, err
	}
	e, data, err := next(name, rest, len(b)-len(rest))
	if err != nil {
		return 0, err
	}
	g := &ghostfile.GhostFileEntry{}
	if err := unmarshal(name, e, g); err != nil {
		return 0, err
	}
	if !g.GetChunks() {
		if g.Size == nil {
			return uint64(len(data)), nil
		}
		if g.GetMode()&0o170000 == 0o100000 && uint64(len(data)) < g.GetSize() {
			return 0, &ImageError{File: name, Reason: fmt.Sprintf("truncated: %d of the file's %d bytes", len(data), g.GetSize())}
		}
		return g.GetSize(), nil
	}
	var n uint64
	for len(data) > 0 {
		ce, r, err := next(name, data, len(b)-len(data))
		if err != nil {
			return 0, err
		}
		ch := &ghostfile.GhostChunkEntry{}
		if err := unmarshal(name, ce, ch); err != nil {
			return 0, err
		}
		if ch.GetLen() > uint64(len(r)) {
			return 0, &ImageError{File: name, Reason: "truncated chunk data"}
		}
		n = max(n, ch.GetOff()+ch.GetLen())
		data = r[ch.GetLen():]
	}
	if g.Size != nil {
		return g.GetSize(), nil
	}
	return n, nil
}

func (l *loader) loadProcess(t *pstree.PstreeEntry, mntns map[uint32]bool) error {
	pid := t.GetPid()
	p := Process{PID: pid, PPID: t.GetPpid(), PGID: t.GetPgid(), SID: t.GetSid(), Threads: max(1, len(t.GetThreads()))}
	coreName := fmt.Sprintf("core-%d.img", pid)
	b, err := l.needFor(coreName, pid)
	if err != nil {
		return err
	}
	core, err := decodeOne[criucore.CoreEntry](coreName, b, magicCore)
	if err != nil {
		return err
	}
	p.Comm = core.GetTc().GetComm()
	p.State = taskState(core.GetTc().GetTaskState())
	idsName := fmt.Sprintf("ids-%d.img", pid)
	b, err = l.needFor(idsName, pid)
	if err != nil {
		return err
	}
	ids, err := decodeOne[criucore.TaskKobjIdsEntry](idsName, b, magicIDs)
	if err != nil {
		return err
	}
	if ids.MntNsId != nil {
		mntns[ids.GetMntNsId()] = true
	}
	if p.State != "zombie" && p.State != "dead" {
		mem, args, err := l.loadMemory(pid)
		if err != nil {
			return err
		}
		l.c.Memory = append(l.c.Memory, mem)
		p.Cmdline = args
		if err := l.loadFDs(pid, ids.GetFilesId()); err != nil {
			return err
		}
	}
	l.c.Processes = append(l.c.Processes, p)
	return nil
}

// needFor reads a per-process image that pstree.img implies.
func (l *loader) needFor(name string, pid uint32) ([]byte, error) {
	b, ok, err := l.d.read(name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, &ImageError{File: name, Reason: fmt.Sprintf("missing, though pstree.img lists pid %d", pid)}
	}
	return b, nil
}

func taskState(s uint32) string {
	switch s {
	case 1:
		return "alive"
	case 2:
		return "dead"
	case 3:
		return "stopped"
	case 6:
		return "zombie"
	}
	return fmt.Sprintf("state-%d", s)
}

// Pagemap entry flags (criu/include/pagemap.h).
const (
	peParent  = 1 << 0
	peLazy    = 1 << 1
	pePresent = 1 << 2
)

// PageCount is the number of pages of a pagemap entry: CRIU >= 4.2 writes
// nr_pages (64 bit), older CRIU only compat_nr_pages.
func PageCount(e *pagemap.PagemapEntry) uint64 {
	if e.NrPages != nil {
		return e.GetNrPages()
	}
	return uint64(e.GetCompatNrPages())
}

// Pagemap is a decoded pagemap-PID.img.
type Pagemap struct {
	PagesID uint32
	Entries []*pagemap.PagemapEntry
}

// ReadPagemap decodes a pagemap image: a head naming the pages image,
// then one entry per run of pages.
func ReadPagemap(name string, b []byte) (*Pagemap, error) {
	raw, err := entries(name, b, magicPagemap)
	if err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, &ImageError{File: name, Reason: "no pagemap head"}
	}
	h := &pagemap.PagemapHead{}
	if err := unmarshal(name, raw[0], h); err != nil {
		return nil, err
	}
	pm := &Pagemap{PagesID: h.GetPagesId()}
	for _, r := range raw[1:] {
		e := &pagemap.PagemapEntry{}
		if err := unmarshal(name, r, e); err != nil {
			return nil, err
		}
		pm.Entries = append(pm.Entries, e)
	}
	return pm, nil
}

// where says where an entry's pages are.
func where(e *pagemap.PagemapEntry) (inFile, inParent, lazy bool) {
	f := e.GetFlags()
	if e.Flags == nil { // before flags: in_parent or here
		if e.GetInParent() {
			return false, true, false
		}
		return true, false, false
	}
	switch {
	case f&peParent != 0:
		return false, true, false
	case f&pePresent != 0:
		return true, false, false
	case f&peLazy != 0:
		return false, false, true
	}
	return false, false, false
}

func (l *loader) loadMemory(pid uint32) (Memory, []string, error) {
	m := Memory{PID: pid}
	mmName := fmt.Sprintf("mm-%d.img", pid)
	b, err := l.needFor(mmName, pid)
	if err != nil {
		return m, nil, err
	}
	mme, err := decodeOne[mm.MmEntry](mmName, b, magicMM)
	if err != nil {
		return m, nil, err
	}
	m.VMAs = len(mme.GetVmas())
	pmName := fmt.Sprintf("pagemap-%d.img", pid)
	if b, err = l.needFor(pmName, pid); err != nil {
		return m, nil, err
	}
	pm, err := ReadPagemap(pmName, b)
	if err != nil {
		return m, nil, err
	}
	argStart, argEnd := mme.GetMmArgStart(), mme.GetMmArgEnd()
	var argOff, off uint64
	argFound := false
	for _, e := range pm.Entries {
		n := PageCount(e)
		inFile, inParent, lazy := where(e)
		switch {
		case inFile:
			if v := e.GetVaddr(); !argFound && argStart >= v && argStart < v+n*PageSize {
				argOff, argFound = off+(argStart-v), true
			}
			m.Pages += n
			off += n * PageSize
		case inParent:
			m.ParentPages += n
		case lazy:
			m.LazyPages += n
		}
	}
	m.Bytes, m.ParentBytes = m.Pages*PageSize, m.ParentPages*PageSize
	if m.Pages > 0 {
		pages := fmt.Sprintf("pages-%d.img", pm.PagesID)
		st, err := os.Stat(filepath.Join(l.d.dir, pages))
		if err != nil {
			return m, nil, &ImageError{File: pages, Reason: pmName + " refers to it", Err: err}
		}
		if uint64(st.Size()) < m.Bytes {
			return m, nil, &ImageError{File: pages, Reason: fmt.Sprintf("truncated: %d bytes, %s lists %d pages (%d bytes)", st.Size(), pmName, m.Pages, m.Bytes)}
		}
	}
	var args []string
	if argFound && argEnd > argStart {
		args, err = l.readArgs(fmt.Sprintf("pages-%d.img", pm.PagesID), argOff, min(argEnd-argStart, 4096))
		if err != nil {
			return m, nil, err
		}
	}
	return m, args, nil
}

// readArgs reads the NUL-separated command line from a pages image.
func (l *loader) readArgs(name string, off, n uint64) ([]string, error) {
	f, err := os.Open(filepath.Join(l.d.dir, name))
	if err != nil {
		return nil, &ImageError{File: name, Reason: "unreadable", Err: err}
	}
	defer f.Close()
	buf := make([]byte, n)
	k, _ := f.ReadAt(buf, int64(off))
	buf = bytes.TrimRight(buf[:k], "\x00")
	if len(buf) == 0 {
		return nil, nil
	}
	return strings.Split(string(buf), "\x00"), nil
}

func (l *loader) loadFDs(pid, filesID uint32) error {
	name := fmt.Sprintf("fdinfo-%d.img", filesID)
	b, ok, err := l.d.read(name)
	if err != nil || !ok {
		return err
	}
	fds, err := decodeAll[fdinfo.FdinfoEntry](name, b, magicFdinfo)
	if err != nil {
		return err
	}
	for _, fd := range fds {
		fe, ok := l.files[fd.GetId()]
		if !ok {
			return &ImageError{File: name, Reason: fmt.Sprintf("fd %d refers to file id %d, which files.img lacks", fd.GetFd(), fd.GetId())}
		}
		l.addFile(pid, fd, fe)
	}
	return nil
}

func (l *loader) addFile(pid uint32, fd *fdinfo.FdinfoEntry, fe *fdinfo.FileEntry) {
	f := File{PID: pid, FD: fd.GetFd(), Type: strings.ToLower(fe.GetType().String()), MountID: -1}
	switch {
	case fe.GetReg() != nil:
		r := fe.GetReg()
		f.Path, f.Pos, f.Flags, f.Size, f.MountID = r.GetName(), r.GetPos(), r.GetFlags(), r.GetSize(), r.GetMntId()
		if l.ghostSeen[r.GetId()] {
			f.Ghost, f.GhostSize = true, l.ghost[r.GetId()]
		}
	case fe.GetUsk() != nil:
		u := fe.GetUsk()
		l.c.Sockets = append(l.c.Sockets, Socket{PID: pid, FD: f.FD, Kind: "unix/" + sockType(u.GetType()),
			State: tcpState(u.GetState()), Local: unixName(u.GetName()), Ino: u.GetIno(), Peer: peerIno(u.GetPeer())})
		return
	case fe.GetIsk() != nil:
		s := fe.GetIsk()
		l.c.Sockets = append(l.c.Sockets, Socket{PID: pid, FD: f.FD, Kind: inetKind(s.GetFamily(), s.GetProto(), s.GetType()),
			State: tcpState(s.GetState()), Local: addr(s.GetSrcAddr(), s.GetSrcPort()), Peer: addr(s.GetDstAddr(), s.GetDstPort()), Ino: s.GetIno()})
		return
	case fe.GetPipe() != nil:
		f.Path = fmt.Sprintf("pipe:[%d]", fe.GetPipe().GetPipeId())
		f.Flags = fe.GetPipe().GetFlags()
	case fe.GetTty() != nil:
		f.Flags = fe.GetTty().GetFlags()
	case fe.GetMemfd() != nil:
		f.Path, f.Pos, f.Flags = "memfd", fe.GetMemfd().GetPos(), fe.GetMemfd().GetFlags()
	case fe.GetFifo() != nil:
		f.Path = fmt.Sprintf("fifo:[%d]", fe.GetFifo().GetPipeId())
	}
	l.c.Files = append(l.c.Files, f)
}

func (l *loader) loadMounts(ns uint32) error {
	name := fmt.Sprintf("mountpoints-%d.img", ns)
	b, ok, err := l.d.read(name)
	if err != nil || !ok {
		return err
	}
	ms, err := decodeAll[mnt.MntEntry](name, b, magicMnts)
	if err != nil {
		return err
	}
	for _, m := range ms {
		// CRIU names the filesystems it knows by number and keeps the
		// name of others (fstype AUTO or UNSUPPORTED) in fsname, when it
		// has it.
		fst := m.GetFsname()
		if fst == "" && m.GetFstype() != uint32(mnt.Fstype_UNSUPPORTED) && m.GetFstype() != uint32(mnt.Fstype_AUTO) {
			fst = strings.ToLower(mnt.Fstype(m.GetFstype()).String())
		}
		l.c.Mounts = append(l.c.Mounts, Mount{ID: m.GetMntId(), Parent: m.GetParentMntId(), Mountpoint: m.GetMountpoint(),
			FSType: fst, Source: m.GetSource(), Root: m.GetRoot(), Options: m.GetOptions(), External: m.GetExtMount() || m.GetExtKey() != ""})
	}
	return nil
}
