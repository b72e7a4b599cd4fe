package soak

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"
)

// JUnitSuites is the root of a JUnit XML report: one suite per workload.
type JUnitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []JUnitSuite `xml:"testsuite"`
}

// JUnitSuite holds the moves of one workload.
type JUnitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Properties []JUnitProperty `xml:"properties>property"`
	Cases      []JUnitCase     `xml:"testcase"`
}

// JUnitProperty is a name and value a suite carries (runtime, mode, hosts).
type JUnitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

// JUnitCase is one move.
type JUnitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *JUnitFailure `xml:"failure"`
	SystemOut *JUnitOutput  `xml:"system-out"`
}

// JUnitOutput is the text of a <system-out>.
type JUnitOutput struct {
	Text string `xml:",cdata"`
}

// JUnitFailure is a failed or lost move: Message is its error, Type its
// outcome, Text the CRIU lines behind it, the run id and the bundle.
// Texts are written as CDATA, so the lines read as they are in the XML
// file; bytes XML cannot hold (a terminal escape from a log) become U+FFFD.
type JUnitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",cdata"`
}

// junitTime is the timestamp form JUnit's schema takes (no zone); it is UTC.
const junitTime = "2006-01-02T15:04:05"

// WriteJUnit writes r as JUnit XML: a <testsuite name="ferry-soak/WORKLOAD">
// per workload (in the order the records first name them) and a
// <testcase> per move, named "iteration N: FROM -> TO (MODE)" with
// " [fault: NAME]" when a fault was injected. A failed or lost move has a
// <failure> with its error as message, its outcome as type and the lifted
// CRIU lines, the run id and the bug-report bundle as text. A move that
// survived its fault passes; its <system-out> says what was injected, what
// happened and where the workload verified.
func WriteJUnit(w io.Writer, r *Result) error {
	doc := JUnitSuites{Name: "ferry-soak"}
	props := []JUnitProperty{
		{Name: "runtime", Value: r.Summary.Runtime},
		{Name: "mode", Value: r.Summary.Mode},
		{Name: "hosts", Value: strings.Join(r.Summary.Hosts, ",")},
	}
	var total time.Duration
	index := map[string]int{}
	var durations []time.Duration // of each suite
	for _, rec := range r.Records {
		i, ok := index[rec.Workload]
		if !ok {
			i = len(doc.Suites)
			index[rec.Workload] = i
			doc.Suites = append(doc.Suites, JUnitSuite{
				Name: "ferry-soak/" + rec.Workload, Timestamp: junitTimestamp(rec.Start, r.Summary.Started),
				Properties: props,
			})
			durations = append(durations, 0)
		}
		s := &doc.Suites[i]
		c := JUnitCase{Name: caseName(rec), Classname: "ferry.soak." + rec.Workload, Time: seconds(rec.Duration)}
		switch rec.Outcome {
		case OutcomeFailed, OutcomeLost:
			msg := rec.Error
			if msg == "" {
				msg = "move " + rec.Outcome
			}
			c.Failure = &JUnitFailure{Message: msg, Type: rec.Outcome, Text: xmlText(failureText(rec))}
			s.Failures++
		case OutcomeSurvived:
			c.SystemOut = &JUnitOutput{Text: xmlText(survivedText(rec))}
		}
		s.Tests++
		s.Cases = append(s.Cases, c)
		durations[i] += rec.Duration
		total += rec.Duration
	}
	for i := range doc.Suites {
		s := &doc.Suites[i]
		s.Time = seconds(durations[i])
		doc.Tests += s.Tests
		doc.Failures += s.Failures
	}
	doc.Time = seconds(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("encode junit: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// ReadJUnit parses a JUnit XML report, as CI tests of a soak do.
func ReadJUnit(rd io.Reader) (*JUnitSuites, error) {
	var doc JUnitSuites
	if err := xml.NewDecoder(rd).Decode(&doc); err != nil {
		return nil, fmt.Errorf("parse junit: %w", err)
	}
	return &doc, nil
}

func failureText(rec Record) string {
	var b strings.Builder
	if rec.Error != "" {
		fmt.Fprintf(&b, "%s\n", rec.Error)
	}
	for _, l := range rec.Lifted {
		fmt.Fprintf(&b, "%s\n", l)
	}
	if rec.Note != "" {
		fmt.Fprintf(&b, "note: %s\n", rec.Note)
	}
	if rec.VerifiedOn != "" {
		fmt.Fprintf(&b, "workload verified on: %s\n", rec.VerifiedOn)
	} else {
		fmt.Fprintf(&b, "workload verified on: no host\n")
	}
	if rec.RunID != "" {
		fmt.Fprintf(&b, "run: %s\n", rec.RunID)
	}
	if rec.Bundle != "" {
		fmt.Fprintf(&b, "bundle: %s\n", rec.Bundle)
	}
	return b.String()
}

func survivedText(rec Record) string {
	var b strings.Builder
	fmt.Fprintf(&b, "fault injected: %s\n", rec.Fault)
	if rec.Note != "" {
		fmt.Fprintf(&b, "what happened: %s\n", rec.Note)
	}
	if rec.Error != "" {
		fmt.Fprintf(&b, "error: %s\n", rec.Error)
	}
	for _, l := range rec.Lifted {
		fmt.Fprintf(&b, "%s\n", l)
	}
	fmt.Fprintf(&b, "workload verified on: %s\n", rec.VerifiedOn)
	if rec.RunID != "" {
		fmt.Fprintf(&b, "run: %s\n", rec.RunID)
	}
	if rec.Bundle != "" {
		fmt.Fprintf(&b, "bundle: %s\n", rec.Bundle)
	}
	return b.String()
}

func junitTimestamp(ts ...time.Time) string {
	for _, t := range ts {
		if !t.IsZero() {
			return t.UTC().Format(junitTime)
		}
	}
	return ""
}

func seconds(d time.Duration) string {
	return fmt.Sprintf("%.3f", d.Seconds())
}

// xmlText replaces the characters XML 1.0 cannot hold with U+FFFD, as
// encoding/xml does for character data but not for CDATA.
func xmlText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r',
			r >= 0x20 && r <= 0xD7FF,
			r >= 0xE000 && r <= 0xFFFD,
			r >= 0x10000 && r <= 0x10FFFF:
			return r
		}
		return '\uFFFD'
	}, s)
}
