package host

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/ferry-migrate/ferry/report/bundle"
)

func TestBundleHost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "b.tar.gz")
	w, err := bundle.Create(p, bundle.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	add := func(a bundle.Artefact, data string) {
		if _, err := w.Add(a, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	add(bundle.Artefact{Path: "src/uname/uname.txt", Command: []string{"uname", "-a"}, Status: bundle.StatusOK}, "Linux src 6.18\n")
	add(bundle.Artefact{Path: "src/mountinfo/proc-self-mountinfo", Source: "/proc/self/mountinfo", Status: bundle.StatusOK, ExitCode: -1}, "22 1 8:1 / / rw\n")
	add(bundle.Artefact{Path: "src/incus-info/incus-info.txt", Command: []string{"incus", "info"}, Status: bundle.StatusAbsent, ExitCode: -1}, "")
	add(bundle.Artefact{Path: "src/lxd-bridge/etc-default-lxd-bridge", Source: "/etc/default/lxd-bridge", Status: bundle.StatusAbsent, ExitCode: -1}, "")
	add(bundle.Artefact{Path: "src/facts/facts.json", Collector: FactsCollector, Source: "ferry:facts", Status: bundle.StatusOK, ExitCode: -1}, `{"schema":"ferry.facts/v1"}`)
	add(bundle.Artefact{Path: "tgt/uname/uname.txt", Command: []string{"uname", "-a"}, Status: bundle.StatusOK}, "Linux tgt 6.1\n")
	if _, err := w.Close(bundle.Manifest{Hosts: []bundle.Host{{Name: "testbed:src", Role: "source", Dir: "src"}, {Name: "testbed:tgt", Role: "target", Dir: "tgt"}}}); err != nil {
		t.Fatal(err)
	}
	if !IsBundlePath(p) || !IsBundlePath(p+"#target") || IsBundlePath("/tmp/dir") {
		t.Error("IsBundlePath")
	}

	src, err := OpenBundle(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := Output(ctx, src, "uname", "-a"); err != nil || string(out) != "Linux src 6.18\n" {
		t.Errorf("uname on source: %q %v", out, err)
	}
	if b, err := ReadFile(ctx, src, "/proc/self/mountinfo", 0); err != nil || string(b) != "22 1 8:1 / / rw\n" {
		t.Errorf("mountinfo: %q %v", b, err)
	}
	if ok, err := Exists(ctx, src, "/etc/default/lxd-bridge"); ok || err != nil {
		t.Errorf("absent file exists: %v %v", ok, err)
	}
	if _, err := src.Open(ctx, "/etc/shadow"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("uncaptured file: %v", err)
	}
	if _, err := src.Run(ctx, []string{"incus", "info"}, RunOptions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("absent command: %v", err)
	}
	if _, err := src.Run(ctx, []string{"rm", "-rf", "/"}, RunOptions{}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("uncaptured command: %v", err)
	}

	if f, ok := src.Facts(); !ok || string(f) != `{"schema":"ferry.facts/v1"}` {
		t.Errorf("source facts: %q %v", f, ok)
	}
	tgt, err := OpenBundle(ctx, p+"#target")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tgt.Facts(); ok {
		t.Error("target has facts")
	}
	if out, err := Output(ctx, tgt, "uname", "-a"); err != nil || string(out) != "Linux tgt 6.1\n" {
		t.Errorf("uname on target: %q %v", out, err)
	}
	var se *SpecError
	if _, err := OpenBundle(ctx, p+"#nope"); !errors.As(err, &se) {
		t.Errorf("unknown host: %v", err)
	}
	if _, err := OpenBundle(ctx, filepath.Join(t.TempDir(), "none.tar.gz")); !errors.As(err, &se) {
		t.Errorf("missing bundle: %v", err)
	}
}
