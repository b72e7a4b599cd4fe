package host

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// TestbedNetnsPrefix names the network namespace of testbed host NAME:
// testbed:tb1 lives in /run/netns/ferry-tb1.
const TestbedNetnsPrefix = "ferry-"

var testbedName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,14}$`)

// SpecError is a host spec ferry cannot parse. It is a usage error.
type SpecError struct {
	Spec   string
	Reason string
}

func (e *SpecError) Error() string { return fmt.Sprintf("host %q: %s", e.Spec, e.Reason) }
func (e *SpecError) Hint() string {
	return "a host is one of: local, ssh://[user@]host[:port], testbed:NAME, or a directory holding a captured host (proc/, sys/, ...)"
}

// SSHTarget is the parsed form of ssh://[user@]host[:port]. Port 0 leaves the
// choice to the user's ssh configuration.
type SSHTarget struct {
	User string
	Host string
	Port int
}

// Spec is a parsed host spec; exactly one of its fields is set.
type Spec struct {
	Local   bool
	SSH     *SSHTarget
	Testbed string // the testbed host's name (tb1)
	Dir     string // a captured host's root directory
}

// ParseSpec parses a host spec without touching any host.
func ParseSpec(spec string) (Spec, error) {
	switch {
	case spec == "local" || spec == "localhost":
		return Spec{Local: true}, nil
	case strings.HasPrefix(spec, "ssh://"):
		t, err := parseSSH(spec)
		if err != nil {
			return Spec{}, err
		}
		return Spec{SSH: t}, nil
	case strings.HasPrefix(spec, "testbed:"):
		name := strings.TrimPrefix(spec, "testbed:")
		if !testbedName.MatchString(name) {
			return Spec{}, &SpecError{spec, "a testbed host name is 1 to 15 lower-case letters, digits or dashes, starting with a letter"}
		}
		return Spec{Testbed: name}, nil
	case spec == "":
		return Spec{}, &SpecError{spec, "empty host"}
	}
	if st, err := os.Stat(spec); err == nil && st.IsDir() {
		return Spec{Dir: spec}, nil
	}
	if strings.Contains(spec, "://") {
		return Spec{}, &SpecError{spec, "unknown scheme (only ssh:// is supported)"}
	}
	return Spec{}, &SpecError{spec, "not a known host form, and no such directory"}
}

func parseSSH(spec string) (*SSHTarget, error) {
	u, err := url.Parse(spec)
	if err != nil {
		return nil, &SpecError{spec, "not a valid ssh URL"}
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" {
		return nil, &SpecError{spec, "an ssh host takes no path, query or fragment"}
	}
	if _, hasPass := u.User.Password(); hasPass {
		return nil, &SpecError{spec, "passwords in host specs are not supported; use keys or an ssh agent"}
	}
	t := &SSHTarget{User: u.User.Username(), Host: u.Hostname()}
	if t.Host == "" {
		return nil, &SpecError{spec, "missing host name"}
	}
	if strings.HasPrefix(t.Host, "-") || strings.HasPrefix(t.User, "-") {
		return nil, &SpecError{spec, "host and user names cannot start with '-'"}
	}
	if strings.ContainsAny(t.Host+t.User, " \t\n'\"\\;$`") {
		return nil, &SpecError{spec, "host and user names cannot contain spaces, quotes or shell characters"}
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, &SpecError{spec, "port must be a number from 1 to 65535"}
		}
		t.Port = n
	}
	return t, nil
}

// String renders the target back as a spec.
func (t SSHTarget) String() string {
	host := t.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	s := "ssh://"
	if t.User != "" {
		s += t.User + "@"
	}
	if t.Port != 0 {
		return s + net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
	}
	return s + host
}
