//! The α slider: a track over the visible range with ticks at A (0) and B (1) and one marker
//! per column.

use crate::app::{fmt_alpha, App};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};

/// The cell of the track (0 ≤ x < width) for α, or None when α is outside the range.
pub fn cell_of(range: (f64, f64), width: u16, alpha: f64) -> Option<u16> {
    let (lo, hi) = range;
    if width == 0 || !(lo..=hi).contains(&alpha) {
        return None;
    }
    let span = (width - 1) as f64;
    Some(((alpha - lo) / (hi - lo) * span).round() as u16)
}

/// The α under cell x of a track `width` cells wide: the roundest value the cell stands for, so
/// a click on the cell where 0 or a vertex is drawn gives that value, not a fraction off it.
pub fn alpha_at(range: (f64, f64), width: u16, x: u16) -> f64 {
    let (lo, hi) = range;
    if width <= 1 {
        return lo;
    }
    let x = x.min(width - 1);
    let center = lo + x as f64 * (hi - lo) / (width - 1) as f64;
    roundest(center, |v| cell_of(range, width, v) == Some(x))
}

/// The value nearest `center` with the fewest decimals that `fits` (drawn in the same cell);
/// `center` where none is rounder than a hundredth.
pub fn roundest(center: f64, fits: impl Fn(f64) -> bool) -> f64 {
    [1.0, 0.5, 0.25, 0.1, 0.05, 0.01]
        .into_iter()
        .map(|grain| (center / grain).round() * grain)
        .find(|&v| fits(v))
        .unwrap_or(center)
}

/// Draw the track in `track` (one line) and, if there is room, the tick labels below it.
pub fn render(app: &App, track: Rect, labels: Option<Rect>, buf: &mut Buffer) {
    let w = track.width;
    if w == 0 {
        return;
    }
    let dim = Style::default().fg(Color::DarkGray);
    for x in 0..w {
        buf[(track.x + x, track.y)].set_symbol("─").set_style(dim);
    }
    for (alpha, sym) in [(0.0, "┼"), (1.0, "┼")] {
        if let Some(x) = cell_of(app.range.bounds(), w, alpha) {
            buf[(track.x + x, track.y)]
                .set_symbol(sym)
                .set_style(Style::default().fg(Color::Gray));
        }
    }
    for i in draw_order(app) {
        let alpha = app.columns[i].alpha.value();
        let (sym, style) = look(app, i);
        let (x, sym) = match cell_of(app.range.bounds(), w, alpha) {
            Some(x) => (x, sym),
            None if alpha < app.range.lo().value() => (0, "◀".to_string()),
            None => (w - 1, "▶".to_string()),
        };
        buf[(track.x + x, track.y)]
            .set_symbol(&sym)
            .set_style(style);
    }
    if let Some(l) = labels {
        // Where a label of `s` starting at cell x lands, kept inside the line.
        let at = |x: u16, s: &str| x.min(l.width.saturating_sub(s.chars().count() as u16));
        let put = |buf: &mut Buffer, x: u16, s: &str, style: Style| {
            buf.set_stringn(l.x + x, l.y, s, (l.width - x) as usize, style);
        };
        let focused = app.columns[app.focused].alpha;
        let text = format!("α={}", fmt_alpha(focused));
        let focused = focused.value();
        let x = cell_of(app.range.bounds(), w, focused).unwrap_or(
            if focused < app.range.lo().value() {
                0
            } else {
                w - 1
            },
        );
        // Centred on its α.
        let fx = at(x.saturating_sub(text.chars().count() as u16 / 2), &text);
        let taken = fx..fx + text.chars().count() as u16;
        // A recipe's α = 1 is its own merge (B only where that is B alone).
        let one = if app.recipe().is_some() {
            "recipe"
        } else {
            "B"
        };
        for (alpha, name) in [(0.0, "A"), (1.0, one)] {
            if let Some(x) = cell_of(app.range.bounds(), w, alpha) {
                // Left out where the focused label covers any of it.
                let x = at(x, name);
                let span = x..x + name.chars().count() as u16;
                if span.end <= taken.start || taken.end <= span.start {
                    put(buf, x, name, Style::default().fg(Color::Gray));
                }
            }
        }
        put(
            buf,
            fx,
            &text,
            Style::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        );
    }
}

/// The columns in the order their markers are drawn: the focused one last, on top.
pub fn draw_order(app: &App) -> Vec<usize> {
    let mut order: Vec<usize> = (0..app.columns.len())
        .filter(|&i| i != app.focused)
        .collect();
    order.push(app.focused);
    order
}

/// Column i's marker and its style: a bold yellow dot when focused, else its position.
pub fn look(app: &App, i: usize) -> (String, Style) {
    if i == app.focused {
        (
            "●".to_string(),
            Style::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        )
    } else {
        (marker(i), Style::default().fg(Color::Cyan))
    }
}

/// A column's marker: its position, 1–9 then a–z.
fn marker(i: usize) -> String {
    char::from_digit(((i + 1) % 36) as u32, 36)
        .unwrap_or('•')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_and_alphas_round_trip() {
        let r = (-1.0, 2.0);
        assert_eq!(cell_of(r, 31, -1.0), Some(0));
        assert_eq!(cell_of(r, 31, 2.0), Some(30));
        assert_eq!(cell_of(r, 31, 0.0), Some(10));
        assert_eq!(cell_of(r, 31, 2.5), None);
        assert!((alpha_at(r, 31, 10) - 0.0).abs() < 1e-12);
        assert!((alpha_at(r, 31, 20) - 1.0).abs() < 1e-12);
        assert_eq!(alpha_at(r, 1, 0), -1.0);
    }

    /// A cell gives back a value that is drawn in that same cell, and the cells where 0 and 1
    /// are drawn give exactly 0 and 1, at every width.
    #[test]
    fn a_cells_value_is_its_roundest_and_stays_in_it() {
        let r = (-1.0, 2.0);
        for w in 2..160u16 {
            for x in 0..w {
                let a = alpha_at(r, w, x);
                assert_eq!(cell_of(r, w, a), Some(x), "width {w} cell {x}: {a}");
            }
            for v in [-1.0, 0.0, 1.0, 2.0] {
                let x = cell_of(r, w, v).unwrap();
                if w >= 4 {
                    assert_eq!(alpha_at(r, w, x), v, "width {w}");
                }
            }
        }
    }
}
