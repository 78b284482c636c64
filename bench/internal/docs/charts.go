package docs

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/keeldb/keel/bench/internal/report"
)

// The servers' colours, the same in every chart.
var (
	etcdColor   = color.RGBA{R: 0x41, G: 0x69, B: 0xe1, A: 0xff} // blue
	keelColor   = color.RGBA{R: 0xf0, G: 0x8c, B: 0x00, A: 0xff} // orange
	targetColor = color.RGBA{R: 0xc0, G: 0x10, B: 0x10, A: 0xff}
	evenColor   = color.Gray{Y: 0x60}
)

// percentiles are the latency percentiles charted, in order ("max" is left
// out: one slow request would set the scale).
var percentiles = []string{"p50", "p90", "p99", "p99.9"}

const (
	chartDPI   = 110
	panelWidth = 9 * vg.Centimeter
	chartH     = 9 * vg.Centimeter
	// maxCols is the most panels side by side in one row of a chart.
	maxCols = 4
)

// drawCharts draws every chart of the suite into dir and returns their
// paths: the overview under overviewChart, each step's under its label.
// A step with nothing to draw (no chart asked for, or none of its figures
// measured) gets none.
func drawCharts(dir string, s *Suite) (map[string]string, error) {
	charts := map[string]string{}
	if p, h, ok := overviewPlot(s); ok {
		path := filepath.Join(dir, "throughput-ratio.png")
		if err := savePlots(path, [][]*plot.Plot{{p}}, 18*vg.Centimeter, h); err != nil {
			return nil, err
		}
		charts[overviewChart] = path
	}
	for i := range s.Steps {
		st := &s.Steps[i]
		panels := stepPanels(st)
		if len(panels) == 0 {
			continue
		}
		// At most maxCols panels a row, the rows as even as can be.
		rows := (len(panels) + maxCols - 1) / maxCols
		cols := (len(panels) + rows - 1) / rows
		grid := make([][]*plot.Plot, rows)
		for j := range grid {
			grid[j] = make([]*plot.Plot, cols)
			copy(grid[j], panels[j*cols:min(len(panels), (j+1)*cols)])
		}
		path := filepath.Join(dir, Slug(st.Label)+".png")
		if err := savePlots(path, grid, panelWidth*vg.Length(cols), chartH*vg.Length(rows)); err != nil {
			return nil, err
		}
		charts[st.Label] = path
	}
	return charts, nil
}

// stepPanels returns a step's panels, left to right.
func stepPanels(st *Step) []*plot.Plot {
	if st.Err != "" || st.Chart.empty() {
		return nil
	}
	var panels []*plot.Plot
	if p := figurePanel(&st.Report, st.Chart.Throughput); p != nil {
		panels = append(panels, p)
	}
	if p := latencyPanel(&st.Report, st.Chart.Latency); p != nil {
		panels = append(panels, p)
	}
	for _, name := range st.Chart.Figures {
		if p := figurePanel(&st.Report, name); p != nil {
			panels = append(panels, p)
		}
	}
	return panels
}

// figurePanel charts one figure as two bars, etcd and keel, each labelled
// with its value; nil when neither server measured it.
func figurePanel(rep *report.Report, name string) *plot.Plot {
	if name == "" {
		return nil
	}
	s, ok := rep.Summary(name)
	if !ok || s.Etcd.Missing && s.Keel.Missing {
		return nil
	}
	p := newPlot(name)
	if r := s.RatioText(); r != "" {
		p.Title.Text += "\nkeel/etcd " + r
	}
	p.Y.Label.Text = axisLabel(s.Unit)
	p.Y.Min = 0
	for i, f := range []report.Figure{s.Etcd, s.Keel} {
		v := scaled(f)
		b, err := plotter.NewBarChart(plotter.Values{v}, 1.2*vg.Centimeter)
		if err != nil {
			return nil
		}
		b.XMin = float64(i)
		b.Color = []color.Color{etcdColor, keelColor}[i]
		b.LineStyle.Width = 0
		p.Add(b)
		lbl, err := plotter.NewLabels(plotter.XYLabels{
			XYs:    plotter.XYs{{X: float64(i), Y: v}},
			Labels: []string{barLabel(f)},
		})
		if err == nil {
			lbl.TextStyle[0].XAlign = text.XCenter
			lbl.Offset = vg.Point{Y: vg.Points(2)}
			p.Add(lbl)
		}
	}
	p.NominalX("etcd", "keel")
	// Leave room above the bars for their labels.
	if ymax := max(scaled(s.Etcd), scaled(s.Keel)); ymax > 0 {
		p.Y.Max = ymax * 1.15
	}
	return p
}

// latencyPanel charts the latency percentiles of op as grouped bars, etcd
// beside keel for each percentile; nil when no percentile was measured.
func latencyPanel(rep *report.Report, op string) *plot.Plot {
	if op == "" {
		return nil
	}
	var labels []string
	var etcd, keel plotter.Values
	for _, pc := range percentiles {
		s, ok := rep.Summary(op + " latency " + pc)
		if !ok || s.Etcd.Missing && s.Keel.Missing {
			continue
		}
		labels = append(labels, pc)
		etcd = append(etcd, scaled(s.Etcd))
		keel = append(keel, scaled(s.Keel))
	}
	if len(labels) == 0 {
		return nil
	}
	p := newPlot(op + " latency percentiles")
	p.Y.Label.Text = "ms"
	p.Y.Min = 0
	w := vg.Length(min(1.0, 3.0/float64(len(labels)))) * 0.5 * vg.Centimeter
	for i, vs := range []plotter.Values{etcd, keel} {
		b, err := plotter.NewBarChart(vs, w)
		if err != nil {
			return nil
		}
		b.Color = []color.Color{etcdColor, keelColor}[i]
		b.LineStyle.Width = 0
		b.Offset = vg.Length(2*i-1) * w / 2
		p.Add(b)
		p.Legend.Add([]string{"etcd", "keel"}[i], b)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	// Leave room above the bars for the legend.
	if ymax := max(slices.Max(etcd), slices.Max(keel)); ymax > 0 {
		p.Y.Max = ymax * 1.25
	}
	p.NominalX(labels...)
	return p
}

// overviewPlot charts keel/etcd of the throughput of every step marked for
// the overview, one horizontal bar per step, with a line at 1 (as fast as
// etcd) and the step's throughput target, if it has one, marked in red.
func overviewPlot(s *Suite) (p *plot.Plot, height vg.Length, ok bool) {
	var labels []string
	var ratios plotter.Values
	var texts []string
	var targets []float64
	for i := range s.Steps {
		st := &s.Steps[i]
		if !st.Chart.Overview || st.Chart.Throughput == "" || st.Err != "" {
			continue
		}
		sum, found := st.Report.Summary(st.Chart.Throughput)
		if !found {
			continue
		}
		r, ok := sum.Ratio()
		text := fmt.Sprintf("%.2f", r)
		if !ok {
			r, text = 0, "n/a"
		}
		labels = append(labels, st.Label)
		ratios = append(ratios, r)
		texts = append(texts, text)
		target := 0.0
		for _, t := range s.Targets {
			if t.Step == st.Label && t.Figure == st.Chart.Throughput && !t.AtMost {
				target = t.Bound
			}
		}
		targets = append(targets, target)
	}
	if len(labels) == 0 {
		return nil, 0, false
	}
	// Bars are drawn bottom-up; reverse so that the first step is on top.
	n := len(labels)
	for i := range n / 2 {
		j := n - 1 - i
		labels[i], labels[j] = labels[j], labels[i]
		ratios[i], ratios[j] = ratios[j], ratios[i]
		texts[i], texts[j] = texts[j], texts[i]
		targets[i], targets[j] = targets[j], targets[i]
	}
	p = newPlot("throughput, keel/etcd of the medians (1 = as fast as etcd; red: target)")
	p.X.Label.Text = "keel/etcd"
	p.X.Min = 0
	b, err := plotter.NewBarChart(ratios, 0.45*vg.Centimeter)
	if err != nil {
		return nil, 0, false
	}
	b.Horizontal = true
	b.Color = keelColor
	b.LineStyle.Width = 0
	p.Add(b)
	xmax := 1.0
	for i, r := range ratios {
		xmax = max(xmax, r, targets[i])
	}
	p.X.Max = xmax * 1.15
	even, err := plotter.NewLine(plotter.XYs{{X: 1, Y: -0.5}, {X: 1, Y: float64(n) - 0.5}})
	if err == nil {
		even.LineStyle = draw.LineStyle{Color: evenColor, Width: vg.Points(1), Dashes: []vg.Length{vg.Points(4), vg.Points(3)}}
		p.Add(even)
	}
	for i, t := range targets {
		if t <= 0 {
			continue
		}
		l, err := plotter.NewLine(plotter.XYs{{X: t, Y: float64(i) - 0.4}, {X: t, Y: float64(i) + 0.4}})
		if err == nil {
			l.LineStyle = draw.LineStyle{Color: targetColor, Width: vg.Points(2)}
			p.Add(l)
		}
	}
	var xys plotter.XYs
	for i, r := range ratios {
		xys = append(xys, plotter.XY{X: r, Y: float64(i)})
	}
	if lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: texts}); err == nil {
		for i := range lbl.TextStyle {
			lbl.TextStyle[i].YAlign = text.YCenter
		}
		lbl.Offset = vg.Point{X: vg.Points(3)}
		p.Add(lbl)
	}
	p.NominalY(labels...)
	return p, 3*vg.Centimeter + vg.Length(n)*0.9*vg.Centimeter, true
}

func newPlot(title string) *plot.Plot {
	p := plot.New()
	p.X.Tick.Marker = plainTicks{}
	p.Y.Tick.Marker = plainTicks{}
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(11)
	p.Title.Padding = vg.Points(4)
	p.Legend.TextStyle = text.Style{Font: font.From(plot.DefaultFont, vg.Points(9)), Handler: plot.DefaultTextHandler}
	p.Add(plotter.NewGrid())
	return p
}

// plainTicks are gonum's default ticks labelled with the fewest digits
// (250, not 250.00).
type plainTicks struct{}

func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = strconv.FormatFloat(ts[i].Value, 'g', 8, 64)
		}
	}
	return ts
}

// barLabel is the value printed above a bar: the figure in its chart unit,
// with as many digits as a reader can take in at a glance.
func barLabel(f report.Figure) string {
	if f.Missing {
		return "n/a"
	}
	switch v := scaled(f); {
	case v == 0 || v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

// axisLabel is the unit a value axis is labelled with.
func axisLabel(u report.Unit) string {
	if u == report.Rate {
		return "per second"
	}
	return report.UnitLabel(u)
}

// scaled is the value a chart shows: bytes in MiB (as the tables print
// them), 0 when missing.
func scaled(f report.Figure) float64 {
	if f.Missing {
		return 0
	}
	if f.Unit == report.Bytes {
		return f.Value / (1 << 20)
	}
	return f.Value
}

// savePlots draws a grid of plots (rows of equal length; nil leaves a
// tile empty) into one PNG of w by h.
func savePlots(path string, grid [][]*plot.Plot, w, h vg.Length) error {
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(chartDPI), vgimg.UseBackgroundColor(color.White))
	dc := draw.New(img)
	tiles := draw.Tiles{
		Rows: len(grid), Cols: len(grid[0]),
		PadX: vg.Centimeter, PadY: vg.Centimeter,
		PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(10),
	}
	canvases := plot.Align(grid, tiles, dc)
	for j, row := range grid {
		for i, p := range row {
			if p != nil {
				p.Draw(canvases[j][i])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
