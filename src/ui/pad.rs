//! The plane's pad: α across (the slider's range), β up, the triangle A (0, 0), B (1, 0),
//! C (0, 1) drawn in braille with its vertices labelled, the focused column's β as a dotted
//! guide, and one marker per column at its own (α, β).

use super::slider;
use crate::app::{fmt_alpha, App};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::widgets::canvas::{Canvas, Line};
use ratatui::widgets::Widget;

/// The row (0 = top) of a pad `height` rows tall for β, or None outside the range.
pub fn row_of(range: (f64, f64), height: u16, beta: f64) -> Option<u16> {
    let (lo, hi) = range;
    if height == 0 || !(lo..=hi).contains(&beta) {
        return None;
    }
    Some(((hi - beta) / (hi - lo) * (height - 1) as f64).round() as u16)
}

/// The β under row y of a pad `height` rows tall.
pub fn beta_at(range: (f64, f64), height: u16, y: u16) -> f64 {
    let (lo, hi) = range;
    if height <= 1 {
        return lo;
    }
    let y = y.min(height - 1);
    let center = hi - y as f64 * (hi - lo) / (height - 1) as f64;
    super::slider::roundest(center, |v| row_of(range, height, v) == Some(y))
}

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let Some(focused_beta) = app.beta() else {
        return;
    };
    let beta = focused_beta.value();
    if area.width < 4 || area.height < 3 {
        return;
    }
    let (xr, yr) = (app.range.bounds(), app.beta_range());
    edges(area, xr, yr, beta, buf);
    let cell = |alpha: f64, beta: f64| {
        Some((
            slider::cell_of(xr, area.width, alpha)?,
            row_of(yr, area.height, beta)?,
        ))
    };
    let put = |buf: &mut Buffer, (x, y): (u16, u16), s: &str, style: Style| {
        let x = x.min(area.width.saturating_sub(s.chars().count() as u16));
        buf.set_stringn(area.x + x, area.y + y, s, (area.width - x) as usize, style);
    };
    let label = Style::default()
        .fg(Color::Gray)
        .add_modifier(Modifier::BOLD);
    let markers: Vec<(usize, (u16, u16))> = slider::draw_order(app)
        .into_iter()
        .filter_map(|i| {
            let c = &app.columns[i];
            Some((
                i,
                cell(c.alpha.value(), c.beta.map_or(beta, |b| b.value()))?,
            ))
        })
        .collect();
    // The point's label in a corner no marker is under (the top right, else the bottom
    // right), drawn first so that a marker is never hidden by it.
    let focused = app.columns[app.focused].alpha;
    let (a, b) = (fmt_alpha(focused), fmt_alpha(focused_beta));
    // With a fourth endpoint the pad is the plane's slice at D's held γ.
    let point = match app.gamma() {
        None => format!("(α, β) = ({a}, {b})"),
        Some(g) => format!("(α, β, γ) = ({a}, {b}, {g:.2})"),
    };
    let from = area.width.saturating_sub(point.chars().count() as u16);
    let free = |row: u16| !markers.iter().any(|&(_, (x, y))| y == row && x >= from);
    let row = match free(0) || !free(area.height - 1) {
        true => 0,
        false => area.height - 1,
    };
    put(
        buf,
        (area.width, row),
        &point,
        Style::default().fg(Color::Yellow),
    );
    for (a, b, name) in [(0.0, 0.0, "A"), (1.0, 0.0, "B"), (0.0, 1.0, "C")] {
        if let Some(at) = cell(a, b) {
            put(buf, at, name, label);
        }
    }
    for (i, at) in markers {
        let (sym, style) = slider::look(app, i);
        put(buf, at, &sym, style);
    }
}

/// The triangle's edges and the focused β's guide, in braille, through the very cells where
/// [`slider::cell_of`] and [`row_of`] put the vertices' labels and the markers.
fn edges(area: Rect, xr: (f64, f64), yr: (f64, f64), beta: f64, buf: &mut Buffer) {
    // In dots: ratatui's braille canvas has 2 × 4 dots a cell, and with bounds [0, 2w − 1] ×
    // [0, 4h − 1] a point's dot is its coordinate rounded. A value cell_of/row_of round to
    // cell c lies within half a cell of c, at 2c ± 1 dots across (4c ± 2 down); shifted by
    // 0.5 dot across (1.5 down), towards the middle of the cell's dots, it rounds to a dot
    // inside cell c.
    let (w, h) = (area.width as f64, area.height as f64);
    let top = 4.0 * h - 1.0;
    let dot = |alpha: f64, beta: f64| {
        let col = (alpha - xr.0) / (xr.1 - xr.0) * (w - 1.0);
        let row = (yr.1 - beta) / (yr.1 - yr.0) * (h - 1.0);
        (2.0 * col + 0.5, top - (4.0 * row + 1.5))
    };
    let line = |(a1, b1): (f64, f64), (a2, b2): (f64, f64), color| {
        let ((x1, y1), (x2, y2)) = (dot(a1, b1), dot(a2, b2));
        Line::new(x1, y1, x2, y2, color)
    };
    Canvas::default()
        .marker(Marker::Braille)
        .x_bounds([0.0, 2.0 * w - 1.0])
        .y_bounds([0.0, top])
        .paint(|ctx| {
            ctx.draw(&line((xr.0, beta), (xr.1, beta), Color::DarkGray));
            ctx.layer();
            for (from, to) in [
                ((0.0, 0.0), (1.0, 0.0)),
                ((1.0, 0.0), (0.0, 1.0)),
                ((0.0, 1.0), (0.0, 0.0)),
            ] {
                ctx.draw(&line(from, to, Color::Gray));
            }
        })
        .render(area, buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row gives back a β drawn in that same row, and the rows where 0 and 1 are drawn
    /// give exactly 0 and 1, at every height.
    #[test]
    fn a_rows_beta_is_its_roundest_and_stays_in_it() {
        let r = (-0.5, 1.5);
        for h in 2..60u16 {
            for y in 0..h {
                let b = beta_at(r, h, y);
                assert_eq!(row_of(r, h, b), Some(y), "height {h} row {y}: {b}");
            }
            for v in [0.0, 1.0] {
                let y = row_of(r, h, v).unwrap();
                if h >= 4 {
                    assert_eq!(beta_at(r, h, y), v, "height {h}");
                }
            }
        }
    }

    #[test]
    fn rows_and_betas_round_trip() {
        let r = (-0.5, 1.5);
        assert_eq!(row_of(r, 9, 1.5), Some(0));
        assert_eq!(row_of(r, 9, -0.5), Some(8));
        assert_eq!(row_of(r, 9, 0.0), Some(6));
        assert_eq!(row_of(r, 9, 2.0), None);
        assert!((beta_at(r, 9, 6) - 0.0).abs() < 1e-12);
        assert!((beta_at(r, 9, 2) - 1.0).abs() < 1e-12);
    }

    /// The A–B edge (β = 0) lies in the row where the labels A and B and a marker at β = 0
    /// are drawn, at every height and β range (ratatui's own rounding put it a row below).
    #[test]
    fn the_edges_run_through_the_vertices_cells() {
        let blank = |c: &str| c == " " || c == "\u{2800}";
        for hi in [1.5, 1.85, 2.3, 3.0, 7.0] {
            for (lo_a, hi_a) in [(-1.0, 2.0), (-0.3, 1.7), (-3.0, 5.0)] {
                for (w, h) in [(40u16, 9u16), (61, 13), (100, 17), (33, 7)] {
                    let (xr, yr) = ((lo_a, hi_a), (-0.5, hi));
                    let area = Rect::new(0, 0, w, h);
                    let mut buf = Buffer::empty(area);
                    edges(area, xr, yr, -10.0, &mut buf);
                    let row = row_of(yr, h, 0.0).unwrap();
                    let (a, b) = (
                        slider::cell_of(xr, w, 0.0).unwrap(),
                        slider::cell_of(xr, w, 1.0).unwrap(),
                    );
                    let cell = |x: u16, y: u16| buf[(x, y)].symbol().to_string();
                    let case = format!("β to {hi}, α {lo_a}..{hi_a}, {w}×{h}");
                    for x in a..=b {
                        assert!(!blank(&cell(x, row)), "{case}: ({x}, {row})");
                    }
                    // Nothing of the triangle below its A–B edge (the guide is off the pad).
                    for y in row + 1..h {
                        for x in a + 1..b {
                            assert!(blank(&cell(x, y)), "{case}: ({x}, {y})");
                        }
                    }
                    let c = row_of(yr, h, 1.0).unwrap();
                    assert!(!blank(&cell(a, c)), "{case}: C's cell");
                }
            }
        }
    }
}
