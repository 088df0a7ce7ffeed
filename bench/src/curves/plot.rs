//! One SVG plot per curve: both axes logarithmic (the sizes span two to three decades, and a
//! cost that grows in proportion to size is then a line of slope one, a flat cost a level
//! line), Hearth's series and its baseline's. SVG only, without fonts: the text is left to the
//! viewer to render, so nothing on the machine that draws is needed.

use super::Curve;
use crate::report::num;
use anyhow::{Result, anyhow};
use plotters::prelude::*;
use std::path::Path;

/// The plot's size in pixels.
const SIZE: (u32, u32) = (760, 460);

/// Hearth's series.
const HEARTH: RGBColor = RGBColor(0xc0, 0x39, 0x2b);

/// The baseline's series.
const BASELINE: RGBColor = RGBColor(0x2c, 0x6f, 0xad);

/// Draws `c` into `dir/NAME.svg`. Points that are not above zero (a memory growth too small
/// to see) cannot be placed on a logarithmic axis and are left out.
pub(super) fn draw(c: &Curve, dir: &Path) -> Result<()> {
    let file = dir.join(format!("{}.svg", c.name));
    let ours: Vec<(f64, f64)> = c
        .points
        .iter()
        .map(|&(n, v, _)| (n as f64, v))
        .filter(|p| p.1 > 0.0)
        .collect();
    let theirs: Vec<(f64, f64)> = c
        .points
        .iter()
        .filter_map(|&(n, _, b)| Some((n as f64, b?)))
        .filter(|p| p.1 > 0.0)
        .collect();
    let all = || ours.iter().chain(&theirs);
    let (x0, x1) = bounds(all().map(|p| p.0));
    let (y0, y1) = bounds(all().map(|p| p.1));
    let e = |e: DrawingAreaErrorKind<std::io::Error>| anyhow!("drawing {}: {e}", file.display());

    let root = SVGBackend::new(&file, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{} ({})", c.title, c.unit),
            ("sans-serif", 20).into_font(),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (x0 / 1.25..x1 * 1.25).log_scale(),
            (y0 / 1.5..y1 * 1.5).log_scale(),
        )
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(format!("{} (log scale)", c.x_label))
        .y_desc(format!("{} (log scale)", c.unit))
        .max_light_lines(0)
        .x_label_formatter(&|x| size_text(*x))
        .y_label_formatter(&|y| num(*y))
        .draw()
        .map_err(e)?;
    for (points, colour, label) in [(&ours, HEARTH, "Hearth"), (&theirs, BASELINE, c.baseline)] {
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(e)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

/// The smallest and largest of `xs` (1 and 10 when there are none).
fn bounds(xs: impl Iterator<Item = f64>) -> (f64, f64) {
    xs.fold(None, |b: Option<(f64, f64)>, x| {
        Some(b.map_or((x, x), |(lo, hi)| (lo.min(x), hi.max(x))))
    })
    .unwrap_or((1.0, 10.0))
}

/// A size on the x axis: `500`, `2k`, `100k`.
fn size_text(x: f64) -> String {
    if x >= 1000.0 {
        format!("{}k", num(x / 1000.0))
    } else {
        num(x)
    }
}
