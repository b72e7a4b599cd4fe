package inspect

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	goldenfile "github.com/ferry-migrate/ferry/internal/golden"
)

// seedDir is a real checkpoint of `sleep 1000` holding a deleted-but-open
// file, committed as the fuzzers' seed corpus (make it again with -update).
const seedDir = "testdata/images/sleep-ghost"

// TestSeedImages checks the committed images, so that this package's
// decoding is tested without root or CRIU; with -update it dumps them anew.
func TestSeedImages(t *testing.T) {
	if *goldenfile.Update {
		dir := dump(t, workloads(t)["files"]())
		if err := os.RemoveAll(seedDir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(seedDir, 0o755); err != nil {
			t.Fatal(err)
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Name() == "dump.log" {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(seedDir, e.Name()), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	c, err := Load(seedDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Processes) != 1 || c.Processes[0].Comm != "sleep" || strings.Join(c.Processes[0].Cmdline, " ") != "sleep 1000" {
		t.Errorf("processes: %+v", c.Processes)
	}
	if disk := pagesOnDisk(t, seedDir); c.Summary.Bytes != disk || c.Summary.Pages == 0 {
		t.Errorf("memory: %d pages, %d bytes; pages images hold %d bytes", c.Summary.Pages, c.Summary.Bytes, disk)
	}
	if c.Stats == nil || c.Stats.PagesWritten != c.Summary.Pages {
		t.Errorf("stats: %+v, want %d pages written", c.Stats, c.Summary.Pages)
	}
	var ghost *File
	for i := range c.Files {
		if c.Files[i].Ghost {
			ghost = &c.Files[i]
		}
	}
	if ghost == nil || ghost.FD != 3 || ghost.GhostSize != 13 || ghost.Pos != 13 {
		t.Fatalf("the deleted-but-open file at fd 3 (13 bytes, pos 13) is missing: %+v", c.Files)
	}
	fs := c.Check(CheckOptions{GhostLimit: 10})
	if len(fs) != 1 || fs[0].Kind != "ghost-file" || !fs[0].Problem {
		t.Errorf("a 13-byte ghost over a 10-byte limit: %+v", fs)
	}
	if fs := c.Check(CheckOptions{}); len(fs) != 1 || fs[0].Problem {
		t.Errorf("a 13-byte ghost under the default limit: %+v", fs)
	}
}

// readImages is the checkpoint's files that Load decodes.
func readImages(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(seedDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		for _, p := range []string{"inventory", "pstree", "core-", "ids-", "mm-", "pagemap-", "fdinfo-", "files", "remap-fpath", "ghost-file-", "stats-dump", "pages-"} {
			if strings.HasPrefix(e.Name(), p) {
				out = append(out, e.Name())
			}
		}
	}
	if len(out) < 12 {
		t.Fatalf("the seed images lack files: %v", out)
	}
	return out
}

// copySeed copies the seed images into a new directory, with name's
// contents replaced by b.
func copySeed(t testing.TB, name string, b []byte) string {
	t.Helper()
	dir := t.TempDir()
	ents, err := os.ReadDir(seedDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(seedDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == name {
			data = b
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestDamagedImages truncates, corrupts and replaces each decoded file:
// the error must name it.
func TestDamagedImages(t *testing.T) {
	for _, name := range readImages(t) {
		orig, err := os.ReadFile(filepath.Join(seedDir, name))
		if err != nil {
			t.Fatal(err)
		}
		garbage := append(append([]byte{}, orig[:8]...), 0xff, 0xff, 0xff, 0x7f, 1, 2, 3)
		for _, tc := range []struct {
			what string
			data []byte
		}{
			{"empty", nil},
			{"truncated entry", orig[:13]},
			{"truncated end", orig[:len(orig)-3]},
			{"huge entry", garbage},
			{"foreign", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")},
		} {
			if tc.what == "truncated end" && strings.HasPrefix(name, "ghost-file-") {
				// A ghost file's contents run to the end of the image:
				// a shorter one is a shorter file.
				continue
			}
			t.Run(name+"/"+tc.what, func(t *testing.T) {
				_, err := Load(copySeed(t, name, tc.data))
				if err == nil {
					t.Fatal("no error")
				}
				var ie *ImageError
				if !errors.As(err, &ie) && !strings.Contains(err.Error(), name) {
					t.Fatalf("error does not name %s: %v", name, err)
				}
				if !strings.Contains(err.Error(), name) {
					t.Errorf("error does not name %s: %v", name, err)
				}
			})
		}
	}
}

// BenchmarkLoad decodes the committed checkpoint (one process, 30 pages).
func BenchmarkLoad(b *testing.B) {
	for b.Loop() {
		if _, err := Load(seedDir); err != nil {
			b.Fatal(err)
		}
	}
}
