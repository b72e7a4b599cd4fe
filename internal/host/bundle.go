package host

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/ferry-migrate/ferry/report/bundle"
)

// Bundle is a read-only host made from one host of a ferry bug-report
// bundle: Open returns the files the bundle captured from that host (by
// their path on the host: /proc/self/mountinfo), Run returns the recorded
// output of a command the bundle captured (uname -a) and ErrReadOnly for any
// other. So `ferry check` and `ferry probe` can read the host of a report.
type Bundle struct {
	b    *bundle.Bundle
	host bundle.Host
}

var _ Host = (*Bundle)(nil)

// IsBundlePath says whether a host spec names a bundle file: the spec parser
// routes it to OpenBundle.
func IsBundlePath(spec string) bool {
	p, _, _ := strings.Cut(spec, "#")
	return strings.HasSuffix(p, ".tar.gz") || strings.HasSuffix(p, ".tgz") || strings.HasSuffix(p, ".tar.zst")
}

// OpenBundle opens the bundle at spec, "FILE.tar.gz" or "FILE.tar.gz#ROLE"
// (source, target) or "FILE.tar.gz#DIR" (a host's directory in the bundle).
// Without a fragment the first host (the source) is used.
func OpenBundle(ctx context.Context, spec string) (*Bundle, error) {
	p, which, _ := strings.Cut(spec, "#")
	b, err := bundle.Open(ctx, p)
	if err != nil {
		return nil, &SpecError{Spec: spec, Reason: err.Error()}
	}
	hosts := b.Manifest.Hosts
	if len(hosts) == 0 {
		return nil, &SpecError{Spec: spec, Reason: "the bundle holds no host"}
	}
	if which == "" {
		return &Bundle{b: b, host: hosts[0]}, nil
	}
	for _, h := range hosts {
		if h.Dir == which || slices.Contains(strings.Split(h.Role, "+"), which) {
			return &Bundle{b: b, host: h}, nil
		}
	}
	var names []string
	for _, h := range hosts {
		names = append(names, h.Role+" ("+h.Dir+")")
	}
	return nil, &SpecError{Spec: spec, Reason: "no host " + which + " in the bundle; it holds " + strings.Join(names, ", ")}
}

// Name is "bundle:FILE#DIR".
func (h *Bundle) Name() string { return "bundle:" + h.b.Path + "#" + h.host.Dir }

// Host is the bundle's record of this host.
func (h *Bundle) Host() bundle.Host { return h.host }

// Manifest is the whole bundle's manifest.
func (h *Bundle) Manifest() bundle.Manifest { return h.b.Manifest }

// artefact finds the artefact of this host matching f.
func (h *Bundle) artefact(f func(bundle.Artefact) bool) (bundle.Artefact, bool) {
	for _, a := range h.b.Manifest.Artefacts {
		if strings.HasPrefix(a.Path, h.host.Dir+"/") && f(a) {
			return a, true
		}
	}
	return bundle.Artefact{}, false
}

func (h *Bundle) Open(_ context.Context, p string) (io.ReadCloser, error) {
	want := path.Clean("/" + p)
	a, ok := h.artefact(func(a bundle.Artefact) bool { return a.Source != "" && path.Clean(a.Source) == want })
	if !ok || a.Status == bundle.StatusAbsent {
		return nil, fmt.Errorf("%s: %s: %w", h.Name(), p, fs.ErrNotExist)
	}
	data, ok := h.b.File(a.Path)
	if !ok {
		return nil, fmt.Errorf("%s: %s: listed in the manifest but missing: %w", h.Name(), p, fs.ErrNotExist)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

func (h *Bundle) Run(_ context.Context, argv []string, opt RunOptions) (*Result, error) {
	a, ok := h.artefact(func(a bundle.Artefact) bool { return slices.Equal(a.Command, argv) })
	if !ok {
		return nil, &CommandError{Host: h.Name(), Argv: argv, ExitCode: -1, Err: ErrReadOnly}
	}
	if a.Status == bundle.StatusAbsent {
		return nil, &CommandError{Host: h.Name(), Argv: argv, ExitCode: -1, Err: ErrNotFound}
	}
	data, _ := h.b.File(a.Path)
	res := &Result{Argv: argv, Stdout: data, ExitCode: a.ExitCode, Duration: a.Duration}
	if opt.Stdout != nil {
		if _, err := opt.Stdout.Write(data); err != nil {
			return res, err
		}
		res.Stdout = nil
	}
	if a.Status != bundle.StatusOK {
		return res, &CommandError{Host: h.Name(), Argv: argv, ExitCode: a.ExitCode, Stderr: trimStderr(data), Err: fmt.Errorf("recorded as %s: %s", a.Status, a.Error)}
	}
	return res, nil
}

// FactsCollector is the collector that stores ferry's facts of a host in a
// bundle (ferry.facts/v1 JSON).
const FactsCollector = "facts"

// Facts returns the ferry facts (ferry.facts/v1 JSON) the bundle holds for
// this host, if it was collected with them: `ferry probe` and `ferry check`
// read these instead of probing the captured files.
func (h *Bundle) Facts() ([]byte, bool) {
	a, ok := h.artefact(func(a bundle.Artefact) bool { return a.Collector == FactsCollector && a.Status == bundle.StatusOK })
	if !ok {
		return nil, false
	}
	return h.b.File(a.Path)
}
