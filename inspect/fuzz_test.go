package inspect

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
)

// seeds adds the committed images whose names start with prefix.
func seeds(f *testing.F, prefix string) {
	m, _ := filepath.Glob(filepath.Join(seedDir, prefix+"*"))
	if len(m) == 0 {
		f.Fatalf("no seed images %s* in %s", prefix, seedDir)
	}
	for _, p := range m {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzEntries fuzzes the framing reader and protobuf decoding of
// entry-per-record images (files.img, pstree.img).
func FuzzEntries(f *testing.F) {
	seeds(f, "files")
	seeds(f, "pstree")
	f.Fuzz(func(t *testing.T, b []byte) {
		fs, err := decodeAll[fdinfo.FileEntry]("files.img", b, magicFiles)
		if err == nil && len(b) < 8+4*len(fs) {
			t.Fatalf("%d bytes decoded as %d entries", len(b), len(fs))
		}
		_, _ = decodeAll[pstree.PstreeEntry]("pstree.img", b, magicPstree)
	})
}

// FuzzReadPagemap fuzzes the pagemap reader.
func FuzzReadPagemap(f *testing.F) {
	seeds(f, "pagemap-")
	f.Fuzz(func(t *testing.T, b []byte) {
		pm, err := ReadPagemap("pagemap-1.img", b)
		if err != nil {
			var ie *ImageError
			if !errors.As(err, &ie) || ie.File != "pagemap-1.img" {
				t.Fatalf("error without the file: %v", err)
			}
			return
		}
		for _, e := range pm.Entries {
			PageCount(e)
			where(e)
		}
	})
}

// FuzzGhostSize fuzzes the reader of deleted files' images.
func FuzzGhostSize(f *testing.F) {
	seeds(f, "ghost-file-")
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := ghostSize("ghost-file-1.img", b); err != nil && !strings.Contains(err.Error(), "ghost-file-1.img") {
			t.Fatalf("error without the file: %v", err)
		}
	})
}

// FuzzLoad replaces one of the seed checkpoint's images with fuzzed bytes
// and loads the whole directory.
func FuzzLoad(f *testing.F) {
	ents, err := os.ReadDir(seedDir)
	if err != nil {
		f.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "pages-") { // big, and read only at offsets
			names = append(names, e.Name())
		}
	}
	for i, n := range names {
		b, err := os.ReadFile(filepath.Join(seedDir, n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), b)
	}
	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		name := names[int(which)%len(names)]
		c, err := Load(copySeed(t, name, b))
		if err != nil {
			if strings.Contains(err.Error(), "internal error") {
				t.Fatalf("decoding %s panicked: %v", name, err)
			}
			if !strings.Contains(err.Error(), name) {
				t.Fatalf("error does not name %s: %v", name, err)
			}
			return
		}
		c.Check(CheckOptions{})
		c.Select(Sections{All: true})
		if err := c.WriteText(discard{}); err != nil {
			t.Fatal(err)
		}
	})
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }
