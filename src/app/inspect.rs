//! Looking at tokens: the shading of the token view, where columns part, the token cursor
//! with its alternatives and α-scrub, forks from an alternative, and score mode.

use super::{App, ColumnState, Effect, Mode};
use crate::engine::{Alpha, TokenInfo};
use crate::session::{ColumnId, ScrubJob};
use crossterm::event::{KeyCode, KeyEvent};
use std::sync::Arc;

/// Points of the α-scrub across the slider's range.
pub const SCRUB_POINTS: usize = 25;

/// What the token view shades tokens by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenView {
    #[default]
    Off,
    Probability,
    Entropy,
}

impl TokenView {
    pub fn next(self) -> Self {
        match self {
            TokenView::Off => TokenView::Probability,
            TokenView::Probability => TokenView::Entropy,
            TokenView::Entropy => TokenView::Off,
        }
    }
}

/// One token of a column's text: its id, where its text ends in the column's text (and in
/// the model's own, `Column::raw`), and what the model thought of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Piece {
    pub id: u32,
    pub end: usize,
    pub raw_end: usize,
    pub info: Option<TokenInfo>,
}

/// Token `i`'s byte range in the column's text (empty while its characters are incomplete).
pub fn span(pieces: &[Piece], i: usize) -> (usize, usize) {
    let start = if i == 0 { 0 } else { pieces[i - 1].end };
    (start, pieces[i].end.max(start))
}

/// Token `i`'s byte range in the model's own text, `Column::raw`.
pub fn raw_span(pieces: &[Piece], i: usize) -> (usize, usize) {
    let start = if i == 0 { 0 } else { pieces[i - 1].raw_end };
    (start, pieces[i].raw_end.max(start))
}

/// The first token where `right` differs from `left`: where α changed the text.
pub fn divergence(left: &[Piece], right: &[Piece]) -> Option<usize> {
    left.iter().zip(right).position(|(a, b)| a.id != b.id)
}

/// The cursor on the focused column's tokens, and the alternative chosen in its panel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenCursor {
    pub token: usize,
    pub choice: usize,
}

/// p(token | prefix) across α for the token under the cursor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrub {
    pub id: u64,
    pub column: Option<ColumnId>,
    pub token: usize,
    /// Sorted by α as they arrive.
    pub points: Vec<(Alpha, f32)>,
    pub complete: bool,
    pub error: Option<String>,
}

/// The tokenizer's vocabulary as text, for naming alternatives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vocab(pub Arc<Vec<String>>);

impl Vocab {
    pub fn text(&self, id: u32) -> String {
        self.0
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| format!("#{id}"))
    }
}

impl App {
    /// t: off → probability → entropy → off.
    pub(super) fn cycle_token_view(&mut self) -> Vec<Effect> {
        self.token_view = self.token_view.next();
        vec![]
    }

    /// The focused column's tokens.
    pub fn focused_pieces(&self) -> &[Piece] {
        &self.columns[self.focused].pieces
    }

    /// Put the cursor on token `token` of the focused column (clamped) and scrub it.
    pub(super) fn cursor_to(&mut self, token: usize) -> Vec<Effect> {
        let n = self.focused_pieces().len();
        if n == 0 {
            self.notice = Some("no tokens to inspect yet".to_string());
            return vec![];
        }
        let token = token.min(n - 1);
        let choice = match self.cursor {
            Some(c) if c.token == token => c.choice,
            _ => self.written_choice(token),
        };
        self.cursor = Some(TokenCursor { token, choice });
        self.scrub_effect()
    }

    pub(super) fn move_cursor(&mut self, delta: isize) -> Vec<Effect> {
        let n = self.focused_pieces().len();
        let at = match self.cursor {
            Some(c) => c.token as isize + delta,
            // Opening: from the first token where this column parts from its left neighbour,
            // else the start.
            None => self.divergence_of(self.focused).unwrap_or(0) as isize,
        };
        self.cursor_to(at.clamp(0, n.saturating_sub(1) as isize) as usize)
    }

    /// The alternative the focused column wrote at `token` (the first where it wrote none of
    /// them), so that Enter straight away does not fork to another.
    fn written_choice(&self, token: usize) -> usize {
        let Some(piece) = self.focused_pieces().get(token) else {
            return 0;
        };
        piece
            .info
            .and_then(|i| i.top.iter().position(|a| a.id == piece.id))
            .unwrap_or(0)
    }

    /// Where column `i` parts from column `i - 1`.
    pub fn divergence_of(&self, i: usize) -> Option<usize> {
        let left = self.columns.get(i.checked_sub(1)?)?;
        divergence(&left.pieces, &self.columns[i].pieces)
    }

    /// Keys while the cursor is open; None lets the key through to the keymap.
    pub(super) fn on_cursor_key(&mut self, k: &KeyEvent) -> Option<Vec<Effect>> {
        let cursor = self.cursor?;
        let effects = match k.code {
            KeyCode::Left | KeyCode::Char('[') => self.move_cursor(-1),
            KeyCode::Right | KeyCode::Char(']') => self.move_cursor(1),
            KeyCode::Home => self.cursor_to(0),
            KeyCode::End => self.cursor_to(usize::MAX),
            KeyCode::Up => {
                self.cursor = Some(TokenCursor {
                    choice: cursor.choice.saturating_sub(1),
                    ..cursor
                });
                vec![]
            }
            KeyCode::Down => {
                let alternatives = self.cursor_info().map_or(1, |i| i.top.len());
                self.cursor = Some(TokenCursor {
                    choice: (cursor.choice + 1).min(alternatives - 1),
                    ..cursor
                });
                vec![]
            }
            KeyCode::Enter => self.fork(),
            KeyCode::Esc => {
                self.cursor = None;
                vec![]
            }
            _ => return None,
        };
        Some(effects)
    }

    /// What the model thought of the token under the cursor.
    pub fn cursor_info(&self) -> Option<TokenInfo> {
        let c = self.cursor?;
        self.focused_pieces().get(c.token)?.info
    }

    /// Enter on an alternative: the focused column goes on from that token instead.
    pub(super) fn fork(&mut self) -> Vec<Effect> {
        let (Some(cursor), Some(info)) = (self.cursor, self.cursor_info()) else {
            return vec![];
        };
        if self.scored() {
            self.notice = Some("score mode scores a fixed text: nothing to fork".to_string());
            return vec![];
        }
        let alt = info.top[cursor.choice.min(info.top.len() - 1)];
        let pieces = &self.columns[self.focused].pieces[..cursor.token];
        let mut given: Vec<u32> = pieces.iter().map(|p| p.id).collect();
        given.push(alt.id);
        // What is known of the given tokens comes back with them.
        let mut carry: Vec<Option<TokenInfo>> = pieces.iter().map(|p| p.info).collect();
        carry.push(info.with_choice(alt.id));
        self.notice = Some(format!(
            "forked at token {} with {:?}",
            cursor.token + 1,
            self.vocab.text(alt.id)
        ));
        let effects = self.submit_kind(self.focused, true, crate::session::JobKind::Fork(given));
        let c = &mut self.columns[self.focused];
        c.carry = carry;
        if !effects.is_empty() {
            c.forks.push((cursor.token, alt.id));
        }
        // The panel stays on the token the column now goes on from; its α-scrub is the new
        // token's, asked for when it comes back.
        self.scrub = Default::default();
        self.cursor = Some(TokenCursor {
            token: cursor.token,
            choice: cursor.choice.min(info.top.len() - 1),
        });
        effects
    }

    /// Ask for the α-scrub of the token under the cursor (replacing any earlier one).
    pub(super) fn scrub_effect(&mut self) -> Vec<Effect> {
        let Some(cursor) = self.cursor else {
            return vec![];
        };
        let c = &self.columns[self.focused];
        let Some(piece) = c.pieces.get(cursor.token) else {
            return vec![];
        };
        if piece.info.is_none() && self.scored() {
            // The text's first token has nothing before it.
            return vec![];
        }
        let same = self.scrub.column == Some(c.id)
            && self.scrub.token == cursor.token
            && self.scrub.error.is_none();
        if same || !self.ready() {
            return vec![];
        }
        let before: Vec<u32> = c.pieces[..cursor.token].iter().map(|p| p.id).collect();
        let (token, column, beta) = (piece.id, c.id, c.beta);
        let prompt = (!self.scored()).then(|| self.ran_prompt().to_string());
        let id = self.fresh_id();
        let (lo, hi) = self.range.bounds();
        let alphas = (0..SCRUB_POINTS)
            .map(|i| Alpha::saturating(lo + (hi - lo) * i as f64 / (SCRUB_POINTS - 1) as f64))
            .collect();
        self.scrub = Scrub {
            id,
            column: Some(column),
            token: cursor.token,
            ..Default::default()
        };
        vec![Effect::Scrub(ScrubJob {
            id,
            prompt,
            before,
            token,
            alphas,
            beta,
        })]
    }

    /// S: score mode on (editing the text when there is none yet) or off.
    pub(super) fn toggle_score_mode(&mut self) -> Vec<Effect> {
        self.score_mode = !self.score_mode;
        self.cursor = None;
        if self.score_mode && self.score_text.text().trim().is_empty() {
            self.mode = Mode::EditPrompt;
            return vec![];
        }
        self.submit_all()
    }

    /// Open in score mode on `text` (scored as soon as the pair is loaded), exactly as given:
    /// a file's final newline is a token `score` counts too.
    pub fn start_in_score_mode(&mut self, text: &str) {
        self.score_mode = true;
        self.score_text = super::editor::Editor::new(text);
        self.ran.score_text = text.to_string();
        self.ran.scored = true;
    }

    /// A score job's result: the column shows the text, token by token.
    pub(super) fn on_text_scored(&mut self, column: ColumnId, score: crate::engine::TextScore) {
        let Some(c) = self.columns.iter_mut().find(|c| c.id == column) else {
            return;
        };
        c.text.clear();
        c.raw.clear();
        c.pieces.clear();
        let mut done = 0;
        for (i, (&id, &(_, end))) in score.token_ids.iter().zip(&score.offsets).enumerate() {
            let end = end.clamp(done, score.text.len());
            if score.text.is_char_boundary(end) {
                c.push_text(&score.text[done..end]);
                done = end;
            }
            let info = i.checked_sub(1).and_then(|j| score.tokens.get(j)).copied();
            c.pieces.push(Piece {
                id,
                end: c.text.len(),
                raw_end: c.raw.len(),
                info,
            });
        }
        if let Some(rest) = score.text.get(done..) {
            c.push_text(rest);
            if let Some(last) = c.pieces.last_mut() {
                last.end = c.text.len();
                last.raw_end = c.raw.len();
            }
        }
        c.tokens = c.pieces.len();
        c.score = Some((score.nll, score.perplexity));
        c.state = ColumnState::Done(crate::engine::StopReason::MaxTokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(ids: &[u32]) -> Vec<Piece> {
        ids.iter()
            .enumerate()
            .map(|(i, &id)| Piece {
                id,
                end: 2 * (i + 1),
                raw_end: 2 * (i + 1),
                info: None,
            })
            .collect()
    }

    #[test]
    fn divergence_is_the_first_differing_token() {
        assert_eq!(
            divergence(&pieces(&[1, 2, 3]), &pieces(&[1, 2, 4, 5])),
            Some(2)
        );
        assert_eq!(divergence(&pieces(&[1, 2]), &pieces(&[1, 2, 4])), None);
        assert_eq!(divergence(&pieces(&[7]), &pieces(&[1])), Some(0));
    }

    #[test]
    fn spans_tile_the_text() {
        let mut p = pieces(&[1, 2, 3]);
        p[1].end = 2; // an incomplete character: no text of its own
        assert_eq!(span(&p, 0), (0, 2));
        assert_eq!(span(&p, 1), (2, 2));
        assert_eq!(span(&p, 2), (2, 6));
    }
}
