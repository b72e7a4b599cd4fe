// Package report turns a bug-report bundle into a summary ready to paste
// into a bug tracker: what failed and the exact command, the versions and
// key facts of source and target side by side, compatibility findings, the
// known issues matched in the bundle's logs, and the list of artefacts. One
// data model (Report), rendered as Markdown, HTML or JSON. It only reads:
// it never runs commands.
package report

import (
	"encoding/json"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/report/bundle"
	"github.com/ferry-migrate/ferry/report/explain"
)

// Schema versions the JSON form of a Report.
const Schema = "ferry.report/v1"

// Report is the data model of `ferry report`.
type Report struct {
	Schema string `json:"schema"`
	// Bundle is the bundle's file name.
	Bundle    string    `json:"bundle"`
	Created   time.Time `json:"created"`
	Ferry     string    `json:"ferry"`
	Container string    `json:"container"`
	// Failure is what failed, when the bundle was made for a run.
	Failure *Failure `json:"failure"`
	Hosts   []Host   `json:"hosts"`
	// Facts are the key facts of every host side by side: Values[i]
	// belongs to Hosts[i].
	Facts []Fact `json:"facts"`
	// Findings are the compatibility findings between source and target;
	// FindingsNote says why there are none when facts are missing.
	Findings     []Finding       `json:"findings"`
	FindingsNote string          `json:"findings_note,omitempty"`
	KnownIssues  []explain.Match `json:"known_issues"`
	Artefacts    []Artefact      `json:"artefacts"`
	// Incomplete lists what the collection could not gather.
	Incomplete    []string `json:"incomplete"`
	RedactNetwork bool     `json:"redact_network"`
}

// Failure is the failed operation.
type Failure struct {
	RunID     string `json:"run_id"`
	Operation string `json:"operation"`
	// Command is the exact command line, shell-quoted.
	Command string `json:"command"`
	Target  string `json:"target"`
	Result  string `json:"result"`
	Error   string `json:"error"`
	// Step is the first failed step, with the lines lifted from its log.
	Step *Step `json:"step"`
}

// Step is a failed step of the run.
type Step struct {
	Name   string   `json:"name"`
	Host   string   `json:"host"`
	Error  string   `json:"error"`
	Log    string   `json:"log"`
	Lifted []string `json:"lifted"`
}

// Host is one machine of the bundle.
type Host struct {
	Name string `json:"name"`
	Role string `json:"role"`
	Dir  string `json:"dir"`
}

// Fact is one row of the side-by-side table.
type Fact struct {
	Name   string   `json:"name"`
	Values []string `json:"values"`
	// Differs is true when the hosts disagree.
	Differs bool `json:"differs"`
}

// Finding is a compatibility finding between source and target (the probe
// rules' verdict on the facts the bundle holds).
type Finding struct {
	Severity string `json:"severity"`
	Rule     string `json:"rule"`
	Message  string `json:"message"`
	Hint     string `json:"hint"`
	// Source and Target are the evidence on each host.
	Source string `json:"source"`
	Target string `json:"target"`
}

// Artefact is one attached file.
type Artefact struct {
	Path      string `json:"path"`
	Host      string `json:"host"`
	Collector string `json:"collector"`
	// What is the command run or the file read.
	What       string `json:"what"`
	Status     string `json:"status"`
	Size       int64  `json:"size"`
	Truncated  bool   `json:"truncated"`
	Redactions int    `json:"redactions"`
	Error      string `json:"error,omitempty"`
}

// Options tune Build.
type Options struct {
	// DB is the signature database (default: the embedded one).
	DB *explain.DB
	// Findings computes compatibility findings from the bundle's hosts,
	// when the caller can (the probe rules); nil leaves them out.
	Findings func(b *bundle.Bundle) ([]Finding, string)
}

// Build makes the report of a bundle.
func Build(b *bundle.Bundle, opt Options) *Report {
	m := b.Manifest
	r := &Report{
		Schema:        Schema,
		Bundle:        filepath.Base(b.Path),
		Created:       m.Created,
		Ferry:         m.Ferry,
		Container:     m.Container,
		RedactNetwork: m.RedactNetwork,
		Findings:      []Finding{},
		Incomplete:    append([]string{}, m.Failures...),
	}
	for _, h := range m.Hosts {
		r.Hosts = append(r.Hosts, Host{Name: h.Name, Role: h.Role, Dir: h.Dir})
	}
	r.Failure = failure(b)
	r.Facts = facts(b)
	if opt.Findings != nil {
		r.Findings, r.FindingsNote = opt.Findings(b)
		if r.Findings == nil {
			r.Findings = []Finding{}
		}
	} else {
		r.FindingsNote = "no compatibility rules were run on this bundle"
	}
	db := opt.DB
	if db == nil {
		db = explain.Default()
	}
	r.KnownIssues = db.Explain(logInputs(b))
	for _, a := range m.Artefacts {
		what := a.Source
		if len(a.Command) > 0 {
			what = host.Quote(a.Command)
		}
		r.Artefacts = append(r.Artefacts, Artefact{Path: a.Path, Host: a.Host, Collector: a.Collector, What: what,
			Status: a.Status, Size: a.Size, Truncated: a.Truncated, Redactions: a.Redactions, Error: a.Error})
	}
	sort.Slice(r.Artefacts, func(i, j int) bool { return r.Artefacts[i].Path < r.Artefacts[j].Path })
	return r
}

// failure reads the run's journal from the bundle.
func failure(b *bundle.Bundle) *Failure {
	run := b.Manifest.Run
	if run == nil {
		return nil
	}
	f := &Failure{RunID: run.ID, Operation: run.Operation, Command: host.Quote(run.Command), Target: run.Target, Result: run.Result, Error: run.Error}
	for _, a := range b.Manifest.Artefacts {
		if a.Collector != "run" || path.Base(a.Path) != "journal.json" {
			continue
		}
		data, _ := b.File(a.Path)
		var j migrate.Journal
		if json.Unmarshal(data, &j) != nil {
			break
		}
		for _, s := range j.Steps {
			if s.Result == migrate.StepFailed {
				f.Step = &Step{Name: s.Name, Host: s.Host, Error: s.Error, Log: s.Log, Lifted: append([]string{}, s.Lifted...)}
				break
			}
		}
	}
	return f
}

// logInputs are the texts known issues are looked for in, most telling
// first (explain ranks causes in input order): the run's CRIU logs, the
// container's logs, the daemon logs, then dmesg and CRIU's self-check.
func logInputs(b *bundle.Bundle) []explain.Input {
	order := map[string]int{"run": 0, "container-logs": 1, "container-info": 1, "lxd-log": 2, "incus-log": 2, "dmesg": 3, "criu-check": 4}
	var arts []bundle.Artefact
	for _, a := range b.Manifest.Artefacts {
		if _, ok := order[a.Collector]; !ok || a.Status == bundle.StatusAbsent || a.Size == 0 {
			continue
		}
		if a.Collector == "run" && !strings.HasSuffix(a.Path, ".log") {
			continue
		}
		arts = append(arts, a)
	}
	sort.SliceStable(arts, func(i, j int) bool {
		if order[arts[i].Collector] != order[arts[j].Collector] {
			return order[arts[i].Collector] < order[arts[j].Collector]
		}
		return arts[i].Path < arts[j].Path
	})
	in := make([]explain.Input, 0, len(arts))
	for _, a := range arts {
		data, _ := b.File(a.Path)
		in = append(in, explain.Input{Name: a.Path, Text: string(data)})
	}
	return in
}

// facts extracts the key facts of every host from its artefacts.
func facts(b *bundle.Bundle) []Fact {
	type extractor struct {
		name      string
		collector string
		get       func(text string) string
	}
	field := func(key string) func(string) string {
		return func(text string) string { return yamlField(text, key) }
	}
	xs := []extractor{
		{"hostname", "uname", func(s string) string { return unameField(s, 1) }},
		{"kernel", "uname", func(s string) string { return unameField(s, 2) }},
		{"architecture", "uname", func(s string) string { return unameField(s, -2) }},
		{"os", "os-release", func(s string) string { return strings.Trim(keyValue(s, "PRETTY_NAME"), `"`) }},
		{"criu", "criu-version", func(s string) string { return strings.TrimSpace(strings.TrimPrefix(firstLine(s), "Version:")) }},
		{"criu check", "criu-check", criuCheck},
		{"lxd", "lxd-info", field("server_version")},
		{"lxd storage", "lxd-info", field("storage")},
		{"incus", "incus-info", field("server_version")},
		{"incus storage", "incus-info", field("storage")},
		{"liblxc", "lxd-info", field("driver_version")},
		{"firewall", "lxd-info", field("firewall")},
	}
	var out []Fact
	for _, x := range xs {
		f := Fact{Name: x.name}
		known := false
		for _, h := range b.Manifest.Hosts {
			v := "-"
			for _, a := range b.Manifest.Artefacts {
				if a.Collector != x.collector || !strings.HasPrefix(a.Path, h.Dir+"/") {
					continue
				}
				if a.Status == bundle.StatusAbsent {
					v = "absent"
					break
				}
				data, _ := b.File(a.Path)
				if got := x.get(string(data)); got != "" {
					v = got
					known = true
				}
				break
			}
			f.Values = append(f.Values, v)
		}
		if !known {
			continue
		}
		for _, v := range f.Values {
			f.Differs = f.Differs || v != f.Values[0]
		}
		out = append(out, f)
	}
	return out
}

func unameField(s string, i int) string {
	fs := strings.Fields(firstLine(s))
	if i < 0 {
		i += len(fs)
	}
	if i < 0 || i >= len(fs) {
		return ""
	}
	return fs[i]
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(l)
}

// criuCheck summarises criu check --all: its verdict line, else its first
// error, else its last line.
func criuCheck(s string) string {
	var firstErr string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "Looks good") {
			return l
		}
		if firstErr == "" && strings.HasPrefix(l, "Error") {
			firstErr = l
		}
	}
	if firstErr != "" {
		return firstErr
	}
	s = strings.TrimSpace(s)
	return strings.TrimSpace(s[strings.LastIndex(s, "\n")+1:])
}

// yamlField finds "key: value" at any indentation (first occurrence).
func yamlField(text, key string) string {
	for _, l := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if ok && k == key {
			v = strings.Trim(strings.TrimSpace(v), `"'`)
			if v != "" {
				return v
			}
		}
	}
	return ""
}

func keyValue(text, key string) string {
	for _, l := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// size renders a byte count for people.
func size(n int64) string {
	switch {
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	case n >= 1<<10:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " B"
}
