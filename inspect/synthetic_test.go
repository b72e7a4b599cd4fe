package inspect

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mnt"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
)

// image encodes msgs as a CRIU image with the given magic.
func image(t *testing.T, magic uint32, msgs ...proto.Message) []byte {
	t.Helper()
	b := binary.LittleEndian.AppendUint32(nil, magicCommon)
	b = binary.LittleEndian.AppendUint32(b, magic)
	for _, m := range msgs {
		e, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(e)))
		b = append(b, e...)
	}
	return b
}

func seedFile(t *testing.T, prefix string) (string, []byte) {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(seedDir, prefix+"*"))
	if len(m) != 1 {
		t.Fatalf("seed images %s*: %v", prefix, m)
	}
	b, err := os.ReadFile(m[0])
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(m[0]), b
}

func u32(v uint32) *uint32 { return &v }
func u64(v uint64) *uint64 { return &v }

// TestPageCounts rewrites the seed pagemap the ways CRIU versions write
// it (nr_pages since 4.2, compat_nr_pages before; flags or the older
// in_parent) and adds runs held by a parent pre-dump and lazy runs.
func TestPageCounts(t *testing.T) {
	name, b := seedFile(t, "pagemap-")
	pm, err := ReadPagemap(name, b)
	if err != nil {
		t.Fatal(err)
	}
	var real uint64
	for _, e := range pm.Entries {
		real += PageCount(e)
	}
	const top = 0x7f0000000000
	for _, tc := range []struct {
		name string
		edit func(e *pagemap.PagemapEntry)
		// extra entries after the real ones
		extra               []*pagemap.PagemapEntry
		pages, parent, lazy uint64
	}{
		{name: "as dumped", pages: real},
		{name: "compat count only (CRIU < 4.2)", edit: func(e *pagemap.PagemapEntry) {
			e.CompatNrPages, e.NrPages = u32(uint32(PageCount(e))), nil
		}, pages: real},
		{name: "nr_pages only, compat zero (CRIU >= 4.2, big runs)", edit: func(e *pagemap.PagemapEntry) {
			e.CompatNrPages, e.NrPages = u32(0), u64(PageCount(e))
		}, pages: real},
		{name: "parent and lazy runs", extra: []*pagemap.PagemapEntry{
			{Vaddr: u64(top), CompatNrPages: u32(0), NrPages: u64(5), Flags: u32(peParent)},
			{Vaddr: u64(top + 0x10000), CompatNrPages: u32(3), InParent: proto.Bool(true)},
			{Vaddr: u64(top + 0x20000), CompatNrPages: u32(2), NrPages: u64(2), Flags: u32(peLazy)},
		}, pages: real, parent: 8, lazy: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := []proto.Message{&pagemap.PagemapHead{PagesId: u32(pm.PagesID)}}
			for _, e := range pm.Entries {
				e := proto.Clone(e).(*pagemap.PagemapEntry)
				if tc.edit != nil {
					tc.edit(e)
				}
				msgs = append(msgs, e)
			}
			for _, e := range tc.extra {
				msgs = append(msgs, e)
			}
			c, err := Load(copySeed(t, name, image(t, magicPagemap, msgs...)))
			if err != nil {
				t.Fatal(err)
			}
			m := c.Memory[0]
			got := []uint64{m.Pages, m.Bytes, m.ParentPages, m.ParentBytes, m.LazyPages, c.Summary.ParentPages}
			want := []uint64{tc.pages, tc.pages * PageSize, tc.parent, tc.parent * PageSize, tc.lazy, tc.parent}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("pages, bytes, parent pages, parent bytes, lazy, summary parent (-want +got):\n%s", d)
			}
			if strings.Join(c.Processes[0].Cmdline, " ") != "sleep 1000" {
				t.Errorf("command line read through the pagemap: %q", c.Processes[0].Cmdline)
			}
			var text strings.Builder
			if err := c.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			if tc.parent > 0 && !strings.Contains(text.String(), "(+8 pages in the parent pre-dump)") {
				t.Errorf("text does not show the parent's pages:\n%s", text.String())
			}
		})
	}
}

// TestMounts adds the mount table of the tree's mount namespace (ids say
// it is 6 in the seed images).
func TestMounts(t *testing.T) {
	mnts := image(t, magicMnts,
		&mnt.MntEntry{Fstype: u32(uint32(mnt.Fstype_AUTO)), Fsname: proto.String("ext4"), MntId: u32(10), RootDev: u32(0), ParentMntId: u32(1),
			Flags: u32(0), Root: proto.String("/"), Mountpoint: proto.String("/"), Source: proto.String("/dev/vda1"), Options: proto.String("rw")},
		&mnt.MntEntry{Fstype: u32(uint32(mnt.Fstype_PROC)), MntId: u32(11), RootDev: u32(0), ParentMntId: u32(10),
			Flags: u32(0), Root: proto.String("/"), Mountpoint: proto.String("/proc"), Source: proto.String("proc"), Options: proto.String("rw"), ExtKey: proto.String("proc")},
	)
	dir := copySeed(t, "", nil)
	if err := os.WriteFile(filepath.Join(dir, "mountpoints-6.img"), mnts, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{ID: 10, Parent: 1, Mountpoint: "/", FSType: "ext4", Source: "/dev/vda1", Root: "/", Options: "rw"},
		{ID: 11, Parent: 10, Mountpoint: "/proc", FSType: "proc", Source: "proc", Root: "/", Options: "rw", External: true},
	}
	if d := cmp.Diff(want, c.Mounts); d != "" {
		t.Errorf("mounts (-want +got):\n%s", d)
	}
	if err := os.WriteFile(filepath.Join(dir, "mountpoints-6.img"), mnts[:len(mnts)-4], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "mountpoints-6.img") {
		t.Errorf("truncated mount table: %v", err)
	}
}

func TestExternalUnixSockets(t *testing.T) {
	ss := []Socket{
		{PID: 1, FD: 3, Kind: "unix/stream", State: "ESTABLISHED", Ino: 100, Peer: "ino:101"},
		{PID: 1, FD: 4, Kind: "unix/stream", State: "ESTABLISHED", Ino: 101, Peer: "ino:100"},
		{PID: 1, FD: 5, Kind: "unix/dgram", State: "ESTABLISHED", Ino: 102, Peer: "ino:999", Local: "@sock"},
		{PID: 1, FD: 6, Kind: "unix/stream", State: "LISTEN", Ino: 103, Local: "/run/x.sock"},
		{PID: 1, FD: 7, Kind: "tcp", State: "ESTABLISHED", Ino: 104, Local: "10.0.0.1:80", Peer: "10.0.0.2:5000"},
	}
	markExternal(ss)
	var ext []uint32
	for _, s := range ss {
		if s.External {
			ext = append(ext, s.FD)
		}
	}
	if d := cmp.Diff([]uint32{5}, ext); d != "" {
		t.Errorf("external sockets (-want +got):\n%s", d)
	}
	c := &Checkpoint{Sockets: ss}
	for _, tc := range []struct {
		tcp  bool
		want []string
	}{
		{false, []string{"external-unix-socket true", "tcp-established true"}},
		{true, []string{"external-unix-socket true", "tcp-established false"}},
	} {
		var got []string
		for _, f := range c.Check(CheckOptions{TCPEstablished: tc.tcp}) {
			got = append(got, f.Kind+" "+map[bool]string{true: "true", false: "false"}[f.Problem])
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("--tcp-established=%v (-want +got):\n%s", tc.tcp, d)
		}
	}
	c.Summary.TCPClose = true
	for _, f := range c.Check(CheckOptions{}) {
		if f.Kind == "tcp-established" && (f.Problem || !strings.Contains(f.Detail, "--tcp-close")) {
			t.Errorf("dumped with --tcp-close: %+v", f)
		}
	}
}

func TestAddr(t *testing.T) {
	for _, tc := range []struct {
		words []uint32
		port  uint32
		want  string
	}{
		{[]uint32{0x0100007f}, 8080, "127.0.0.1:8080"},
		{[]uint32{0}, 0, ""},
		{[]uint32{0, 0, 0, 0x01000000}, 443, "[::1]:443"},
		{[]uint32{0, 0, 0xffff0000, 0x0100007f}, 22, "127.0.0.1:22"},
		{nil, 1, ""},
	} {
		if got := addr(tc.words, tc.port); got != tc.want {
			t.Errorf("addr(%x, %d) = %q, want %q", tc.words, tc.port, got, tc.want)
		}
	}
}

func TestCheckFilesystems(t *testing.T) {
	c := &Checkpoint{
		Mounts: []Mount{
			{ID: 10, Mountpoint: "/", FSType: "ext4"},
			{ID: 11, Mountpoint: "/data", FSType: "zfs"},
			{ID: 12, Mountpoint: "/remote", FSType: "fuse.sshfs"},
			{ID: 13, Mountpoint: "/srv", FSType: ""},
		},
		Files: []File{
			{PID: 1, FD: 3, Path: "/data/db", MountID: 11},
			{PID: 1, FD: 4, Path: "/etc/hosts", MountID: 10},
			{PID: 1, FD: 5, Path: "/remote/x", MountID: 12},
		},
	}
	var got []string
	for _, f := range c.Check(CheckOptions{Target: "b", TargetFilesystems: []string{"ext4", "fuse", "proc"}}) {
		got = append(got, fmt.Sprintf("%s %d %v: %s", f.Kind, f.FD, f.Problem, f.Detail))
	}
	want := []string{
		"filesystem 0 true: mount /data (zfs): b does not support this filesystem",
		"file-filesystem 3 true: /data/db is on zfs, which b does not support",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("findings (-want +got):\n%s", d)
	}
	c.Mounts = nil
	fs := c.Check(CheckOptions{Target: "b", TargetFilesystems: []string{"ext4"}})
	if len(fs) != 1 || fs[0].Kind != "filesystems-unknown" || fs[0].Problem {
		t.Errorf("without a mount table: %+v", fs)
	}
}
