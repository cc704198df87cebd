//! Incremental detokenisation: turn a growing list of token ids into text pieces, emitting a
//! piece only once the decoded text is stable — never half of a UTF-8 character (byte-level BPE
//! splits multi-byte characters across tokens) and never text a later token would rewrite.
//!
//! A special token (an end-of-text the model emitted while told to go on, a chat-turn marker)
//! is never dropped silently: it comes out as its own piece, its content between
//! [`SPECIAL_START`] and [`SPECIAL_END`], for a view to show as a marker.

/// Brackets around a special token's content in the text stream (Unicode private-use code
/// points, which no tokenizer emits as text).
pub const SPECIAL_START: char = '\u{E000}';
pub const SPECIAL_END: char = '\u{E001}';

/// `text` with every special token written as its plain content (for files and terminals
/// that do not style them).
pub fn plain(text: &str) -> String {
    text.replace([SPECIAL_START, SPECIAL_END], "")
}

/// `text` without the special tokens at all (for scorers).
pub fn without_specials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for c in text.chars() {
        match c {
            SPECIAL_START => inside = true,
            SPECIAL_END => inside = false,
            c if !inside => out.push(c),
            _ => {}
        }
    }
    out
}

use tokenizers::Tokenizer;

pub struct TokenStream<'t> {
    tokenizer: &'t Tokenizer,
    tokens: Vec<u32>,
    /// Start of the window that is decoded for context.
    prev: usize,
    /// End of the text already emitted, as a token index.
    current: usize,
}

impl<'t> TokenStream<'t> {
    pub fn new(tokenizer: &'t Tokenizer) -> Self {
        Self {
            tokenizer,
            tokens: Vec::new(),
            prev: 0,
            current: 0,
        }
    }

    fn decode(&self, ids: &[u32]) -> crate::Result<String> {
        crate::guard::catch("cannot decode tokens", || {
            self.tokenizer
                .decode(ids, true)
                .map_err(|e| crate::error::err!(Format, "cannot decode tokens: {e}"))
        })
    }

    /// Add a token; returns the new text it completes, if any.
    pub fn push(&mut self, token: u32) -> crate::Result<Option<String>> {
        if let Some(special) = self.special(token) {
            // Whatever was pending, then the marker; the window starts afresh after it.
            let mut piece = self.finish()?.unwrap_or_default();
            piece.push(SPECIAL_START);
            piece.push_str(&special);
            piece.push(SPECIAL_END);
            self.tokens.clear();
            self.prev = 0;
            self.current = 0;
            return Ok(Some(piece));
        }
        let before = self.decode(&self.tokens[self.prev..self.current])?;
        self.tokens.push(token);
        let after = self.decode(&self.tokens[self.prev..])?;
        if after.len() > before.len()
            && !after.ends_with('\u{FFFD}')
            && after.is_char_boundary(before.len())
            && after.starts_with(&before)
        {
            let piece = after[before.len()..].to_string();
            self.prev = self.current;
            self.current = self.tokens.len();
            Ok(Some(piece))
        } else {
            Ok(None)
        }
    }

    /// The content of `token` if the tokenizer marks it special.
    fn special(&self, token: u32) -> Option<String> {
        self.tokenizer
            .get_added_tokens_decoder()
            .get(&token)
            .filter(|t| t.special)
            .map(|t| t.content.clone())
    }

    /// Whatever is left undecoded at the end (lossy if the model stopped mid-character).
    pub fn finish(&mut self) -> crate::Result<Option<String>> {
        let before = self.decode(&self.tokens[self.prev..self.current])?;
        let after = self.decode(&self.tokens[self.prev..])?;
        self.prev = self.current;
        self.current = self.tokens.len();
        if after.len() > before.len() && after.is_char_boundary(before.len()) {
            Ok(Some(after[before.len()..].to_string()))
        } else {
            Ok(None)
        }
    }
}
