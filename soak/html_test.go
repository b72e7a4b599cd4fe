package soak

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/ferry-migrate/ferry/internal/testenv"
)

const evil = `<script>alert(1)</script>`

// evilFixture is lostFixture with a third workload whose name and error
// carry markup, and a bundle path that needs escaping in a URL.
func evilFixture() *Result {
	res := lostFixture()
	wl := "web" + evil
	res.Records = append(res.Records,
		move(1, wl, "tb1", "tb2", 40*time.Second, 455, 230, 120, 180),
		Record{
			Iteration: 2, Workload: wl, From: "tb2", To: "tb1", Mode: "page-server", Outcome: OutcomeFailed,
			RunID: "run-evil-2", Exit: 4, Start: t0.Add(44 * time.Second), Duration: ms(2100),
			Error:  "restore on tb1: " + evil + " & more",
			Lifted: []string{"(00.010056) Error (criu/util.c:642): exited, status=1 <b>"},
			Bundle: "bundles/ferry bug & <x>.tar.gz", VerifiedOn: "tb2",
		})
	res.Summary = Summarize(res.Summary, res.Records)
	return res
}

// noDowntimeFixture is a soak in which no move completed.
func noDowntimeFixture() *Result {
	recs := []Record{
		{Iteration: 1, Workload: "web", From: "tb1", To: "tb2", Mode: "page-server", Fault: FaultCRIUMissing, Outcome: OutcomeSurvived,
			Start: t0, Duration: ms(400), Error: "criu not found on tb2", VerifiedOn: "tb1", Note: "criu hidden on tb2"},
		{Iteration: 1, Workload: "db", From: "tb1", To: "tb2", Mode: "page-server", Outcome: OutcomeFailed,
			Start: t0.Add(time.Second), Duration: ms(2300), Dump: ms(200), Transfer: ms(80), Error: "restore on tb2: criu restore exited 1",
			Bundle: "bundles/ferry-bug-run-db-1.tar.gz", VerifiedOn: "tb1"},
	}
	return &Result{Summary: Summarize(Summary{Runtime: "native", Mode: "page-server", Hosts: []string{"tb1", "tb2"},
		Started: t0, Ended: t0.Add(5 * time.Second), Iterations: 1, Stopped: "a failure without --keep-going"}, recs), Records: recs}
}

func renderHTML(t *testing.T, res *Result) string {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteHTML(&buf, res); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// TestWriteHTML checks the page of each kind of soak: its sections, three
// inline charts, no script and nothing loaded from elsewhere.
func TestWriteHTML(t *testing.T) {
	tests := []struct {
		name string
		res  *Result
		want []string
		not  []string
	}{
		{"a failed move", soakFixture(), []string{
			`<p class="verdict bad">Failed: 1 failed move</p>`, `<tr><th>took</th><td>36s</td></tr>`,
			`<tr class="workload"><td>web</td><td class="num">5</td><td class="num">3</td><td class="num">0</td><td class="num">2</td><td>no</td><td class="num">388</td><td class="num">540</td><td class="num">540</td><td class="num">413</td></tr>`,
			`<a class="bundle" href="bundles/ferry-bug-run-counter-3.tar.gz">bundles/ferry-bug-run-counter-3.tar.gz</a>`,
			`<pre class="lifted">(00.062949) Error (criu/cr-restore.c:1237): Can&#39;t fork for 27407: File exists` + "\n(00.063253)",
			`<tr class="move survived">`, `<td>link-cut</td>`, `<td>disk-full</td>`,
			`>web</text>`, `>counter</text>`, `>dump</text>`, `>transfer</text>`, `>restore</text>`,
		}, []string{`class="empty"`}},
		{"a lost workload", lostFixture(), []string{
			`<p class="verdict bad">Failed: 1 workload lost</p>`, `<td><strong>yes</strong></td>`,
			`<tr class="move lost">`, `<td><strong>no host</strong></td>`,
			`href="/var/lib/ferry/bundles/ferry-bug-run-web-6.tar.gz"`, `>failed or lost move</text>`,
		}, nil},
		{"escaping", evilFixture(), []string{
			`<td>web&lt;script&gt;alert(1)&lt;/script&gt;</td>`,
			`restore on tb1: &lt;script&gt;alert(1)&lt;/script&gt; &amp; more`,
			`status=1 &lt;b&gt;`,
			`href="bundles/ferry%20bug%20&amp;%20%3cx%3e.tar.gz"`,
			`>web&lt;script&gt;alert(1)&lt;/sc…</text>`,
		}, nil},
		{"no completed move", noDowntimeFixture(), []string{
			`<p class="verdict bad">Failed: 1 failed move</p>`,
			`No move completed: there is no downtime to draw.`,
			`No move completed: there is no downtime distribution.`,
			`No move completed: there are no step times to draw.`,
			`<tr><th>stopped</th><td>a failure without --keep-going</td></tr>`,
		}, nil},
		{"no moves", &Result{Summary: Summarize(Summary{Runtime: "lxd", Stopped: "interrupted"}, nil)}, []string{
			`<p class="verdict bad">Stopped: interrupted</p>`,
			`<p class="empty">No move was made.</p>`,
			`<p class="empty">No move failed and no fault was injected.</p>`,
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page := renderHTML(t, tt.res)
			for _, id := range []string{`<section id="summary">`, `<section id="workloads">`, `<section id="charts">`, `<section id="moves">`,
				`<figure id="chart-downtime">`, `<figure id="chart-distribution">`, `<figure id="chart-breakdown">`,
				`<title>Downtime per iteration</title>`, `<title>Downtime distribution</title>`, `<title>Time breakdown of completed moves (mean)</title>`} {
				if !strings.Contains(page, id) {
					t.Errorf("the page lacks %q", id)
				}
			}
			if n := strings.Count(page, `<svg class="chart"`); n != 3 {
				t.Errorf("%d charts, want 3", n)
			}
			for _, w := range tt.want {
				if !strings.Contains(page, w) {
					t.Errorf("the page lacks %q", w)
				}
			}
			for _, bad := range append([]string{"<script", "<?xml", `src=`, `<link`, `href="http`, "url("}, tt.not...) {
				if strings.Contains(page, bad) {
					t.Errorf("the page holds %q", bad)
				}
			}
		})
	}
}

// TestHTMLInChromium renders the report in a real headless browser and
// checks the DOM it built: the sections, the three SVG charts with their
// titles, markup from a workload name and an error kept as text, and the
// bundle links.
func TestHTMLInChromium(t *testing.T) {
	dom := testenv.ChromiumDOM(t, []byte(renderHTML(t, evilFixture())))
	for _, want := range []string{
		`<section id="summary">`, `<section id="workloads">`, `<section id="charts">`, `<section id="moves">`,
		`<title>Downtime per iteration</title>`, `<title>Downtime distribution</title>`, `<title>Time breakdown of completed moves (mean)</title>`,
		`<td>web&lt;script&gt;alert(1)&lt;/script&gt;</td>`,
		`&lt;script&gt;alert(1)&lt;/script&gt; &amp; more`,
		`<a class="bundle" href="bundles/ferry-bug-run-counter-3.tar.gz">bundles/ferry-bug-run-counter-3.tar.gz</a>`,
		`<a class="bundle" href="bundles/ferry%20bug%20&amp;%20%3cx%3e.tar.gz">bundles/ferry bug &amp; &lt;x&gt;.tar.gz</a>`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the DOM lacks %q", want)
		}
	}
	if n := strings.Count(dom, `<svg class="chart"`); n != 3 {
		t.Errorf("the DOM holds %d charts, want 3", n)
	}
	if strings.Contains(dom, "<script") {
		t.Error("the DOM holds a script element")
	}
}
