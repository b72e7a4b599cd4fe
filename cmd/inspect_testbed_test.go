package cmd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-migrate/ferry/inspect"
	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/probe"
	"github.com/ferry-migrate/ferry/testbed"
)

// TestInspectZoo moves testbed zoo workloads and inspects the images each
// move left: what inspect finds must be what the workload is known to hold.
func TestInspectZoo(t *testing.T) {
	ferry := ownTestbed(t, "i")
	p := os.Getenv(testbed.PrefixEnv)
	h1, h2 := p+"1", p+"2"
	if code, _, errOut := ferry("testbed", "up", "--hosts", "2"); code != 0 {
		t.Fatalf("up: %s", errOut)
	}
	for _, w := range [][]string{{"files", "files"}, {"tree", "tree"}, {"tcp", "tcp"}, {"mem", "mem", "--memory", "32M"}} {
		if code, _, errOut := ferry(append([]string{"testbed", "run", h1}, w...)...); code != 0 {
			t.Fatalf("run %s: %s", w[0], errOut)
		}
	}
	if code, _, errOut := ferry("testbed", "run", h2, "client", "tcp-client", "tcp", "--net", "host"); code != 0 {
		t.Fatalf("run client: %s", errOut)
	}
	inspectMoved := func(t *testing.T, name string) *inspect.Checkpoint {
		t.Helper()
		if code, _, errOut := ferry("testbed", "verify", name); code != 0 {
			t.Fatalf("verify %s: %s", name, errOut)
		}
		if code, out, errOut := ferry("migrate", "testbed:"+name, "--to", "testbed:"+h2, "--keep-images"); code != exit.OK {
			t.Fatalf("migrate %s: exit %d\n%s%s", name, code, out, errOut)
		}
		dirs, _ := filepath.Glob(filepath.Join(os.Getenv(testbed.DirEnv), "images", name+"-1-*"))
		if len(dirs) != 1 {
			t.Fatalf("images of %s: %v", name, dirs)
		}
		code, out, errOut := ferry("inspect", dirs[0], "--all", "--check", "--tcp-established", "-o", "json")
		if code != exit.OK {
			t.Fatalf("inspect %s: exit %d\n%s%s", name, code, out, errOut)
		}
		var c inspect.Checkpoint
		if err := json.Unmarshal([]byte(out), &c); err != nil {
			t.Fatal(err)
		}
		if code, text, errOut := ferry("inspect", dirs[0], "--all", "--check", "--tcp-established"); code != exit.OK {
			t.Errorf("inspect %s as text: exit %d: %s", name, code, errOut)
		} else if testing.Verbose() {
			t.Logf("ferry inspect %s --all --check --tcp-established:\n%s", name, text)
		}
		pages, _ := filepath.Glob(filepath.Join(dirs[0], "pages-*.img"))
		var disk uint64
		for _, p := range pages {
			if st, err := os.Stat(p); err == nil {
				disk += uint64(st.Size())
			}
		}
		if c.Summary.Bytes != disk {
			t.Errorf("%s: inspect shows %d bytes of memory, the pages images hold %d", name, c.Summary.Bytes, disk)
		}
		t.Logf("%s: %d processes, %d pages, %d files, %d sockets, %d mounts, %d findings",
			name, c.Summary.Processes, c.Summary.Pages, c.Summary.Files, c.Summary.Sockets, c.Summary.Mounts, len(c.Findings))
		c.Dir = dirs[0]
		return &c
	}
	t.Run("files", func(t *testing.T) {
		c := inspectMoved(t, "files")
		var ghost bool
		for _, f := range c.Files {
			if f.Ghost && strings.HasSuffix(f.Path, "/data/ghost") && f.GhostSize == 256<<10 && f.Pos == 12345 {
				ghost = true
			}
		}
		var found bool
		for _, f := range c.Findings {
			found = found || (f.Kind == "ghost-file" && !f.Problem)
		}
		if !ghost || !found {
			t.Errorf("the 256 KiB deleted-but-open /data/ghost at offset 12345: files %+v, findings %+v", c.Files, c.Findings)
		}
		// The images' real mount table against this host's filesystems.
		if code, out, errOut := ferry("inspect", c.Dir, "--against", "local"); code != exit.OK || !strings.Contains(out, "checks:") {
			t.Errorf("--against local: exit %d\n%s%s", code, out, errOut)
		}
		// and against a host without proc.
		facts := filepath.Join(t.TempDir(), "noproc.json")
		if err := os.WriteFile(facts, []byte(`{"schema": "`+probe.Schema+`", "host": "b", "filesystems": {"supported": ["ext4"]}}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if code, out, errOut := ferry("inspect", c.Dir, "--against", facts); code != exit.Incompatible || !strings.Contains(out, "mount /proc (proc)") {
			t.Errorf("--against a host without proc: exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("tree", func(t *testing.T) {
		if c := inspectMoved(t, "tree"); c.Summary.Processes < 3 {
			t.Errorf("tree: %+v", c.Processes)
		}
	})
	t.Run("tcp", func(t *testing.T) {
		c := inspectMoved(t, "tcp")
		var est bool
		for _, s := range c.Sockets {
			est = est || (strings.HasPrefix(s.Kind, "tcp") && s.State == "ESTABLISHED")
		}
		if !est {
			t.Errorf("no established TCP connection: %+v", c.Sockets)
		}
	})
	t.Run("mem", func(t *testing.T) {
		if c := inspectMoved(t, "mem"); c.Summary.Bytes < 32<<20 {
			t.Errorf("mem holds 32 MiB; inspect shows %d bytes", c.Summary.Bytes)
		}
	})
}
