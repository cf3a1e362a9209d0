package bench

import (
	"context"
	"fmt"
	"html"
	"math"
	"os"
	"strings"
	"time"
)

// growth runs the scale step at each of Options.GrowthSizes, writes the
// picture of cost per domain against N to Options.Growth, and returns the
// scale rows of the largest size.
func (b *bench) growth(ctx context.Context) ([]Row, []GrowthPoint, error) {
	var points []GrowthPoint
	for _, n := range b.opts.GrowthSizes {
		b.progress("  growth: %s domains", thousands(n))
		p, err := b.scaleRun(ctx, n)
		if err != nil {
			return nil, points, fmt.Errorf("growth at %s domains: %w", thousands(n), err)
		}
		points = append(points, p)
	}
	if err := os.WriteFile(b.opts.Growth, []byte(GrowthSVG(points)), 0o644); err != nil {
		return nil, points, fmt.Errorf("write the growth picture: %w", err)
	}
	b.progress("  growth picture written to %s", b.opts.Growth)
	largest := points[0]
	for _, p := range points {
		if p.N > largest.N {
			largest = p
		}
	}
	return scaleRows(largest), points, nil
}

// growthPanel is one chart: a quantity per domain (or per query) against N.
type growthPanel struct {
	title, unit string
	series      []growthSeries
}

type growthSeries struct {
	name, color string
	value       func(GrowthPoint) float64
}

func perDomainMicros(d time.Duration, n int) float64 {
	return float64(d.Nanoseconds()) / 1e3 / float64(max(n, 1))
}

// GrowthSVG draws four small charts, N on a log scale: the INSERT's cost
// per domain, verify_dns time per domain, the worker's memory per
// Certificate in its watch, and the two periodic queries. Flat lines mean
// cost per domain does not grow with N.
func GrowthSVG(points []GrowthPoint) string {
	panels := []growthPanel{
		{"SQL INSERT, per domain", "µs", []growthSeries{
			{"with triggers (jobs enqueued)", "#1f77b4", func(p GrowthPoint) float64 { return perDomainMicros(p.Insert, p.N) }},
			{"same INSERT, no triggers", "#999999", func(p GrowthPoint) float64 { return perDomainMicros(p.PlainInsert, p.N) }},
		}},
		{"verify_dns, per domain", "µs", []growthSeries{
			{"all N domains", "#1f77b4", func(p GrowthPoint) float64 { return 1e6 / math.Max(p.VerifyRate, 1e-9) }},
			{"up to 2,000 domains, same run", "#999999", func(p GrowthPoint) float64 { return 1e6 / math.Max(p.VerifySmallRate, 1e-9) }},
		}},
		{"worker memory, per Certificate watched", "KB", []growthSeries{
			{"peak RSS above idle / N", "#1f77b4", func(p GrowthPoint) float64 { return (p.WatchMB - p.IdleMB) * 1024 / float64(max(p.N, 1)) }},
		}},
		{"periodic queries, whole table", "ms", []growthSeries{
			{"reconcile", "#1f77b4", func(p GrowthPoint) float64 { return ms(p.Reconcile) }},
			{"stuck scan", "#ff7f0e", func(p GrowthPoint) float64 { return ms(p.StuckScan) }},
			{"count(*)", "#999999", func(p GrowthPoint) float64 { return ms(p.CountScan) }},
		}},
	}
	const pw, ph, cols = 420, 260, 2
	rows := (len(panels) + cols - 1) / cols
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", cols*pw, rows*ph+30)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/><text x="10" y="18" font-size="13">portal-domains: cost per domain against N (log scale); flat is good</text>`+"\n")
	for i, panel := range panels {
		drawPanel(&sb, panel, points, float64((i%cols)*pw), float64(30+(i/cols)*ph), pw, ph)
	}
	sb.WriteString("</svg>\n")
	return sb.String()
}

func drawPanel(sb *strings.Builder, panel growthPanel, points []GrowthPoint, x0, y0 float64, w, h int) {
	const left, right, top, bottom = 55.0, 15.0, 25.0, 70.0
	plotW, plotH := float64(w)-left-right, float64(h)-top-bottom
	minN, maxN, maxY := math.Inf(1), 0.0, 0.0
	for _, p := range points {
		minN, maxN = math.Min(minN, float64(p.N)), math.Max(maxN, float64(p.N))
		for _, s := range panel.series {
			maxY = math.Max(maxY, s.value(p))
		}
	}
	if maxY <= 0 {
		maxY = 1
	}
	maxY *= 1.15
	xOf := func(n int) float64 {
		if maxN <= minN {
			return x0 + left + plotW/2
		}
		return x0 + left + plotW*(math.Log10(float64(n))-math.Log10(minN))/(math.Log10(maxN)-math.Log10(minN))
	}
	yOf := func(v float64) float64 { return y0 + top + plotH*(1-v/maxY) }
	fmt.Fprintf(sb, `<text x="%.0f" y="%.0f" font-size="12" font-weight="bold">%s (%s)</text>`+"\n", x0+left, y0+15, html.EscapeString(panel.title), panel.unit)
	fmt.Fprintf(sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", x0+left, y0+top+plotH, x0+left+plotW, y0+top+plotH)
	fmt.Fprintf(sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", x0+left, y0+top, x0+left, y0+top+plotH)
	for _, frac := range []float64{0, 0.5, 1} {
		v := maxY / 1.15 * frac
		fmt.Fprintf(sb, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", x0+left-4, yOf(v)+4, number(v))
	}
	for _, p := range points {
		fmt.Fprintf(sb, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", xOf(p.N), y0+top+plotH+14, thousands(p.N))
	}
	for si, s := range panel.series {
		var pts []string
		for _, p := range points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(p.N), yOf(s.value(p))))
			fmt.Fprintf(sb, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/><text x="%.1f" y="%.1f" fill="%s" text-anchor="middle">%s</text>`+"\n",
				xOf(p.N), yOf(s.value(p)), s.color, xOf(p.N), yOf(s.value(p))-6, s.color, number(s.value(p)))
		}
		fmt.Fprintf(sb, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", s.color, strings.Join(pts, " "))
		fmt.Fprintf(sb, `<rect x="%.1f" y="%.1f" width="10" height="3" fill="%s"/><text x="%.1f" y="%.1f">%s</text>`+"\n",
			x0+left, y0+top+plotH+26+float64(si)*13, s.color, x0+left+14, y0+top+plotH+31+float64(si)*13, html.EscapeString(s.name))
	}
}
