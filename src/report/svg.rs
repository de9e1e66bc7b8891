//! Inline SVG line charts, drawn here so that `report.html` needs no
//! script or network access.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::markup::escape_xml;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 280.0;
const MARGIN_LEFT: f64 = 72.0;
const MARGIN_RIGHT: f64 = 30.0;
const MARGIN_TOP: f64 = 30.0;
const MARGIN_BOTTOM: f64 = 40.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// Percentile labels of the distribution chart's x axis, by `log10(1/(1-p))`.
const PERCENTILE_TICKS: [&str; 7] = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"];

/// One line of a chart: `(x, y)` points, `None` for a gap.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    /// Legend text.
    pub name: String,
    /// Points in x order.
    pub points: Vec<(f64, Option<f64>)>,
}

/// What the x values of a chart are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XAxis {
    /// Seconds into the run.
    Seconds,
    /// `log10(1/(1-p))` of a percentile `p` (see [`percentile_curve`]).
    Percentile,
    /// Events per second (benchmark charts: a delivery rate).
    Rate,
}

/// A line chart.
pub(crate) struct Chart<'a> {
    /// Accessible title (the visible heading is the HTML's).
    pub title: &'a str,
    /// What the x values are.
    pub x_axis: XAxis,
    /// Formats a y value for the axis labels.
    pub y_format: &'a dyn Fn(f64) -> String,
    /// The lines.
    pub series: Vec<Series>,
}

/// The percentile curve of a histogram, as `(log10(1/(1-q)), value)`
/// points. The last point (quantile 1) is placed at `log10(count)`, where
/// the top sample's percentile rank lies.
pub(crate) fn percentile_curve(histogram: &Histogram<u64>) -> Vec<(f64, Option<f64>)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    let cap = (histogram.len() as f64).log10().max(1.0);
    histogram
        .iter_quantiles(4)
        .map(|step| {
            let q = step.quantile_iterated_to();
            let x = if q >= 1.0 {
                cap
            } else {
                (1.0 / (1.0 - q)).log10().min(cap)
            };
            (
                x,
                Some(histogram.highest_equivalent(step.value_iterated_to()) as f64),
            )
        })
        .collect()
}

/// Axis ticks `0, step, 2·step, …` covering `max` with a 1/2/5 step.
pub(crate) fn nice_ticks(max: f64) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = match raw / magnitude {
        n if n <= 1.0 => 1.0,
        n if n <= 2.0 => 2.0,
        n if n <= 5.0 => 5.0,
        _ => 10.0,
    } * magnitude;
    let n = (max / step - 1e-9).ceil().max(1.0) as u32;
    // Round away float noise such as 0.6000000000000001.
    (0..=n)
        .map(|i| {
            let tick = f64::from(i) * step;
            format!("{tick:.9e}").parse().unwrap_or(tick)
        })
        .collect()
}

/// SVG path data through the points, mapped to pixels by `to_px`. A gap
/// (`None`) starts a new subpath; a lone point becomes a zero-length
/// segment, drawn as a dot by the round line caps.
pub(crate) fn path_data(
    points: &[(f64, Option<f64>)],
    to_px: impl Fn(f64, f64) -> (f64, f64),
) -> String {
    let mut d = String::new();
    let mut run = 0usize;
    let close_run = |d: &mut String, run: usize| {
        if run == 1 {
            d.push_str(" l0 0");
        }
    };
    for &(x, y) in points {
        match y {
            Some(y) => {
                let (px, py) = to_px(x, y);
                let command = match (run, d.is_empty()) {
                    (0, true) => "M",
                    (0, false) => " M",
                    _ => " L",
                };
                let _ = write!(d, "{command}{px:.1} {py:.1}");
                run += 1;
            }
            None => {
                close_run(&mut d, run);
                run = 0;
            }
        }
    }
    close_run(&mut d, run);
    d
}

/// Renders a chart as an inline `<svg>` element.
pub(crate) fn render(chart: &Chart<'_>) -> String {
    let values = || {
        chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().filter_map(|&(x, y)| y.map(|y| (x, y))))
    };
    let mut out = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\"><title>{}</title>",
        escape_xml(chart.title)
    );
    if values().next().is_none() {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"muted\">no data</text></svg>",
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        return out;
    }
    let (x_max_data, y_max_data) =
        values().fold((0f64, 0f64), |(mx, my), (x, y)| (mx.max(x), my.max(y)));
    let x_ticks: Vec<(f64, String)> = match chart.x_axis {
        XAxis::Seconds => nice_ticks(x_max_data)
            .into_iter()
            .map(|t| (t, format!("{t}s")))
            .collect(),
        XAxis::Rate => nice_ticks(x_max_data)
            .into_iter()
            .map(|t| (t, rate_label(t)))
            .collect(),
        XAxis::Percentile => {
            let decades = (x_max_data.ceil() as usize).clamp(2, PERCENTILE_TICKS.len() - 1);
            let mut ticks: Vec<(f64, String)> = PERCENTILE_TICKS[..=decades]
                .iter()
                .enumerate()
                .map(|(i, label)| (i as f64, (*label).to_string()))
                .collect();
            ticks.insert(1, (2f64.log10(), "50%".to_string()));
            ticks
        }
    };
    let y_ticks = nice_ticks(y_max_data);
    let x_top = x_ticks.last().map_or(1.0, |t| t.0);
    let y_top = y_ticks.last().copied().unwrap_or(1.0);
    let plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let to_px = |x: f64, y: f64| {
        (
            MARGIN_LEFT + x / x_top * plot_w,
            MARGIN_TOP + plot_h - y / y_top * plot_h,
        )
    };

    for &y in &y_ticks {
        let (_, py) = to_px(0.0, y);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{MARGIN_LEFT}\" x2=\"{:.1}\" y1=\"{py:.1}\" y2=\"{py:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            WIDTH - MARGIN_RIGHT,
            MARGIN_LEFT - 6.0,
            py + 4.0,
            escape_xml(&(chart.y_format)(y))
        );
    }
    for (x, label) in &x_ticks {
        let (px, _) = to_px(*x, 0.0);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{MARGIN_TOP}\" y2=\"{:.1}\"/><text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            MARGIN_TOP + plot_h,
            MARGIN_TOP + plot_h + 18.0,
            escape_xml(label)
        );
    }
    let mut legend_x = MARGIN_LEFT;
    for (i, series) in chart.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let _ = write!(
            out,
            "<path d=\"{}\" stroke=\"{color}\" class=\"line\"/><rect x=\"{legend_x:.1}\" y=\"8\" width=\"12\" height=\"12\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"18\">{}</text>",
            path_data(&series.points, to_px),
            legend_x + 16.0,
            escape_xml(&series.name)
        );
        legend_x += 28.0 + 7.0 * series.name.chars().count() as f64;
    }
    out.push_str("</svg>");
    out
}

/// `0`, `250k/s`, `1.5M/s`: a rate axis label.
fn rate_label(per_s: f64) -> String {
    match per_s {
        r if r >= 1e6 => format!("{}M/s", r / 1e6),
        r if r >= 1e3 => format!("{}k/s", r / 1e3),
        r => format!("{r}/s"),
    }
}

/// The style `report.html` gives charts, for a chart that stands alone.
const STANDALONE_STYLE: &str = "text{font:11px sans-serif;fill:#444}.grid{stroke:#eee}\
.line{fill:none;stroke-width:1.6;stroke-linecap:round;stroke-linejoin:round}.muted{fill:#777}";

/// The bottom of [`rate_latency_svg`]'s logarithmic latency axis, ms.
const LOG_AXIS_FLOOR_MS: f64 = 0.1;

/// `0.1 ms`, `10 ms`, `1 s`: a label of the logarithmic latency axis at
/// `log10(ms / LOG_AXIS_FLOOR_MS)`, to two significant digits.
fn log_ms_label(v: f64) -> String {
    let ms = LOG_AXIS_FLOOR_MS * 10f64.powf(v);
    let (value, unit) = match ms {
        ms if ms >= 1000.0 => (ms / 1000.0, "s"),
        ms => (ms, "ms"),
    };
    let digits = (1 - value.log10().floor() as i32).max(0) as usize;
    let rounded: f64 = format!("{value:.digits$}").parse().unwrap_or(value);
    format!("{rounded} {unit}")
}

/// A standalone SVG document (for a file of its own, e.g. in `bench/`)
/// of delivery rate (x) against a latency in ms (y, on a logarithmic axis
/// from 0.1 ms, since servers' p99s differ by decades), one line per series
/// of `(deliveries/s, ms)` points, sorted by rate.
pub fn rate_latency_svg(title: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let log_y = |ms: f64| (ms.max(LOG_AXIS_FLOOR_MS) / LOG_AXIS_FLOOR_MS).log10();
    let series = series
        .iter()
        .map(|(name, points)| {
            let mut points: Vec<(f64, Option<f64>)> =
                points.iter().map(|&(x, y)| (x, Some(log_y(y)))).collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                name: name.clone(),
                points,
            }
        })
        .collect();
    let chart = render(&Chart {
        title,
        x_axis: XAxis::Rate,
        y_format: &log_ms_label,
        series,
    });
    let body = chart.trim_start_matches("<svg class=\"chart\" ");
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" {body}"
    )
    .replacen(
        "</title>",
        &format!("</title><style>{STANDALONE_STYLE}</style>"),
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::new_histogram;

    #[test]
    fn a_rate_latency_chart_stands_alone_with_one_line_per_series() {
        let svg = rate_latency_svg(
            "rate against p99",
            &[
                ("gateway".into(), vec![(400_000.0, 3.0), (100_000.0, 1.0)]),
                ("node".into(), vec![(50_000.0, 20.0)]),
            ],
        );
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            "{svg}"
        );
        assert!(svg.contains("<style>"), "{svg}");
        assert_eq!(svg.matches("class=\"line\"").count(), 2);
        assert!(svg.contains(">400k/s<"), "{svg}");
        assert!(svg.contains(">gateway<") && svg.contains(">node<"));
        assert!(svg.ends_with("</svg>"));
        // Points are drawn in rate order whatever order they were measured in.
        let gateway_path = svg.split("<path d=\"").nth(1).expect("a path");
        let first_x: f64 = gateway_path[1..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let second_x: f64 = gateway_path
            .split(" L")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(first_x < second_x, "{gateway_path}");
        // The latency axis is logarithmic, labelled in decades from 0.1 ms.
        assert!(svg.contains(">0.1 ms<") && svg.contains(">10 ms<"), "{svg}");
        assert_eq!(log_ms_label(5.0), "10 s");
        assert_eq!(log_ms_label(0.5), "0.32 ms");
        assert_eq!(log_ms_label(1.5), "3.2 ms");
        assert_eq!(rate_label(1_500_000.0), "1.5M/s");
        assert_eq!(rate_label(0.0), "0/s");
    }

    #[test]
    fn path_data_breaks_at_gaps_and_dots_lone_points() {
        let identity = |x, y| (x, y);
        let points = [
            (0.0, Some(1.0)),
            (1.0, Some(2.5)),
            (2.0, None),
            (3.0, Some(4.0)),
            (4.0, None),
            (5.0, Some(6.0)),
            (6.0, Some(7.0)),
        ];
        assert_eq!(
            path_data(&points, identity),
            "M0.0 1.0 L1.0 2.5 M3.0 4.0 l0 0 M5.0 6.0 L6.0 7.0"
        );
        assert_eq!(path_data(&[(1.0, None)], identity), "");
        assert_eq!(path_data(&[(1.0, Some(2.0))], identity), "M1.0 2.0 l0 0");
        let scaled = path_data(&[(1.0, Some(1.0)), (2.0, Some(0.0))], |x, y| {
            (10.0 * x, 100.0 - 10.0 * y)
        });
        assert_eq!(scaled, "M10.0 90.0 L20.0 100.0");
    }

    #[test]
    fn nice_ticks_cover_the_maximum_with_round_steps() {
        assert_eq!(nice_ticks(9.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(nice_ticks(10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(
            nice_ticks(4_500.0),
            vec![0.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0]
        );
        assert_eq!(nice_ticks(0.0), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(nice_ticks(30.0).last(), Some(&30.0));
    }

    #[test]
    fn percentile_curve_maps_quantiles_to_log_axis() {
        let mut histogram = new_histogram();
        for v in 1..=1000u64 {
            histogram.record(v).expect("record");
        }
        let curve = percentile_curve(&histogram);
        // Monotonic in both axes, starting at the 0th percentile.
        assert_eq!(curve[0].0, 0.0);
        assert!(curve
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        // Around x = 1 (the 90th percentile) the value is about 900.
        let near_p90 = curve
            .iter()
            .find(|p| p.0 >= 1.0)
            .and_then(|p| p.1)
            .expect("point past p90");
        assert!((900.0..=950.0).contains(&near_p90), "{near_p90}");
        // The top sample sits at log10(count) = 3.
        assert_eq!(curve.last(), Some(&(3.0, Some(1000.0))));
        assert!(percentile_curve(&new_histogram()).is_empty());
    }

    #[test]
    fn renders_axes_legend_and_lines() {
        let format = |v: f64| format!("{v}");
        let svg = render(&Chart {
            title: "t <1>",
            x_axis: XAxis::Seconds,
            y_format: &format,
            series: vec![Series {
                name: "p99".into(),
                points: vec![(1.0, Some(10.0)), (2.0, Some(20.0))],
            }],
        });
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("<title>t &lt;1&gt;</title>"));
        assert!(svg.contains(">p99</text>"));
        assert!(svg.contains(">2s</text>"));
        assert_eq!(svg.matches("class=\"line\"").count(), 1);
        let empty = render(&Chart {
            title: "e",
            x_axis: XAxis::Percentile,
            y_format: &format,
            series: vec![],
        });
        assert!(empty.contains("no data"));
    }
}
