//! The layer strip, under the slider with α per layer: a row per module kind, one cell per
//! layer, each an eighth-block bar of that layer's α (the focused column's α times the
//! layer's factor) on the slider's scale, then the range it spans. `l` edits the rules.

use crate::app::{App, PairState};
use crate::engine::LayerStrip;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Columns for the kind's name on the left.
const NAME_W: usize = 10;

/// The rows the strip would take (one per module kind, at most `MAX_ROWS`).
pub fn rows(app: &App) -> u16 {
    strips(app).len().min(MAX_ROWS) as u16
}

const MAX_ROWS: usize = 3;

fn strips(app: &App) -> &[LayerStrip] {
    match &app.pair {
        PairState::Ready(info) => &info.layer_strip,
        _ => &[],
    }
}

/// One layer's α as a bar: its eighth of the slider's range `(lo, hi)`.
pub fn bar(alpha: f64, (lo, hi): (f64, f64)) -> char {
    let t = ((alpha - lo) / (hi - lo)).clamp(0.0, 1.0);
    BARS[((t * 7.0).round() as usize).min(7)]
}

/// A value to two places, with no sign on what rounds to zero (α −1 times a factor 0 is
/// −0.0, and −0.001 is no "-0.00" either).
fn two_places(v: f64) -> String {
    format!("{:.2}", (v * 100.0).round() / 100.0 + 0.0)
}

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let alpha = app.columns[app.focused].alpha.value();
    let range = app.range.bounds();
    let style = Style::default().fg(Color::Cyan);
    for (row, s) in strips(app).iter().take(area.height as usize).enumerate() {
        let alphas: Vec<f64> = s.factors.iter().map(|f| alpha * f).collect();
        let (lo, hi) = alphas
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &a| {
                (l.min(a), h.max(a))
            });
        let bars: String = alphas.iter().map(|&a| bar(a, range)).collect();
        let span = if lo.is_finite() {
            format!(" α {}…{}", two_places(lo), two_places(hi))
        } else {
            String::new()
        };
        let name: String = s.kind.chars().take(NAME_W - 1).collect();
        let line = format!("{name:>w$} {bars}{span}", w = NAME_W - 1);
        buf.set_stringn(
            area.x,
            area.y + row as u16,
            &line,
            area.width as usize,
            style,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_follow_the_slider_scale() {
        let r = (-1.0, 2.0);
        assert_eq!(bar(-1.0, r), '▁');
        assert_eq!(bar(2.0, r), '█');
        assert_eq!(bar(5.0, r), '█');
        assert_eq!(bar(0.5, r), '▅');
    }

    #[test]
    fn zero_has_no_sign() {
        assert_eq!(two_places(-0.0), "0.00");
        assert_eq!(two_places(-0.001), "0.00");
        assert_eq!(two_places(-0.005), "-0.01");
        assert_eq!(two_places(1.234), "1.23");
    }
}
