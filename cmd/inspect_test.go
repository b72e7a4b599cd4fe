package cmd

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mnt"
	"google.golang.org/protobuf/proto"

	"github.com/ferry-migrate/ferry/inspect"
	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/probe"
)

// inspectSample is a real checkpoint of `sleep 1000` holding a
// deleted-but-open 13-byte file at fd 3.
var inspectSample = filepath.Join("..", "inspect", "testdata", "images", "sleep-ghost")

func runInspect(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	io, out, errOut := testIO()
	code = Run(context.Background(), append([]string{"inspect"}, args...), io)
	return code, out.String(), errOut.String()
}

func TestInspect(t *testing.T) {
	t.Setenv("FERRY_RUNS", t.TempDir())
	tests := []struct {
		name     string
		args     []string
		code     int
		want     []string
		dontWant []string
		stderr   string
	}{
		{"default: summary and tree", nil, exit.OK,
			[]string{"processes: 1 (1 threads)", "process tree:", " sleep 1000 (sleep)"}, []string{"\nfiles:", "\nchecks:"}, ""},
		{"files", []string{"--files"}, exit.OK,
			[]string{"files:", "deleted-but-open (deleted, 13 B saved)"}, []string{"process tree:"}, ""},
		{"all", []string{"--all"}, exit.OK,
			[]string{"process tree:", "memory:", "files:", "sockets:", "mounts:", "statistics:"}, []string{"\nchecks:"}, ""},
		{"check under the ghost limit", []string{"--check"}, exit.OK,
			[]string{"checks:", "note ghost-file: pid"}, []string{"PROBLEM"}, ""},
		{"yaml", []string{"--all", "--output", "yaml"}, exit.OK,
			[]string{"processes:\n- cmdline:\n  - sleep\n  - \"1000\"", "ghost: true", "ghost_size: 13"}, []string{"process tree:"}, ""},
		{"check over the ghost limit", []string{"--check", "--ghost-limit", "10"}, exit.Incompatible,
			[]string{"PROBLEM ghost-file", "fix: dump with --ghost-limit 13 or more"}, nil, "breaks a restore"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runInspect(t, append([]string{inspectSample}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.dontWant {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
			if !strings.Contains(errOut, tc.stderr) {
				t.Errorf("stderr lacks %q: %s", tc.stderr, errOut)
			}
		})
	}
}

func TestInspectJSONSections(t *testing.T) {
	t.Parallel()
	code, out, errOut := runInspect(t, inspectSample, "--memory", "--files", "--output", "json")
	if code != exit.OK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var c inspect.Checkpoint
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Processes) != 0 || len(c.Memory) != 1 || len(c.Files) == 0 || c.Summary.Processes != 1 {
		t.Errorf("--memory --files: %+v", c)
	}
	if c.Memory[0].Bytes != c.Summary.Bytes || c.Memory[0].Pages*inspect.PageSize != c.Memory[0].Bytes {
		t.Errorf("memory %+v, summary %+v", c.Memory[0], c.Summary)
	}
}

func TestInspectRunID(t *testing.T) {
	runs := t.TempDir()
	t.Setenv("FERRY_RUNS", runs)
	abs, err := filepath.Abs(inspectSample)
	if err != nil {
		t.Fatal(err)
	}
	r, err := migrate.Store{Dir: runs}.Create("checkpoint", time.Now(), migrate.Journal{ImagesDir: abs})
	if err != nil {
		t.Fatal(err)
	}
	id := filepath.Base(r.Dir)
	code, out, errOut := runInspect(t, id)
	if code != exit.OK || !strings.Contains(out, "run:       "+id) || !strings.Contains(out, "checkpoint "+abs) {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}
}

func TestInspectErrors(t *testing.T) {
	t.Setenv("FERRY_RUNS", t.TempDir())
	damaged := t.TempDir()
	ents, err := os.ReadDir(inspectSample)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(inspectSample, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "pstree.img" {
			b = b[:len(b)-2]
		}
		if err := os.WriteFile(filepath.Join(damaged, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		arg    string
		code   int
		stderr string
	}{
		{"neither a directory nor a run", "nope", exit.Usage, "neither a directory nor a run"},
		{"a bundle", "ferry-report-x.tar.gz", exit.Usage, "bundles leave the CRIU images out"},
		{"a file", filepath.Join(inspectSample, "pstree.img"), exit.Usage, "is not a directory"},
		{"no images", t.TempDir(), exit.Failure, "inventory.img: missing"},
		{"truncated", damaged, exit.Failure, "pstree.img: truncated entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runInspect(t, tc.arg)
			if code != tc.code || !strings.Contains(errOut, tc.stderr) {
				t.Errorf("exit %d (want %d), stderr lacks %q:\n%s", code, tc.code, tc.stderr, errOut)
			}
		})
	}
}

// TestInspectAgainst checks the images' filesystems against a target's
// saved facts: the seed images plus a mount table naming zfs.
func TestInspectAgainst(t *testing.T) {
	t.Setenv("FERRY_RUNS", t.TempDir())
	dir := t.TempDir()
	ents, err := os.ReadDir(inspectSample)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(inspectSample, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// IMG_COMMON, MNTS, then size-prefixed entries.
	img := binary.LittleEndian.AppendUint32(nil, 0x54564319)
	img = binary.LittleEndian.AppendUint32(img, 0x55563928)
	for _, m := range []*mnt.MntEntry{
		{Fstype: proto.Uint32(0), Fsname: proto.String("ext4"), MntId: proto.Uint32(10), RootDev: proto.Uint32(0), ParentMntId: proto.Uint32(1),
			Flags: proto.Uint32(0), Root: proto.String("/"), Mountpoint: proto.String("/"), Source: proto.String("/dev/vda1"), Options: proto.String("rw")},
		{Fstype: proto.Uint32(0), Fsname: proto.String("zfs"), MntId: proto.Uint32(11), RootDev: proto.Uint32(0), ParentMntId: proto.Uint32(10),
			Flags: proto.Uint32(0), Root: proto.String("/"), Mountpoint: proto.String("/data"), Source: proto.String("tank/data"), Options: proto.String("rw")},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		img = append(binary.LittleEndian.AppendUint32(img, uint32(len(b))), b...)
	}
	if err := os.WriteFile(filepath.Join(dir, "mountpoints-6.img"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	facts := filepath.Join(t.TempDir(), "b.json")
	if err := os.WriteFile(facts, []byte(`{"schema": "`+probe.Schema+`", "host": "b", "filesystems": {"supported": ["ext4", "proc"]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runInspect(t, dir, "--against", facts, "--mounts")
	if code != exit.Incompatible || !strings.Contains(out, "PROBLEM filesystem: mount /data (zfs): "+facts+" does not support this filesystem") ||
		!strings.Contains(out, "/data  zfs   tank/data") {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runInspect(t, inspectSample, "--against", facts)
	if code != exit.OK || !strings.Contains(out, "note filesystems-unknown") {
		t.Errorf("images without a mount table: exit %d\n%s%s", code, out, errOut)
	}
}

// TestInspectCheckpointRun checkpoints a process with `ferry checkpoint`
// and inspects the run by its id: the memory shown is what the pages
// images hold and what CRIU's stats (in the run directory) say it wrote.
func TestInspectCheckpointRun(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.CRIU(t)
	t.Setenv("FERRY_RUNS", t.TempDir())
	w := testenv.StartDumpable(t, "sleep", "1000")
	dir := filepath.Join(t.TempDir(), "ckpt")
	var j migrate.Journal
	if code, stderr := runJSON(t, &j, "checkpoint", "pid:"+strconv.Itoa(w.Process.Pid), "--dir", dir); code != exit.OK {
		t.Fatalf("checkpoint exit %d: %s", code, stderr)
	}
	code, out, errOut := runInspect(t, j.ID, "--memory", "--stats", "--ps-tree", "-o", "json")
	if code != exit.OK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var c inspect.Checkpoint
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatal(err)
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "pages-*.img"))
	var disk uint64
	for _, p := range pages {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		disk += uint64(st.Size())
	}
	if c.Run != j.ID || len(c.Processes) != 1 || c.Processes[0].PID != uint32(w.Process.Pid) {
		t.Errorf("run %s, processes %+v", c.Run, c.Processes)
	}
	if disk == 0 || c.Summary.Bytes != disk || c.Stats == nil || c.Stats.PagesWritten*inspect.PageSize != disk ||
		c.Stats.PagesWritten != j.Stats.PagesWritten {
		t.Errorf("pages images hold %d bytes; inspect: summary %+v, stats %+v; journal stats %+v", disk, c.Summary, c.Stats, j.Stats)
	}
}
