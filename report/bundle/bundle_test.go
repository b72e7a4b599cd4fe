package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestWriteOpenUnpack(t *testing.T) {
	t.Parallel()
	for _, comp := range []string{Gzip, Zstd} {
		t.Run(comp, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			p := filepath.Join(dir, "b"+Ext(comp))
			w, err := Create(p, WriterOptions{Compression: comp, ModTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
			if err != nil {
				t.Fatal(err)
			}
			adds := []struct {
				path, data string
			}{{"local/uname/uname.txt", "Linux\n"}, {"local/uname/uname.txt", "again\n"}, {"manifest.json", "not the manifest"}}
			for _, a := range adds {
				if _, err := w.Add(Artefact{Path: a.path, Status: StatusOK}, []byte(a.data)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := w.Add(Artefact{Path: "../escape"}, nil); err == nil {
				t.Error("writer accepted ../escape")
			}
			res, err := w.Close(Manifest{Hosts: []Host{{Name: "local", Role: "source", Dir: "local"}}})
			if err != nil {
				t.Fatal(err)
			}
			b, err := Open(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Verify(); err != nil {
				t.Error(err)
			}
			want := []string{"_manifest.json", "local/uname/uname.txt", "local/uname/uname.txt.2", "manifest.json"}
			if diff := cmp.Diff(want, b.Names()); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}
			if d, _ := b.File("local/uname/uname.txt.2"); string(d) != "again\n" {
				t.Errorf("second file: %q", d)
			}
			st, err := os.Stat(p)
			if err != nil || st.Mode().Perm() != FileMode || st.Size() != res.Size {
				t.Errorf("archive: %v %v", st, err)
			}
			out := filepath.Join(dir, "x")
			if err := Unpack(context.Background(), p, out); err != nil {
				t.Fatal(err)
			}
			if st, err := os.Stat(filepath.Join(out, "local/uname/uname.txt")); err != nil || st.Mode().Perm() != FileMode {
				t.Errorf("unpacked file: %v %v", st, err)
			}
			// Tampering shows.
			b.files["local/uname/uname.txt"] = []byte("Linux!\n")
			if err := b.Verify(); err == nil || !strings.Contains(err.Error(), "checksum") {
				t.Errorf("tampered bundle verified: %v", err)
			}
		})
	}
}

// evilTar writes a tar.gz with the given headers (body = name).
func evilTar(t *testing.T, hdrs ...tar.Header) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range hdrs {
		h := h
		if h.Typeflag == tar.TypeReg || h.Typeflag == 0 {
			h.Size = int64(len(h.Name))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(h.Name))
		}
	}
	tw.Close()
	zw.Close()
	p := filepath.Join(t.TempDir(), "evil.tar.gz")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUnpackRefusesEscapes(t *testing.T) {
	t.Parallel()
	ok := tar.Header{Name: "local/ok.txt", Typeflag: tar.TypeReg}
	tests := []struct {
		name string
		hdrs []tar.Header
	}{
		{"dotdot", []tar.Header{ok, {Name: "../../escaped.txt", Typeflag: tar.TypeReg}}},
		{"dotdot inside", []tar.Header{{Name: "local/../../escaped.txt", Typeflag: tar.TypeReg}}},
		{"absolute", []tar.Header{{Name: "/tmp/escaped.txt", Typeflag: tar.TypeReg}}},
		{"symlink out", []tar.Header{{Name: "local/link", Typeflag: tar.TypeSymlink, Linkname: "../../.."}, {Name: "local/link/escaped.txt", Typeflag: tar.TypeReg}}},
		{"symlink absolute", []tar.Header{{Name: "etc", Typeflag: tar.TypeSymlink, Linkname: "/etc"}}},
		{"hard link", []tar.Header{{Name: "local/h", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}}},
		{"device", []tar.Header{{Name: "local/dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}}},
		{"fifo", []tar.Header{{Name: "local/fifo", Typeflag: tar.TypeFifo}}},
		{"control character", []tar.Header{{Name: "local/a\x1b[2Jb", Typeflag: tar.TypeReg}}},
		{"backslash", []tar.Header{{Name: `..\..\escaped.txt`, Typeflag: tar.TypeReg}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := evilTar(t, tt.hdrs...)
			base := t.TempDir()
			dest := filepath.Join(base, "a", "b", "dest")
			err := Unpack(context.Background(), p, dest)
			var ue *UnsafeEntryError
			if !errors.As(err, &ue) || ue.Hint() == "" {
				t.Errorf("Unpack: err = %v, want UnsafeEntryError", err)
			}
			// Nothing landed outside dest.
			var outside []string
			filepath.Walk(base, func(p string, info os.FileInfo, err error) error {
				if err == nil && !strings.HasPrefix(p, dest) && !info.IsDir() {
					outside = append(outside, p)
				}
				return nil
			})
			if _, err := os.Lstat("/tmp/escaped.txt"); err == nil {
				outside = append(outside, "/tmp/escaped.txt")
			}
			if len(outside) > 0 {
				t.Errorf("files outside the destination: %q", outside)
			}
			if _, err := Open(context.Background(), p); !errors.As(err, &ue) {
				t.Errorf("Open: err = %v, want UnsafeEntryError", err)
			}
		})
	}
}

func TestSafeComponent(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"local":             "local",
		"testbed:tb1":       "testbed-tb1",
		"../../etc":         "-..-etc",
		"..":                "_",
		"a\x00b\nc":         "a_b-c",
		"":                  "_",
		"ssh://root@db1:22": "ssh---root@db1-22",
		".hidden":           "hidden",
		"ümlaut":            "_mlaut",
	}
	for in, want := range tests {
		got := SafeComponent(in)
		if got != want {
			t.Errorf("SafeComponent(%q) = %q, want %q", in, got, want)
		}
		if err := CheckName(got); err != nil {
			t.Errorf("SafeComponent(%q) = %q is not a safe name: %v", in, got, err)
		}
	}
}
