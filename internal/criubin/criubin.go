// Package criubin finds the CRIU binary on a host and reads its version.
package criubin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strconv"

	"github.com/ferry-migrate/ferry/internal/host"
)

// EnvVar names the environment variable that points at the CRIU binary when
// --criu is not given.
const EnvVar = "FERRY_CRIU"

// fallbacks are looked at, in order, when "criu" is not on PATH: the sbin
// directories a non-root PATH often lacks, and where `make deps` installs.
var fallbacks = []string{"/usr/local/sbin/criu", "/opt/ferry/criu/bin/criu", "/usr/sbin/criu", "/sbin/criu"}

// Version is a CRIU release number.
type Version struct {
	Major, Minor, Sublevel int
}

// Int is the version as go-criu's GetCriuVersion reports it: 4.2.1 is 40201.
func (v Version) Int() int { return v.Major*10000 + v.Minor*100 + v.Sublevel }

func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Sublevel)
}

// Less reports whether v is older than o.
func (v Version) Less(o Version) bool { return v.Int() < o.Int() }

var versionRE = regexp.MustCompile(`(?m)Version:\s*(\d+)\.(\d+)(?:\.(\d+))?`)

// ParseVersion reads the "Version: 4.2.1" line that `criu --version` prints
// and that opens every CRIU log.
func ParseVersion(out string) (Version, error) {
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return Version{}, fmt.Errorf("no CRIU version in %q", firstLine(out))
	}
	var v Version
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	if m[3] != "" {
		v.Sublevel, _ = strconv.Atoi(m[3])
	}
	return v, nil
}

// Info is what ferry knows about the CRIU of one host.
type Info struct {
	Path    string  `json:"path"`
	Version Version `json:"-"`
	// VersionString is Version for people and machines; empty when CRIU
	// was not found or did not answer.
	VersionString string `json:"version"`
}

// NotFoundError says that no CRIU binary was found on a host.
type NotFoundError struct {
	Host  string
	Tried []string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("%s: criu not found (looked for %q)", e.Host, e.Tried)
}

func (e *NotFoundError) Hint() string {
	return "install CRIU 4.2 or later (`make deps` puts one in /opt/ferry/criu), or name it with --criu PATH or $" + EnvVar
}

// Find locates CRIU on h and reads its version. explicit, when set (from
// --criu or $FERRY_CRIU), is the only path tried: a wrong explicit path is an
// error, not a reason to pick another binary.
func Find(ctx context.Context, h host.Host, explicit string) (Info, error) {
	candidates := append([]string{"criu"}, fallbacks...)
	if explicit != "" {
		candidates = []string{explicit}
	}
	for _, path := range candidates {
		res, err := h.Run(ctx, []string{path, "--version"}, host.RunOptions{})
		if errors.Is(err, host.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Info{Path: path}, fmt.Errorf("criu at %s does not answer: %w", path, err)
		}
		v, err := ParseVersion(string(res.Stdout))
		if err != nil {
			return Info{Path: path}, fmt.Errorf("%s: %s --version: %w", h.Name(), path, err)
		}
		if pf, ok := h.(host.PathFinder); ok {
			if abs, err := pf.LookPath(path); err == nil {
				path = abs
			}
		}
		return Info{Path: path, Version: v, VersionString: v.String()}, nil
	}
	return Info{}, &NotFoundError{Host: h.Name(), Tried: candidates}
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
