// Package explain names known failures in CRIU, LXC, LXD and Incus logs and
// command output: it matches every line against a database of signatures
// kept as data (signatures.yaml), taken from the public issue trackers where
// maintainers explained them, and ranks the root cause first.
//
// It only reads text: ferry explain, ferry report and the migrate engine
// hand it named log texts and get ranked matches back.
package explain

import (
	"cmp"
	"io"
	"slices"
	"strings"
)

// Input is one named text to explain: a CRIU log, lxc.log, a daemon log or a
// command's output.
type Input struct {
	Name string
	Text string
}

// Match is a line that matched a known signature.
type Match struct {
	ID       string `json:"id"`
	Category string `json:"category"`
	// Line is the original line, as it is in the input.
	Line string `json:"line"`
	// LineNo counts from 1.
	LineNo int    `json:"line_no"`
	File   string `json:"file"`
	Cause  string `json:"cause"`
	Fix    string `json:"fix"`
	URL    string `json:"url"`
	// Conditions say when the signature applies, if not always.
	Conditions string `json:"conditions,omitempty"`
}

// ranked is a match with its sort keys.
type ranked struct {
	Match
	rank  int // 0 root cause, 1 after CRIU's final FAILED line, 2 symptom
	input int
}

// Explain matches inputs against the embedded database. See DB.Explain.
func Explain(inputs []Input) []Match { return Default().Explain(inputs) }

// Lift returns the Error and Warn lines of a CRIU log, in order and
// unchanged, without the lines known to be harmless on ferry's machines.
// This is what belongs in an error message or a journal: go-criu's own error
// names CRIU's first Error line, which is often a harmless one.
func Lift(log string) []string { return Default().Lift(log) }

// Explain matches every line of every input and returns the matches ranked
// root cause first: causes before symptoms, causes printed before CRIU's
// final "Dumping FAILED." / "Restoring FAILED." before those printed after it
// (teardown), then in input order and line order. A signature is reported once
// per input, at its first line; a line matches at most one signature, the
// first in database order. Harmless lines and wrapper lines never match.
// The result is never nil.
func (db *DB) Explain(inputs []Input) []Match {
	var all []ranked
	for i, in := range inputs {
		all = append(all, db.explainOne(i, in)...)
	}
	slices.SortStableFunc(all, func(a, b ranked) int {
		return cmp.Or(cmp.Compare(a.rank, b.rank), cmp.Compare(a.input, b.input), cmp.Compare(a.LineNo, b.LineNo))
	})
	matches := make([]Match, len(all))
	for i, r := range all {
		matches[i] = r.Match
	}
	return matches
}

func (db *DB) explainOne(index int, in Input) []ranked {
	var out []ranked
	seen := map[string]bool{}
	afterTerminal := false
	lines := splitLines(in.Text)
	last := len(lines) - 1
	for last >= 0 && strings.TrimSpace(lines[last]) == "" {
		last--
	}
	var grams gramSet
	for n, raw := range lines {
		if raw == "" {
			continue
		}
		grams.fill(raw)
		var norm string
		normalised := false
		normal := func() string {
			if !normalised {
				norm, normalised = Normalise(raw), true
			}
			return norm
		}
		if db.isHarmless(raw, &grams, normal) {
			continue
		}
		if w := db.wrapper(raw, &grams, normal); w != nil {
			if w.Terminal {
				afterTerminal = true
			}
			continue
		}
		for i := range db.sigs {
			s := &db.sigs[i]
			if s.LastLine && n != last {
				continue
			}
			if !anyNeedle(raw, &grams, s.needles) || !s.re.MatchString(normal()) {
				continue
			}
			if !seen[s.ID] {
				seen[s.ID] = true
				rank := 0
				switch {
				case s.Symptom:
					rank = 2
				case afterTerminal:
					rank = 1
				}
				out = append(out, ranked{Match: Match{
					ID: s.ID, Category: s.Category, Line: strings.TrimRight(raw, "\r"), LineNo: n + 1,
					File: in.Name, Cause: s.Cause, Fix: s.Fix, URL: s.URL, Conditions: s.Conditions,
				}, rank: rank, input: index})
			}
			break
		}
	}
	return out
}

func (db *DB) isHarmless(raw string, grams *gramSet, normal func() string) bool {
	for i := range db.harmless {
		h := &db.harmless[i]
		if anyNeedle(raw, grams, h.needles) && h.re.MatchString(normal()) {
			return true
		}
	}
	return false
}

func (db *DB) wrapper(raw string, grams *gramSet, normal func() string) *compiledLine {
	for i := range db.wrappers {
		w := &db.wrappers[i]
		if anyNeedle(raw, grams, w.needles) && w.re.MatchString(normal()) {
			return w
		}
	}
	return nil
}

// IsHarmless reports whether line is known never to be a failure.
func (db *DB) IsHarmless(line string) bool {
	var g gramSet
	g.fill(line)
	return db.isHarmless(line, &g, func() string { return Normalise(line) })
}

// IsWrapper reports whether line only says that something failed.
func (db *DB) IsWrapper(line string) bool {
	var g gramSet
	g.fill(line)
	return db.wrapper(line, &g, func() string { return Normalise(line) }) != nil
}

// Lift returns the Error and Warn lines of a CRIU log without the harmless
// ones. See the package function Lift.
func (db *DB) Lift(log string) []string {
	out := []string{}
	for _, raw := range splitLines(log) {
		if !isErrorOrWarn(raw) || db.IsHarmless(raw) {
			continue
		}
		out = append(out, strings.TrimRight(raw, "\r"))
	}
	return out
}

// isErrorOrWarn reports whether a CRIU log line is an Error or Warn line:
// "(00.1) Error (criu/x.c:1): ...", "  12: Warn  (...)", "Error (...)" or
// "pie: 12: Error (...)".
func isErrorOrWarn(line string) bool {
	for _, level := range []string{"Error (", "Warn  (", "Warn ("} {
		i := strings.Index(line, level)
		if i < 0 {
			continue
		}
		prefix := strings.TrimSpace(line[:i])
		if prefix == "" || strings.HasPrefix(prefix, "(") || strings.HasPrefix(prefix, "pie:") || isPIDPrefix(prefix) {
			return true
		}
	}
	return false
}

func isPIDPrefix(s string) bool {
	s = strings.TrimSuffix(s, ":")
	return isNumber(s)
}

// splitLines splits on "\n" only, so that line numbers are those an editor
// shows; a carriage return inside a line (progress bars) stays in the line.
func splitLines(text string) []string {
	text = strings.TrimSuffix(text, "\n")
	if text == "" {
		return nil
	}
	return strings.Split(text, "\n")
}

// ReadInput reads a whole input.
func ReadInput(name string, r io.Reader) (Input, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return Input{}, err
	}
	return Input{Name: name, Text: string(b)}, nil
}
