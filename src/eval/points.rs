//! The meter at one α: every prompt's samples generated with common random numbers (the seeds of
//! [`SampleGrid`], the same at every α), each scored by the attribute meter and for fluency.
//! `find` (headless and in the UI) and the UI's curve measure their points this way; the samples
//! are exactly those a re-blend-mode `sweep` with the same settings writes at that α.

use super::grid::{Cell, SampleGrid};
use super::stats::{estimate, Estimate};
use super::sweep::{PplRef, SAMPLE_BATCH};
use super::Scorer;
use crate::engine::tokens::without_specials;
use crate::engine::{perplexity, Alpha, Engine, Generation, GenerationParams, Standalone};
use anyhow::{Context, Result};

/// What one point measures: these prompts, this many samples each, these settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub prompts: Vec<String>,
    pub samples: usize,
    /// The seed in here is the base every sample's seed is derived from.
    pub params: GenerationParams,
}

/// The meter's readings at one α, cell by cell so that two points pair up (same prompt, same
/// seed) for paired comparisons and the bootstrap.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub alpha: Alpha,
    /// `scores[prompt][sample]`; None for an empty sample (an end token first), which no meter
    /// scores and no estimate counts (as in `sweep`).
    pub scores: Vec<Vec<Option<f64>>>,
    /// Perplexity of each non-empty sample's continuation under the fluency judge.
    pub perplexities: Vec<f64>,
}

impl Point {
    /// The meter's mean with its 95% interval (`stats::estimate`, as `sweep` reports it).
    pub fn meter(&self) -> Estimate {
        estimate(
            &self
                .scores
                .iter()
                .flatten()
                .flatten()
                .copied()
                .collect::<Vec<_>>(),
        )
    }

    pub fn perplexity(&self) -> Estimate {
        estimate(&self.perplexities)
    }

    /// Samples with no tokens.
    pub fn empty(&self) -> usize {
        self.scores.iter().flatten().filter(|s| s.is_none()).count()
    }
}

/// Who judges fluency: the blend that wrote a sample (free: its own log-probabilities), an
/// endpoint, or another model.
pub struct Fluency {
    pub judge: PplRef,
    reference: Option<Standalone>,
}

impl Fluency {
    pub fn new(judge: PplRef, engine: &Engine) -> Result<Self> {
        let reference = match &judge {
            PplRef::Model(src) => Some(Standalone::load(
                src,
                engine.weights().dtype(),
                engine.device(),
            )?),
            _ => None,
        };
        Ok(Self { judge, reference })
    }

    /// Whether generation must record each token's log-probability (the blend judges).
    pub fn needs_token_info(&self) -> bool {
        self.judge == PplRef::Blend
    }

    /// The endpoint the engine must be at to judge, if the judge is one.
    pub fn judge_alpha(&self) -> Option<Alpha> {
        match self.judge {
            PplRef::A => Some(Alpha::A),
            PplRef::B => Some(Alpha::B),
            _ => None,
        }
    }

    /// (NLL, tokens) of a sample's continuation; the engine is at [`Self::judge_alpha`] when
    /// that is set.
    pub fn nll(&self, engine: &Engine, prompt_ids: &[u32], g: &Generation) -> Result<(f64, usize)> {
        Ok(match (&self.judge, &self.reference) {
            (PplRef::Blend, _) => (
                -g.tokens.iter().map(|t| t.logprob as f64).sum::<f64>(),
                g.tokens.len(),
            ),
            (_, Some(r)) => r.generator().continuation_nll(prompt_ids, &g.token_ids)?,
            (_, None) => engine
                .generator()
                .continuation_nll(prompt_ids, &g.token_ids)?,
        })
    }
}

/// Generate `plan`'s samples at `alpha` (re-blending there first) and score them. Each prompt's
/// samples go as batches of at most [`SAMPLE_BATCH`], as in a re-blend-mode sweep.
pub fn measure(
    engine: &mut Engine,
    plan: &Plan,
    alpha: Alpha,
    meter: &dyn Scorer,
    fluency: &Fluency,
) -> Result<Point> {
    let grid = SampleGrid {
        alphas: vec![alpha],
        prompts: plan.prompts.clone(),
        samples: plan.samples,
        params: plan.params,
    };
    let mut params = plan.params;
    params.token_info = fluency.needs_token_info();
    if engine.alpha() != alpha {
        engine.set_alpha(alpha)?;
    }
    let mut made = Vec::new();
    for (prompt_index, prompt) in plan.prompts.iter().enumerate() {
        let prompt_ids = engine.encode(prompt)?;
        for first in (0..plan.samples).step_by(SAMPLE_BATCH) {
            let seeds: Vec<u64> = (first..(first + SAMPLE_BATCH).min(plan.samples))
                .map(|sample| {
                    let cell = Cell {
                        alpha_index: 0,
                        prompt_index,
                        sample,
                    };
                    grid.params(cell).sampling.seed
                })
                .collect();
            let gens = engine
                .generator()
                .run_samples(&prompt_ids, &seeds, None, &params, &mut |_, _| {})
                .with_context(|| format!("at α = {alpha}"))?;
            made.push((prompt_index, prompt_ids.clone(), gens));
        }
    }
    if let Some(judge) = fluency.judge_alpha().filter(|&j| engine.alpha() != j) {
        engine.set_alpha(judge)?;
    }
    let mut point = Point {
        alpha,
        scores: vec![Vec::with_capacity(plan.samples); plan.prompts.len()],
        perplexities: Vec::new(),
    };
    for (prompt_index, prompt_ids, gens) in made {
        for g in gens {
            let score = if g.token_ids.is_empty() {
                None
            } else {
                let (nll, n) = fluency.nll(engine, &prompt_ids, &g)?;
                let p = perplexity(nll, n);
                if n > 0 && p.is_finite() {
                    point.perplexities.push(p);
                }
                Some(meter.score(&without_specials(&g.text))?)
            };
            point.scores[prompt_index].push(score);
        }
    }
    Ok(point)
}
