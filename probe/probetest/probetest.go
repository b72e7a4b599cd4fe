// Package probetest builds captured hosts for tests from the real captures
// under probe/testdata: a host directory plus a variant overlay.
package probetest

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Testdata is the absolute path of probe/testdata.
func Testdata() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata")
}

// Host is the path of a captured host under probe/testdata/hosts.
func Host(name string) string { return filepath.Join(Testdata(), "hosts", name) }

// Compose copies captured host base into a temporary directory, copies
// variant's files over it (variant "" copies none) and removes the paths
// its DELETE file lists. It returns the directory.
func Compose(t testing.TB, base, variant string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), strings.TrimSuffix(base+"+"+variant, "+"))
	copyTree(t, Host(base), dst)
	if variant == "" {
		return dst
	}
	vdir := filepath.Join(Testdata(), "variants", variant)
	if _, err := os.Stat(vdir); err != nil {
		t.Fatalf("variant %s: %v", variant, err)
	}
	copyTree(t, vdir, dst)
	del := filepath.Join(dst, "DELETE")
	b, err := os.ReadFile(del)
	if err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if p := strings.TrimSpace(sc.Text()); p != "" {
				if err := os.RemoveAll(filepath.Join(dst, filepath.FromSlash(p))); err != nil {
					t.Fatal(err)
				}
			}
		}
		os.Remove(del)
	}
	return dst
}

func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}
