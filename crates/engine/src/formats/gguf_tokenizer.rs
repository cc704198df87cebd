//! A Hugging Face tokenizer rebuilt from a GGUF file's `tokenizer.ggml.*` metadata, written out
//! as the tokenizer.json the model's own repository would hold and loaded by `tokenizers`.
//!
//! - `gpt2` (byte-level BPE): the vocabulary is `.tokens` in id order and the merges `.merges`;
//!   the pre-tokenizer follows `.pre` (llama.cpp's names: `gpt2`/`default`, `smollm` with
//!   single digits, `llama-bpe`/`llama3` and `qwen2` with their split regexes).
//! - `llama` (SentencePiece BPE): the vocabulary and scores, merges rebuilt from them as
//!   transformers' converter does, "▁" for spaces, byte fallback, and a "▁" before the text
//!   unless `.add_space_prefix` is false (Gemma's).
//! - Tokens of type 3 (control) are special added tokens, type 4 (user-defined) plain added ones;
//!   `.add_bos_token` decides whether the BOS token is prepended.
//!
//! Anything else is refused with a message that names `--tokenizer` (a tokenizer.json to use
//! instead).

use crate::error::{bail, err, Result};
use crate::formats::gguf::{Header, Value};
use serde_json::json;
use tokenizers::Tokenizer;

/// The split regex of Llama 3 (and of llama.cpp's `llama-bpe`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2's: like Llama 3's, with single digits.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn strings<'a>(h: &'a Header, key: &str) -> Result<Vec<&'a str>> {
    match h.get(key) {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| err!(Format, "{}: {key} holds a non-string", h.path.display()))
            })
            .collect(),
        _ => bail!(Format, "{}: no {key}", h.path.display()),
    }
}

fn numbers(h: &Header, key: &str, n: usize) -> Result<Option<Vec<f64>>> {
    match h.get(key) {
        None => Ok(None),
        Some(Value::Array(a)) if a.len() == n => a
            .iter()
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| err!(Format, "{}: {key} holds a non-number", h.path.display()))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(Value::Array(a)) => bail!(
            Format,
            "{}: {key} holds {} entries but tokenizer.ggml.tokens holds {n} (one each per token)",
            h.path.display(),
            a.len()
        ),
        Some(_) => bail!(
            Format,
            "{}: {key} must be a list of {n} numbers (one per token)",
            h.path.display()
        ),
    }
}

/// The tokenizer of a GGUF model.
pub fn from_gguf(h: &Header) -> Result<Tokenizer> {
    let p = h.path.display();
    let hint = "pass --tokenizer FILE (the model's tokenizer.json) instead";
    let model = h
        .get("tokenizer.ggml.model")
        .and_then(Value::as_str)
        .ok_or_else(|| err!(NotFound, "{p}: no tokenizer.ggml.model; {hint}"))?;
    let tokens = strings(h, "tokenizer.ggml.tokens")?;
    let types = numbers(h, "tokenizer.ggml.token_type", tokens.len())?;
    let id = |k: &str| {
        h.get(k)
            .and_then(Value::as_u64)
            .filter(|&i| (i as usize) < tokens.len())
    };
    let bos = id("tokenizer.ggml.bos_token_id");
    let add_bos = matches!(
        h.get("tokenizer.ggml.add_bos_token"),
        Some(Value::Bool(true))
    );
    let mut added = Vec::new();
    if let Some(types) = &types {
        for (i, (&t, tok)) in types.iter().zip(&tokens).enumerate() {
            if t == 3.0 || t == 4.0 {
                added.push(json!({"id": i, "content": tok, "single_word": false,
                    "lstrip": false, "rstrip": false, "normalized": t == 4.0, "special": t == 3.0}));
            }
        }
    }
    let vocab: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), json!(i)))
        .collect();
    let post = |base: serde_json::Value| -> serde_json::Value {
        match (add_bos, bos) {
            (true, Some(b)) => {
                let t = tokens[b as usize];
                json!({"type": "Sequence", "processors": [base, {
                    "type": "TemplateProcessing",
                    "single": [{"SpecialToken": {"id": t, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                    "pair": [{"SpecialToken": {"id": t, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                             {"Sequence": {"id": "B", "type_id": 1}}],
                    "special_tokens": {t: {"id": t, "ids": [b], "tokens": [t]}}
                }]})
            }
            _ => base,
        }
    };
    let json = match model {
        "gpt2" => {
            let merges = strings(h, "tokenizer.ggml.merges")?;
            let pre = h
                .get("tokenizer.ggml.pre")
                .and_then(Value::as_str)
                .unwrap_or("default");
            let byte_level = |regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex});
            let split = |re: &str| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false});
            let pre_tokenizer = match pre {
                "gpt2" | "default" | "gpt-2" => byte_level(true),
                "smollm" => json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
                "llama-bpe" | "llama3" | "llama-v3" => json!({"type": "Sequence", "pretokenizers": [
                    split(LLAMA3_SPLIT), byte_level(false)]}),
                "qwen2" => json!({"type": "Sequence", "pretokenizers": [
                    split(QWEN2_SPLIT), byte_level(false)]}),
                other => bail!(
                    Unsupported,
                    "{p}: tokenizer.ggml.pre {other:?} is not a pre-tokenizer lerpscope can rebuild; {hint}"
                ),
            };
            json!({
                "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
                "normalizer": null, "pre_tokenizer": pre_tokenizer,
                "post_processor": post(json!({"type": "ByteLevel", "add_prefix_space": true,
                    "trim_offsets": false, "use_regex": true})),
                "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
                "model": {"type": "BPE", "dropout": null, "unk_token": null,
                    "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
                    "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges}
            })
        }
        "llama" => {
            let scores = numbers(h, "tokenizer.ggml.scores", tokens.len())?
                .ok_or_else(|| err!(Format, "{p}: no tokenizer.ggml.scores; {hint}"))?;
            let unk = id("tokenizer.ggml.unknown_token_id").map(|i| tokens[i as usize]);
            // llama.cpp's default for SentencePiece vocabularies is true.
            let prefix = !matches!(
                h.get("tokenizer.ggml.add_space_prefix"),
                Some(Value::Bool(false))
            );
            let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"});
            let (normalizer, decoders) = if prefix {
                (
                    json!({"type": "Sequence", "normalizers": [
                        {"type": "Prepend", "prepend": "▁"}, replace]}),
                    json!([{"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                        {"type": "ByteFallback"}, {"type": "Fuse"},
                        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]),
                )
            } else {
                (
                    replace,
                    json!([{"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                        {"type": "ByteFallback"}, {"type": "Fuse"}]),
                )
            };
            json!({
                "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
                "normalizer": normalizer,
                "pre_tokenizer": null,
                "post_processor": post(json!({"type": "Sequence", "processors": []})),
                "decoder": {"type": "Sequence", "decoders": decoders},
                "model": {"type": "BPE", "dropout": null, "unk_token": unk,
                    "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true,
                    "byte_fallback": true, "ignore_merges": false, "vocab": vocab,
                    "merges": spm_merges(&tokens, &scores)}
            })
        }
        other => bail!(
            Unsupported,
            "{p}: tokenizer.ggml.model {other:?} cannot be rebuilt (gpt2 and llama can); {hint}"
        ),
    };
    let what = format!("{p}: cannot rebuild the tokenizer from its metadata ({hint})");
    crate::guard::catch(&what, || {
        json.to_string()
            .parse::<Tokenizer>()
            .map_err(|e| err!(Format, "{what}: {e}"))
    })
}

/// SentencePiece BPE merges from a vocabulary and its scores, as transformers rebuilds them:
/// every split of every token into two tokens of the vocabulary, ordered by the merged token's
/// score (highest first), then by the two pieces' ids.
fn spm_merges(tokens: &[&str], scores: &[f64]) -> Vec<[String; 2]> {
    let id: std::collections::HashMap<&str, usize> =
        tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let mut merges: Vec<(f64, usize, usize, [String; 2])> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        for (k, _) in t.char_indices().skip(1) {
            let (l, r) = t.split_at(k);
            if let (Some(&li), Some(&ri)) = (id.get(l), id.get(r)) {
                merges.push((scores[i], li, ri, [l.to_string(), r.to_string()]));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    merges.into_iter().map(|m| m.3).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_types_of_another_count_name_both_lists() {
        let list = |v: Vec<Value>| Value::Array(v);
        let h = Header {
            path: "m.gguf".into(),
            version: 3,
            metadata: [
                ("tokenizer.ggml.model", Value::Str("gpt2".into())),
                (
                    "tokenizer.ggml.tokens",
                    list(vec![Value::Str("a".into()), Value::Str("b".into())]),
                ),
                ("tokenizer.ggml.token_type", list(vec![Value::Int(1)])),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            tensors: Default::default(),
        };
        let e = from_gguf(&h).unwrap_err().to_string();
        assert_eq!(
            e,
            "m.gguf: tokenizer.ggml.token_type holds 1 entries but tokenizer.ggml.tokens holds 2 (one each per token)"
        );
    }
}
