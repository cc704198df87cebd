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
    // The means and every defined bound (f64::min and max pass over NaN).
    let (mut ylo, mut yhi) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, e)| {
        (a.min(e.mean).min(e.ci_low), b.max(e.mean).max(e.ci_high))
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
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
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
    // A point of one sample has no interval to draw.
    chart
        .draw_series(
            finite
                .iter()
                .filter(|(_, e)| e.ci_low.is_finite() && e.ci_high.is_finite())
                .map(|(x, e)| {
                    ErrorBar::new_vertical(*x, e.ci_low, e.mean, e.ci_high, blue.filled(), 8)
                }),
        )
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

/// Training loss curves from the recipe's loss.csv (stage,step,loss,…): pre-training, then both
/// fine-tunes continuing from its last step. Smoothed with a trailing mean over `window` steps.
pub fn loss_curves(csv: &Path, stem: &Path, window: usize) -> Result<()> {
    register_font();
    let text =
        std::fs::read_to_string(csv).with_context(|| format!("{}: cannot read", csv.display()))?;
    let mut stages: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (Some(stage), Some(step), Some(loss)) = (f.first(), f.get(1), f.get(2)) else {
            continue;
        };
        let (Ok(step), Ok(loss)) = (step.parse::<f64>(), loss.parse::<f64>()) else {
            continue;
        };
        match stages.iter_mut().find(|(s, _)| s == stage) {
            Some((_, v)) => v.push((step, loss)),
            None => stages.push((stage.to_string(), vec![(step, loss)])),
        }
    }
    let pre_len = stages
        .iter()
        .find(|(s, _)| s == "pretrain")
        .map_or(0.0, |(_, v)| v.len() as f64);
    let smoothed: Vec<(String, Vec<(f64, f64)>)> = stages
        .iter()
        .map(|(name, v)| {
            let offset = if name == "pretrain" { 0.0 } else { pre_len };
            let pts = v
                .iter()
                .enumerate()
                .map(|(i, &(step, _))| {
                    let lo = (i + 1).saturating_sub(window.max(1));
                    let mean = v[lo..=i].iter().map(|p| p.1).sum::<f64>() / (i + 1 - lo) as f64;
                    (step + offset, mean)
                })
                .collect();
            (name.clone(), pts)
        })
        .collect();
    let png = stem.with_extension("png");
    // Drawn aside and renamed whole: a run stopped mid-plot leaves no half PNG, which a
    // rerun (that draws only a missing one) would keep.
    // (Its name ends in .png: the encoder goes by the extension.)
    let name = stem.file_name().unwrap_or_default().to_string_lossy();
    let partial = png.with_file_name(format!(".{name}.partial-{}.png", std::process::id()));
    let root = BitMapBackend::new(&partial, (900, 500)).into_drawing_area();
    let err = drawing_error;
    root.fill(&WHITE).map_err(err)?;
    let xmax = smoothed
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let ymax = smoothed
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let ymin = smoothed
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1))
        .fold(f64::MAX, f64::min);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Training loss (cross-entropy per token)",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax * 1.02, (ymin * 0.95)..(ymax * 1.02))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(format!("loss (trailing mean of {window})"))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    let colours = [
        RGBColor(90, 90, 90),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(31, 119, 180),
    ];
    for (i, (name, pts)) in smoothed.iter().enumerate() {
        let c = colours[i % colours.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    drop(chart);
    drop(root);
    std::fs::rename(&partial, &png).with_context(|| format!("{}: cannot write", png.display()))?;
    Ok(())
}

fn drawing_error<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow::anyhow!("cannot draw: {e:?}")
}

/// Write `stem.png` and `stem.svg`: a heat map of `cells` (α, β, value) on their grid, each
/// cell coloured from blue (the lowest value) through white to red (the highest), with its
/// value written in it.
pub fn heat_map(stem: &Path, title: &str, cells: &[(f64, f64, f64)]) -> Result<()> {
    register_font();
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    {
        let root = BitMapBackend::new(&png, (800, 600)).into_drawing_area();
        draw_heat(&root, title, cells)
            .with_context(|| format!("{}: cannot draw", png.display()))?;
        root.present()
            .map_err(|e| anyhow::anyhow!("{}: {e}", png.display()))?;
    }
    {
        let root = SVGBackend::new(&svg, (800, 600)).into_drawing_area();
        draw_heat(&root, title, cells)
            .with_context(|| format!("{}: cannot draw", svg.display()))?;
        root.present()
            .map_err(|e| anyhow::anyhow!("{}: {e}", svg.display()))?;
    }
    Ok(())
}

/// The distinct values of one coordinate, sorted.
fn axis(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

fn draw_heat<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    cells: &[(f64, f64, f64)],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("{e:?}");
    root.fill(&WHITE).map_err(err)?;
    let (xs, ys) = (
        axis(cells.iter().map(|c| c.0)),
        axis(cells.iter().map(|c| c.1)),
    );
    let finite: Vec<f64> = cells
        .iter()
        .map(|c| c.2)
        .filter(|v| v.is_finite())
        .collect();
    let (lo, hi) = finite
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    // Cells are drawn on index coordinates, labelled with the grid's own values.
    let (nx, ny) = (xs.len().max(1) as f64, ys.len().max(1) as f64);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..nx, 0.0..ny)
        .map_err(err)?;
    let label = |v: &[f64], at: f64| {
        v.get(at.floor() as usize)
            .filter(|_| (at - at.floor() - 0.5).abs() < 1e-9)
            .map_or(String::new(), |x| format!("{x}"))
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("α  (towards B)")
        .y_desc("β  (towards C)")
        .x_labels(xs.len() * 2 + 1)
        .y_labels(ys.len() * 2 + 1)
        .x_label_formatter(&|x| label(&xs, *x))
        .y_label_formatter(&|y| label(&ys, *y))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(err)?;
    let colour = |v: f64| {
        if !v.is_finite() {
            return RGBColor(200, 200, 200);
        }
        let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
        // Blue (0) → white (½) → red (1).
        let mix = |from: f64, to: f64, s: f64| (from + (to - from) * s).round() as u8;
        if t < 0.5 {
            let s = t * 2.0;
            RGBColor(
                mix(59.0, 255.0, s),
                mix(76.0, 255.0, s),
                mix(192.0, 255.0, s),
            )
        } else {
            let s = (t - 0.5) * 2.0;
            RGBColor(
                mix(255.0, 180.0, s),
                mix(255.0, 4.0, s),
                mix(255.0, 38.0, s),
            )
        }
    };
    let index = |v: &[f64], x: f64| v.iter().position(|&y| y == x).unwrap_or(0) as f64;
    chart
        .draw_series(cells.iter().map(|&(a, b, v)| {
            let (i, j) = (index(&xs, a), index(&ys, b));
            Rectangle::new([(i, j), (i + 1.0, j + 1.0)], colour(v).filled())
        }))
        .map_err(err)?;
    chart
        .draw_series(cells.iter().map(|&(a, b, v)| {
            let (i, j) = (index(&xs, a), index(&ys, b));
            Text::new(
                format!("{v:.3}"),
                (i + 0.3, j + 0.6),
                ("sans-serif", 14).into_font(),
            )
        }))
        .map_err(err)?;
    Ok(())
}

/// A tick's label as plotters writes it, but zero as "0.0" where a step's rounding left it a
/// hair below (plotters would write "-0.0").
fn tick(v: &f64) -> String {
    use plotters::coord::ranged1d::ValueFormatter;
    let s = plotters::coord::types::RangedCoordf64::format(v);
    match s.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => s,
    }
}

#[cfg(test)]
mod tick_tests {
    #[test]
    fn a_zero_tick_has_no_sign() {
        assert_eq!(super::tick(&-2e-17), "0.0");
        assert_eq!(super::tick(&-0.25), "-0.25");
        assert_eq!(super::tick(&0.5), "0.5");
    }
}
