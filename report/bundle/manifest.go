// Package bundle is the format of a ferry bug-report bundle: a tar archive
// (gzip or zstd) of redacted artefacts laid out as <host>/<collector>/<file>,
// a manifest.json describing each of them, and a .sha256 file beside the
// archive. Writer creates bundles, Open reads them back, Unpack extracts one
// safely. The package only handles bytes: collecting and redacting is the
// collect package's job.
package bundle

import (
	"fmt"
	"path"
	"strings"
	"time"
	"unicode"
)

// Schema versions manifest.json.
const Schema = "ferry.bundle/v1"

// ManifestName is the manifest's name inside the archive.
const ManifestName = "manifest.json"

// Artefact statuses.
const (
	StatusOK      = "ok"      // collected
	StatusNonZero = "nonzero" // the command ran and exited non-zero; its output is kept
	StatusAbsent  = "absent"  // the file or command does not exist on the host
	StatusFailed  = "failed"  // could not be collected (timeout, permission, I/O): the bundle is partial
)

// Manifest describes a bundle.
type Manifest struct {
	Schema  string    `json:"schema"`
	Created time.Time `json:"created"`
	Ferry   string    `json:"ferry"`
	// Hosts are the machines collected from, in order (source first).
	Hosts []Host `json:"hosts"`
	// Container is the workload the bundle is about (lxd:c1), if any.
	Container string `json:"container,omitempty"`
	// Run is the failed (or successful) operation the bundle is about.
	Run *Run `json:"run,omitempty"`
	// RedactNetwork says addresses and host names were replaced by
	// placeholders.
	RedactNetwork bool       `json:"redact_network"`
	Artefacts     []Artefact `json:"artefacts"`
	// Failures lists the artefacts that could not be collected, one line
	// each: what and why.
	Failures []string `json:"failures"`
}

// Host is one machine of a bundle.
type Host struct {
	// Name is the host's label ("local", "testbed:tb1"), after network
	// redaction when that was asked for.
	Name string `json:"name"`
	// Role is "source", "target" or "host".
	Role string `json:"role"`
	// Dir is the host's top directory in the archive.
	Dir string `json:"dir"`
}

// Run summarises the migrate journal a bundle was made for.
type Run struct {
	ID        string   `json:"id"`
	Operation string   `json:"operation"`
	Command   []string `json:"command"`
	Target    string   `json:"target"`
	Result    string   `json:"result"`
	Error     string   `json:"error,omitempty"`
}

// Artefact is one file of the bundle and how it was obtained.
type Artefact struct {
	// Path is the file's name in the archive: <host>/<collector>/<name>.
	Path      string `json:"path"`
	Host      string `json:"host"`
	Collector string `json:"collector"`
	// Command is the argv that produced the file, or Source the file it
	// was read from on the host; one of them is set.
	Command  []string      `json:"command,omitempty"`
	Source   string        `json:"source,omitempty"`
	Status   string        `json:"status"`
	ExitCode int           `json:"exit_code"` // -1 when not a command, or it did not exit by itself
	Duration time.Duration `json:"duration_ns"`
	// Size is the size in the archive, after capping and redaction.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Truncated says only the tail was kept; OriginalSize is the size
	// before (-1 when unknown, e.g. a command cut at its timeout).
	Truncated    bool  `json:"truncated"`
	OriginalSize int64 `json:"original_size"`
	// Redactions counts what was replaced, by kind (pem, secret,
	// pattern, ipv4, ipv6, mac, hostname); never the values.
	Redactions int            `json:"redactions"`
	Redacted   map[string]int `json:"redacted,omitempty"`
	Error      string         `json:"error,omitempty"`
}

// Failed says whether a collector could not produce this artefact.
func (a Artefact) Failed() bool { return a.Status == StatusFailed }

// SafeComponent turns an arbitrary label into one path component that
// cannot climb out of a directory or carry control characters: "/" and
// other separators become "-", leading dots are dropped, "" becomes "_".
func SafeComponent(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '/' || r == '\\' || r == ':' || unicode.IsSpace(r):
			b.WriteByte('-')
		case unicode.IsControl(r) || r == unicode.ReplacementChar:
			b.WriteByte('_')
		case r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("-_.@+=,", r)):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	out := strings.TrimLeft(b.String(), ".")
	if out == "" {
		out = "_"
	}
	if len(out) > 120 {
		out = out[:120]
	}
	return out
}

// CheckName validates a name inside an archive: relative, clean, no ".."
// component, no control characters. Both the writer and the readers apply
// it, so no entry can land outside the directory it is unpacked into.
func CheckName(name string) error {
	switch {
	case name == "" || name == ".":
		return fmt.Errorf("empty entry name")
	case strings.HasPrefix(name, "/"):
		return fmt.Errorf("entry %q: absolute path", name)
	case strings.Contains(name, "\\"):
		return fmt.Errorf("entry %q: backslash in name", name)
	case path.Clean(name) != name:
		return fmt.Errorf("entry %q: not a clean path", name)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return fmt.Errorf("entry %q: climbs out with ..", name)
		}
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("entry %q: control character in name", name)
		}
	}
	return nil
}
