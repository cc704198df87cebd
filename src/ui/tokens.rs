//! A column's text as the screen shows it: wrapped, with each character's style from what it
//! is (prompt, special token, a token shaded by probability or entropy, the shared prefix,
//! the token where the column parts from its left neighbour, the token cursor). The renderer
//! and the mouse both go through [`ColumnText`], so a click lands on the token drawn there.

use super::wrap;
use crate::app::inspect::span;
use crate::app::{App, Piece, TokenView};
use crate::engine::tokens::{SPECIAL_END, SPECIAL_START};
use crate::engine::TokenInfo;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

/// Probability buckets, lowest first: below each bound is that bucket.
const P_BOUNDS: [f32; 4] = [0.05, 0.2, 0.5, 0.8];
/// Entropy buckets (nats), most certain first.
const H_BOUNDS: [f32; 4] = [0.5, 1.5, 3.0, 4.5];

/// Colours of the five buckets, from "the model did not expect this" to "it was sure".
const COLOURS: [Color; 5] = [
    Color::Red,
    Color::LightRed,
    Color::Yellow,
    Color::Reset,
    Color::Green,
];

/// Without colours: reverse, bold underline, underline, plain, dim.
fn mono(bucket: usize) -> Style {
    let m = match bucket {
        0 => Modifier::REVERSED,
        1 => Modifier::BOLD | Modifier::UNDERLINED,
        2 => Modifier::UNDERLINED,
        3 => Modifier::empty(),
        _ => Modifier::DIM,
    };
    Style::default().add_modifier(m)
}

/// 0 (surprising) to 4 (expected) for a token under the view.
fn bucket(view: TokenView, info: &TokenInfo) -> Option<usize> {
    match view {
        TokenView::Off => None,
        TokenView::Probability => Some(P_BOUNDS.iter().filter(|&&b| info.prob() >= b).count()),
        // Low entropy is a sure model: the same end of the scale as a likely token.
        TokenView::Entropy => Some(4 - H_BOUNDS.iter().filter(|&&b| info.entropy >= b).count()),
    }
}

fn bucket_style(bucket: usize, monochrome: bool) -> Style {
    if monochrome {
        mono(bucket)
    } else {
        Style::default().fg(COLOURS[bucket])
    }
}

/// The shading in effect: the token view, or in score mode probability when the view is off.
pub fn shading(app: &App) -> TokenView {
    match app.token_view {
        TokenView::Off if app.scored() => TokenView::Probability,
        v => v,
    }
}

/// The legend of the shading: one swatch per bucket.
pub fn legend(app: &App) -> Option<Line<'static>> {
    let view = shading(app);
    let labels: [&str; 5] = match view {
        TokenView::Off => return None,
        TokenView::Probability => ["<5%", "<20%", "<50%", "<80%", "≥80%"],
        TokenView::Entropy => ["H≥4.5", "≥3", "≥1.5", "≥0.5", "<0.5 nats"],
    };
    let title = match view {
        TokenView::Probability => "p(token): ",
        _ => "entropy: ",
    };
    let mut spans = vec![Span::styled(title, Style::default().fg(Color::DarkGray))];
    for (i, l) in labels.iter().enumerate() {
        spans.push(Span::styled(
            format!(" {l} "),
            bucket_style(i, app.monochrome),
        ));
    }
    spans.push(Span::styled(
        "  (the model's own distribution: T 1, before penalty, top-k, top-p)",
        Style::default().fg(Color::DarkGray),
    ));
    Some(Line::from(spans))
}

/// A column's text laid out for a width.
pub struct ColumnText {
    /// The prompt (none in score mode) and the column's text, special-token delimiters shown
    /// as ⟨ ⟩.
    pub full: String,
    /// Where the column's own text starts in `full`.
    pub split: usize,
    /// Wrapped lines as byte ranges of `full`.
    pub lines: Vec<(usize, usize)>,
    specials: Vec<(usize, usize)>,
}

impl ColumnText {
    pub fn of(app: &App, i: usize, width: usize) -> Self {
        let c = &app.columns[i];
        // The prompt as the screen shows the model's text: tabs as spaces, controls as �.
        let shown = crate::app::sanitize(app.ran_prompt());
        let prompt = if app.scored() {
            String::new()
        } else if app.reply_apart() {
            // A chat model replies in a turn of its own: start the reply on a new line.
            format!("{shown}\n")
        } else {
            shown
        };
        let raw = format!("{prompt}{}", c.text);
        let mut specials = Vec::new();
        let mut open = None;
        for (i, ch) in raw.char_indices() {
            match ch {
                SPECIAL_START => open = Some(i),
                SPECIAL_END => specials.extend(open.take().map(|o| (o, i + ch.len_utf8()))),
                _ => {}
            }
        }
        // The brackets take the same bytes as the private-use delimiters: offsets hold.
        let full = raw.replace(SPECIAL_START, "⟨").replace(SPECIAL_END, "⟩");
        let lines = wrap::wrap(&full, width);
        Self {
            full,
            split: prompt.len(),
            lines,
            specials,
        }
    }

    /// The token of `pieces` at byte `at` of `full`, if it is in the column's text.
    pub fn token_at(&self, pieces: &[Piece], at: usize) -> Option<usize> {
        let off = at.checked_sub(self.split)?;
        let t = pieces.partition_point(|p| p.end <= off);
        (t < pieces.len()).then_some(t)
    }

    /// The line holding byte `at`.
    pub fn line_of(&self, at: usize) -> usize {
        self.lines
            .partition_point(|&(_, e)| e < at)
            .min(self.lines.len().saturating_sub(1))
    }

    /// The window of `height` lines shown: scrolled up by `scroll` from the bottom, or, with
    /// a token cursor, the one that holds it.
    pub fn window(&self, height: usize, scroll: usize, focus: Option<usize>) -> (usize, usize) {
        let n = self.lines.len();
        let scroll = scroll.min(n.saturating_sub(height));
        let (mut start, mut end) = ((n - scroll).saturating_sub(height), n - scroll);
        if let Some(line) = focus {
            if line < start || line >= end {
                start = (line + 1)
                    .saturating_sub(height / 2 + 1)
                    .min(n.saturating_sub(height));
                end = (start + height).min(n);
            }
        }
        (start, end)
    }

    /// Styled lines `start..end` of the column `i` of `app`.
    pub fn render(&self, app: &App, i: usize, start: usize, end: usize) -> Vec<Line<'static>> {
        let styles = TokenStyles::of(app, i);
        let style_at = |at: usize| {
            if at < self.split {
                Style::default().fg(Color::DarkGray)
            } else if self.specials.iter().any(|&(a, b)| (a..b).contains(&at)) {
                Style::default()
                    .fg(Color::DarkGray)
                    .add_modifier(Modifier::ITALIC)
            } else {
                self.token_at(&app.columns[i].pieces, at)
                    .map_or(Style::default(), |t| styles.style(t))
            }
        };
        self.lines[start..end]
            .iter()
            .map(|&(s, e)| {
                // Runs of one style within the line.
                let mut spans = Vec::new();
                let mut run = s;
                let mut run_style = style_at(s);
                for (o, _) in self.full[s..e].char_indices() {
                    let at = s + o;
                    let st = style_at(at);
                    if at > run && st != run_style {
                        spans.push(Span::styled(self.full[run..at].to_string(), run_style));
                        run = at;
                        run_style = st;
                    }
                }
                if e > run {
                    spans.push(Span::styled(self.full[run..e].to_string(), run_style));
                }
                Line::from(spans)
            })
            .collect()
    }

    /// The byte of `full` under cell (`x`, `row`) of the window starting at line `start`.
    pub fn byte_at(&self, start: usize, row: usize, x: usize) -> Option<usize> {
        let &(s, e) = self.lines.get(start + row)?;
        let mut w = 0;
        for (o, ch) in self.full[s..e].char_indices() {
            w += unicode_width::UnicodeWidthChar::width(ch).unwrap_or(0);
            if w > x {
                return Some(s + o);
            }
        }
        None
    }
}

/// Each token's style in one column.
struct TokenStyles {
    shading: TokenView,
    monochrome: bool,
    infos: Vec<Option<TokenInfo>>,
    diverges: Option<usize>,
    cursor: Option<usize>,
}

impl TokenStyles {
    fn of(app: &App, i: usize) -> Self {
        Self {
            shading: shading(app),
            monochrome: app.monochrome,
            infos: app.columns[i].pieces.iter().map(|p| p.info).collect(),
            diverges: app.divergence_of(i),
            cursor: app.cursor.filter(|_| i == app.focused).map(|c| c.token),
        }
    }

    fn style(&self, t: usize) -> Style {
        let mut s = self.infos[t]
            .and_then(|info| bucket(self.shading, &info))
            .map_or(Style::default(), |b| bucket_style(b, self.monochrome));
        match self.diverges {
            // The text this column shares with its left neighbour recedes.
            Some(d) if t < d => s = s.add_modifier(Modifier::DIM),
            Some(d) if t == d => {
                s = if self.monochrome {
                    s.add_modifier(Modifier::REVERSED | Modifier::UNDERLINED)
                } else {
                    s.bg(Color::Magenta).fg(Color::White)
                }
            }
            _ => {}
        }
        if self.cursor == Some(t) {
            s = if self.monochrome {
                s.add_modifier(Modifier::REVERSED | Modifier::BOLD | Modifier::UNDERLINED)
            } else {
                s.bg(Color::Cyan).fg(Color::Black)
            };
        }
        s
    }
}

/// Token `t`'s text in column `i` (for panels).
pub fn token_text(app: &App, i: usize, t: usize) -> String {
    let c = &app.columns[i];
    if t >= c.pieces.len() {
        // A fork that has not streamed this far yet.
        return String::new();
    }
    let (s, e) = span(&c.pieces, t);
    c.text.get(s..e).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(logprob: f32, entropy: f32) -> TokenInfo {
        let alt = crate::engine::Alternative { id: 0, logprob };
        TokenInfo {
            id: 0,
            logprob,
            entropy,
            top: [alt; 5],
        }
    }

    #[test]
    fn buckets_run_from_surprising_to_expected() {
        let p = |p: f32| bucket(TokenView::Probability, &info(p.ln(), 1.0)).unwrap();
        assert_eq!([p(0.01), p(0.1), p(0.3), p(0.6), p(0.95)], [0, 1, 2, 3, 4]);
        let h = |h: f32| bucket(TokenView::Entropy, &info(0.0, h)).unwrap();
        assert_eq!([h(5.0), h(3.5), h(2.0), h(1.0), h(0.1)], [0, 1, 2, 3, 4]);
        assert_eq!(bucket(TokenView::Off, &info(0.0, 0.0)), None);
    }
}
