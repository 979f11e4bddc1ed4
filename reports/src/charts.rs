//! Charts as data, drawn with plotters to SVG (for the HTML page and pull requests) and PNG (for
//! slides): lines over a numeric axis (with shaded periods), grouped bars over categories, a
//! heatmap over two categorical axes, and a histogram with percentile markers.
//!
//! A chart carries its title (the question it answers), axis labels with units, and its finding:
//! one sentence, computed from the data, that says what it shows.

use plotters::chart::MeshStyle;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

/// Chart size in pixels.
const SIZE: (u32, u32) = (960, 500);
/// Width of the legend column on the right.
const LEGEND: u32 = 230;

/// Colours that stay apart for the colour-blind (Okabe and Ito), then a few more.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(240, 228, 66),
];

/// Shading of periods, by kind: faults, rebalances.
const BAND_COLOURS: [RGBColor; 2] = [RGBColor(214, 39, 40), RGBColor(31, 119, 180)];

/// One line of a line chart.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A shaded stretch of the x axis (a fault, a rebalance); `kind` indexes the band names.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Band {
    pub from: f64,
    pub to: f64,
    pub kind: usize,
}

/// What a chart draws.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Plot {
    Lines {
        series: Vec<Series>,
        bands: Vec<Band>,
        band_names: Vec<String>,
    },
    /// One group of bars per category, one bar per series.
    Bars {
        categories: Vec<String>,
        series: Vec<(String, Vec<f64>)>,
    },
    /// `cells[y][x]`, a value in `0..=max`.
    Heatmap {
        x: Vec<String>,
        y: Vec<String>,
        cells: Vec<Vec<f64>>,
        max: f64,
        percent: bool,
    },
    /// `(from, to, count)` bins, and vertical markers.
    Histogram {
        bins: Vec<(f64, f64, u64)>,
        markers: Vec<(String, f64)>,
    },
}

/// A chart: what it answers, what it shows, and its data.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Chart {
    /// File stem in the report's `charts/` folder.
    pub id: String,
    /// The question the chart answers.
    pub title: String,
    /// What was run: the scenario, seeds, settings.
    pub subtitle: String,
    /// One sentence: what the chart shows.
    pub finding: String,
    pub x_label: String,
    pub y_label: String,
    #[serde(skip)]
    pub plot: Plot,
}

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The font is a constant of the build: it always parses.
        let _ =
            plotters::style::register_font("sans-serif", FontStyle::Normal, include_bytes!("../assets/DejaVuSans.ttf"));
    });
}

impl Chart {
    /// The chart as an SVG document.
    pub fn svg(&self) -> Result<String, String> {
        register_font();
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(|e| e.to_string())?;
        }
        Ok(out)
    }

    /// The chart as a PNG file at `path`.
    pub fn png(&self, path: &std::path::Path) -> Result<(), String> {
        register_font();
        let root = crate::raster::Png::new(path, SIZE)?.into_drawing_area();
        self.draw(&root)?;
        root.present().map_err(|e| e.to_string())
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let title = TextStyle::from(("sans-serif", 20).into_font());
        root.draw(&Text::new(self.title.clone(), (16, 12), title)).map_err(|e| e.to_string())?;
        let sub = TextStyle::from(("sans-serif", 14).into_font()).color(&RGBColor(90, 90, 90));
        root.draw(&Text::new(fit(&self.subtitle, 130), (16, 38), sub)).map_err(|e| e.to_string())?;
        let body = root.margin(58, 0, 0, 0);
        let (plot_area, legend_area) = body.split_horizontally(SIZE.0 - LEGEND);
        let legend = match &self.plot {
            Plot::Lines { series, bands, band_names } => self.lines(&plot_area, series, bands, band_names),
            Plot::Bars { categories, series } => self.bars(&plot_area, categories, series),
            Plot::Heatmap { x, y, cells, max, percent } => self.heatmap(&plot_area, x, y, cells, *max, *percent),
            Plot::Histogram { bins, markers } => self.histogram(&plot_area, bins, markers),
        }
        .map_err(|e| e.to_string())?;
        draw_legend(&legend_area, &legend).map_err(|e| e.to_string())
    }

    fn lines<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        series: &[Series],
        bands: &[Band],
        band_names: &[String],
    ) -> Result<Vec<LegendItem>, DrawingAreaErrorKind<DB::ErrorType>> {
        let xs = || {
            series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).chain(bands.iter().flat_map(|b| [b.from, b.to]))
        };
        let (x0, x1) = padded(xs().fold(f64::INFINITY, f64::min), xs().fold(f64::NEG_INFINITY, f64::max));
        let ymax = top(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
        let distinct: std::collections::BTreeSet<u64> =
            series.iter().flat_map(|s| s.points.iter().map(|p| p.0.to_bits())).collect();
        let mut c = self.builder(area).build_cartesian_2d(x0..x1, 0f64..ymax)?;
        self.mesh(&mut c).x_labels(distinct.len().clamp(2, 12)).draw()?;
        let mut legend = Vec::new();
        for (kind, name) in band_names.iter().enumerate() {
            let colour = BAND_COLOURS[kind % BAND_COLOURS.len()];
            let these: Vec<&Band> = bands.iter().filter(|b| b.kind == kind).collect();
            if these.is_empty() {
                continue;
            }
            c.draw_series(
                these
                    .iter()
                    .map(|b| Rectangle::new([(b.from, 0.0), (b.to.max(b.from), ymax)], colour.mix(0.15).filled())),
            )?;
            legend.push(LegendItem { name: name.clone(), colour, fill: Some(0.3) });
        }
        for (i, s) in series.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            c.draw_series(LineSeries::new(s.points.iter().copied(), colour.stroke_width(2)))?;
            if s.points.len() <= 40 {
                c.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
            }
            legend.push(LegendItem { name: s.name.clone(), colour, fill: None });
        }
        Ok(legend)
    }

    fn bars<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        categories: &[String],
        series: &[(String, Vec<f64>)],
    ) -> Result<Vec<LegendItem>, DrawingAreaErrorKind<DB::ErrorType>> {
        let n = categories.len().max(1) as f64;
        let ymax = top(series.iter().flat_map(|s| s.1.iter().copied()));
        let mut c = self.builder(area).build_cartesian_2d(-0.5f64..n - 0.5, 0f64..ymax)?;
        self.mesh(&mut c).disable_x_mesh().x_labels(0).draw()?;
        let k = series.len().max(1) as f64;
        let width = 0.8 / k;
        let mut legend = Vec::new();
        for (s, (name, values)) in series.iter().enumerate() {
            let colour = PALETTE[s % PALETTE.len()];
            c.draw_series(values.iter().enumerate().map(|(i, &v)| {
                let left = i as f64 - 0.4 + s as f64 * width;
                Rectangle::new([(left, 0.0), (left + width * 0.92, v)], colour.filled())
            }))?;
            legend.push(LegendItem { name: name.clone(), colour, fill: Some(1.0) });
        }
        let style = TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        for (i, name) in categories.iter().enumerate() {
            let (px, py) = local(area, c.backend_coord(&(i as f64, 0.0)));
            area.draw(&Text::new(name.clone(), (px, py + 6), style.clone()))?;
        }
        Ok(legend)
    }

    #[allow(clippy::too_many_arguments)]
    fn heatmap<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        xs: &[String],
        ys: &[String],
        cells: &[Vec<f64>],
        max: f64,
        percent: bool,
    ) -> Result<Vec<LegendItem>, DrawingAreaErrorKind<DB::ErrorType>> {
        let (nx, ny) = (xs.len().max(1) as f64, ys.len().max(1) as f64);
        let mut c = self.builder(area).build_cartesian_2d(-0.5f64..nx - 0.5, -0.5f64..ny - 0.5)?;
        c.configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(0)
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .axis_desc_style(("sans-serif", 15))
            .draw()?;
        let max = if max > 0.0 { max } else { 1.0 };
        for (j, row) in cells.iter().enumerate() {
            for (i, &v) in row.iter().enumerate() {
                let (x, y) = (i as f64, j as f64);
                let cell = [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)];
                c.draw_series([
                    Rectangle::new(cell, heat(v / max).filled()),
                    Rectangle::new(cell, WHITE.stroke_width(2)),
                ])?;
                let text = if percent { format!("{:.0}%", v * 100.0) } else { number(v) };
                let colour = if v / max > 0.55 { WHITE } else { BLACK };
                let style = TextStyle::from(("sans-serif", 14).into_font())
                    .color(&colour)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                let at = local(area, c.backend_coord(&(x, y)));
                area.draw(&Text::new(text, at, style))?;
            }
        }
        let below = TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        for (i, name) in xs.iter().enumerate() {
            let (px, py) = local(area, c.backend_coord(&(i as f64, -0.5)));
            area.draw(&Text::new(name.clone(), (px, py + 6), below.clone()))?;
        }
        let left = TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
        for (j, name) in ys.iter().enumerate() {
            let (px, py) = local(area, c.backend_coord(&(-0.5, j as f64)));
            area.draw(&Text::new(name.clone(), (px - 6, py), left.clone()))?;
        }
        let scale = if percent { format!("0% to {:.0}%", max * 100.0) } else { format!("0 to {}", number(max)) };
        Ok(vec![
            LegendItem {
                name: format!("{} (light)", if percent { "0%" } else { "0" }),
                colour: heat(0.0),
                fill: Some(1.0),
            },
            LegendItem {
                name: format!("{} (half)", if percent { format!("{:.0}%", max * 50.0) } else { number(max / 2.0) }),
                colour: heat(0.5),
                fill: Some(1.0),
            },
            LegendItem {
                name: format!("{} (dark)", scale.rsplit(" to ").next().unwrap_or("")),
                colour: heat(1.0),
                fill: Some(1.0),
            },
        ])
    }

    fn histogram<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        bins: &[(f64, f64, u64)],
        markers: &[(String, f64)],
    ) -> Result<Vec<LegendItem>, DrawingAreaErrorKind<DB::ErrorType>> {
        let x0 = bins.first().map_or(0.0, |b| b.0);
        let x1 = bins.last().map_or(1.0, |b| b.1).max(x0 + 1e-9);
        let ymax = top(bins.iter().map(|b| b.2 as f64));
        let mut c = self.builder(area).build_cartesian_2d(x0..x1, 0f64..ymax)?;
        self.mesh(&mut c).disable_x_mesh().x_labels(10).draw()?;
        let colour = PALETTE[0];
        c.draw_series(
            bins.iter().map(|&(a, b, n)| Rectangle::new([(a, 0.0), (b, n as f64)], colour.mix(0.75).filled())),
        )?;
        let mut legend = vec![LegendItem { name: "samples per bin".into(), colour, fill: Some(0.75) }];
        for (k, (name, x)) in markers.iter().enumerate() {
            let colour = PALETTE[(k + 1) % PALETTE.len()];
            c.draw_series(std::iter::once(PathElement::new(vec![(*x, 0.0), (*x, ymax)], colour.stroke_width(2))))?;
            legend.push(LegendItem { name: name.clone(), colour, fill: None });
        }
        Ok(legend)
    }

    /// The axes every numeric chart shares: labels with units, numbers as a person writes
    /// them, light major grid lines only.
    fn mesh<'a, 'b, DB: DrawingBackend>(
        &'b self,
        c: &'b mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    ) -> MeshStyle<'a, 'b, RangedCoordf64, RangedCoordf64, DB> {
        let mut m = c.configure_mesh();
        m.x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .y_labels(8)
            .x_label_formatter(&label)
            .y_label_formatter(&label)
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(228, 228, 228));
        m
    }

    fn builder<'a, 'b, DB: DrawingBackend>(&self, area: &'a DrawingArea<DB, Shift>) -> ChartBuilder<'a, 'b, DB> {
        let mut b = ChartBuilder::on(area);
        b.margin(14).x_label_area_size(48).y_label_area_size(78);
        b
    }
}

/// One entry of a chart's legend.
struct LegendItem {
    name: String,
    colour: RGBColor,
    /// A filled box of this opacity (a band, a bin, a heat) rather than a line.
    fill: Option<f64>,
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    items: &[LegendItem],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let style = TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let (x, mut y) = (8, 60);
    for item in items {
        if let Some(alpha) = item.fill {
            area.draw(&Rectangle::new([(x, y - 7), (x + 22, y + 7)], item.colour.mix(alpha).filled()))?;
            area.draw(&Rectangle::new([(x, y - 7), (x + 22, y + 7)], RGBColor(160, 160, 160).stroke_width(1)))?;
        } else {
            area.draw(&PathElement::new(vec![(x, y), (x + 22, y)], item.colour.stroke_width(3)))?;
        }
        area.draw(&Text::new(fit(&item.name, 28), (x + 30, y), style.clone()))?;
        y += 24;
    }
    Ok(())
}

/// `s` cut to `n` characters, with an ellipsis when cut.
pub(crate) fn fit(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n - 1).chain(std::iter::once('…')).collect() }
}

/// A chart's backend pixel as a point of `area` (whose origin is not the backend's).
fn local<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, (x, y): (i32, i32)) -> (i32, i32) {
    let (bx, by) = area.get_base_pixel();
    (x - bx, y - by)
}

/// A white-to-red scale for `t` in `0..=1`.
fn heat(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(lerp(250.0, 165.0), lerp(250.0, 15.0), lerp(250.0, 21.0))
}

/// A y range's top: 10% above the largest value, or 1 when everything is 0.
fn top(values: impl Iterator<Item = f64>) -> f64 {
    let m = values.fold(0.0f64, f64::max);
    if m > 0.0 { m * 1.1 } else { 1.0 }
}

/// An x range with a little room on both sides.
fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { (hi - lo) * 0.03 } else { 0.5 };
    (lo - pad, hi + pad)
}

/// An axis label (`number`, for plotters' label formatters).
fn label(v: &f64) -> String {
    number(*v)
}

/// A number for a label: integers without decimals, thousands separated, small values with
/// two significant decimals.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return "-".to_string();
    }
    if v.abs() >= 1e15 {
        return format!("{v:.3e}");
    }
    if (v - v.round()).abs() < 1e-9 {
        let n = v.round() as i64;
        let digits = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        return if n < 0 { format!("-{out}") } else { out };
    }
    if v.abs() >= 100.0 {
        number(v.round())
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(plot: Plot) -> Chart {
        Chart {
            id: "t".into(),
            title: "Does it scale?".into(),
            subtitle: "a test".into(),
            finding: "It does.".into(),
            x_label: "partitions".into(),
            y_label: "records/s".into(),
            plot,
        }
    }

    #[test]
    fn numbers_read_as_a_person_writes_them() {
        assert_eq!(number(1234567.0), "1,234,567");
        assert_eq!(number(-1000.0), "-1,000");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(0.125), "0.12");
        assert_eq!(number(512.6), "513");
        assert_eq!(number(2.5e17), "2.500e17");
        assert_eq!(number(f64::NAN), "-");
    }

    #[test]
    fn every_kind_of_chart_draws_to_svg_with_its_title_labels_and_legend() {
        let plots = [
            Plot::Lines {
                series: vec![Series { name: "one hot coupon".into(), points: vec![(1.0, 10.0), (2.0, 12.0)] }],
                bands: vec![Band { from: 1.2, to: 1.5, kind: 0 }],
                band_names: vec!["faults".into()],
            },
            Plot::Bars {
                categories: vec!["auto-commit".into(), "idempotent".into()],
                series: vec![("dup".into(), vec![3.0, 0.0])],
            },
            Plot::Heatmap {
                x: vec!["1".into(), "all".into()],
                y: vec!["0".into(), "2".into()],
                cells: vec![vec![0.0, 0.5], vec![1.0, 0.25]],
                max: 1.0,
                percent: true,
            },
            Plot::Histogram { bins: vec![(0.0, 1.0, 5), (1.0, 2.0, 3)], markers: vec![("p99 1.9 ms".into(), 1.9)] },
        ];
        for plot in plots {
            let svg = chart(plot.clone()).svg().unwrap();
            assert!(svg.starts_with("<svg"), "{plot:?}");
            for text in ["Does it scale?", "partitions", "records/s"] {
                assert!(svg.contains(text), "{plot:?} lacks {text}");
            }
            let legend = match &plot {
                Plot::Lines { .. } => "one hot coupon",
                Plot::Bars { .. } => "idempotent",
                Plot::Heatmap { .. } => "50%",
                Plot::Histogram { .. } => "p99 1.9 ms",
            };
            assert!(svg.contains(legend), "{plot:?} lacks {legend}");
        }
    }

    #[test]
    fn a_chart_draws_to_png() {
        let dir = std::env::temp_dir().join(format!("evsim-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.png");
        chart(Plot::Lines {
            series: vec![Series { name: "s".into(), points: vec![(0.0, 1.0), (1.0, 2.0)] }],
            bands: vec![],
            band_names: vec![],
        })
        .png(&path)
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(bytes.len() > 5_000, "a drawn chart, not an empty image: {} bytes", bytes.len());
        std::fs::remove_dir_all(&dir).ok();
    }
}
