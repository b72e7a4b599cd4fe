package bundle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/mholt/archives"
)

// Compressions a bundle can be written with.
const (
	Gzip = "gz"
	Zstd = "zstd"
)

// Ext is the file name extension of a bundle compressed with c.
func Ext(c string) string {
	if c == Zstd {
		return ".tar.zst"
	}
	return ".tar.gz"
}

// FileMode is the mode of the archive and of every entry in it: bundles hold
// logs and configuration that are only for their owner's eyes until sent.
const FileMode = 0o600

// WriterOptions tune Create.
type WriterOptions struct {
	// Compression is Gzip (default) or Zstd.
	Compression string
	// ModTime stamps every entry (tests inject a fixed time).
	ModTime time.Time
}

// Writer streams artefacts into a new bundle as they come. It is safe for
// concurrent use. Nothing is visible at the final path until Close succeeds:
// the archive is written to a temporary file beside it and renamed.
type Writer struct {
	path, tmp string
	f         *os.File
	out       *hashWriter
	jobs      chan archives.ArchiveAsyncJob
	done      chan error
	mtime     time.Time

	mu        sync.Mutex
	names     map[string]bool
	artefacts []Artefact
	closed    bool
}

// Create starts a bundle at path.
func Create(path string, opt WriterOptions) (*Writer, error) {
	var comp archives.Compression = archives.Gz{}
	switch opt.Compression {
	case "", Gzip:
	case Zstd:
		comp = archives.Zstd{}
	default:
		return nil, fmt.Errorf("unknown compression %q (want gz or zstd)", opt.Compression)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.partial")
	if err != nil {
		return nil, fmt.Errorf("create bundle: %w", err)
	}
	if err := f.Chmod(FileMode); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("create bundle: %w", err)
	}
	mtime := opt.ModTime
	if mtime.IsZero() {
		mtime = time.Now()
	}
	w := &Writer{
		path: path, tmp: f.Name(), f: f,
		out:   &hashWriter{w: f, h: sha256.New()},
		jobs:  make(chan archives.ArchiveAsyncJob),
		done:  make(chan error, 1),
		mtime: mtime.UTC().Truncate(time.Second),
		names: map[string]bool{},
	}
	format := archives.CompressedArchive{Compression: comp, Archival: archives.Tar{NumericUIDGID: true}}
	go func() { w.done <- format.ArchiveAsync(context.Background(), w.out, w.jobs) }()
	return w, nil
}

// Add writes one artefact: its Path must be a clean relative name (see
// CheckName); a name already taken gets a numeric suffix. Size and SHA256
// are filled in from data. The artefact as recorded is returned.
func (w *Writer) Add(a Artefact, data []byte) (Artefact, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return a, errors.New("bundle already closed")
	}
	if err := CheckName(a.Path); err != nil {
		return a, err
	}
	if a.Path == ManifestName {
		a.Path = "_" + a.Path
	}
	base := a.Path
	for i := 2; w.names[a.Path]; i++ {
		a.Path = base + "." + strconv.Itoa(i)
	}
	sum := sha256.Sum256(data)
	a.Size = int64(len(data))
	a.SHA256 = hex.EncodeToString(sum[:])
	if err := w.write(a.Path, data); err != nil {
		return a, err
	}
	w.names[a.Path] = true
	w.artefacts = append(w.artefacts, a)
	return a, nil
}

func (w *Writer) write(name string, data []byte) error {
	res := make(chan error, 1)
	fi := memInfo{name: filepath.Base(name), size: int64(len(data)), mtime: w.mtime}
	w.jobs <- archives.ArchiveAsyncJob{
		File: archives.FileInfo{
			FileInfo:      fi,
			NameInArchive: name,
			Open:          func() (fs.File, error) { return &memFile{memInfo: fi, r: bytes.NewReader(data)}, nil },
		},
		Result: res,
	}
	if err := <-res; err != nil {
		return fmt.Errorf("write %s into the bundle: %w", name, err)
	}
	return w.out.err
}

// Artefacts returns what was added so far, sorted by path.
func (w *Writer) Artefacts() []Artefact {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := append([]Artefact(nil), w.artefacts...)
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Result is a finished bundle.
type Result struct {
	Path string `json:"path"`
	// SHA256 is the archive's checksum, also written to Path+".sha256".
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Close writes m as manifest.json (its Schema and Artefacts filled in here),
// finishes the archive, renames it into place and writes the .sha256 file.
func (w *Writer) Close(m Manifest) (*Result, error) {
	m.Schema = Schema
	m.Artefacts = w.Artefacts()
	if m.Failures == nil {
		m.Failures = []string{}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		w.Abort()
		return nil, err
	}
	w.mu.Lock()
	err = w.write(ManifestName, append(b, '\n'))
	w.closed = true
	w.mu.Unlock()
	close(w.jobs)
	if derr := <-w.done; err == nil {
		err = derr
	}
	if err == nil {
		err = w.out.err
	}
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(w.tmp, w.path)
	}
	if err != nil {
		os.Remove(w.tmp)
		return nil, fmt.Errorf("write bundle %s: %w", w.path, err)
	}
	sum := hex.EncodeToString(w.out.h.Sum(nil))
	line := sum + "  " + filepath.Base(w.path) + "\n"
	if err := os.WriteFile(w.path+".sha256", []byte(line), 0o644); err != nil {
		return nil, fmt.Errorf("write bundle checksum: %w", err)
	}
	return &Result{Path: w.path, SHA256: sum, Size: w.out.n}, nil
}

// Abort drops the bundle: nothing is left at the final path.
func (w *Writer) Abort() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.jobs)
		<-w.done
	}
	w.mu.Unlock()
	w.f.Close()
	os.Remove(w.tmp)
}

// hashWriter hashes and counts what it writes and remembers the first
// error: the archiver ignores the errors of its final flushes.
type hashWriter struct {
	w   io.Writer
	h   hash.Hash
	n   int64
	err error
}

func (h *hashWriter) Write(p []byte) (int, error) {
	if h.err != nil {
		return 0, h.err
	}
	n, err := h.w.Write(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	if err != nil {
		h.err = err
	}
	return n, err
}

// memInfo and memFile present a byte slice as a regular file of mode 0600.
type memInfo struct {
	name  string
	size  int64
	mtime time.Time
}

func (m memInfo) Name() string       { return m.name }
func (m memInfo) Size() int64        { return m.size }
func (m memInfo) Mode() fs.FileMode  { return FileMode }
func (m memInfo) ModTime() time.Time { return m.mtime }
func (m memInfo) IsDir() bool        { return false }
func (m memInfo) Sys() any           { return nil }

type memFile struct {
	memInfo
	r *bytes.Reader
}

func (f *memFile) Stat() (fs.FileInfo, error) { return f.memInfo, nil }
func (f *memFile) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f *memFile) Close() error               { return nil }
