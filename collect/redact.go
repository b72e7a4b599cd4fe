package collect

import (
	"fmt"
	"net"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Redacted replaces every secret value.
const Redacted = "[REDACTED]"

// Redaction kinds, as counted in the manifest.
const (
	KindPEM      = "pem"      // private keys and certificates
	KindSecret   = "secret"   // secret-looking configuration values, environment, cloud-init data
	KindPattern  = "pattern"  // well-known token formats in free text
	KindIPv4     = "ipv4"     // --redact-network
	KindIPv6     = "ipv6"     // --redact-network
	KindMAC      = "mac"      // --redact-network
	KindHostname = "hostname" // --redact-network
)

// Redactor removes secrets from text before it is written anywhere. With
// Network set it also maps IP addresses, MAC addresses and known host names
// to placeholders that are stable across every file it sees (the same
// address gets the same placeholder everywhere), as `sos clean` does. It is
// safe for concurrent use.
type Redactor struct {
	Network bool

	mu        sync.Mutex
	maps      map[string]map[string]string // kind -> value -> placeholder
	hostnames []string                     // longest first
	hostRE    *regexp.Regexp
	// Names shorter than 3 characters ("vm") are common words and path
	// parts (/proc/sys/vm): they are replaced only between blanks,
	// quotes and '@'.
	shortRE *regexp.Regexp
}

// NewRedactor returns a redactor; network enables --redact-network.
func NewRedactor(network bool) *Redactor {
	return &Redactor{Network: network, maps: map[string]map[string]string{}}
}

// AddHostnames registers host names to map (with --redact-network): the
// hosts' own names, the names the user gave for them. Short names of FQDNs
// are added too.
func (r *Redactor) AddHostnames(names ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, h := range r.hostnames {
		seen[h] = true
	}
	add := func(h string) {
		h = strings.ToLower(strings.TrimSpace(h))
		// Too short or generic names would eat ordinary words.
		if len(h) < 2 || h == "localhost" || h == "local" || net.ParseIP(h) != nil || seen[h] {
			return
		}
		seen[h] = true
		r.hostnames = append(r.hostnames, h)
	}
	for _, n := range names {
		add(n)
		if short, _, ok := strings.Cut(n, "."); ok {
			add(short)
		}
	}
	sort.Slice(r.hostnames, func(i, j int) bool {
		if len(r.hostnames[i]) != len(r.hostnames[j]) {
			return len(r.hostnames[i]) > len(r.hostnames[j])
		}
		return r.hostnames[i] < r.hostnames[j]
	})
	var long, short []string
	for _, h := range r.hostnames {
		if len(h) < 3 {
			short = append(short, regexp.QuoteMeta(h))
		} else {
			long = append(long, regexp.QuoteMeta(h))
		}
	}
	r.hostRE, r.shortRE = nil, nil
	if len(long) > 0 {
		r.hostRE = regexp.MustCompile(`(?i)(^|[^A-Za-z0-9-])(` + strings.Join(long, "|") + `)([^A-Za-z0-9-]|$)`)
	}
	if len(short) > 0 {
		r.shortRE = regexp.MustCompile(`(?i)(^|[\s"'@])(` + strings.Join(short, "|") + `)([\s"'@:]|$)`)
	}
}

// placeholder returns the stable placeholder of value in kind.
func (r *Redactor) placeholder(kind, value string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.maps[kind]
	if m == nil {
		m = map[string]string{}
		r.maps[kind] = m
	}
	if p, ok := m[value]; ok {
		return p
	}
	p := fmt.Sprintf("[%s-%d]", kind, len(m)+1)
	m[value] = p
	return p
}

// Counts are redactions by kind.
type Counts map[string]int

// Total is the number of redactions of every kind.
func (c Counts) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

var (
	// A PEM block, possibly indented (YAML block scalars), possibly cut
	// by the size cap at either end.
	pemBlock = regexp.MustCompile(`-----BEGIN ([A-Z0-9 ]{1,64})-----[\s\S]*?-----END [A-Z0-9 ]{1,64}-----`)
	pemBegin = regexp.MustCompile(`-----BEGIN ([A-Z0-9 ]{1,64})-----`)
	pemEnd   = regexp.MustCompile(`-----END ([A-Z0-9 ]{1,64})-----`)

	// key: value, key = value, "key": "value", with an optional list dash.
	kvLine = regexp.MustCompile(`^(\s*(?:-\s+)?)("?)([A-Za-z0-9_.\-/]+)("?\s*[:=]\s?)(.*)$`)

	// Inline secret assignments in free text: password=..., token: ...
	inlineSecret = regexp.MustCompile(`(?i)([A-Za-z0-9_.-]*(?:password|passwd|passphrase|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)[A-Za-z0-9_.-]*"?)(\s*[=:]\s*)("[^"\n]*"|'[^'\n]*'|[^\s,;&"'\]\)}]+)`)

	// Credentials in URLs: scheme://user:password@host.
	urlCreds = regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+):([^@\s/]+)@`)
)

// secretKey says whether a configuration key names a secret.
func secretKey(key string) bool {
	k := strings.ToLower(key)
	for _, s := range []string{"password", "passwd", "passphrase", "secret", "token", "credential",
		"authorization", "user-data", "user_data", "vendor-data", "vendor_data", "cookie"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	words := strings.FieldsFunc(k, func(r rune) bool { return r == '.' || r == '_' || r == '-' || r == '/' })
	for i, w := range words {
		switch {
		case (w == "environment" || w == "env") && i < len(words)-1:
			// environment.FOO (LXD, Incus), lxc.environment; a bare
			// "environment:" is LXD's server environment, not secret.
			return true
		case w == "environment" && i > 0:
			return true
		case w == "key" || w == "keys" || w == "privkey" || w == "apikey" || w == "private":
			return true
		}
	}
	return false
}

// Redact returns text with secrets (and, with Network, addresses and host
// names) replaced, and what was replaced by kind.
func (r *Redactor) Redact(text []byte) ([]byte, Counts) {
	c := Counts{}
	s := string(text)
	if strings.Contains(s, "-----BEGIN ") || strings.Contains(s, "-----END ") {
		s = redactPEM(s, c)
	}
	s = redactKV(s, c)
	// The rest works line by line, each pattern only on lines holding its
	// literal part: Go's regexp is linear but slow on megabytes of logs.
	var out strings.Builder
	out.Grow(len(s))
	for len(s) > 0 {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			i = len(s) - 1
		}
		out.WriteString(r.redactLine(s[:i+1], c))
		s = s[i+1:]
	}
	for k, v := range c {
		if v == 0 {
			delete(c, k)
		}
	}
	return []byte(out.String()), c
}

// linePattern is a free-text secret pattern and the lower-case literals one
// of which a line must hold for the pattern to be tried.
type linePattern struct {
	re    *regexp.Regexp
	hints []string
}

var linePatterns = []linePattern{
	{regexp.MustCompile(`\b(?:AKIA|ASIA)[0-9A-Z]{16}\b`), []string{"akia", "asia"}},                 // AWS access key id
	{regexp.MustCompile(`(?i)\bbearer\s+[A-Za-z0-9\-._~+/]{8,}=*`), []string{"bearer"}},             // HTTP bearer tokens
	{regexp.MustCompile(`(?i)\bbasic\s+[A-Za-z0-9+/]{12,}={0,2}`), []string{"basic"}},               // HTTP basic credentials
	{regexp.MustCompile(`\bgh[pousr]_[A-Za-z0-9]{30,}\b`), []string{"gh"}},                          // GitHub tokens
	{regexp.MustCompile(`\bgithub_pat_[A-Za-z0-9_]{22,}\b`), []string{"github_pat_"}},               // GitHub fine-grained tokens
	{regexp.MustCompile(`\bglpat-[A-Za-z0-9_-]{20,}\b`), []string{"glpat-"}},                        // GitLab tokens
	{regexp.MustCompile(`\bxox[abposr]-[A-Za-z0-9-]{10,}\b`), []string{"xox"}},                      // Slack tokens
	{regexp.MustCompile(`\bsk-[A-Za-z0-9_-]{20,}\b`), []string{"sk-"}},                              // API secret keys (sk-...)
	{regexp.MustCompile(`\beyJ[A-Za-z0-9+/_=-]{16,}(?:\.[A-Za-z0-9+/_=-]+){0,2}`), []string{"eyj"}}, // JWTs, LXD/Incus trust tokens (base64 JSON)
}

var inlineHints = []string{"pass", "secret", "token", "key"}

func hasAny(s string, hints []string) bool {
	for _, h := range hints {
		if strings.Contains(s, h) {
			return true
		}
	}
	return false
}

func (r *Redactor) redactLine(s string, c Counts) string {
	lower := strings.ToLower(s)
	if strings.Contains(s, "://") && strings.Contains(s, "@") {
		s = urlCreds.ReplaceAllStringFunc(s, func(m string) string {
			c[KindPattern]++
			sub := urlCreds.FindStringSubmatch(m)
			return sub[1] + ":" + Redacted + "@"
		})
	}
	if hasAny(lower, inlineHints) {
		s = inlineSecret.ReplaceAllStringFunc(s, func(m string) string {
			sub := inlineSecret.FindStringSubmatch(m)
			v := strings.Trim(sub[3], `"'`)
			if v == "" || v == Redacted {
				return m
			}
			c[KindSecret]++
			return sub[1] + sub[2] + redactValue(sub[3])
		})
	}
	for _, p := range linePatterns {
		if !hasAny(lower, p.hints) {
			continue
		}
		s = p.re.ReplaceAllStringFunc(s, func(string) string {
			c[KindPattern]++
			return Redacted
		})
	}
	if r.Network {
		s = r.redactNetwork(s, lower, c)
	}
	return s
}

func redactPEM(s string, c Counts) string {
	s = pemBlock.ReplaceAllStringFunc(s, func(m string) string {
		c[KindPEM]++
		kind := pemBegin.FindStringSubmatch(m)[1]
		return "-----BEGIN " + kind + "-----" + Redacted + "-----END " + kind + "-----"
	})
	// What the size cap cut: an END without its BEGIN (the head was
	// dropped) and a BEGIN without its END.
	if loc := pemEnd.FindStringIndex(s); loc != nil && !strings.Contains(s[:loc[0]], "-----BEGIN ") && !strings.Contains(s[:loc[0]], Redacted+"-----END") {
		c[KindPEM]++
		s = Redacted + s[loc[0]:]
	}
	if loc := pemBegin.FindAllStringIndex(s, -1); len(loc) > 0 {
		last := loc[len(loc)-1]
		if !strings.HasPrefix(s[last[1]:], Redacted) {
			c[KindPEM]++
			s = s[:last[1]] + Redacted + "\n"
		}
	}
	return s
}

// redactKV replaces the values of secret-looking keys, line by line. A key
// whose value is a YAML block (`key: |`) or a nested map (`key:` followed by
// deeper lines) loses every deeper line.
func redactKV(s string, c Counts) string {
	lines := strings.SplitAfter(s, "\n")
	var out strings.Builder
	out.Grow(len(s))
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		m := kvLine.FindStringSubmatch(strings.TrimRight(line, "\r\n"))
		if m == nil || !secretKey(m[3]) {
			out.WriteString(line)
			continue
		}
		value := strings.TrimSpace(m[5])
		nl := line[len(strings.TrimRight(line, "\r\n")):]
		block := value == "" || strings.HasPrefix(value, "|") || strings.HasPrefix(value, ">")
		if !block {
			if strings.Contains(value, Redacted) {
				out.WriteString(line)
				continue
			}
			c[KindSecret]++
			out.WriteString(m[1] + m[2] + m[3] + m[4] + redactValue(m[5]) + nl)
			continue
		}
		// Drop the deeper lines of the block.
		indent := indentOf(line)
		j := i + 1
		for j < len(lines) && (strings.TrimSpace(lines[j]) == "" && j+1 < len(lines) || indentOf(lines[j]) > indent) {
			j++
		}
		// Trailing blank lines belong to what follows.
		for j > i+1 && strings.TrimSpace(lines[j-1]) == "" {
			j--
		}
		if j == i+1 {
			out.WriteString(line) // `key:` with nothing under it
			continue
		}
		c[KindSecret]++
		out.WriteString(m[1] + m[2] + m[3] + m[4] + Redacted + "\n")
		i = j - 1
	}
	return out.String()
}

// redactValue replaces a value, keeping its quotes and what follows a
// quoted value (`"x", ` in JSON) so that JSON and YAML stay well-formed.
func redactValue(v string) string {
	if len(v) > 0 && (v[0] == '"' || v[0] == '\'') {
		q := v[0]
		for i := 1; i < len(v); i++ {
			if v[i] == '\\' && q == '"' {
				i++
				continue
			}
			if v[i] == q {
				return string(q) + Redacted + string(q) + v[i+1:]
			}
		}
		return string(q) + Redacted + string(q)
	}
	return Redacted
}

func indentOf(line string) int {
	return len(line) - len(strings.TrimLeft(line, " \t"))
}

func (r *Redactor) redactNetwork(s, lower string, c Counts) string {
	s = r.redactAddrs(s, c)
	r.mu.Lock()
	names := r.hostnames
	res := []*regexp.Regexp{r.hostRE, r.shortRE}
	r.mu.Unlock()
	if !hasAny(lower, names) {
		return s
	}
	for _, re := range res {
		if re == nil {
			continue
		}
		s = re.ReplaceAllStringFunc(s, func(m string) string {
			sub := re.FindStringSubmatch(m)
			c[KindHostname]++
			return sub[1] + r.placeholder(KindHostname, strings.ToLower(sub[2])) + sub[3]
		})
	}
	return s
}

// redactAddrs replaces IPv4, IPv6 and MAC addresses. It scans for runs of
// hex digits, dots and colons standing alone as words and lets net.ParseIP
// decide, which is many times faster than address regexps over big logs.
func (r *Redactor) redactAddrs(s string, c Counts) string {
	var b strings.Builder
	last := 0
	for i := 0; i < len(s); {
		if !isAddrByte(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && isAddrByte(s[j]) {
			j++
		}
		if (i > 0 && isWordByte(s[i-1])) || (j < len(s) && isWordByte(s[j])) {
			i = j
			continue
		}
		tok := strings.TrimRight(s[i:j], ".:")
		if rep, ok := r.addr(tok, c); ok {
			if b.Len() == 0 {
				b.Grow(len(s))
			}
			b.WriteString(s[last:i])
			b.WriteString(rep)
			last = i + len(tok)
		}
		i = j
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func isAddrByte(x byte) bool {
	return '0' <= x && x <= '9' || 'a' <= x && x <= 'f' || 'A' <= x && x <= 'F' || x == '.' || x == ':'
}

func isWordByte(x byte) bool {
	return 'g' <= x && x <= 'z' || 'G' <= x && x <= 'Z' || x == '_'
}

// addr returns the placeholder text for an address token, if it is one.
func (r *Redactor) addr(tok string, c Counts) (string, bool) {
	colons := strings.Count(tok, ":")
	dots := strings.Count(tok, ".")
	switch {
	case colons == 5 && len(tok) == 17 && dots == 0 && isMAC(tok):
		l := strings.ToLower(tok)
		if l == "00:00:00:00:00:00" || l == "ff:ff:ff:ff:ff:ff" {
			return "", false
		}
		c[KindMAC]++
		return r.placeholder(KindMAC, l), true
	case colons >= 2:
		if ip := net.ParseIP(tok); ip != nil {
			if ip.IsLoopback() || ip.IsUnspecified() {
				return "", false
			}
			c[KindIPv6]++
			return r.placeholder(KindIPv6, ip.String()), true
		}
		fallthrough
	case colons == 1:
		// host:port, time stamps...: addresses among the parts.
		parts := strings.Split(tok, ":")
		changed := false
		for k, p := range parts {
			if rep, ok := r.ipv4(p, c); ok {
				parts[k], changed = rep, true
			}
		}
		return strings.Join(parts, ":"), changed
	}
	return r.ipv4(tok, c)
}

func (r *Redactor) ipv4(tok string, c Counts) (string, bool) {
	if strings.Count(tok, ".") != 3 || len(tok) < 7 || len(tok) > 15 {
		return "", false
	}
	ip := net.ParseIP(tok)
	if ip == nil || ip.To4() == nil || ip.IsLoopback() || ip.IsUnspecified() || tok == "255.255.255.255" {
		return "", false
	}
	c[KindIPv4]++
	return r.placeholder(KindIPv4, tok), true
}

func isMAC(s string) bool {
	for i := 0; i < len(s); i++ {
		if i%3 == 2 {
			if s[i] != ':' {
				return false
			}
		} else if !isHexByte(s[i]) {
			return false
		}
	}
	return true
}

func isHexByte(x byte) bool {
	return '0' <= x && x <= '9' || 'a' <= x && x <= 'f' || 'A' <= x && x <= 'F'
}

// Label redacts a short label (a host name in a path or in the manifest)
// with the network mapping only.
func (r *Redactor) Label(s string) string {
	if !r.Network {
		return s
	}
	return r.redactNetwork(s, strings.ToLower(s), Counts{})
}
