//! PNG charts for the load scenarios (not part of Seawall): stacked panels sharing one time axis,
//! each with lines or dots and vertical markers (reloads, phase changes).
//!
//! Drawn with plotters' bitmap backend (pure Rust, PNG through the `image` crate). Text needs a
//! font file: Debian's DejaVu Sans (fonts-dejavu-core; the scripts install it when missing), or
//! the file named by `LOADTEST_FONT` (`none`: no text). Without one the chart is drawn without any text (no
//! title, tick labels or legend) rather than not at all, and `draw` says so.
#![allow(dead_code)]

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

pub use plotters::style::RGBColor;

pub const GREY: RGBColor = RGBColor(120, 120, 120);
pub const BLUE: RGBColor = RGBColor(31, 119, 180);
pub const ORANGE: RGBColor = RGBColor(255, 127, 14);
pub const GREEN: RGBColor = RGBColor(44, 160, 44);
pub const RED: RGBColor = RGBColor(214, 39, 40);
pub const PURPLE: RGBColor = RGBColor(148, 103, 189);
pub const LIGHT_RED: RGBColor = RGBColor(250, 190, 190);
pub const LIGHT_GREEN: RGBColor = RGBColor(190, 230, 190);
pub const TEAL: RGBColor = RGBColor(23, 190, 207);

#[derive(Clone, Copy, PartialEq)]
pub enum Style {
    Line,
    Thin,
    Dashed,
    Dots,
}

pub struct Series {
    pub label: String,
    pub color: RGBColor,
    pub style: Style,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(label: &str, color: RGBColor, style: Style, points: Vec<(f64, f64)>) -> Self {
        Series {
            label: label.to_string(),
            color,
            style,
            points,
        }
    }

    /// A latency pair from `(x, p50, p99)` points: p99 as a line, p50 dashed, labelled
    /// "`name` p99" and "`name` p50" (`None`: no legend entry, for repeated runs).
    #[allow(dead_code)] // not every load test draws percentiles
    pub fn p99_p50(
        name: Option<&str>,
        color: RGBColor,
        points: impl IntoIterator<Item = (f64, f64, f64)>,
    ) -> [Series; 2] {
        let (p50, p99): (Vec<_>, Vec<_>) = points
            .into_iter()
            .map(|(x, p50, p99)| ((x, p50), (x, p99)))
            .unzip();
        let label = |q: &str| name.map_or_else(String::new, |n| format!("{n} {q}"));
        [
            Series::new(&label("p99"), color, Style::Line, p99),
            Series::new(&label("p50"), color, Style::Dashed, p50),
        ]
    }
}

#[derive(Default)]
pub struct Panel {
    pub y_desc: String,
    /// Logarithmic y axis (latencies): values <= 0 are left out.
    pub log_y: bool,
    pub series: Vec<Series>,
    /// Vertical lines across the panel at these x, in these colors.
    pub markers: Vec<(f64, RGBColor)>,
    /// Labelled spans along the top of the panel: (from, to, text).
    pub spans: Vec<(f64, f64, String)>,
}

/// Registers the font once; false if none could be loaded (then no text is drawn).
fn font() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let chosen = std::env::var("LOADTEST_FONT").ok();
        if chosen.as_deref() == Some("none") {
            return false;
        }
        let mut paths: Vec<String> = chosen.into_iter().collect();
        paths.extend(
            [
                "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
            ]
            .map(String::from),
        );
        paths.iter().any(|p| {
            std::fs::read(p).is_ok_and(|bytes| {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            })
        })
    })
}

fn num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Draws the panels stacked, sharing the x axis `x_range`, into a PNG of `width` x 300 px per
/// panel (plus the title). Returns whether text could be drawn.
pub fn draw(
    path: &Path,
    title: &str,
    x_desc: &str,
    x_range: (f64, f64),
    width: u32,
    panels: &[Panel],
) -> Result<bool, String> {
    let text = font();
    let height = 60 + 300 * panels.len() as u32;
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let body = if text {
        root.titled(title, ("sans-serif", 18))
            .map_err(|e| e.to_string())?
    } else {
        root.margin(40, 0, 0, 0)
    };
    let areas = body.split_evenly((panels.len(), 1));
    for (i, (p, area)) in panels.iter().zip(&areas).enumerate() {
        let last = i + 1 == panels.len();
        let tf = |v: f64| if p.log_y { v.log10() } else { v };
        let ys: Vec<f64> = p
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|&(_, y)| y))
            .filter(|y| y.is_finite() && (!p.log_y || *y > 0.0))
            .collect();
        let (mut lo, mut hi) = ys
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| {
                (a.min(tf(y)), b.max(tf(y)))
            });
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if !p.log_y {
            lo = lo.min(0.0);
        }
        let pad = ((hi - lo) * 0.08).max(if p.log_y { 0.05 } else { 1e-9 });
        let (lo, hi) = (if p.log_y { lo - pad } else { lo }, hi + pad * 2.0);
        let mut b = ChartBuilder::on(area);
        b.margin(8).margin_right(24);
        if text {
            b.x_label_area_size(if last { 40 } else { 22 })
                .y_label_area_size(70);
        }
        let mut chart = b
            .build_cartesian_2d(x_range.0..x_range.1, lo..hi)
            .map_err(|e| e.to_string())?;
        let yfmt = |v: &f64| num(if p.log_y { 10f64.powf(*v) } else { *v });
        let xfmt = |v: &f64| num(*v);
        let mut mesh = chart.configure_mesh();
        mesh.light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(210, 210, 210));
        if text {
            mesh.y_desc(p.y_desc.as_str())
                .y_label_formatter(&yfmt)
                .x_label_formatter(&xfmt)
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 14))
                .y_labels(8);
            if last {
                mesh.x_desc(x_desc);
            }
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(|e| e.to_string())?;
        if !text {
            // No axes without labels: frame the panel instead.
            chart
                .plotting_area()
                .draw(&Rectangle::new(
                    [(x_range.0, lo), (x_range.1, hi)],
                    GREY.stroke_width(1),
                ))
                .map_err(|e| e.to_string())?;
        }
        for &(x, c) in &p.markers {
            chart
                .draw_series(LineSeries::new(
                    [(x, lo), (x, hi)],
                    c.mix(0.7).stroke_width(1),
                ))
                .map_err(|e| e.to_string())?;
        }
        if text {
            for (a, z, label) in &p.spans {
                let y = hi - (hi - lo) * 0.02;
                chart
                    .draw_series([PathElement::new([(*a, y), (*z, y)], GREY.stroke_width(2))])
                    .map_err(|e| e.to_string())?;
                chart
                    .draw_series([Text::new(
                        label.clone(),
                        (*a, hi - (hi - lo) * 0.04),
                        ("sans-serif", 12).into_font().color(&BLACK),
                    )])
                    .map_err(|e| e.to_string())?;
            }
        }
        for s in &p.series {
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter(|(_, y)| y.is_finite() && (!p.log_y || *y > 0.0))
                .map(|&(x, y)| (x, tf(y)))
                .collect();
            let c = s.color;
            let drawn = match s.style {
                Style::Line => chart.draw_series(LineSeries::new(pts, c.stroke_width(2))),
                Style::Thin => chart.draw_series(LineSeries::new(pts, c.stroke_width(1))),
                Style::Dashed => {
                    chart.draw_series(DashedLineSeries::new(pts, 6, 4, c.stroke_width(2)))
                }
                Style::Dots => chart.draw_series(
                    pts.into_iter()
                        .map(|p| Circle::new(p, 1, c.mix(0.35).filled())),
                ),
            }
            .map_err(|e| e.to_string())?;
            if text && !s.label.is_empty() {
                let st = s.style;
                drawn.label(s.label.as_str()).legend(move |(x, y)| {
                    let w = if st == Style::Thin { 1 } else { 2 };
                    let (a, b) = if st == Style::Dashed { (7, 11) } else { (9, 9) };
                    EmptyElement::at((x, y))
                        + PathElement::new([(0, 0), (a, 0)], c.stroke_width(w))
                        + PathElement::new([(b, 0), (18, 0)], c.stroke_width(w))
                });
            }
        }
        if text && p.series.iter().any(|s| !s.label.is_empty()) {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(|e| e.to_string())?;
        }
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(text)
}
