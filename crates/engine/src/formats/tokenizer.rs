//! Tokenizers: loaded from a tokenizer.json or rebuilt from a GGUF's metadata, compared
//! across a pair, and trained (the byte-level BPE of the demo pair and of the tiny models).

use crate::error::{bail, err, Result};
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// The end-of-text token of the tokenizers trained here.
pub const END_OF_TEXT: &str = "<|endoftext|>";

pub fn load_tokenizer(path: &std::path::Path) -> Result<Tokenizer> {
    if crate::formats::gguf::is_gguf(path) {
        return crate::formats::gguf_tokenizer::from_gguf(&crate::formats::gguf::Header::read(
            path,
        )?);
    }
    if !path.exists() {
        let dir = path.parent().unwrap_or(path);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        bail!(
            NotFound,
            "{}: missing {name} (`--tokenizer FILE` gives one where a command takes it)",
            dir.display()
        );
    }
    let what = format!("{}: cannot load tokenizer", path.display());
    crate::guard::catch(&what, || {
        Tokenizer::from_file(path).map_err(|e| err!(Format, "{what} ({e})"))
    })
}

/// Two tokenizers agree when they map the same token strings to the same ids and split the
/// same text into the same ids, special tokens added: a normalizer, pre-tokenizer, merges or
/// post-processor of their own would feed B other ids than it was trained on.
pub fn check_tokenizers(
    a: &Tokenizer,
    pa: &std::path::Path,
    b: &Tokenizer,
    pb: &std::path::Path,
) -> Result<()> {
    let hint = "pass --allow-tokenizer-mismatch to blend anyway (A's tokenizer is used)";
    let (na, nb) = (a.get_vocab_size(true), b.get_vocab_size(true));
    if na != nb {
        bail!(
            Mismatch,
            "tokenizers differ: {} has {na} tokens, {} has {nb}; {hint}",
            pa.display(),
            pb.display()
        );
    }
    let vb = b.get_vocab(true);
    let mut va: Vec<(String, u32)> = a.get_vocab(true).into_iter().collect();
    va.sort_by_key(|(_, id)| *id);
    for (tok, id) in va {
        if vb.get(&tok) != Some(&id) {
            bail!(
                Mismatch,
                "tokenizers differ: token {tok:?} is id {id} in {} but {} in {}; {hint}",
                pa.display(),
                vb.get(&tok)
                    .map_or("absent".to_string(), |i| format!("id {i}")),
                pb.display()
            );
        }
    }
    // Which tokens are special decides what ends a text and what a decode drops.
    let (sa, sb) = (a.get_added_tokens_decoder(), b.get_added_tokens_decoder());
    let mut ids: Vec<u32> = sa.keys().chain(sb.keys()).copied().collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let (in_a, in_b) = (
            sa.get(&id).is_some_and(|t| t.special),
            sb.get(&id).is_some_and(|t| t.special),
        );
        if in_a != in_b {
            let (yes, no) = if in_a { (pa, pb) } else { (pb, pa) };
            let content = sa.get(&id).or(sb.get(&id)).map_or("", |t| &t.content);
            bail!(
                Mismatch,
                "tokenizers differ: token {content:?} (id {id}) is special in {} but not in {}; {hint}",
                yes.display(),
                no.display()
            );
        }
    }
    if let Some(how) = first_split_difference((a, pa), (b, pb))? {
        bail!(
            Mismatch,
            "tokenizers differ: {} and {} {how}; {hint}",
            pa.display(),
            pb.display()
        );
    }
    Ok(())
}

/// Texts that tell tokenizers with one vocabulary apart: case, accents, spaces at the start
/// and in runs, digits, punctuation, words past the common merges, scripts beyond ASCII,
/// emoji, and special tokens' strings.
const PROBES: [&str; 8] = [
    "The cat sat on the mat, and then the dog ran away.",
    " leading space, Title Case, UPPER and lower; naïve café résumé",
    "Numbers 0 12 345 6789 3.14159 $1,000 50% 2024-12-06",
    "  double  spaces,\ttabs\n\nnew lines\r\n and trailing   ",
    "unbelievably antidisestablishmentarianism pneumonoultramicroscopic",
    "日本語のテキスト, 中文文本, русский текст, ελληνικά, עברית",
    "emoji 😀🎉👍🏽 and symbols ©®™ ∑∫√ ← → «quotes» “smart” ‘single’",
    "<|endoftext|><|im_start|>user\nhi<|im_end|>\n<s></s>[INST]",
];

/// How the two treat the first probe text they split into different ids (with the special
/// tokens the tokenizer adds, as prompts are encoded) or whose ids they decode differently.
fn first_split_difference(
    (a, pa): (&Tokenizer, &Path),
    (b, pb): (&Tokenizer, &Path),
) -> Result<Option<String>> {
    let ids = |t: &Tokenizer, path: &Path, text: &str| -> Result<Vec<u32>> {
        let e = t.encode(text, true).map_err(|e| {
            err!(
                Format,
                "{}: cannot encode the text {text:?} ({e})",
                path.display()
            )
        })?;
        Ok(e.get_ids().to_vec())
    };
    let decoded = |t: &Tokenizer, ids: &[u32]| t.decode(ids, false).ok();
    for text in PROBES {
        let (ia, ib) = (ids(a, pa, text)?, ids(b, pb, text)?);
        if ia != ib {
            let at = ia.iter().zip(&ib).take_while(|(x, y)| x == y).count();
            return Ok(Some(format!(
                "split {text:?} apart from token {at} ({} tokens against {})",
                ia.len(),
                ib.len()
            )));
        }
        if decoded(a, &ia) != decoded(b, &ia) {
            return Ok(Some(format!("decode the tokens of {text:?} differently")));
        }
    }
    Ok(None)
}

/// Train a byte-level BPE tokenizer (GPT-2 style: no prefix space, byte fallback through the
/// 256-symbol alphabet) with one special end-of-text token.
pub fn train_tokenizer(files: &[PathBuf], vocab_size: usize, out: &Path) -> Result<Tokenizer> {
    use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
    use tokenizers::normalizers::NormalizerWrapper;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{AddedToken, TokenizerBuilder};
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let byte_level = ByteLevel::new(false, true, true);
    let mut tok =
        TokenizerBuilder::<BPE, NormalizerWrapper, ByteLevel, ByteLevel, ByteLevel>::new()
            .with_model(BPE::default())
            .with_normalizer(None)
            .with_pre_tokenizer(Some(byte_level))
            .with_post_processor(Some(byte_level))
            .with_decoder(Some(byte_level))
            .build()
            .map_err(|e| err!(Format, "tokenizer: {e}"))?;
    let files = files.iter().map(|p| p.display().to_string()).collect();
    tok.train_from_files(&mut trainer, files)
        .map_err(|e| err!(Format, "tokenizer training failed: {e}"))?;
    // Saved beside, then renamed: a run cut short leaves no half-written tokenizer.json.
    // A name of this process's own: two runs writing one tokenizer at once do not collide.
    let partial = out.with_extension(format!(
        "json.partial-{}",
        crate::formats::files::own_suffix()
    ));
    tok.save(&partial, false)
        .and_then(|()| Ok(std::fs::File::open(&partial)?.sync_all()?))
        .and_then(|()| Ok(std::fs::rename(&partial, out)?))
        .map_err(|e| err!(Format, "{}: cannot save tokenizer: {e}", out.display()))?;
    Tokenizer::from_file(out).map_err(|e| err!(Format, "{}: {e}", out.display()))
}
