package report

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strings"
)

// Formats `ferry report` renders.
const (
	Markdown = "md"
	HTML     = "html"
	JSON     = "json"
)

// Render writes r in format (md, html or json).
func Render(w io.Writer, r *Report, format string) error {
	switch format {
	case Markdown, "":
		return r.Markdown(w)
	case HTML:
		return r.HTML(w)
	case JSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return fmt.Errorf("unknown report format %q (want md, html or json)", format)
}

// Markdown renders the report for a bug tracker (GitHub-flavoured tables
// and fenced blocks).
func (r *Report) Markdown(w io.Writer) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# ferry bug report\n\n")
	fmt.Fprintf(&b, "Bundle `%s`, collected %s by ferry %s", r.Bundle, r.Created.UTC().Format("2006-01-02 15:04:05 MST"), orDash(r.Ferry))
	if r.Container != "" {
		fmt.Fprintf(&b, " for container `%s`", r.Container)
	}
	b.WriteString(".")
	if r.RedactNetwork {
		b.WriteString(" Addresses and host names are replaced by placeholders.")
	}
	b.WriteString("\n\n## What failed\n\n")
	if f := r.Failure; f != nil {
		fmt.Fprintf(&b, "```\n$ %s\n```\n\n", f.Command)
		fmt.Fprintf(&b, "- run: `%s` (%s of `%s`): **%s**\n", f.RunID, f.Operation, f.Target, f.Result)
		if f.Error != "" {
			fmt.Fprintf(&b, "- error: %s\n", mdInline(f.Error))
		}
		if s := f.Step; s != nil {
			fmt.Fprintf(&b, "- failed step: %s on %s", s.Name, s.Host)
			if s.Log != "" {
				fmt.Fprintf(&b, ", log `%s`", s.Log)
			}
			b.WriteString("\n")
			if len(s.Lifted) > 0 {
				b.WriteString("\n```\n")
				for _, l := range s.Lifted {
					b.WriteString(l + "\n")
				}
				b.WriteString("```\n")
			}
		}
	} else {
		b.WriteString("No run journal in this bundle: it was collected without `--run`.\n")
	}

	b.WriteString("\n## Hosts\n\n")
	b.WriteString("| |")
	for _, h := range r.Hosts {
		fmt.Fprintf(&b, " %s `%s` |", h.Role, mdCell(h.Name))
	}
	b.WriteString("\n|---|")
	for range r.Hosts {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, f := range r.Facts {
		name := f.Name
		if f.Differs {
			name = "**" + name + "** (differs)"
		}
		fmt.Fprintf(&b, "| %s |", name)
		for _, v := range f.Values {
			fmt.Fprintf(&b, " %s |", mdCell(v))
		}
		b.WriteString("\n")
	}

	b.WriteString("\n## Compatibility findings\n\n")
	if len(r.Findings) == 0 {
		fmt.Fprintf(&b, "None. %s\n", capitalise(r.FindingsNote))
	}
	if len(r.Findings) > 0 {
		b.WriteString("| severity | rule | finding | source | target |\n|---|---|---|---|---|\n")
	}
	for _, f := range r.Findings {
		msg := mdInline(f.Message)
		if f.Hint != "" {
			msg += " (" + mdInline(f.Hint) + ")"
		}
		fmt.Fprintf(&b, "| **%s** | `%s` | %s | %s | %s |\n", f.Severity, mdCell(f.Rule), msg, mdInline(f.Source), mdInline(f.Target))
	}

	b.WriteString("\n## Known issues\n\n")
	if len(r.KnownIssues) == 0 {
		b.WriteString("No known failure signature matched the bundle's logs.\n")
	}
	for i, m := range r.KnownIssues {
		label := ""
		if i == 0 {
			label = " (most likely root cause)"
		}
		fmt.Fprintf(&b, "%d. **%s** `%s`%s\n", i+1, m.Category, m.ID, label)
		fmt.Fprintf(&b, "   - seen in `%s` line %d: `%s`\n", m.File, m.LineNo, mdCode(m.Line))
		fmt.Fprintf(&b, "   - cause: %s\n", mdInline(m.Cause))
		if m.Conditions != "" {
			fmt.Fprintf(&b, "   - when: %s\n", mdInline(m.Conditions))
		}
		fmt.Fprintf(&b, "   - fix: %s\n", mdInline(m.Fix))
		fmt.Fprintf(&b, "   - see: %s\n", m.URL)
	}

	b.WriteString("\n## Artefacts\n\n")
	b.WriteString("| file | command or path | status | size | redactions |\n|---|---|---|---|---|\n")
	for _, a := range r.Artefacts {
		st := a.Status
		if a.Truncated {
			st += ", truncated"
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s | %d |\n", mdCell(a.Path), mdCell(a.What), st, size(a.Size), a.Redactions)
	}
	if len(r.Incomplete) > 0 {
		b.WriteString("\n## Not collected\n\n")
		for _, s := range r.Incomplete {
			fmt.Fprintf(&b, "- %s\n", mdInline(s))
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func capitalise(s string) string {
	if s == "" {
		return ""
	}
	return strings.ToUpper(s[:1]) + s[1:] + "."
}

// mdInline keeps text on one line and stops it from opening HTML or links.
func mdInline(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.NewReplacer("<", "&lt;", ">", "&gt;", "|", `\|`, "`", "'").Replace(s)
}

func mdCell(s string) string { return strings.NewReplacer("|", `\|`, "`", "'", "\n", " ").Replace(s) }

func mdCode(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "`", "'") }

//go:embed report.html.tmpl
var htmlSource string

var htmlTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"size":  size,
	"inc":   func(i int) int { return i + 1 },
	"date":  func(r *Report) string { return r.Created.UTC().Format("2006-01-02 15:04:05 MST") },
	"title": capitalise,
}).Parse(htmlSource))

// HTML renders the report as one self-contained page (no scripts, no
// external resources).
func (r *Report) HTML(w io.Writer) error {
	var b bytes.Buffer
	if err := htmlTemplate.Execute(&b, r); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}
