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

/// Ordinary tokens decoded before a new one for context: enough for a decoder's start-of-text
/// rules to fall on them, and for a character split across byte tokens to be whole.
const CONTEXT: usize = 4;

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

    /// A stream whose text continues `context` (the prompt): its last few ordinary tokens
    /// are decoded with every new one, so a decoder that strips the first token's leading
    /// space (SentencePiece's `Strip`) strips it from the context, not from the first new
    /// token. The text is then the whole decode less the prompt's, as a reader expects.
    pub fn after(tokenizer: &'t Tokenizer, context: &[u32]) -> Self {
        let mut stream = Self::new(tokenizer);
        stream.keep_context(context);
        stream
    }

    /// Start the window at the last [`CONTEXT`] ordinary tokens of `ids`, decoded already.
    fn keep_context(&mut self, ids: &[u32]) {
        let mut tail: Vec<u32> = ids
            .iter()
            .rev()
            .filter(|&&id| self.special(id).is_none())
            .take(CONTEXT)
            .copied()
            .collect();
        tail.reverse();
        // The window must start where a character does: byte tokens of a character begun
        // before it decode (byte fallback) to U+FFFD, and so would every later window.
        while !tail.is_empty() && self.decode(&tail).is_ok_and(|t| t.starts_with('\u{FFFD}')) {
            tail.remove(0);
        }
        self.prev = 0;
        self.current = tail.len();
        self.tokens = tail;
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
            // The text on the far side of the marker continues the text before it (a full
            // decode skips the special token), unless that ended inside a character: its
            // bytes are out already, as U+FFFD, and a window holding them would never again
            // decode to a prefix of itself.
            let before = std::mem::take(&mut self.tokens);
            self.keep_context(&before);
            if self.decode(&self.tokens)?.ends_with('\u{FFFD}') {
                self.keep_context(&[]);
            }
            return Ok(Some(piece));
        }
        self.tokens.push(token);
        let (before, after) = self.window()?;
        if after.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        if after.starts_with(&before) {
            if after.len() == before.len() {
                return Ok(None);
            }
            return Ok(Some(self.advance(after[before.len()..].to_string())));
        }
        // The new token ends an invalid byte sequence that began in text already out (a
        // ByteFallback decoder then rewrites the whole run, its valid first bytes too): no
        // later window would decode to a prefix of itself, so the pending tokens go out
        // decoded on their own, as llama.cpp would show them.
        let pending = self.decode(&self.tokens[self.current..])?;
        Ok(Some(self.advance(pending)))
    }

    /// The window decoded without and with the tokens not yet out.
    fn window(&self) -> crate::Result<(String, String)> {
        Ok((
            self.decode(&self.tokens[self.prev..self.current])?,
            self.decode(&self.tokens[self.prev..])?,
        ))
    }

    /// Move the window past the tokens `piece` holds the text of.
    fn advance(&mut self, piece: String) -> String {
        self.prev = self.current;
        self.current = self.tokens.len();
        piece
    }

    /// The content of `token` if the tokenizer marks it special.
    fn special(&self, token: u32) -> Option<String> {
        // Borrowed: `Tokenizer::get_added_tokens_decoder` clones the whole map, per token.
        self.tokenizer
            .get_added_vocabulary()
            .get_added_tokens_decoder()
            .get(&token)
            .filter(|t| t.special)
            .map(|t| t.content.clone())
    }

    /// Whatever is left undecoded at the end (lossy if the model stopped mid-character).
    pub fn finish(&mut self) -> crate::Result<Option<String>> {
        if self.current == self.tokens.len() {
            return Ok(None);
        }
        let (before, after) = self.window()?;
        let piece = match after.strip_prefix(&before) {
            Some(rest) => rest.to_string(),
            // A rewritten run, as in `push`.
            None => self.decode(&self.tokens[self.current..])?,
        };
        let piece = self.advance(piece);
        Ok((!piece.is_empty()).then_some(piece))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SentencePiece-style tokenizer (Llama 2, Mistral): `▁` for spaces, and a decoder that
    /// strips the space that starts the text.
    fn sentencepiece() -> Tokenizer {
        let vocab = [
            "<unk>", "<s>", "</s>", "▁I", "▁went", "▁and", "▁then", "▁go", "ne", "<0xE2>",
            "<0x82>", "<0xAC>", "<0x45>",
        ];
        let json = serde_json::json!({
            "version": "1.0",
            "added_tokens": [
                {"id": 2, "content": "</s>", "single_word": false, "lstrip": false,
                 "rstrip": false, "normalized": false, "special": true}
            ],
            "normalizer": null,
            "pre_tokenizer": null,
            "post_processor": null,
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}
            ]},
            "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true,
                "vocab": vocab.iter().enumerate().map(|(i, t)| (t.to_string(), serde_json::Value::from(i)))
                    .collect::<serde_json::Map<_, _>>(),
                "merges": []}
        });
        json.to_string().parse().unwrap()
    }

    fn text(stream: &mut TokenStream, ids: &[u32]) -> String {
        let mut out = String::new();
        for &id in ids {
            out.extend(stream.push(id).unwrap());
        }
        out.extend(stream.finish().unwrap());
        out
    }

    /// The text after a prompt is the whole decode less the prompt's: the first new token
    /// keeps its space, and so does the first after a special token.
    #[test]
    fn a_continuation_keeps_the_space_a_decoder_strips_at_the_start() {
        let t = sentencepiece();
        let (prompt, new) = ([3, 4, 5], [6, 7, 8, 2, 6]);
        let got = text(&mut TokenStream::after(&t, &prompt), &new);
        assert_eq!(
            got,
            format!(" then gone{SPECIAL_START}</s>{SPECIAL_END} then")
        );
        let whole = t.decode(&[&prompt[..], &new[..]].concat(), true).unwrap();
        let alone = t.decode(&prompt, true).unwrap();
        assert_eq!(format!("{alone}{}", without_specials(&got)), whole);
        // Alone, a stream starts the text: the decoder's rule applies to its first token.
        assert_eq!(text(&mut TokenStream::new(&t), &[6, 7]), "then go");
    }

    /// A prompt ending in characters spelled in byte tokens: the context starts at a
    /// character, so the new text is whole ("€" is three byte tokens here).
    #[test]
    fn a_prompt_ending_in_byte_tokens_leaves_the_new_text_whole() {
        let t = sentencepiece();
        let euro = [9, 10, 11];
        let prompt = [&[3][..], &euro, &euro].concat();
        let got = text(&mut TokenStream::after(&t, &prompt), &[9, 10, 11, 6]);
        assert_eq!(got, "€ then");
    }

    /// A special token inside a character (its first bytes before, the last after) garbles
    /// that character, as it must, but no text after it is lost.
    #[test]
    fn a_special_token_inside_a_character_loses_no_later_text() {
        let t = sentencepiece();
        let got = text(&mut TokenStream::after(&t, &[3]), &[5, 9, 10, 2, 11, 6, 7]);
        assert!(got.ends_with(" then go"), "{got:?}");
        assert!(got.starts_with(" and"), "{got:?}");
    }

    /// An invalid byte sequence that starts with a valid byte already out ("E", then a lone
    /// first byte of "€"): a ByteFallback decoder rewrites the whole run, the "E" too, but
    /// the stream keeps the "E" and every token after the run.
    #[test]
    fn an_invalid_byte_run_loses_no_later_text() {
        let t = sentencepiece();
        let ids = [3, 12, 9, 4, 5, 9, 10, 11, 6];
        let got = text(&mut TokenStream::new(&t), &ids);
        assert_eq!(got, "IE\u{FFFD} went and€ then");
        // Ended inside the run, the stream still gives what it has.
        let got = text(&mut TokenStream::new(&t), &[3, 12, 9, 9]);
        assert!(got.starts_with("IE"), "{got:?}");
    }
}
