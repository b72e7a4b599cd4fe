package inspect

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"testing"

	goldenfile "github.com/ferry-migrate/ferry/internal/golden"
	"github.com/ferry-migrate/ferry/internal/output"
)

// TestGolden dumps each workload with CRIU and compares what inspect
// shows of it, as text and JSON, after normalising what changes per run.
func TestGolden(t *testing.T) {
	ws := workloads(t)
	names := make([]string, 0, len(ws))
	for n := range ws {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			dir := dump(t, ws[name]())
			c, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			c.Check(CheckOptions{})
			c.Select(Sections{All: true})
			normalize(c)
			for _, f := range []output.Format{output.Text, output.JSON} {
				var b bytes.Buffer
				if err := output.Write(&b, f, c); err != nil {
					t.Fatal(err)
				}
				golden(t, name+"."+string(f), b.Bytes())
			}
		})
	}
}

// pagesOnDisk is the size of the pages-*.img files in dir.
func pagesOnDisk(t *testing.T, dir string) uint64 {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "pages-*.img"))
	if err != nil || len(m) == 0 {
		t.Fatalf("no pages images in %s: %v", dir, err)
	}
	var n uint64
	for _, p := range m {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		n += uint64(st.Size())
	}
	return n
}

// TestMemoryMatchesPages checks the memory figure against the pages
// images on disk and CRIU's own count of pages written, as CRIU's test
// suite checks pages written against the image sizes.
func TestMemoryMatchesPages(t *testing.T) {
	ws := workloads(t)
	for _, name := range []string{"mem", "tree"} {
		t.Run(name, func(t *testing.T) {
			dir := dump(t, ws[name]())
			c, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			disk := pagesOnDisk(t, dir)
			var sum uint64
			for _, m := range c.Memory {
				sum += m.Bytes
			}
			if c.Summary.Bytes != disk || sum != disk {
				t.Errorf("inspect says %d bytes (per process %d), pages images hold %d", c.Summary.Bytes, sum, disk)
			}
			if c.Stats == nil || c.Stats.PagesWritten != c.Summary.Pages {
				t.Errorf("stats-dump: %+v, inspect counted %d pages", c.Stats, c.Summary.Pages)
			}
			if name == "mem" && c.Summary.Bytes < memBytes {
				t.Errorf("the mem workload holds %d bytes; inspect found %d", memBytes, c.Summary.Bytes)
			}
			t.Logf("%s: %d pages, %d bytes", name, c.Summary.Pages, c.Summary.Bytes)
		})
	}
}

// golden compares got with testdata/golden/name (go test -update rewrites it).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	goldenfile.Check(t, filepath.Join("testdata", "golden", name), got)
}
