//! Incremental detokenisation: turn a growing list of token ids into text pieces, emitting a
//! piece only once the decoded text is stable — never half of a UTF-8 character (byte-level BPE
//! splits multi-byte characters across tokens) and never text a later token would rewrite.

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
