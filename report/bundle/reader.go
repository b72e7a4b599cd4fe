package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"

	"github.com/mholt/archives"
)

// MaxEntry bounds one entry read from a bundle: a bundle's entries are capped
// when written, so anything larger is not a ferry bundle.
const MaxEntry = 512 << 20

// UnsafeEntryError is an archive entry that would land outside the
// directory it is unpacked into, or is not a plain file or directory.
type UnsafeEntryError struct {
	Name   string
	Reason string
}

func (e *UnsafeEntryError) Error() string {
	return fmt.Sprintf("unsafe bundle entry %q: %s", e.Name, e.Reason)
}

func (e *UnsafeEntryError) Hint() string {
	return "this archive was not written by ferry, or was tampered with; do not unpack it with other tools either"
}

// walk calls fn for every regular file of the archive at p, after checking
// every entry: clean relative names only, directories and regular files
// only (no links, devices or fifos).
func walk(ctx context.Context, p string, fn func(name string, r io.Reader) error) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("open bundle: %w", err)
	}
	defer f.Close()
	format, stream, err := archives.Identify(ctx, p, f)
	if err != nil {
		return fmt.Errorf("open bundle %s: not a tar.gz or tar.zst archive: %w", p, err)
	}
	ex, ok := format.(archives.Extractor)
	if !ok {
		return fmt.Errorf("open bundle %s: %s is not an archive", p, format.Extension())
	}
	return ex.Extract(ctx, stream, func(ctx context.Context, fi archives.FileInfo) error {
		name := fi.NameInArchive
		if fi.IsDir() {
			name = path.Clean(name)
		}
		if err := CheckName(name); err != nil {
			return &UnsafeEntryError{Name: fi.NameInArchive, Reason: err.Error()}
		}
		switch {
		case fi.IsDir():
			return nil
		case fi.LinkTarget != "" || fi.Mode()&fs.ModeSymlink != 0:
			return &UnsafeEntryError{Name: name, Reason: "links are not allowed"}
		case !fi.Mode().IsRegular():
			return &UnsafeEntryError{Name: name, Reason: "only regular files are allowed"}
		case fi.Size() > MaxEntry:
			return &UnsafeEntryError{Name: name, Reason: fmt.Sprintf("larger than %d bytes", MaxEntry)}
		}
		rc, err := fi.Open()
		if err != nil {
			return err
		}
		defer rc.Close()
		return fn(name, io.LimitReader(rc, MaxEntry))
	})
}

// Bundle is a bundle read into memory.
type Bundle struct {
	Path     string
	Manifest Manifest
	files    map[string][]byte
}

// Open reads the bundle at p: manifest and files.
func Open(ctx context.Context, p string) (*Bundle, error) {
	b := &Bundle{Path: p, files: map[string][]byte{}}
	err := walk(ctx, p, func(name string, r io.Reader) error {
		if _, dup := b.files[name]; dup {
			return &UnsafeEntryError{Name: name, Reason: "appears twice"}
		}
		data, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		b.files[name] = data
		return nil
	})
	if err != nil {
		return nil, err
	}
	raw, ok := b.files[ManifestName]
	if !ok {
		return nil, fmt.Errorf("open bundle %s: no %s: not a ferry bundle", p, ManifestName)
	}
	if err := json.Unmarshal(raw, &b.Manifest); err != nil {
		return nil, fmt.Errorf("open bundle %s: %s: %w", p, ManifestName, err)
	}
	if b.Manifest.Schema != Schema {
		return nil, fmt.Errorf("open bundle %s: schema %q, this ferry reads %q", p, b.Manifest.Schema, Schema)
	}
	return b, nil
}

// File returns the content of an entry.
func (b *Bundle) File(name string) ([]byte, bool) {
	d, ok := b.files[name]
	return d, ok
}

// Names lists the entries, sorted.
func (b *Bundle) Names() []string {
	out := make([]string, 0, len(b.files))
	for n := range b.files {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Verify checks every artefact of the manifest against the file in the
// archive (present, size, sha256) and that no file is unlisted.
func (b *Bundle) Verify() error {
	var errs []error
	listed := map[string]bool{ManifestName: true}
	for _, a := range b.Manifest.Artefacts {
		listed[a.Path] = true
		d, ok := b.files[a.Path]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: listed but missing", a.Path))
			continue
		}
		sum := sha256.Sum256(d)
		if int64(len(d)) != a.Size || hex.EncodeToString(sum[:]) != a.SHA256 {
			errs = append(errs, fmt.Errorf("%s: checksum or size differs from the manifest", a.Path))
		}
	}
	for n := range b.files {
		if !listed[n] {
			errs = append(errs, fmt.Errorf("%s: not in the manifest", n))
		}
	}
	return errors.Join(errs...)
}

// Unpack extracts the archive at p into dir, which must be empty or absent.
// Every entry is checked first (see walk) and written through an os.Root,
// so nothing can land outside dir even if the checks missed something.
func Unpack(ctx context.Context, p, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) > 0 {
		if err == nil {
			err = errors.New("directory is not empty")
		}
		return fmt.Errorf("unpack into %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	return walk(ctx, p, func(name string, r io.Reader) error {
		if d := path.Dir(name); d != "." {
			if err := root.MkdirAll(d, 0o700); err != nil {
				return err
			}
		}
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, FileMode)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, r); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
}
