package explain

import (
	"os"
	"strings"
	"testing"
)

// FuzzExplain checks on arbitrary text that the matcher never panics, that
// the prefilter never hides a match (every pattern that matches a normalised
// line has one of its literals in the raw line), that Normalise leaves no bare
// number behind, and that every match points at the line it reports.
func FuzzExplain(f *testing.F) {
	db := Default()
	for _, s := range db.Signatures() {
		for _, ex := range s.Examples {
			f.Add(ex)
		}
	}
	for _, w := range db.Wrappers() {
		for _, ex := range w.Examples {
			f.Add(ex)
		}
	}
	if b, err := os.ReadFile("testdata/criu-4.2.1-restore-pid-clash.log"); err == nil {
		f.Add(string(b))
	}
	f.Add("(00.1)  12: x\r\n\n\nlxc c1 20261128123236.854 ERROR a\n(0x1)<N><X><<N>>")
	f.Fuzz(func(t *testing.T, text string) {
		lines := splitLines(text)
		var grams gramSet
		for _, raw := range lines {
			grams.fill(raw)
			norm := Normalise(raw)
			for _, w := range strings.FieldsFunc(norm, func(r rune) bool { return r > 127 || !isWord(byte(r)) }) {
				if isNumber(w) {
					t.Fatalf("Normalise(%q) = %q keeps the number %q", raw, norm, w)
				}
			}
			for i := range db.sigs {
				s := &db.sigs[i]
				if s.re.MatchString(norm) && !anyNeedle(raw, &grams, s.needles) {
					t.Fatalf("%s matches %q (normalised %q) but none of %+v is in it", s.ID, raw, norm, s.needles)
				}
			}
			for _, set := range [][]compiledLine{db.harmless, db.wrappers} {
				for _, c := range set {
					if c.re.MatchString(norm) && !anyNeedle(raw, &grams, c.needles) {
						t.Fatalf("%q matches %q but none of %+v is in it", c.Pattern, raw, c.needles)
					}
				}
			}
		}
		matches := db.Explain([]Input{{Name: "fuzz", Text: text}})
		if matches == nil {
			t.Fatal("nil matches")
		}
		ranks := map[string]int{}
		for _, r := range db.explainOne(0, Input{Name: "fuzz", Text: text}) {
			ranks[r.ID] = r.rank
		}
		seen := map[string]bool{}
		for i, m := range matches {
			if m.LineNo < 1 || m.LineNo > len(lines) {
				t.Fatalf("match %+v: line %d out of 1..%d", m, m.LineNo, len(lines))
			}
			if want := strings.TrimRight(lines[m.LineNo-1], "\r"); m.Line != want {
				t.Fatalf("match line %q, input line %d is %q", m.Line, m.LineNo, want)
			}
			if seen[m.ID] {
				t.Fatalf("%s reported twice", m.ID)
			}
			seen[m.ID] = true
			if i > 0 && ranks[matches[i-1].ID] > ranks[m.ID] {
				t.Fatalf("match %d ranked %d after rank %d", i, ranks[m.ID], ranks[matches[i-1].ID])
			}
		}
		for _, l := range db.Lift(text) {
			if !strings.Contains(text, l) {
				t.Fatalf("Lift returned %q, not in the text", l)
			}
		}
	})
}

// BenchmarkExplain50MB explains a 50 MB CRIU log: a successful 4.2.1 dump
// log repeated, with the pid-clash failure at its end.
func BenchmarkExplain50MB(b *testing.B) {
	ok, err := os.ReadFile("testdata/criu-4.2.1-process-dump-ok.log")
	if err != nil {
		b.Fatal(err)
	}
	fail, err := os.ReadFile("testdata/criu-4.2.1-restore-pid-clash.log")
	if err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	for sb.Len() < 50<<20 {
		sb.Write(ok)
	}
	sb.Write(fail)
	text := sb.String()
	nlines := strings.Count(text, "\n")
	db := Default()
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for b.Loop() {
		m := db.Explain([]Input{{Name: "big.log", Text: text}})
		if len(m) != 1 || m[0].ID != "criu-fork-pid-exists" {
			b.Fatalf("unexpected matches %+v", m)
		}
	}
	b.ReportMetric(float64(nlines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkNormalise measures the normaliser alone on a typical CRIU line.
func BenchmarkNormalise(b *testing.B) {
	line := "(00.252283)      1: Error (criu/mount-v2.c:390): mnt-v2: Can't re-create deleted directory /var/lib/incus/shmounts/c5: Permission denied"
	for b.Loop() {
		Normalise(line)
	}
}
