//! What a pair's text needs besides its weights: the tokenizer, the end tokens, the chat
//! template, read from the endpoints' files and checked to agree.

use super::{LoadOptions, TextBeyondModel};
use crate::error::{bail, Result};
use crate::formats::adapter::Adapter;
use crate::formats::checkpoint::Checkpoint;
use crate::formats::config::ModelConfig;
use crate::generate::TextSpec;
use candle_core::DType;
use tokenizers::Tokenizer;

/// The tokenizer, end-of-text ids and context of a checkpoint, checked against its vocabulary.
fn text_spec(c: &Checkpoint, tokenizer: Tokenizer) -> Result<TextSpec> {
    let vocab = c.config.vocab_size();
    if tokenizer.get_vocab_size(true) > vocab {
        bail!(
            Mismatch,
            "{}: the tokenizer has {} tokens but the model only {vocab}",
            c.files.tokenizer.display(),
            tokenizer.get_vocab_size(true)
        );
    }
    Ok(TextSpec {
        eos: eos_ids(&c.config, &tokenizer, &c.files.config),
        max_positions: c.config.max_positions(),
        memory: crate::generate::RowMemory::of(&c.config, DType::F32),
        tokenizer,
        stop: Vec::new(),
        chat: None,
    })
}

/// Two or more full models speak as all of them: A's tokenizer (the others' are checked
/// against it), every endpoint's end tokens (a blend may end a text as either endpoint would;
/// A's alone under `--allow-tokenizer-mismatch`, where the others' ids name other tokens), the
/// shortest context among them, and the chat template of the first endpoint that has one (A,
/// then B, …), so that with a base and its instruct model either way round every column is
/// prompted alike.
pub(super) fn pair_text_spec(
    first: &Checkpoint,
    others: &[&Checkpoint],
    tokenizer: Tokenizer,
    opts: &LoadOptions,
) -> Result<(TextSpec, TextBeyondModel)> {
    let mut text = text_spec(first, tokenizer)?;
    let own_end_tokens = text.eos.clone();
    for c in others {
        if !opts.allow_tokenizer_mismatch {
            let ids = eos_ids(&c.config, &text.tokenizer, &c.files.config);
            text.eos.extend(ids);
        }
        text.max_positions = text.max_positions.min(c.config.max_positions());
    }
    text.eos.sort_unstable();
    text.eos.dedup();
    // Under --allow-tokenizer-mismatch another endpoint's template speaks its own tokens.
    let endpoints = match opts.allow_tokenizer_mismatch {
        true => &[][..],
        false => others,
    };
    let mut chat = None;
    for (i, c) in std::iter::once(first)
        .chain(endpoints.iter().copied())
        .enumerate()
    {
        if let Some(t) = template_read(|| model_template(c), opts)? {
            chat = Some((i, t));
            break;
        }
    }
    let (i, chat) = chat.unzip();
    let beyond = TextBeyondModel {
        chat_template: chat
            .as_ref()
            .filter(|_| i > Some(0))
            .map(|t| t.source().to_string()),
        end_tokens: (text.eos != own_end_tokens).then(|| text.eos.clone()),
    };
    if opts.chat_template {
        text.chat = chat;
    }
    Ok((text, beyond))
}

/// An adapter pair's text: the base's tokenizer, held to any tokenizer an adapter's folder
/// carries (training scripts save one beside the adapter; one that splits text otherwise
/// would feed the adapter ids it was not trained on), and the chat template of the first
/// endpoint that has one. An adapter's own template (beside it) is its endpoint's; an
/// endpoint without one speaks the base's. So: A's own, the base's, then B's, C's, D's own.
pub(super) fn adapter_text_spec(
    base: &Checkpoint,
    sides: &[Option<Adapter>; 4],
    tokenizer: Tokenizer,
    opts: &LoadOptions,
) -> Result<(TextSpec, TextBeyondModel)> {
    use crate::generate::chat::ChatTemplate;
    let beside = |x: &Adapter| x.files.dir.join("tokenizer.json");
    // Under --allow-tokenizer-mismatch the base's tokenizer and template alone are used.
    let adapters: Vec<&Adapter> = match opts.allow_tokenizer_mismatch {
        true => Vec::new(),
        false => sides.iter().flatten().collect(),
    };
    for x in &adapters {
        let own = beside(x);
        if own.is_file() {
            let theirs = crate::formats::tokenizer::load_tokenizer(&own)?;
            crate::formats::tokenizer::check_tokenizers(
                &tokenizer,
                &base.files.tokenizer,
                &theirs,
                &own,
            )?;
        }
    }
    // An adapter's template takes the special tokens' texts from beside it, else the base's.
    let own_template = |x: &Option<Adapter>| -> Result<Option<(ChatTemplate, bool)>> {
        match x.as_ref().filter(|_| !opts.allow_tokenizer_mismatch) {
            Some(x) => Ok(template_read(|| ChatTemplate::of(&beside(x)), opts)?
                .map(|t| (t.with_tokens_of(&base.files.tokenizer), true))),
            None => Ok(None),
        }
    };
    let mut chat = own_template(&sides[0])?;
    if chat.is_none() {
        chat = template_read(|| model_template(base), opts)?.map(|t| (t, false));
    }
    for x in &sides[1..] {
        if chat.is_none() {
            chat = own_template(x)?;
        }
    }
    let mut text = text_spec(base, tokenizer)?;
    let beyond = TextBeyondModel {
        chat_template: chat
            .as_ref()
            .filter(|(_, theirs)| *theirs)
            .map(|(t, _)| t.source().to_string()),
        end_tokens: None,
    };
    if opts.chat_template {
        text.chat = chat.map(|(t, _)| t);
    }
    Ok((text, beyond))
}

/// A model's chat template: its tokenizer's, else its model file's (a GGUF read with a
/// tokenizer.json given apart).
fn model_template(c: &Checkpoint) -> Result<Option<crate::generate::chat::ChatTemplate>> {
    crate::generate::chat::ChatTemplate::of_model(&c.files.tokenizer, &c.files.config)
}

/// A template read for prompts (and for exports, which carry it even where prompts skip it):
/// one that cannot be read is an error, unless prompts skip templates (`--no-chat-template`),
/// where it is read as absent. Reading one runs nothing.
fn template_read<T>(
    read: impl FnOnce() -> Result<Option<T>>,
    opts: &LoadOptions,
) -> Result<Option<T>> {
    match (read(), opts.chat_template) {
        (Err(_), false) => Ok(None),
        (read, _) => read,
    }
}

/// Every token that ends a generation: the config's EOS, generation_config.json's beside it,
/// and the end-of-text and end-of-turn tokens the tokenizer holds as special (a chat model may
/// emit `<|endoftext|>` where its config names only `<|im_end|>`). A GGUF file holds its own
/// (a folder of GGUF files may hold another model's generation_config.json).
pub(super) fn eos_ids(
    config: &ModelConfig,
    tokenizer: &Tokenizer,
    config_file: &std::path::Path,
) -> Vec<u32> {
    let mut ids = config.eos_ids();
    let dir = match crate::formats::gguf::is_gguf(config_file) {
        true => None,
        false => config_file.parent(),
    };
    if let Some(text) =
        dir.and_then(|d| std::fs::read_to_string(d.join("generation_config.json")).ok())
    {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            match &v["eos_token_id"] {
                serde_json::Value::Number(n) => ids.extend(n.as_u64().map(|x| x as u32)),
                serde_json::Value::Array(a) => {
                    ids.extend(a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32))
                }
                _ => {}
            }
        }
    }
    let specials = tokenizer.get_added_tokens_decoder();
    for name in [
        "</s>",
        "<|endoftext|>",
        "<|im_end|>",
        "<|end_of_text|>",
        "<|eot_id|>",
        "<|end|>",
        "<end_of_turn>",
    ] {
        if let Some(id) = tokenizer.token_to_id(name) {
            if specials.get(&id).is_some_and(|t| t.special) {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}
