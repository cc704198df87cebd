//! Metric-vs-α charts with 95% intervals, as PNG and SVG.

use super::stats::Estimate;
use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The bitmap backend rasterises text itself: give it a font that ships with us.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Write `stem.png` and `stem.svg` charting `points` (α, estimate).
pub fn metric_vs_alpha(
    stem: &Path,
    title: &str,
    ylabel: &str,
    points: &[(f64, Estimate)],
) -> Result<()> {
    register_font();
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    {
        let root = BitMapBackend::new(&png, (800, 500)).into_drawing_area();
        draw(&root, title, ylabel, points)
            .with_context(|| format!("{}: cannot draw", png.display()))?;
        root.present()
            .map_err(|e| anyhow::anyhow!("{}: {e}", png.display()))?;
    }
    {
        let root = SVGBackend::new(&svg, (800, 500)).into_drawing_area();
        draw(&root, title, ylabel, points)
            .with_context(|| format!("{}: cannot draw", svg.display()))?;
        root.present()
            .map_err(|e| anyhow::anyhow!("{}: {e}", svg.display()))?;
    }
    Ok(())
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    ylabel: &str,
    points: &[(f64, Estimate)],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("{e:?}");
    root.fill(&WHITE).map_err(err)?;
    let finite: Vec<&(f64, Estimate)> = points.iter().filter(|(_, e)| e.mean.is_finite()).collect();
    let (mut xlo, mut xhi) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| {
        (a.min(*x), b.max(*x))
    });
    let (mut ylo, mut yhi) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, e)| {
        (a.min(e.ci_low), b.max(e.ci_high))
    });
    if finite.is_empty() {
        (xlo, xhi, ylo, yhi) = (0.0, 1.0, 0.0, 1.0);
    }
    let xpad = ((xhi - xlo) * 0.05).max(0.05);
    let ypad = ((yhi - ylo) * 0.1).max(1e-3);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((xlo - xpad)..(xhi + xpad), (ylo - ypad)..(yhi + ypad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("α  (0 = A, 1 = B)")
        .y_desc(ylabel)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(err)?;
    let blue = RGBColor(31, 119, 180);
    chart
        .draw_series(LineSeries::new(
            finite.iter().map(|(x, e)| (*x, e.mean)),
            blue.stroke_width(2),
        ))
        .map_err(err)?;
    chart
        .draw_series(finite.iter().map(|(x, e)| {
            ErrorBar::new_vertical(*x, e.ci_low, e.mean, e.ci_high, blue.filled(), 8)
        }))
        .map_err(err)?;
    chart
        .draw_series(
            finite
                .iter()
                .map(|(x, e)| Circle::new((*x, e.mean), 4, blue.filled())),
        )
        .map_err(err)?;
    Ok(())
}
