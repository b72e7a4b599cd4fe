package explain

import (
	_ "embed"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"regexp/syntax"
	"strings"
	"sync"

	"sigs.k8s.io/yaml"
)

// Categories are the kinds of failure a signature can name. The list is part
// of ferry's output contract.
var Categories = []string{
	"kernel-vdso", "pid-conflict", "socket-unsupported", "namespace-nested",
	"lsm-denied", "privilege", "network-device", "kernel-config",
	"filesystem-unsupported", "external-resource", "tty", "ghost-file-limit",
	"cpu-mismatch", "mount-propagation", "network-lock", "dirty-tracking-off",
	"criu-missing", "cgroup", "unsupported-by-runtime", "criu-bug",
}

//go:embed signatures.yaml
var signaturesYAML []byte

// Signature is one known failure: a pattern on a normalised log line and what
// the maintainers said about it.
type Signature struct {
	ID       string `json:"id"`
	Category string `json:"category"`
	// Pattern is a regular expression on the normalised line (see Normalise).
	Pattern string `json:"pattern"`
	Cause   string `json:"cause"`
	Fix     string `json:"fix"`
	// URL is the public issue, pull request or page where it was explained.
	URL string `json:"url"`
	// Conditions say when the signature applies (versions, ...), if not always.
	Conditions string `json:"conditions,omitempty"`
	// Symptom marks lines that follow from an earlier failure; they rank after
	// causes.
	Symptom bool `json:"symptom,omitempty"`
	// LastLine limits the signature to the last non-empty line of an input
	// (a log that ends there means the program hung or was killed).
	LastLine bool `json:"last_line,omitempty"`
	// Examples are real lines the pattern must match.
	Examples []string `json:"examples"`
}

// LinePattern is a harmless or wrapper line pattern.
type LinePattern struct {
	Pattern string `json:"pattern"`
	// Terminal wrappers end a CRIU run: errors after them are teardown.
	Terminal bool     `json:"terminal,omitempty"`
	Example  string   `json:"example,omitempty"`
	Examples []string `json:"examples,omitempty"`
}

// file is the layout of signatures.yaml.
type file struct {
	Harmless   []LinePattern `json:"harmless"`
	Wrappers   []LinePattern `json:"wrappers"`
	Signatures []Signature   `json:"signatures"`
}

// DB is a compiled signature database. It is safe for concurrent use.
type DB struct {
	sigs     []compiled
	harmless []compiledLine
	wrappers []compiledLine
}

type compiled struct {
	Signature
	re      *regexp.Regexp
	needles []needle // at least one must be in the raw line
}

type compiledLine struct {
	LinePattern
	re      *regexp.Regexp
	needles []needle
}

var (
	defaultOnce sync.Once
	defaultDB   *DB
	defaultErr  error
)

// Default returns the database embedded in ferry. It panics if the embedded
// data is invalid, which the package tests rule out.
func Default() *DB {
	defaultOnce.Do(func() { defaultDB, defaultErr = Load(signaturesYAML) })
	if defaultErr != nil {
		panic("explain: embedded signatures.yaml: " + defaultErr.Error())
	}
	return defaultDB
}

// Load parses and validates a signature database in the signatures.yaml
// format. All problems are reported at once.
func Load(data []byte) (*DB, error) {
	var f file
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("parse signatures: %w", err)
	}
	var errs []error
	db := &DB{}
	seen := map[string]bool{}
	cats := map[string]bool{}
	for _, c := range Categories {
		cats[c] = true
	}
	for i, s := range f.Signatures {
		where := fmt.Sprintf("signature %d (%s)", i, s.ID)
		if s.ID == "" {
			errs = append(errs, fmt.Errorf("%s: empty id", where))
		} else if seen[s.ID] {
			errs = append(errs, fmt.Errorf("%s: duplicate id", where))
		}
		seen[s.ID] = true
		if !cats[s.Category] {
			errs = append(errs, fmt.Errorf("%s: unknown category %q", where, s.Category))
		}
		for name, v := range map[string]string{"cause": s.Cause, "fix": s.Fix, "url": s.URL} {
			if strings.TrimSpace(v) == "" {
				errs = append(errs, fmt.Errorf("%s: empty %s", where, name))
			}
		}
		if s.URL != "" {
			if err := checkURL(s.URL); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
			}
		}
		if len(s.Examples) == 0 {
			errs = append(errs, fmt.Errorf("%s: no examples", where))
		}
		re, needles, err := compilePattern(s.Pattern)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		db.sigs = append(db.sigs, compiled{Signature: s, re: re, needles: needles})
	}
	for i, lp := range f.Harmless {
		c, err := compileLine(lp)
		if err != nil {
			errs = append(errs, fmt.Errorf("harmless %d: %w", i, err))
			continue
		}
		db.harmless = append(db.harmless, c)
	}
	for i, lp := range f.Wrappers {
		c, err := compileLine(lp)
		if err != nil {
			errs = append(errs, fmt.Errorf("wrapper %d: %w", i, err))
			continue
		}
		db.wrappers = append(db.wrappers, c)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return db, nil
}

func compileLine(lp LinePattern) (compiledLine, error) {
	re, needles, err := compilePattern(lp.Pattern)
	if err != nil {
		return compiledLine{}, err
	}
	return compiledLine{LinePattern: lp, re: re, needles: needles}, nil
}

// checkURL accepts only links to public GitHub issues and pull requests or to
// https documentation pages.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("bad url %q: %w", raw, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("url %q: want an https link", raw)
	}
	if u.Host == "github.com" {
		parts := strings.Split(strings.Trim(u.Path, "/"), "/")
		if len(parts) != 4 || (parts[2] != "issues" && parts[2] != "pull") || !isNumber(parts[3]) {
			return fmt.Errorf("url %q: want github.com/OWNER/REPO/issues/N or /pull/N", raw)
		}
	}
	return nil
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// minNeedle is the shortest literal a pattern must contain: the prefilter
// tests it with strings.Contains before the regular expression runs.
const minNeedle = 4

func compilePattern(p string) (*regexp.Regexp, []needle, error) {
	if strings.TrimSpace(p) == "" {
		return nil, nil, errors.New("empty pattern")
	}
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, nil, fmt.Errorf("pattern %q: %w", p, err)
	}
	tree, err := syntax.Parse(p, syntax.Perl)
	if err != nil {
		return nil, nil, fmt.Errorf("pattern %q: %w", p, err)
	}
	needles := requiredLiterals(tree.Simplify())
	if len(needles) == 0 {
		return nil, nil, fmt.Errorf("pattern %q: needs a case-sensitive literal of %d+ characters outside %s/%s", p, minNeedle, NumberPlaceholder, HexPlaceholder)
	}
	return re, newNeedles(needles), nil
}

// requiredLiterals returns strings of which at least one occurs in the raw
// line whenever re matches the normalised line, or nil when no such set of
// strings of minNeedle+ bytes is known.
func requiredLiterals(re *syntax.Regexp) []string {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return nil
		}
		best := ""
		for _, piece := range splitPlaceholders(string(re.Rune)) {
			if len(piece) > len(best) {
				best = piece
			}
		}
		if len(best) < minNeedle {
			return nil
		}
		return []string{best}
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiterals(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return requiredLiterals(re.Sub[0])
		}
		return nil
	case syntax.OpConcat:
		var best []string
		for _, sub := range re.Sub {
			n := requiredLiterals(sub)
			if n != nil && (best == nil || shortest(n) > shortest(best)) {
				best = n
			}
		}
		return best
	case syntax.OpAlternate:
		var all []string
		for _, sub := range re.Sub {
			n := requiredLiterals(sub)
			if n == nil {
				return nil
			}
			all = append(all, n...)
		}
		return all
	}
	return nil
}

func shortest(ss []string) int {
	m := -1
	for _, s := range ss {
		if m < 0 || len(s) < m {
			m = len(s)
		}
	}
	return m
}

func splitPlaceholders(s string) []string {
	s = strings.ReplaceAll(s, HexPlaceholder, NumberPlaceholder)
	return strings.Split(s, NumberPlaceholder)
}

// Signatures returns the database's signatures in match order.
func (db *DB) Signatures() []Signature {
	out := make([]Signature, len(db.sigs))
	for i, c := range db.sigs {
		out[i] = c.Signature
	}
	return out
}

// Wrappers returns the wrapper line patterns.
func (db *DB) Wrappers() []LinePattern {
	out := make([]LinePattern, len(db.wrappers))
	for i, c := range db.wrappers {
		out[i] = c.LinePattern
	}
	return out
}

// Harmless returns the harmless line patterns.
func (db *DB) Harmless() []LinePattern {
	out := make([]LinePattern, len(db.harmless))
	for i, c := range db.harmless {
		out[i] = c.LinePattern
	}
	return out
}
