package soak

import (
	"bytes"
	"fmt"
	"html"
	"image/color"
	"math"
	"regexp"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// chart is one drawn chart: its title, the inline SVG and, when it has no
// data to show, why.
type chart struct {
	ID    string
	Title string
	SVG   string
	Empty string
}

const (
	chartWidth  = 640 * vg.Length(1)
	chartHeight = 320 * vg.Length(1)
)

var failedColor = color.RGBA{R: 0xc6, G: 0x28, B: 0x28, A: 0xff}

// charts draws the three charts of the HTML report. Only completed moves
// (Downtime > 0) have a downtime; the other moves appear as crosses on the
// zero line of the first chart.
func charts(r *Result) ([]chart, error) {
	workloads := workloadNames(r)
	var out []chart
	for _, build := range []func(*Result, []string) (chart, *plot.Plot, error){
		downtimeChart, distributionChart, breakdownChart,
	} {
		c, p, err := build(r, workloads)
		if err != nil {
			return nil, fmt.Errorf("chart %s: %w", c.ID, err)
		}
		p.Title.Text = c.Title
		sans(p)
		if c.SVG, err = renderSVG(p, c.Title); err != nil {
			return nil, fmt.Errorf("chart %s: %w", c.ID, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// downtimeChart: downtime (ms) per iteration, a line per workload, and
// the moves that did not complete as crosses at 0.
func downtimeChart(r *Result, workloads []string) (chart, *plot.Plot, error) {
	c := chart{ID: "chart-downtime", Title: "Downtime per iteration"}
	p := plot.New()
	p.X.Label.Text = "iteration"
	p.Y.Label.Text = "downtime (ms)"
	p.Y.Min = 0
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	points := map[string]plotter.XYs{}
	var failed plotter.XYs
	maxIter := 0
	for _, rec := range r.Records {
		maxIter = max(maxIter, rec.Iteration)
		switch {
		case rec.Downtime > 0:
			points[rec.Workload] = append(points[rec.Workload], plotter.XY{X: float64(rec.Iteration), Y: msFloat(rec.Downtime)})
		case rec.Outcome == OutcomeFailed || rec.Outcome == OutcomeLost:
			failed = append(failed, plotter.XY{X: float64(rec.Iteration), Y: 0})
		}
	}
	var lines []any
	for _, wl := range workloads {
		if len(points[wl]) > 0 {
			lines = append(lines, label(wl), points[wl])
		}
	}
	// Past a few dozen moves a glyph on every point hides the lines.
	add := plotutil.AddLinePoints
	if maxIter > 60 {
		add = plotutil.AddLines
	}
	if err := add(p, lines...); err != nil {
		return c, nil, err
	}
	if len(failed) > 0 {
		s, err := plotter.NewScatter(failed)
		if err != nil {
			return c, nil, err
		}
		s.GlyphStyle = draw.GlyphStyle{Color: failedColor, Radius: vg.Points(4), Shape: draw.CrossGlyph{}}
		p.Add(s)
		p.Legend.Add("failed or lost move", s)
	}
	top, entries := 0.0, len(lines)/2
	for _, pts := range points {
		for _, xy := range pts {
			top = max(top, xy.Y)
		}
	}
	if len(failed) > 0 {
		entries++
	}
	headroom(p, top, entries)
	if maxIter > 0 && maxIter <= 25 {
		p.X.Tick.Marker = integerTicks{}
	}
	if len(points) == 0 {
		c.Empty = "No move completed: there is no downtime to draw."
	}
	return c, p, nil
}

// distributionChart: a box plot of each workload's downtimes.
func distributionChart(r *Result, workloads []string) (chart, *plot.Plot, error) {
	c := chart{ID: "chart-distribution", Title: "Downtime distribution"}
	p := plot.New()
	p.Y.Label.Text = "downtime (ms)"
	p.Add(plotter.NewGrid())
	downtimes := downtimesOf(r.Records)
	for i, wl := range workloads {
		if len(downtimes[wl]) == 0 {
			continue
		}
		values := make(plotter.Values, len(downtimes[wl]))
		for j, d := range downtimes[wl] {
			values[j] = msFloat(d)
		}
		b, err := plotter.NewBoxPlot(vg.Points(28), float64(i), values)
		if err != nil {
			return c, nil, err
		}
		b.FillColor = plotutil.Color(i)
		p.Add(b)
	}
	if len(workloads) > 0 {
		p.NominalX(labels(workloads)...)
	}
	if len(downtimes) == 0 {
		c.Empty = "No move completed: there is no downtime distribution."
	}
	return c, p, nil
}

// breakdownChart: the mean dump, transfer and restore time of each
// workload's completed moves, stacked.
func breakdownChart(r *Result, workloads []string) (chart, *plot.Plot, error) {
	c := chart{ID: "chart-breakdown", Title: "Time breakdown of completed moves (mean)"}
	p := plot.New()
	p.Y.Label.Text = "time (ms)"
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	type sums struct {
		n                       int
		dump, transfer, restore time.Duration
	}
	by := map[string]*sums{}
	for _, rec := range r.Records {
		if rec.Downtime <= 0 {
			continue
		}
		s := by[rec.Workload]
		if s == nil {
			s = &sums{}
			by[rec.Workload] = s
		}
		s.n++
		s.dump += rec.Dump
		s.transfer += rec.Transfer
		s.restore += rec.Restore
	}
	if len(by) == 0 {
		c.Empty = "No move completed: there are no step times to draw."
	}
	if len(workloads) == 0 {
		return c, p, nil
	}
	steps := []struct {
		name string
		of   func(*sums) time.Duration
	}{
		{"dump", func(s *sums) time.Duration { return s.dump }},
		{"transfer", func(s *sums) time.Duration { return s.transfer }},
		{"restore", func(s *sums) time.Duration { return s.restore }},
	}
	top := 0.0
	for _, s := range by {
		top = max(top, msFloat(s.dump+s.transfer+s.restore)/float64(s.n))
	}
	var below *plotter.BarChart
	for i, step := range steps {
		vals := make(plotter.Values, len(workloads))
		for j, wl := range workloads {
			if s := by[wl]; s != nil {
				vals[j] = msFloat(step.of(s)) / float64(s.n)
			}
		}
		b, err := plotter.NewBarChart(vals, vg.Points(36))
		if err != nil {
			return c, nil, err
		}
		b.Color = plotutil.Color(i)
		b.LineStyle.Width = 0
		if below != nil {
			b.StackOn(below)
		}
		below = b
		p.Add(b)
		p.Legend.Add(step.name, b)
	}
	headroom(p, top, len(steps))
	p.NominalX(labels(workloads)...)
	return c, p, nil
}

// sans sets every text of p in Liberation Sans, whose widths are Arial's
// and Helvetica's, the fonts the report's CSS asks a browser for: text
// then takes the room the plot measured for it. (The default, Liberation
// Serif, falls back to wider fonts where it is missing.)
func sans(p *plot.Plot) {
	set := func(f *font.Font) { f.Typeface, f.Variant = "Liberation", "Sans" }
	set(&p.Title.TextStyle.Font)
	set(&p.Legend.TextStyle.Font)
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		set(&a.Label.TextStyle.Font)
		set(&a.Tick.Label.Font)
	}
}

// headroom raises the top of p's Y axis above the data's top so that a
// legend of n rows in the top right corner stays clear of the data.
func headroom(p *plot.Plot, top float64, n int) {
	if n > 0 && top > 0 {
		p.Y.Max = top * (1 + 0.08*float64(n+1))
	}
}

// label shortens a workload name to fit a legend or an axis.
func label(name string) string {
	const most = 24
	if r := []rune(name); len(r) > most {
		return string(r[:most-1]) + "…"
	}
	return name
}

func labels(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = label(n)
	}
	return out
}

// integerTicks marks each whole number of a short axis (iterations).
type integerTicks struct{}

func (integerTicks) Ticks(lo, hi float64) []plot.Tick {
	var t []plot.Tick
	for v := math.Ceil(lo); v <= hi; v++ {
		t = append(t, plot.Tick{Value: v, Label: fmt.Sprintf("%.0f", v)})
	}
	return t
}

var svgSize = regexp.MustCompile(`^<svg width="[^"]*" height="[^"]*"`)

// renderSVG draws p as an SVG element to inline in HTML: no XML prolog,
// sized by CSS through its viewBox, with a <title>. Every text in it was
// escaped by the SVG writer.
func renderSVG(p *plot.Plot, title string) (string, error) {
	cv := vgsvg.New(chartWidth, chartHeight)
	p.Draw(draw.New(cv))
	var buf bytes.Buffer
	if _, err := cv.WriteTo(&buf); err != nil {
		return "", err
	}
	s := buf.String()
	i := strings.Index(s, "<svg")
	if i < 0 {
		return "", fmt.Errorf("no <svg> element in the plot's output")
	}
	s = svgSize.ReplaceAllLiteralString(s[i:], `<svg class="chart" role="img"`)
	end := strings.Index(s, ">")
	return s[:end+1] + "\n<title>" + html.EscapeString(title) + "</title>" + s[end+1:], nil
}

func msFloat(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
