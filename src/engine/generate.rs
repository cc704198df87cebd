//! The token loop: prefill, sample, stream stable text, stop at EOS, the token budget, the
//! context limit or a cancel request (checked between tokens).

use super::model::Model;
use super::sampling::{Sampler, SamplingParams};
use super::token_stream::TokenStream;
use anyhow::{bail, Result};
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
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_tokens: 64,
            sampling: SamplingParams::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Eos,
    MaxTokens,
    Context,
    Cancelled,
}

/// A finished (or stopped) generation.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub prompt_tokens: usize,
    pub stop: StopReason,
    /// From the start of the call to the first sampled token (prefill included).
    pub first_token: Duration,
    pub elapsed: Duration,
}

impl Generation {
    /// Decode rate after the first token.
    pub fn tokens_per_s(&self) -> f64 {
        let n = self.token_ids.len().saturating_sub(1) as f64;
        let t = (self.elapsed - self.first_token).as_secs_f64();
        if n > 0.0 && t > 0.0 {
            n / t
        } else {
            0.0
        }
    }
}

/// A model with what it takes to generate from it.
pub struct Generator<'a> {
    pub model: &'a Model,
    pub tokenizer: &'a Tokenizer,
    pub eos: &'a [u32],
    pub max_positions: usize,
}

impl Generator<'_> {
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| anyhow::anyhow!("cannot tokenise the prompt: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Total negative log-likelihood of `ids[1..]` given what precedes each (in windows of
    /// the model's context), and the number of tokens scored.
    pub fn nll(&self, ids: &[u32]) -> Result<(f64, usize)> {
        use candle_core::{Tensor, D};
        let device = self.model.device();
        let (mut total, mut count) = (0f64, 0usize);
        for w in ids.chunks(self.max_positions.min(1024)) {
            if w.len() < 2 {
                continue;
            }
            let x = Tensor::new(&w[..w.len() - 1], device)?.unsqueeze(0)?;
            let y = Tensor::new(&w[1..], device)?.unsqueeze(1)?;
            let logits = self
                .model
                .forward_all(&x)?
                .squeeze(0)?
                .to_dtype(candle_core::DType::F32)?;
            let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            total -= lp.gather(&y, 1)?.sum_all()?.to_scalar::<f32>()? as f64;
            count += w.len() - 1;
        }
        Ok((total, count))
    }

    /// Negative log-likelihood of `continuation` given `prompt` (summed), and its length.
    pub fn continuation_nll(&self, prompt: &[u32], continuation: &[u32]) -> Result<(f64, usize)> {
        use candle_core::{Tensor, D};
        if continuation.is_empty() || prompt.is_empty() {
            return Ok((0.0, 0));
        }
        let all: Vec<u32> = prompt.iter().chain(continuation).copied().collect();
        let all = &all[all.len().saturating_sub(self.max_positions)..];
        let n = continuation.len().min(all.len() - 1);
        let device = self.model.device();
        let x = Tensor::new(&all[..all.len() - 1], device)?.unsqueeze(0)?;
        let logits = self
            .model
            .forward_all(&x)?
            .squeeze(0)?
            .to_dtype(candle_core::DType::F32)?;
        let lp = candle_nn::ops::log_softmax(&logits.narrow(0, all.len() - 1 - n, n)?, D::Minus1)?;
        let y = Tensor::new(&all[all.len() - n..], device)?.unsqueeze(1)?;
        let total = -(lp.gather(&y, 1)?.sum_all()?.to_scalar::<f32>()? as f64);
        Ok((total, n))
    }

    pub fn run(
        &self,
        prompt: &str,
        params: &GenerationParams,
        cancel: &dyn Cancel,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation> {
        params.sampling.validate()?;
        let prompt_ids = self.encode(prompt)?;
        if prompt_ids.is_empty() {
            bail!("the prompt is empty after tokenisation");
        }
        if prompt_ids.len() >= self.max_positions {
            bail!(
                "the prompt has {} tokens; the model's context is {}",
                prompt_ids.len(),
                self.max_positions
            );
        }
        let start = Instant::now();
        let capacity = (prompt_ids.len() + params.max_tokens).min(self.max_positions);
        let mut cache = self.model.new_cache(capacity);
        let mut sampler = Sampler::new(params.sampling);
        let mut stream = TokenStream::new(self.tokenizer);
        let mut history = prompt_ids.clone();
        let mut out = Vec::with_capacity(params.max_tokens);
        let mut text = String::new();
        let mut first_token = None;
        let mut next_input: Vec<u32> = prompt_ids.clone();
        let stop = loop {
            if out.len() >= params.max_tokens {
                break StopReason::MaxTokens;
            }
            if cancel.cancelled() {
                break StopReason::Cancelled;
            }
            if cache.pos + next_input.len() > self.max_positions {
                break StopReason::Context;
            }
            let mut logits = self
                .model
                .forward(&next_input, &mut cache)?
                .to_vec1::<f32>()?;
            if logits.iter().any(|l| !l.is_finite()) {
                bail!("non-finite logits (the weights overflow); try an α closer to [0, 1]");
            }
            let token = sampler.sample(&mut logits, &history);
            first_token.get_or_insert_with(|| start.elapsed());
            if self.eos.contains(&token) {
                break StopReason::Eos;
            }
            out.push(token);
            history.push(token);
            if let Some(piece) = stream.push(token)? {
                on_text(&piece);
                text.push_str(&piece);
            }
            next_input.clear();
            next_input.push(token);
        };
        if let Some(piece) = stream.finish()? {
            on_text(&piece);
            text.push_str(&piece);
        }
        Ok(Generation {
            text,
            token_ids: out,
            prompt_tokens: prompt_ids.len(),
            stop,
            first_token: first_token.unwrap_or_else(|| start.elapsed()),
            elapsed: start.elapsed(),
        })
    }
}
