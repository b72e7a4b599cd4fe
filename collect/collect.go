package collect

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/report/bundle"
)

// Defaults of Options.
const (
	DefaultTimeout  = 30 * time.Second
	DefaultMaxSize  = 25 << 20
	DefaultParallel = 4
)

// Roles of the hosts in a bundle.
const (
	RoleSource = "source"
	RoleTarget = "target"
	RoleHost   = "host"
)

// Options tune a collection.
type Options struct {
	// Timeout bounds each collector (default 30 s).
	Timeout time.Duration
	// MaxSize caps each file (default 25 MiB); the tail is kept.
	MaxSize int64
	// Parallel is how many collectors run at once on each host (default 4).
	Parallel int
	// RedactNetwork maps addresses and host names to placeholders.
	RedactNetwork bool
	// Compression of the bundle: bundle.Gzip (default) or bundle.Zstd.
	Compression string
	// CRIU is the CRIU binary to run on the hosts (default "criu").
	CRIU string
	// Now is the clock (tests inject one).
	Now func() time.Time
	// Ferry is the version recorded in the manifest.
	Ferry string
	// Progress, when set, receives one line per finished collector.
	Progress func(line string)
}

func (o *Options) defaults() {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Target is a host to collect from and its role.
type Target struct {
	Host host.Host
	Role string
}

// Request says what goes into a bundle.
type Request struct {
	// Hosts to collect host-level artefacts from, source first.
	Hosts []Target
	// Container, when set, adds its artefacts on every host.
	Container *Container
	// Store and RunID, when RunID is set, add the run's journal and logs.
	Store migrate.Store
	RunID string
	// Extra collectors run on every host (the facts collector).
	Extra []Collector
	// Output is the bundle's path.
	Output string
	Options
}

// Result is a written bundle.
type Result struct {
	Bundle   bundle.Result   `json:"bundle"`
	Manifest bundle.Manifest `json:"manifest"`
}

// PartialError says the bundle was written but some artefacts could not be
// collected.
type PartialError struct {
	Path     string
	Failures []string
}

func (e *PartialError) Error() string {
	if len(e.Failures) == 1 {
		return fmt.Sprintf("bundle %s is partial: %s could not be collected", e.Path, e.Failures[0])
	}
	return fmt.Sprintf("bundle %s is partial: %d artefacts could not be collected, first %s", e.Path, len(e.Failures), e.Failures[0])
}

func (e *PartialError) Hint() string {
	return "the bundle is still worth sending; the manifest lists what is missing and why (run as root for dmesg and daemon logs, raise --timeout for slow commands)"
}

type job struct {
	target Target
	dir    string
	c      Collector
}

// Collect runs every collector of req and writes the bundle. The error is
// a *PartialError when the bundle was written with failures, and another
// error when no bundle could be written.
func Collect(ctx context.Context, req Request) (*Result, error) {
	req.Options.defaults()
	if len(req.Hosts) == 0 {
		return nil, errors.New("collect: no host given")
	}
	if req.Output == "" {
		return nil, errors.New("collect: no output path given")
	}
	now := req.Now().UTC()
	red := NewRedactor(req.RedactNetwork)
	hosts := uniqueHosts(req.Hosts)
	if req.RedactNetwork {
		for _, t := range hosts {
			red.AddHostnames(hostnamesOf(ctx, t.Host)...)
		}
	}

	m := bundle.Manifest{Created: now, Ferry: req.Ferry, RedactNetwork: req.RedactNetwork}
	var jobs []job
	used := map[string]bool{}
	for _, t := range hosts {
		dir := bundle.SafeComponent(strings.Replace(red.Label(t.Host.Name()), "://", "-", 1))
		if used[dir] {
			dir = bundle.SafeComponent(dir + "-" + t.Role)
		}
		used[dir] = true
		m.Hosts = append(m.Hosts, bundle.Host{Name: red.Label(t.Host.Name()), Role: t.Role, Dir: dir})
		cs := HostCollectors(req.CRIU)
		if req.Container != nil {
			cs = append(cs, ContainerCollectors(*req.Container)...)
		}
		cs = append(cs, req.Extra...)
		for _, c := range cs {
			jobs = append(jobs, job{target: t, dir: dir, c: c})
		}
	}
	if req.Container != nil {
		m.Container = req.Container.String()
	}
	if req.RunID != "" {
		j, err := req.Store.Load(req.RunID)
		if err != nil {
			return nil, err
		}
		m.Run = runSummary(j)
		m.Run.Error = string(mustRedact(red, m.Run.Error))
		for i, a := range m.Run.Command {
			m.Run.Command[i] = string(mustRedact(red, a))
		}
		jobs = append(jobs, job{target: Target{Host: host.Local{}, Role: "run"}, dir: "run", c: RunDir{Store: req.Store, ID: req.RunID}})
	}

	w, err := bundle.Create(req.Output, bundle.WriterOptions{Compression: req.Compression, ModTime: now})
	if err != nil {
		return nil, err
	}
	var (
		mu       sync.Mutex
		failures []string
		wg       sync.WaitGroup
		sems     = map[string]chan struct{}{}
		werr     error
	)
	for _, jb := range jobs {
		if sems[jb.dir] == nil {
			sems[jb.dir] = make(chan struct{}, req.Parallel)
		}
	}
	// Hosts are worked on side by side, each with its own slots: one slow
	// host does not hold the others back.
	for _, jb := range jobs {
		wg.Add(1)
		go func(jb job) {
			defer wg.Done()
			sem := sems[jb.dir]
			sem <- struct{}{}
			defer func() { <-sem }()
			outs := runCollector(ctx, jb, req.Options)
			for _, o := range outs {
				a, data := artefact(jb, o, red)
				rec, err := w.Add(a, data)
				mu.Lock()
				if err != nil && werr == nil {
					werr = err
				}
				if rec.Failed() {
					failures = append(failures, fmt.Sprintf("%s: %s", rec.Path, rec.Error))
				}
				mu.Unlock()
				if req.Progress != nil {
					req.Progress(fmt.Sprintf("%-9s %s (%d bytes, %s)", rec.Status, rec.Path, rec.Size, o.Duration.Round(time.Millisecond)))
				}
			}
		}(jb)
	}
	wg.Wait()
	if werr != nil {
		w.Abort()
		return nil, werr
	}
	sort.Strings(failures)
	m.Failures = append([]string{}, failures...)
	res, err := w.Close(m)
	if err != nil {
		return nil, err
	}
	m.Schema = bundle.Schema
	m.Artefacts = w.Artefacts()
	out := &Result{Bundle: *res, Manifest: m}
	if len(failures) > 0 {
		return out, &PartialError{Path: res.Path, Failures: failures}
	}
	return out, nil
}

// runCollector runs one collector with its timeout; a panic in it becomes a
// failed output instead of ending the collection.
func runCollector(ctx context.Context, jb job, opt Options) (outs []Output) {
	ctx, cancel := context.WithTimeout(ctx, opt.Timeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			outs = []Output{{Name: "_panic", ExitCode: -1, OriginalSize: -1,
				Err: fmt.Errorf("collector %s panicked: %v\n%s", jb.c.Name(), r, debug.Stack())}}
		}
	}()
	outs = jb.c.Collect(ctx, jb.target.Host, Limits{MaxSize: opt.MaxSize})
	for i := range outs {
		if outs[i].Err != nil && !outs[i].NonZero && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			outs[i].Err = fmt.Errorf("cut at the %s timeout: %w", opt.Timeout, outs[i].Err)
		}
	}
	return outs
}

// artefact redacts an output and describes it for the manifest.
func artefact(jb job, o Output, red *Redactor) (bundle.Artefact, []byte) {
	a := bundle.Artefact{
		Path:         jb.dir + "/" + bundle.SafeComponent(jb.c.Name()) + "/" + safeName(o.Name),
		Host:         red.Label(jb.target.Host.Name()),
		Collector:    jb.c.Name(),
		Source:       red.Label(o.Source),
		ExitCode:     o.ExitCode,
		Duration:     o.Duration,
		Truncated:    o.Truncated,
		OriginalSize: o.OriginalSize,
		Status:       bundle.StatusOK,
	}
	for _, w := range o.Command {
		a.Command = append(a.Command, string(mustRedact(red, w)))
	}
	switch {
	case o.Absent:
		a.Status = bundle.StatusAbsent
	case o.NonZero:
		a.Status = bundle.StatusNonZero
	case o.Err != nil:
		a.Status = bundle.StatusFailed
	}
	if o.Err != nil {
		msg, _ := red.Redact([]byte(o.Err.Error()))
		a.Error = string(msg)
	}
	data := o.Data
	if len(data) > 0 && !o.Binary {
		var c Counts
		data, c = red.Redact(data)
		a.Redactions = c.Total()
		if a.Redactions > 0 {
			a.Redacted = map[string]int(c)
		}
	}
	return a, data
}

func mustRedact(red *Redactor, s string) []byte {
	b, _ := red.Redact([]byte(s))
	return b
}

// uniqueHosts drops a host given twice (source and target the same
// machine), keeping the first role and joining the roles.
func uniqueHosts(ts []Target) []Target {
	var out []Target
	idx := map[string]int{}
	for _, t := range ts {
		if i, ok := idx[t.Host.Name()]; ok {
			if !strings.Contains(out[i].Role, t.Role) {
				out[i].Role += "+" + t.Role
			}
			continue
		}
		idx[t.Host.Name()] = len(out)
		out = append(out, t)
	}
	return out
}

// hostnamesOf is what --redact-network hides for h: its kernel host name
// and the name it was given.
func hostnamesOf(ctx context.Context, h host.Host) []string {
	var names []string
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if b, err := host.ReadFile(ctx, h, "/proc/sys/kernel/hostname", 4096); err == nil {
		names = append(names, strings.TrimSpace(string(b)))
	}
	label := h.Name()
	if rest, ok := strings.CutPrefix(label, "ssh://"); ok {
		if _, hn, ok := strings.Cut(rest, "@"); ok {
			rest = hn
		}
		if i := strings.LastIndex(rest, ":"); i > 0 && !strings.HasSuffix(rest, "]") {
			rest = rest[:i]
		}
		names = append(names, strings.Trim(rest, "[]"))
	}
	return names
}

// ForRun writes the bundle of a run that failed: the run's journal and
// logs, the host-level artefacts of every host, and the container's when the
// run was about one. The bundle goes into the run directory, as
// bundle-<id>.tar.gz. It returns the bundle's path; with a *PartialError the
// bundle exists but is incomplete. extra collectors run on every host (the
// facts collector).
func ForRun(ctx context.Context, hosts []Target, store migrate.Store, runID string, opt Options, extra ...Collector) (string, error) {
	j, err := store.Load(runID)
	if err != nil {
		return "", err
	}
	req := Request{Hosts: hosts, Store: store, RunID: runID, Options: opt, Extra: extra}
	if c, err := ParseContainer(j.Target); err == nil {
		req.Container = &c
	}
	req.Output = filepath.Join(store.RunDir(runID), "bundle-"+runID+bundle.Ext(opt.Compression))
	res, err := Collect(ctx, req)
	if res == nil {
		return "", err
	}
	return res.Bundle.Path, err
}
