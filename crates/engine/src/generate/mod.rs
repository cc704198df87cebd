//! The token loop: prefill, sample, stream stable text, stop at EOS, the token budget, the
//! context limit or a cancel request (checked between tokens).

pub mod chat;
pub mod device_sampling;
pub mod sampling;
pub mod softmax_weights;
pub mod token_info;
pub mod token_stream;

use crate::error::{bail, err, Result};
use crate::generate::device_sampling::{OnDevice, Pick};
use crate::generate::sampling::{Sampler, SamplingParams};
use crate::generate::token_info::{Summary, TokenInfo};
use crate::generate::token_stream::{plain, TokenStream, SPECIAL_END, SPECIAL_START};
use crate::model::param::Mix;
use crate::model::Model;
use candle_core::Tensor;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};

/// Asked between tokens whether to stop.
pub trait Cancel {
    fn cancelled(&self) -> bool;
}

impl Cancel for AtomicBool {
    fn cancelled(&self) -> bool {
        self.load(Ordering::Relaxed)
    }
}

impl<F: Fn() -> bool> Cancel for F {
    fn cancelled(&self) -> bool {
        self()
    }
}
use std::time::{Duration, Instant};
use tokenizers::Tokenizer;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GenerationParams {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Keep going past the model's end tokens (until the budget or the context).
    #[serde(default)]
    pub ignore_eos: bool,
    /// Describe every written token ([`TokenInfo`]): its probability, the entropy and the
    /// alternatives, from the model's own distribution.
    #[serde(default)]
    pub token_info: bool,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_tokens: 64,
            sampling: SamplingParams::default(),
            ignore_eos: false,
            token_info: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Eos,
    /// A stop text (`--stop`) appeared.
    StopText,
    MaxTokens,
    Context,
    Cancelled,
}

/// A finished (or stopped) generation.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub text: String,
    pub token_ids: Vec<u32>,
    /// One per token of `token_ids` that the model wrote (given tokens have none), when
    /// [`GenerationParams::token_info`] asked for them.
    pub tokens: Vec<TokenInfo>,
    pub prompt_tokens: usize,
    pub stop: StopReason,
    /// From the start of the call to the first sampled token (prefill included); a row that
    /// stopped before sampling one (cancelled, no budget) has its stop time here.
    pub first_token: Duration,
    /// From the start of the call to when this row stopped (never before `first_token`).
    pub elapsed: Duration,
}

impl Generation {
    /// Decode rate after the first token: 0 for a row with fewer than two written tokens or
    /// no time between its first token and its stop.
    pub fn tokens_per_s(&self) -> f64 {
        let n = self.token_ids.len().saturating_sub(1) as f64;
        let t = self.elapsed.saturating_sub(self.first_token).as_secs_f64();
        if n > 0.0 && t > 0.0 {
            n / t
        } else {
            0.0
        }
    }
}

/// What the token loop reports as it goes: a token (given or written) and the stable text it
/// completed (often all of it, empty while a character is incomplete), or, with no token, the
/// text left over at the end.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub id: Option<u32>,
    pub piece: &'a str,
    /// For written tokens, when asked for.
    pub info: Option<&'a TokenInfo>,
}

/// Perplexity from a summed negative log-likelihood over `n` tokens: exp(nll / n), NaN when
/// there were no tokens to score.
pub fn perplexity(nll: f64, n: usize) -> f64 {
    if n == 0 {
        f64::NAN
    } else {
        (nll / n as f64).exp()
    }
}

/// What one row of a batch holds in memory, roughly, so that a batch the memory cannot take
/// is refused before it starts rather than ending the process.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowMemory {
    /// Key/value cache per position.
    pub kv_per_position: u64,
    /// Activations of a forward pass per position it runs (the residual stream and its
    /// copies, the MLP's inner rows).
    pub per_position: u64,
    /// Logits and the sampler's buffers (f32).
    pub per_row: u64,
}

impl RowMemory {
    /// For a model computing in `dtype` (its caches and activations held in it).
    pub fn of(config: &crate::formats::config::ModelConfig, dtype: candle_core::DType) -> Self {
        let (hidden, inner) = config.widths();
        let bytes = |n: usize, width: usize| (n as u64).saturating_mul(width as u64);
        let size = dtype.size_in_bytes();
        let widths = hidden
            .saturating_mul(6)
            .saturating_add(inner.saturating_mul(3));
        Self {
            kv_per_position: config.kv_bytes_per_position(size),
            per_position: bytes(widths, size),
            per_row: bytes(config.vocab_size().saturating_mul(3), 4),
        }
    }

    /// Bytes of `rows` rows, each with a cache of `capacity` positions, whose first pass runs
    /// `prompt` positions. The parts above measured a quarter short of a batch's resident
    /// memory (the demo pair at 5,000 and 10,000 columns: 333 KiB a row against 252), for the
    /// buffers they leave out, so a third is added.
    pub fn bytes(&self, rows: usize, prompt: usize, capacity: usize) -> u64 {
        let per_row = self
            .kv_per_position
            .saturating_mul(capacity as u64)
            .saturating_add(self.per_position.saturating_mul(prompt as u64))
            .saturating_add(self.per_row);
        let per_row = per_row.saturating_add(per_row / 3);
        per_row.saturating_mul(rows as u64)
    }
}

/// What generation needs besides a model: the tokenizer, the end-of-text ids and the context
/// length.
pub struct TextSpec {
    pub tokenizer: Tokenizer,
    pub eos: Vec<u32>,
    pub max_positions: usize,
    pub memory: RowMemory,
    /// Texts after which generation stops.
    pub stop: Vec<String>,
    /// Plain prompts go through this template (a user turn, the assistant's turn opened).
    pub chat: Option<crate::generate::chat::ChatTemplate>,
}

impl TextSpec {
    pub fn generator<'a>(&'a self, model: &'a Model) -> Generator<'a> {
        Generator {
            model,
            tokenizer: &self.tokenizer,
            eos: &self.eos,
            max_positions: self.max_positions,
            memory: self.memory,
            stop: &self.stop,
            chat: self.chat.as_ref(),
        }
    }
}

/// A text's encoding with the special tokens the tokenizer adds, less a BOS the text writes
/// out itself (a conversation pasted whole), which would otherwise come twice: where the
/// text's own tokens open with the token the tokenizer puts before them (what it adds after
/// them, an EOS, stays).
pub fn encode_with_specials(
    tokenizer: &Tokenizer,
    text: &str,
) -> tokenizers::Result<tokenizers::Encoding> {
    let mut with = tokenizer.encode(text, true)?;
    let ids = with.get_ids();
    if ids.len() >= 2 && ids[0] == ids[1] {
        let without = tokenizer.encode(text, false)?;
        let own = without.get_ids();
        if own.first() == Some(&ids[0]) && ids[1..].starts_with(own) {
            let keep = with.len() - 1;
            with.truncate(keep, 0, tokenizers::TruncationDirection::Left);
        }
    }
    Ok(with)
}

/// A model with what it takes to generate from it.
pub struct Generator<'a> {
    pub model: &'a Model,
    pub tokenizer: &'a Tokenizer,
    pub eos: &'a [u32],
    pub max_positions: usize,
    pub memory: RowMemory,
    pub stop: &'a [String],
    pub chat: Option<&'a crate::generate::chat::ChatTemplate>,
}

impl Generator<'_> {
    /// The token the tokenizer puts before every text it encodes (a BOS), if it adds one.
    fn added_bos(&self) -> Option<u32> {
        let empty = self.tokenizer.encode("", true).ok()?;
        empty.get_ids().first().copied()
    }

    /// A prompt's ids: through the chat template when the model has one and the prompt is
    /// plain text. A prompt already in the template's format goes as a rendered one does: as
    /// the template would have written it, with no special tokens added.
    pub fn encode(&self, prompt: &str) -> Result<Vec<u32>> {
        match self.chat {
            // The template writes the special tokens itself.
            Some(t) if !t.formats(prompt) => self.tokenize(&t.render(prompt)?, false),
            Some(t) => self.tokenize(&t.as_written(prompt), false),
            None => self.encode_text(prompt),
        }
    }

    /// A text's ids as it stands (no template): for scoring text.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenize(text, true)
    }

    /// The ids of `prompt` followed by `continuation`, split where the continuation's text
    /// starts: the two texts are tokenized as one, since a text tokenized alone can start
    /// differently (SentencePiece's tokenizers put a `▁` before every text they are given).
    /// A token that spans the seam belongs to the continuation.
    pub fn encode_split(&self, prompt: &str, continuation: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let whole = self.encoding(&format!("{prompt}{continuation}"), true)?;
        Ok(split_at_text(&whole, prompt.len()))
    }

    fn tokenize(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        Ok(self.encoding(text, special)?.get_ids().to_vec())
    }

    fn encoding(&self, text: &str, special: bool) -> Result<tokenizers::Encoding> {
        crate::guard::catch("cannot tokenise the prompt", || {
            match special {
                true => encode_with_specials(self.tokenizer, text),
                false => self.tokenizer.encode(text, false),
            }
            .map_err(|e| err!(Format, "cannot tokenise the prompt: {e}"))
        })
    }

    /// Total negative log-likelihood of `ids[1..]` given what precedes each (in windows of
    /// the model's context), and the number of tokens scored.
    pub fn nll(&self, ids: &[u32]) -> Result<(f64, usize)> {
        use candle_core::Tensor;
        let device = self.model.device();
        let (mut total, mut count) = (0f64, 0usize);
        for w in windows(ids, self.max_positions.min(1024), self.added_bos()) {
            let w = &w[..];
            if w.len() < 2 {
                continue;
            }
            let x = Tensor::new(&w[..w.len() - 1], device)?.unsqueeze(0)?;
            let y = Tensor::new(&w[1..], device)?.unsqueeze(1)?;
            let logits = self.model.forward_all(&x)?.squeeze(0)?;
            total += nll_of(&logits, &y)?;
            count += w.len() - 1;
        }
        finite_nll(total, count)
    }

    /// What the model thinks of every token of `ids` after the first, given those before it
    /// ([`TokenInfo`]: log-probability, entropy, alternatives), from one forward pass over
    /// the text; a text longer than the context is refused.
    pub fn token_details(&self, ids: &[u32]) -> Result<Vec<TokenInfo>> {
        if ids.len() > self.max_positions {
            bail!(
                Invalid,
                "the text has {} tokens; the model's context is {}",
                ids.len(),
                self.max_positions
            );
        }
        if ids.len() < 2 {
            return Ok(Vec::new());
        }
        let device = self.model.device();
        let x = Tensor::new(&ids[..ids.len() - 1], device)?.unsqueeze(0)?;
        let logits = self
            .model
            .forward_all(&x)?
            .squeeze(0)?
            .to_dtype(candle_core::DType::F32)?;
        let mut host = Vec::new();
        copy_to_host(&logits.contiguous()?, &mut host)?;
        if !host.iter().all(|l| l.is_finite()) {
            bail!(Invalid, "{NON_FINITE_LOGITS}");
        }
        let vocab = host.len() / (ids.len() - 1);
        Ok(host
            .chunks(vocab)
            .zip(&ids[1..])
            .map(|(row, &id)| {
                let at = row.get(id as usize).copied().unwrap_or(f32::NEG_INFINITY);
                Summary::of(row).info(id, at)
            })
            .collect())
    }

    /// Negative log-likelihood of `continuation` given `prompt` (summed), and its length.
    /// Where the two are longer than the context, they are read in overlapping windows of
    /// the context (transformers' strided perplexity), each continuation token with at
    /// least half a context before it: no token goes unscored, none is scored twice.
    pub fn continuation_nll(&self, prompt: &[u32], continuation: &[u32]) -> Result<(f64, usize)> {
        if continuation.is_empty() || prompt.is_empty() {
            return Ok((0.0, 0));
        }
        let all: Vec<u32> = prompt.iter().chain(continuation).copied().collect();
        let context = self.max_positions.max(2);
        let mut total = 0.0;
        for (start, first, end) in nll_windows(prompt.len(), all.len(), context) {
            total += self.window_nll(&all[start..end], first - start)?;
        }
        finite_nll(total, continuation.len())
    }

    /// The summed NLL of `window[first..]`, each token given those before it in the window.
    fn window_nll(&self, window: &[u32], first: usize) -> Result<f64> {
        use candle_core::Tensor;
        let device = self.model.device();
        let n = window.len() - first;
        let x = Tensor::new(&window[..window.len() - 1], device)?.unsqueeze(0)?;
        let logits = self.model.forward_all(&x)?.squeeze(0)?;
        let y = Tensor::new(&window[first..], device)?.unsqueeze(1)?;
        nll_of(&logits.narrow(0, first - 1, n)?, &y)
    }

    pub fn run(
        &self,
        prompt: &str,
        params: &GenerationParams,
        cancel: &dyn Cancel,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation> {
        let prompt_ids = self.encode(prompt)?;
        let mut rows = self.run_rows(
            &prompt_ids,
            &[],
            None,
            params,
            &|_| cancel.cancelled(),
            &mut |_, step| {
                if !step.piece.is_empty() {
                    on_text(step.piece)
                }
            },
        )?;
        Ok(rows.remove(0))
    }

    /// Generate one continuation of `prompt` per α in `mix`, as one batch (the model must hold
    /// both endpoints: [`Model::load_pair`]). Each row samples with the same seed, so rows
    /// share their random numbers as sequential runs would. `cancel(row)` is asked between
    /// tokens; `on_text(row, piece)` receives each row's stable text.
    pub fn run_batch(
        &self,
        prompt: &str,
        mix: &Mix,
        params: &GenerationParams,
        cancel: &dyn Fn(usize) -> bool,
        on_text: &mut dyn FnMut(usize, &str),
    ) -> Result<Vec<Generation>> {
        let prompt_ids = self.encode(prompt)?;
        self.run_rows(
            &prompt_ids,
            &[],
            Some(mix),
            params,
            cancel,
            &mut |i, step| {
                if !step.piece.is_empty() {
                    on_text(i, step.piece)
                }
            },
        )
    }

    /// The token loop for one row (no mix) or one row per α of `mix`. Rows that stop early
    /// keep their place in the batch (fed their last token) until every row has stopped.
    ///
    /// `given` tokens continue the prompt as if written already (a fork from a chosen
    /// alternative): they count towards the budget and take their steps of the random
    /// stream, so what follows is what sampling from there would have drawn.
    pub fn run_rows(
        &self,
        prompt_ids: &[u32],
        given: &[u32],
        mix: Option<&Mix>,
        params: &GenerationParams,
        cancel: &dyn Fn(usize) -> bool,
        on_step: &mut dyn FnMut(usize, Step<'_>),
    ) -> Result<Vec<Generation>> {
        self.rows_loop(prompt_ids, given, mix, None, params, cancel, on_step)
    }

    /// Several samples of one prompt as one batch: row i samples with `seeds[i]` (the rest
    /// of `params` shared), at the model's current weights or, given a `mix` of one α per row
    /// (on a [`pair generator`](crate::Engine::pair_generator)), at its own α. Each row's
    /// tokens depend only on its seed, its α and the batch's size, not on its neighbours.
    pub fn run_samples(
        &self,
        prompt_ids: &[u32],
        seeds: &[u64],
        mix: Option<&Mix>,
        params: &GenerationParams,
        on_step: &mut dyn FnMut(usize, Step<'_>),
    ) -> Result<Vec<Generation>> {
        if seeds.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(m) = mix {
            if m.alphas().len() != seeds.len() {
                bail!(
                    Invalid,
                    "{} seeds for a mix of {} alphas: one of each per row",
                    seeds.len(),
                    m.alphas().len()
                );
            }
        }
        self.rows_loop(
            prompt_ids,
            &[],
            mix,
            Some(seeds),
            params,
            &|_| false,
            on_step,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn rows_loop(
        &self,
        prompt_ids: &[u32],
        given: &[u32],
        mix: Option<&Mix>,
        seeds: Option<&[u64]>,
        params: &GenerationParams,
        cancel: &dyn Fn(usize) -> bool,
        on_step: &mut dyn FnMut(usize, Step<'_>),
    ) -> Result<Vec<Generation>> {
        params.sampling.validate()?;
        if prompt_ids.is_empty() {
            bail!(Invalid, "the prompt is empty after tokenisation");
        }
        if prompt_ids.len() + given.len() >= self.max_positions {
            bail!(
                Invalid,
                "the prompt has {} tokens; the model's context is {}",
                prompt_ids.len() + given.len(),
                self.max_positions
            );
        }
        let k = match (seeds, mix) {
            (Some(s), _) => s.len(),
            (None, Some(m)) => m.alphas().len(),
            (None, None) => 1,
        };
        let start = Instant::now();
        let capacity = prompt_ids
            .len()
            .saturating_add(params.max_tokens)
            .min(self.max_positions);
        let first_pass = prompt_ids.len() + given.len();
        crate::memory::check_rows(
            self.model.device(),
            self.memory.bytes(k, first_pass, capacity),
            k,
        )?;
        let mut cache = self.model.new_cache(capacity);
        let mut rows: Vec<Row> = (0..k)
            .map(|i| {
                let mut p = *params;
                if let Some(seeds) = seeds {
                    p.sampling.seed = seeds[i];
                }
                Row::new(self.tokenizer, &p, prompt_ids, capacity)
            })
            .collect();
        for (i, row) in rows.iter_mut().enumerate() {
            row.sampler.skip(given.len());
            for &t in given {
                row.out.push(t);
                row.history.push(t);
                let piece = row.stream.push(t)?.unwrap_or_default();
                row.text.push_str(&piece);
                on_step(
                    i,
                    Step {
                        id: Some(t),
                        piece: &piece,
                        info: None,
                    },
                );
            }
        }
        let mut logits: Vec<f32> = Vec::new();
        let (mut on_device, mut host_only): (Option<OnDevice>, bool) = (None, false);
        let mut next: Vec<u32> = Vec::with_capacity(k);
        let context: Vec<u32> = prompt_ids.iter().chain(given).copied().collect();
        // Row-major [k, t]: the context in every row, then each row's last token.
        let mut input: Vec<u32> = context.repeat(k);
        loop {
            for (i, row) in rows.iter_mut().enumerate() {
                if row.stop.is_none() {
                    row.stop = if row.out.len() >= params.max_tokens {
                        Some(StopReason::MaxTokens)
                    } else if cancel(i) {
                        Some(StopReason::Cancelled)
                    } else if cache.pos + input.len() / k > self.max_positions {
                        Some(StopReason::Context)
                    } else {
                        None
                    };
                }
            }
            for row in rows
                .iter_mut()
                .filter(|r| r.stop.is_some() && r.ended.is_none())
            {
                row.ended = Some(start.elapsed());
            }
            if rows.iter().all(|r| r.stop.is_some()) {
                break;
            }
            let out = self.model.forward_ids(&input, k, &mut cache, mix)?;
            if on_device.is_none() && !host_only {
                let histories: Vec<&[u32]> = rows.iter().map(|r| r.history.as_slice()).collect();
                on_device = OnDevice::start(self.model, &out, &histories, params.token_info)?;
                host_only = on_device.is_none();
            }
            // Rows pick on the device, only their tokens coming back, or here from a copy of
            // every row's logits.
            let picks = match &mut on_device {
                Some(d) => {
                    for (draw, row) in d.draws.iter_mut().zip(&mut rows) {
                        *draw = if row.stop.is_none() {
                            row.sampler.draw()
                        } else {
                            0.0
                        };
                    }
                    Some(d.picks(&out, &params.sampling)?)
                }
                None => {
                    copy_to_host(&out, &mut logits)?;
                    None
                }
            };
            let vocab = out.dim(1)?;
            // On the host each row picks from its own logits with its own sampler and history,
            // so the rows of a batch pick at once on the pool's threads: the same tokens as
            // one after another.
            let mut on_host: Vec<Option<Result<HostPick>>> = match picks {
                Some(_) => Vec::new(),
                None => rows
                    .par_iter_mut()
                    .zip(logits.par_chunks_mut(vocab))
                    .map(|(row, logits)| {
                        row.stop
                            .is_none()
                            .then(|| row.pick_on_host(logits, params.token_info))
                    })
                    .collect(),
            };
            next.clear();
            for (i, row) in rows.iter_mut().enumerate() {
                if row.stop.is_some() {
                    next.push(*row.history.last().expect("prompt is not empty"));
                    continue;
                }
                let (token, info) = match (&picks, &mut on_device) {
                    (Some(picks), Some(d)) => match picks[i] {
                        Pick::Token(t) => (t, None),
                        Pick::NonFinite => bail!(Invalid, "{NON_FINITE_LOGITS}"),
                        Pick::OnHost => {
                            // A nucleus wider than the device's head: this row alone comes back.
                            copy_to_host(&out.get(i)?, &mut logits)?;
                            let t = row.sampler.pick(d.draws[i], &mut logits, &row.history);
                            d.picked_on_host(i, t)?;
                            (t, None)
                        }
                    },
                    _ => on_host[i]
                        .take()
                        .expect("an active row picked on the host")?,
                };
                row.first_token.get_or_insert_with(|| start.elapsed());
                next.push(token);
                if !params.ignore_eos && self.eos.contains(&token) {
                    row.stop = Some(StopReason::Eos);
                    continue;
                }
                row.infos.extend(info);
                row.out.push(token);
                row.history.push(token);
                let piece = row.stream.push(token)?;
                on_step(
                    i,
                    Step {
                        id: Some(token),
                        piece: piece.as_deref().unwrap_or(""),
                        info: info.as_ref(),
                    },
                );
                if let Some(piece) = piece {
                    row.text.push_str(&piece);
                    // A stop text may span pieces, and special tokens (read as their plain
                    // content): look in the plain tail that could hold it.
                    if let Some(longest) = self.stop.iter().map(String::len).max() {
                        let tail = plain(plain_tail(&row.text, longest + piece.len()));
                        if self.stop.iter().any(|s| tail.contains(s.as_str())) {
                            row.stop = Some(StopReason::StopText);
                        }
                    }
                }
            }
            std::mem::swap(&mut input, &mut next);
        }
        let elapsed = start.elapsed();
        rows.into_iter()
            .enumerate()
            .map(|(i, mut row)| {
                if let Some(piece) = row.stream.finish()? {
                    on_step(
                        i,
                        Step {
                            id: None,
                            piece: &piece,
                            info: None,
                        },
                    );
                    row.text.push_str(&piece);
                }
                // A row's first token comes before its stop; one without a first token
                // stopped before sampling, and its "first token" is its stop.
                let ended = row.ended.unwrap_or(elapsed);
                Ok(Generation {
                    text: row.text,
                    token_ids: row.out,
                    tokens: row.infos,
                    prompt_tokens: prompt_ids.len(),
                    stop: row.stop.unwrap_or(StopReason::MaxTokens),
                    first_token: row.first_token.unwrap_or(ended).min(ended),
                    elapsed: ended,
                })
            })
            .collect()
    }
}

/// −Σ log p(yᵢ) over the rows of `logits` [n, vocab], `y` [n, 1] the targets. In f64: in
/// f32 the normaliser of a large vocabulary loses its many small terms and every token's
/// log-probability comes out high (by ~2e-6 nats on SmolLM2's 49k).
/// Rows go 64 at a time, so that the f64 copies stay small beside the logits themselves.
fn nll_of(logits: &candle_core::Tensor, y: &candle_core::Tensor) -> Result<f64> {
    const ROWS: usize = 64;
    let n = logits.dim(0)?;
    let mut total = 0.0;
    for at in (0..n).step_by(ROWS) {
        let k = ROWS.min(n - at);
        let rows = logits.narrow(0, at, k)?.to_dtype(candle_core::DType::F64)?;
        let lp = candle_nn::ops::log_softmax(&rows, candle_core::D::Minus1)?;
        total -= lp
            .gather(&y.narrow(0, at, k)?, 1)?
            .sum_all()?
            .to_scalar::<f64>()?;
    }
    Ok(total)
}

/// The windows in which [`Generator::continuation_nll`] reads `len` tokens whose first
/// `scored_from` are the prompt: `(start, first, end)` scores tokens `first..end` given
/// `start..` (at most `context` tokens). One window where everything fits; else each
/// scores up to half a context of new tokens, so each has at least half a context before it.
fn nll_windows(scored_from: usize, len: usize, context: usize) -> Vec<(usize, usize, usize)> {
    if len <= context {
        return vec![(0, scored_from, len)];
    }
    let step = context / 2;
    let mut windows = Vec::new();
    let mut first = scored_from;
    while first < len {
        let end = (first + step).min(len);
        windows.push((end.saturating_sub(context), first, end));
        first = end;
    }
    windows
}

/// A text's negative log-likelihood, refused where the logits were not finite (a NaN would
/// otherwise pass for a score, and a model that overflows has none to give).
fn finite_nll(total: f64, count: usize) -> Result<(f64, usize)> {
    if !total.is_finite() {
        bail!(Invalid, "{NON_FINITE_LOGITS}");
    }
    Ok((total, count))
}

/// Either cause can be the one: an α far out, or a corrupt file (a quantized block's scale,
/// read in place, is not checked at load) whose values overflow at any α.
const NON_FINITE_LOGITS: &str =
    "non-finite logits: the weights overflow (an α far outside [0, 1], or a weight file holding values that are not finite)";

/// An encoding's ids before and after byte `at` of its text; a token that spans it goes after.
fn split_at_text(enc: &tokenizers::Encoding, at: usize) -> (Vec<u32>, Vec<u32>) {
    let split = enc
        .get_offsets()
        .iter()
        .position(|&(_, end)| end > at)
        .unwrap_or(enc.len());
    let ids = enc.get_ids();
    (ids[..split].to_vec(), ids[split..].to_vec())
}

/// A token picked on the host, with its view where asked.
type HostPick = (u32, Option<TokenInfo>);

/// One row's state in the token loop.
struct Row<'t> {
    sampler: Sampler,
    stream: TokenStream<'t>,
    history: Vec<u32>,
    out: Vec<u32>,
    infos: Vec<TokenInfo>,
    text: String,
    first_token: Option<Duration>,
    /// When the row stopped: a batch runs on until its last row stops, but a row's rate is
    /// its own.
    ended: Option<Duration>,
    stop: Option<StopReason>,
}

impl<'t> Row<'t> {
    /// The next token from this row's copy of the logits (which the penalty rewrites in
    /// place), with its view where asked.
    fn pick_on_host(&mut self, logits: &mut [f32], token_info: bool) -> Result<HostPick> {
        if logits.iter().any(|l| !l.is_finite()) {
            bail!(Invalid, "{NON_FINITE_LOGITS}");
        }
        // Before sampling: the penalty rewrites the logits in place.
        let summary = token_info.then(|| Summary::of(logits));
        let token = self.sampler.sample(logits, &self.history);
        let info = summary.map(|s| s.info(token, self.sampler.raw_logit(logits, token)));
        Ok((token, info))
    }

    /// A row that will hold at most `positions` tokens, its prompt's included (the context
    /// ends a generation however large `--max-tokens` is).
    fn new(
        tokenizer: &'t Tokenizer,
        params: &GenerationParams,
        prompt: &[u32],
        positions: usize,
    ) -> Self {
        let new_tokens = params
            .max_tokens
            .min(positions.saturating_sub(prompt.len()));
        let mut history = Vec::with_capacity(prompt.len() + new_tokens);
        history.extend_from_slice(prompt);
        Self {
            sampler: Sampler::new(params.sampling),
            stream: TokenStream::after(tokenizer, prompt),
            history,
            out: Vec::with_capacity(new_tokens),
            infos: Vec::with_capacity(if params.token_info { new_tokens } else { 0 }),
            text: String::new(),
            first_token: None,
            ended: None,
            stop: None,
        }
    }
}

/// `ids` in windows of at most `size` tokens, each read from its own start. Where the text
/// opens with the BOS its tokenizer adds (`bos`), every later window opens with it too, as
/// the model was trained to read (llama.cpp's perplexity does the same): Gemma reads a text
/// without it as noise.
fn windows(ids: &[u32], size: usize, bos: Option<u32>) -> Vec<std::borrow::Cow<'_, [u32]>> {
    use std::borrow::Cow;
    // Every window moves on by a token at least (a context is 2 or more: config checks).
    let size = size.max(2);
    let bos = bos.filter(|b| ids.first() == Some(b));
    let mut out = Vec::new();
    let mut start = 0;
    while start < ids.len() {
        match bos {
            Some(b) if start > 0 => {
                let end = (start + size - 1).min(ids.len());
                out.push(Cow::Owned([&[b], &ids[start..end]].concat()));
                start = end;
            }
            _ => {
                let end = (start + size).min(ids.len());
                out.push(Cow::Borrowed(&ids[start..end]));
                start = end;
            }
        }
    }
    out
}

/// The end of `text` that holds its last `bytes` bytes of plain text (markers not counted).
fn plain_tail(text: &str, bytes: usize) -> &str {
    if bytes == 0 {
        return &text[text.len()..];
    }
    let mut plain = 0;
    for (i, c) in text.char_indices().rev() {
        if c != SPECIAL_START && c != SPECIAL_END {
            plain += c.len_utf8();
        }
        if plain >= bytes {
            return &text[i..];
        }
    }
    text
}

/// Copy an f32 tensor into `buf` (reused across steps): on the CPU straight from the
/// tensor's storage, with no intermediate vector; from a GPU, the one device-to-host copy.
pub fn copy_to_host(t: &Tensor, buf: &mut Vec<f32>) -> candle_core::Result<()> {
    buf.clear();
    if t.device().is_cpu() && t.is_contiguous() {
        let (storage, layout) = t.storage_and_layout();
        if let candle_core::Storage::Cpu(cpu) = &*storage {
            let all = cpu.as_slice::<f32>()?;
            buf.extend_from_slice(
                &all[layout.start_offset()..layout.start_offset() + t.elem_count()],
            );
            return Ok(());
        }
    }
    buf.extend(t.flatten_all()?.to_vec1::<f32>()?);
    Ok(())
}

#[cfg(test)]
mod tests {

    /// The NLL of a row whose one large logit sits among 80,000 small ones (each far below
    /// half an f32 ulp of the sum) equals the f64 reference.
    #[test]
    fn the_nll_keeps_a_large_vocabularys_small_terms() {
        use candle_core::{Device, Tensor};
        let mut row = vec![-17f32; 80_001];
        row[0] = 0.0;
        let logits = Tensor::new(&row[..], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let lp = crate::generate::token_info::log_softmax(&row);
        for target in [0u32, 5] {
            let y = Tensor::new(&[[target]], &Device::Cpu).unwrap();
            let got = nll_of(&logits, &y).unwrap();
            let want = -lp[target as usize];
            assert!((got - want).abs() < 1e-9, "{target}: {got} vs {want}");
        }
        // 150 rows go in three chunks: every row counted once.
        let many = logits.repeat((150, 1)).unwrap();
        let targets: Vec<u32> = (0..150u32).map(|i| i % 3).collect();
        let y = Tensor::new(&targets[..], &Device::Cpu)
            .unwrap()
            .unsqueeze(1)
            .unwrap();
        let want: f64 = targets.iter().map(|&t| -lp[t as usize]).sum();
        let got = nll_of(&many, &y).unwrap();
        assert!((got - want).abs() < 1e-9 * want.abs(), "{got} vs {want}");
    }

    /// Windows after the first open with the BOS a text opened with; without one they are
    /// plain chunks.
    #[test]
    fn later_windows_open_with_the_bos() {
        let ids = [1, 10, 11, 12, 13, 14, 15];
        let w = |bos| -> Vec<Vec<u32>> {
            windows(&ids, 3, bos)
                .into_iter()
                .map(|w| w.into_owned())
                .collect()
        };
        assert_eq!(
            w(Some(1)),
            [vec![1, 10, 11], vec![1, 12, 13], vec![1, 14, 15]]
        );
        assert_eq!(w(None), [vec![1, 10, 11], vec![12, 13, 14], vec![15]]);
        // A text that does not open with the BOS is chunked plainly.
        assert_eq!(w(Some(7)), w(None));
        // Windows too small to hold a prediction still move on.
        assert_eq!(windows(&ids, 0, Some(1)).len(), 6);
    }

    /// The tail that holds n plain bytes reaches past any number of markers.
    #[test]
    fn a_plain_tail_does_not_count_markers() {
        let (s, e) = (SPECIAL_START, SPECIAL_END);
        let text = format!("ab{s}</s>{e}{s}</s>{e}{s}</s>{e}{s}</s>{e}c");
        let tail = plain_tail(&text, 18);
        assert_eq!(plain(tail), "b</s></s></s></s>c");
        assert_eq!(plain_tail("abc", 10), "abc");
        assert_eq!(plain_tail("abc", 0), "");
    }

    use super::*;
    use std::str::FromStr;

    /// A row's memory follows the dtype the model computes in: a bf16 model's caches and
    /// activations take half an f32 model's (the logits stay f32). SmolLM2-135M's shape: 8
    /// rows of 4,096 positions are about 1.9 GiB in f32 (1.4 GiB and a third).
    #[test]
    fn row_memory_follows_the_compute_dtype() {
        let config = crate::formats::config::ModelConfig::parse(
            r#"{"architectures":["LlamaForCausalLM"],"hidden_size":576,"intermediate_size":1536,
            "num_hidden_layers":30,"num_attention_heads":9,"num_key_value_heads":3,
            "vocab_size":49152,"max_position_embeddings":8192}"#,
        )
        .unwrap();
        let (f32, bf16) = (
            RowMemory::of(&config, candle_core::DType::F32),
            RowMemory::of(&config, candle_core::DType::BF16),
        );
        assert_eq!(f32.kv_per_position, 2 * bf16.kv_per_position);
        assert_eq!(f32.per_position, 2 * bf16.per_position);
        assert_eq!(f32.per_row, bf16.per_row);
        let gib = f32.bytes(8, 16, 4096) as f64 / (1u64 << 30) as f64;
        assert!((1.7..2.1).contains(&gib), "{gib}");
    }

    /// A SentencePiece-style tokenizer as Llama 2's tokenizer.json has it: a `▁` put before
    /// every text it is given and for every space, over a word-level vocabulary.
    fn metaspace() -> tokenizers::Tokenizer {
        tokenizers::Tokenizer::from_str(
            r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
            "normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},
              {"type":"Replace","pattern":{"String":" "},"content":"▁"}]},
            "pre_tokenizer":{"type":"Metaspace","replacement":"▁","prepend_scheme":"never","split":true},
            "post_processor":null,"decoder":null,
            "model":{"type":"WordLevel","unk_token":"<unk>",
              "vocab":{"<unk>":0,"▁Hello":1,"▁world":2,"▁":3,"▁again":4}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_continuation_is_split_off_the_tokens_of_the_whole_text() {
        let t = metaspace();
        let whole = t.encode("Hello world again", false).unwrap();
        assert_eq!(split_at_text(&whole, 5), (vec![1], vec![2, 4]));
        // Alone, the continuation would start with a stray `▁`: what the split avoids.
        assert_eq!(
            t.encode(" world again", false).unwrap().get_ids(),
            [3, 2, 4]
        );
        // The seam inside a token: the token goes with the continuation.
        assert_eq!(split_at_text(&whole, 3), (vec![], vec![1, 2, 4]));
        // Nothing after the prompt.
        assert_eq!(split_at_text(&whole, 17), (vec![1, 2, 4], vec![]));
    }
}
