//! A Hugging Face tokenizer rebuilt from a GGUF file's `tokenizer.ggml.*` metadata, written out
//! as the tokenizer.json the model's own repository would hold and loaded by `tokenizers`.
//!
//! - `gpt2` (byte-level BPE): the vocabulary is `.tokens` in id order and the merges `.merges`;
//!   the pre-tokenizer follows `.pre` as llama.cpp reads it: `gpt2`/`gpt-2` GPT-2's split,
//!   `default` (also where `.pre` is missing) llama.cpp's own four splits, `smollm` with
//!   single digits, `llama-bpe`/`llama3` and `qwen2` with their split regexes.
//! - `llama` (SentencePiece BPE): the vocabulary and scores, merges rebuilt from them as
//!   transformers' converter does, "▁" for spaces, byte fallback, and a "▁" before the text
//!   unless `.add_space_prefix` is false (Gemma's).
//! - Tokens of type 2 (unknown) and 3 (control) are special added tokens, type 4 (user-defined)
//!   plain added ones, all matched in the text as written (transformers' `normalized: false`);
//!   `.add_bos_token` decides whether BOS is added, with llama.cpp's default where it is
//!   missing (yes for SentencePiece and Llama 3's pre-tokenizer, no for other `gpt2` ones).
//!   `.add_eos_token` is not applied: an EOS after the prompt would end the text before it
//!   began (llama.cpp's tools refuse such a decoder).
//! - As llama.cpp reads them: a special id missing or past the vocabulary is its default for
//!   the kind of vocabulary, an empty token is named `[EMPTY_<id>]`, and a token listed twice
//!   is refused.
//!
//! Anything else is refused with a message that names `--tokenizer` (a tokenizer.json to use
//! instead).

use crate::error::{bail, err, Result};
use crate::formats::gguf::{Header, Value};
use serde_json::json;
use tokenizers::Tokenizer;

/// The split regex of Llama 3 (and of llama.cpp's `llama-bpe`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// llama.cpp's `default` BPE pre-tokenizer: four splits, each of the pieces of the one before
/// (runs of punctuation, GPT-2's split, runs of digits, then digits in threes).
const DEFAULT_SPLITS: [&str; 4] = [
    r"[\p{P}\$\+<=>\^~\|]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"\p{N}+",
    r"[0-9][0-9][0-9]",
];
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
    // llama.cpp names an empty token by its id, so that it is one token among the others.
    let named: Vec<String> = strings(h, "tokenizer.ggml.tokens")?
        .into_iter()
        .enumerate()
        .map(|(i, t)| match t.is_empty() {
            true => format!("[EMPTY_{i}]"),
            false => t.to_string(),
        })
        .collect();
    let tokens: Vec<&str> = named.iter().map(String::as_str).collect();
    let types = numbers(h, "tokenizer.ggml.token_type", tokens.len())?;
    let spm = model == "llama";
    let pre = h.get("tokenizer.ggml.pre").and_then(Value::as_str);
    // A special id missing, or past the vocabulary, is llama.cpp's default for the kind of
    // vocabulary (which it warns of and loads).
    let id = |k: &str, default: Option<usize>| -> Option<usize> {
        let given = h.get(k).and_then(Value::as_u64).map(|i| i as usize);
        given
            .or(default)
            .filter(|&i| i < tokens.len())
            .or(default.filter(|&i| i < tokens.len()))
    };
    let flag = |k: &str, default: bool| -> Result<bool> {
        match h.get(k) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => bail!(Format, "{p}: {k} is {v:?}, not true or false"),
        }
    };
    let (bos, unk) = match spm {
        true => (
            id("tokenizer.ggml.bos_token_id", Some(1)),
            id("tokenizer.ggml.unknown_token_id", Some(0)),
        ),
        false => (id("tokenizer.ggml.bos_token_id", Some(11)), None),
    };
    // llama.cpp adds BOS by default to SentencePiece vocabularies and Llama 3's. It never
    // adds EOS to a prompt of a model without an encoder (its tools refuse one whose
    // `.add_eos_token` is true): a prompt ending in EOS would end the text before it began.
    let llama3 = matches!(pre, Some("llama-bpe" | "llama3" | "llama-v3"));
    let add_bos = flag("tokenizer.ggml.add_bos_token", spm || llama3)?;
    let mut added = Vec::new();
    if let Some(types) = &types {
        for (i, (&t, tok)) in types.iter().zip(&tokens).enumerate() {
            if t == 2.0 || t == 3.0 || t == 4.0 {
                added.push(json!({"id": i, "content": tok, "single_word": false,
                    "lstrip": false, "rstrip": false, "normalized": false, "special": t != 4.0}));
            }
        }
    }
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        if let Some(first) = vocab.insert(t.to_string(), json!(i)) {
            // llama.cpp stops on this too (its vocabulary must map both ways).
            bail!(
                Format,
                "{p}: tokenizer.ggml.tokens holds {t:?} twice (ids {first} and {i}); each token must be there once"
            );
        }
    }
    let post = |base: serde_json::Value| -> Result<serde_json::Value> {
        if !add_bos {
            return Ok(base);
        }
        let Some(b) = bos else {
            bail!(
                Format,
                "{p}: tokenizer.ggml.add_bos_token is true but there is no tokenizer.ggml.bos_token_id"
            );
        };
        let t = tokens[b];
        Ok(json!({"type": "Sequence", "processors": [base, {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": t, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": t, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {t: {"id": t, "ids": [b], "tokens": [t]}}
        }]}))
    };
    let json = match model {
        "gpt2" => {
            let merges = strings(h, "tokenizer.ggml.merges")?;
            check_merges(h, &merges, &vocab)?;
            let pre = pre.unwrap_or("default");
            let byte_level = |regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex});
            let split = |re: &str| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false});
            let pre_tokenizer = match pre {
                "gpt2" | "gpt-2" => byte_level(true),
                "default" => json!({"type": "Sequence", "pretokenizers":
                    DEFAULT_SPLITS.iter().map(|re| split(re)).chain([byte_level(false)])
                        .collect::<Vec<_>>()}),
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
                    "trim_offsets": false, "use_regex": true}))?,
                "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
                "model": {"type": "BPE", "dropout": null, "unk_token": null,
                    "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
                    "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges}
            })
        }
        "llama" => {
            let scores = numbers(h, "tokenizer.ggml.scores", tokens.len())?
                .ok_or_else(|| err!(Format, "{p}: no tokenizer.ggml.scores; {hint}"))?;
            let unk = unk.map(|i| tokens[i]);
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
                "post_processor": post(json!({"type": "Sequence", "processors": []}))?,
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

/// Each merge of a `gpt2` vocabulary is two tokens of it, separated by one space, whose join
/// is a token too: otherwise one line names the merge, where `tokenizers` would name an offset
/// in JSON the user never wrote.
fn check_merges(
    h: &Header,
    merges: &[&str],
    vocab: &serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    for (i, m) in merges.iter().enumerate() {
        let bad = |why: String| {
            err!(
                Format,
                "{}: tokenizer.ggml.merges entry {i} ({m:?}) {why}",
                h.path.display()
            )
        };
        let mut parts = m.split(' ');
        let (Some(l), Some(r), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("is not two tokens separated by one space".into()));
        };
        for t in [l, r, &format!("{l}{r}")] {
            if !vocab.contains_key(t) {
                return Err(bad(format!(
                    "needs {t:?}, which tokenizer.ggml.tokens lacks"
                )));
            }
        }
    }
    Ok(())
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

    /// A GGUF header holding `keys` and nothing else.
    fn header(keys: Vec<(&str, Value)>) -> Header {
        Header {
            path: "m.gguf".into(),
            version: 3,
            metadata: keys.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            tensors: Default::default(),
        }
    }

    fn strs(v: &[&str]) -> Value {
        Value::Array(v.iter().map(|s| Value::Str(s.to_string())).collect())
    }

    fn nums(v: &[f64]) -> Value {
        Value::Array(v.iter().map(|&x| Value::Float(x)).collect())
    }

    /// A SentencePiece vocabulary as llama.cpp's converter writes one: `<unk>` (type 2),
    /// `<s>`/`</s>` (3), a chat marker added as user-defined (4), and pieces; `extra` adds or
    /// replaces keys.
    fn spm(extra: Vec<(&'static str, Value)>) -> Header {
        let tokens = [
            "<unk>",
            "<s>",
            "</s>",
            "<|im_start|>",
            "▁",
            "u",
            "s",
            "e",
            "r",
            "▁the",
            "t",
            "h",
            "\n",
            "<0x0A>",
            "us",
            "use",
            "user",
            "▁user",
        ];
        let mut types = vec![2.0, 3.0, 3.0, 4.0];
        types.resize(tokens.len(), 1.0);
        let scores: Vec<f64> = (0..tokens.len()).map(|i| -(i as f64)).collect();
        let mut keys = vec![
            ("tokenizer.ggml.model", Value::Str("llama".into())),
            ("tokenizer.ggml.tokens", strs(&tokens)),
            ("tokenizer.ggml.token_type", nums(&types)),
            ("tokenizer.ggml.scores", nums(&scores)),
            ("tokenizer.ggml.unknown_token_id", Value::UInt(0)),
            ("tokenizer.ggml.bos_token_id", Value::UInt(1)),
            ("tokenizer.ggml.eos_token_id", Value::UInt(2)),
        ];
        for (k, v) in extra {
            keys.retain(|(old, _)| *old != k);
            keys.push((k, v));
        }
        header(keys)
    }

    fn ids(h: &Header, text: &str) -> Vec<u32> {
        let t = from_gguf(h).unwrap();
        t.encode(text, true).unwrap().get_ids().to_vec()
    }

    /// llama.cpp and transformers' GGUF loader match a user-defined token wherever it is
    /// written, a space before it or not, and add BOS to a SentencePiece vocabulary that does
    /// not say (llama.cpp's default for it).
    #[test]
    fn user_defined_tokens_match_anywhere_and_bos_defaults_on() {
        let got = ids(&spm(vec![]), "<|im_start|>user\n<|im_start|>");
        assert_eq!(got[0], 1, "BOS");
        assert_eq!(got.iter().filter(|&&i| i == 3).count(), 2, "{got:?}");
        let no_bos = spm(vec![("tokenizer.ggml.add_bos_token", Value::Bool(false))]);
        assert_ne!(ids(&no_bos, "user")[0], 1);
        // `<unk>` written in the text is the unknown token, as llama.cpp reads it.
        assert_eq!(ids(&no_bos, "<unk>"), [0]);
    }

    /// A prompt never ends in EOS: it would end the text before it began.
    #[test]
    fn add_eos_token_adds_no_eos_to_a_prompt() {
        let h = spm(vec![("tokenizer.ggml.add_eos_token", Value::Bool(true))]);
        let got = ids(&h, "user");
        assert_eq!(got[0], 1);
        assert_ne!(*got.last().unwrap(), 2, "{got:?}");
    }

    /// What llama.cpp loads with a warning loads here as it does there; what it stops on is
    /// refused by key.
    #[test]
    fn vocabularies_llama_cpp_mends_or_refuses() {
        // A BOS past the vocabulary, or none: llama.cpp's SentencePiece default, 1.
        let far = spm(vec![("tokenizer.ggml.bos_token_id", Value::UInt(9999))]);
        assert_eq!(ids(&far, "user")[0], 1);
        let mut none = spm(vec![]);
        none.metadata.remove("tokenizer.ggml.bos_token_id");
        assert_eq!(ids(&none, "user")[0], 1);
        // Two empty tokens are each named by id.
        let mut empty = spm(vec![]);
        if let Some(Value::Array(t)) = empty.metadata.get_mut("tokenizer.ggml.tokens") {
            t[14] = Value::Str(String::new());
            t[15] = Value::Str(String::new());
        }
        let t = from_gguf(&empty).unwrap();
        assert_eq!(t.id_to_token(15).as_deref(), Some("[EMPTY_15]"));
        let e = |h: Header| from_gguf(&h).unwrap_err().to_string();
        assert_eq!(
            e(spm(vec![("tokenizer.ggml.add_bos_token", Value::UInt(1))])),
            "m.gguf: tokenizer.ggml.add_bos_token is UInt(1), not true or false"
        );
        let mut twice = spm(vec![]);
        if let Some(Value::Array(t)) = twice.metadata.get_mut("tokenizer.ggml.tokens") {
            t[16] = Value::Str("use".into());
        }
        assert_eq!(
            e(twice),
            "m.gguf: tokenizer.ggml.tokens holds \"use\" twice (ids 15 and 16); each token must be there once"
        );
    }

    fn gpt2(pre: &str, merges: &[&str]) -> Header {
        // Byte-level BPE over "Ġ" (space) and a few letters.
        let tokens = [
            "I", "'", "m", "Ġ", "y", "o", "u", "Ġy", "Ġyou", "ou", "'m", "1", "2",
        ];
        header(vec![
            ("tokenizer.ggml.model", Value::Str("gpt2".into())),
            ("tokenizer.ggml.pre", Value::Str(pre.into())),
            ("tokenizer.ggml.tokens", strs(&tokens)),
            ("tokenizer.ggml.merges", strs(merges)),
        ])
    }

    /// llama.cpp's `default` splits runs of punctuation before GPT-2's split: "I'm" is three
    /// pieces there, two under `gpt2` (whose "'m" is one).
    #[test]
    fn the_default_pre_tokenizer_is_llama_cpps() {
        let merges = ["Ġ y", "o u", "Ġy ou", "' m"];
        assert_eq!(ids(&gpt2("default", &merges), "I'm you"), [0, 1, 2, 8]);
        assert_eq!(ids(&gpt2("gpt2", &merges), "I'm you"), [0, 10, 8]);
        // Llama 3's vocabulary adds BOS unless it says otherwise (llama.cpp's default id for
        // byte-level vocabularies, 11, where none is given).
        assert_eq!(ids(&gpt2("llama-bpe", &merges), "I"), [11, 0]);
    }

    #[test]
    fn a_malformed_merge_is_named() {
        let e = |m: &[&str]| from_gguf(&gpt2("gpt2", m)).unwrap_err().to_string();
        assert_eq!(
            e(&["Ġ y", "abc"]),
            "m.gguf: tokenizer.ggml.merges entry 1 (\"abc\") is not two tokens separated by one space"
        );
        assert_eq!(
            e(&["y o"]),
            "m.gguf: tokenizer.ggml.merges entry 0 (\"y o\") needs \"yo\", which tokenizer.ggml.tokens lacks"
        );
    }
}
