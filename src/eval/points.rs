//! The meter at one α: every prompt's samples generated with common random numbers (the seeds of
//! [`SampleGrid`], the same at every α), each scored by the attribute meter and for fluency.
//! `find` (headless and in the UI) and the UI's curve measure their points this way; the samples
//! are exactly those a re-blend-mode `sweep` with the same settings writes at that α.

use super::grid::{Cell, SampleGrid};
use super::stats::{estimate, Estimate};
use super::sweep::{PplRef, SAMPLE_BATCH};
use super::Scorer;
use crate::engine::tokens::without_specials;
use crate::engine::{
    perplexity, Alpha, Engine, ErrorKind, Generation, GenerationParams, Standalone,
};
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
    /// What the meter can read ([`Scorer::range`]): its interval is cut to it.
    pub range: (f64, f64),
}

impl Point {
    /// The meter's mean with its 95% interval (`stats::estimate`, as `sweep` reports it), cut
    /// to what the meter can read.
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
        .within(self.range.0, self.range.1)
    }

    pub fn perplexity(&self) -> Estimate {
        estimate(&self.perplexities).within(1.0, f64::INFINITY)
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
    /// The judge model reads its own tokens: a sample's text is tokenized again for it.
    retokenize: bool,
}

impl Fluency {
    pub fn new(judge: PplRef, engine: &Engine) -> Result<Self> {
        let reference = match &judge {
            PplRef::Model(src) => Some(
                Standalone::load(src, engine.weights().dtype(), engine.device())
                    .context("--ppl-ref")?,
            ),
            _ => None,
        };
        let retokenize = reference
            .as_ref()
            .is_some_and(|r| r.tokenizer().get_vocab(true) != engine.tokenizer().get_vocab(true));
        Ok(Self {
            judge,
            reference,
            retokenize,
        })
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
        let judged = |scored: crate::engine::Result<(f64, usize)>| match scored {
            // The judge's weights are its own, whatever α is: the advice for a blend's overflow
            // would mislead.
            Err(e) if e.kind() == ErrorKind::Invalid => {
                let PplRef::Model(spec) = &self.judge else {
                    unreachable!("only a model of its own is a judge apart")
                };
                Err(anyhow::anyhow!(
                    "--ppl-ref {spec}: the judge's own logits are not finite on this sample"
                ))
            }
            other => other.map_err(anyhow::Error::from),
        };
        Ok(match (&self.judge, &self.reference) {
            (PplRef::Blend, _) => (
                -g.tokens.iter().map(|t| t.logprob as f64).sum::<f64>(),
                g.tokens.len(),
            ),
            (_, Some(r)) if self.retokenize => {
                // The prompt as plain text (the pair's special tokens, a BOS and a chat
                // template's markers, are not the judge's), then the sample's text, in the
                // judge's own tokens: its NLL per token of its own.
                let prompt = engine
                    .tokenizer()
                    .decode(prompt_ids, true)
                    .map_err(|e| anyhow::anyhow!("cannot write the prompt as text: {e}"))?;
                // The sample as samples.jsonl has it: special tokens as their text, without
                // the private-use marks that bracket them in a generation's text.
                let text = crate::engine::tokens::plain(&g.text);
                let (prompt, sample) = r.generator().encode_split(&prompt, &text)?;
                judged(r.generator().continuation_nll(&prompt, &sample))?
            }
            (_, Some(r)) => judged(r.generator().continuation_nll(prompt_ids, &g.token_ids))?,
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
    let mut m = Measuring::new(plan, alpha, SAMPLE_BATCH);
    loop {
        if let Some(point) = m.step(engine, meter, fluency)? {
            return Ok(point);
        }
    }
}

/// A point measured a batch at a time, so that a caller sharing the engine (the UI's engine
/// thread) can run other work between batches. A row's result does not depend on its batch,
/// so the point is the same whatever the batch size.
pub struct Measuring {
    plan: Plan,
    alpha: Alpha,
    batch: usize,
    /// The next (prompt, first sample) to generate.
    next: (usize, usize),
    made: Vec<(usize, Vec<u32>, Vec<Generation>)>,
}

impl Measuring {
    pub fn new(plan: &Plan, alpha: Alpha, batch: usize) -> Self {
        Self {
            plan: plan.clone(),
            alpha,
            batch: batch.max(1),
            next: (0, 0),
            made: Vec::new(),
        }
    }

    pub fn alpha(&self) -> Alpha {
        self.alpha
    }

    /// Generate the next batch (blending to α first where the engine moved); once every
    /// sample is made, score them all and return the point.
    pub fn step(
        &mut self,
        engine: &mut Engine,
        meter: &dyn Scorer,
        fluency: &Fluency,
    ) -> Result<Option<Point>> {
        let (prompt_index, first) = self.next;
        if prompt_index < self.plan.prompts.len() && self.plan.samples > 0 {
            let grid = SampleGrid {
                alphas: vec![self.alpha],
                prompts: self.plan.prompts.clone(),
                samples: self.plan.samples,
                params: self.plan.params,
                seeds: crate::eval::grid::Seeds::Mixed,
            };
            let mut params = self.plan.params;
            params.token_info = fluency.needs_token_info();
            if engine.alpha() != self.alpha {
                engine.set_alpha(self.alpha)?;
            }
            let prompt_ids = engine.encode(&self.plan.prompts[prompt_index])?;
            let last = (first + self.batch).min(self.plan.samples);
            let seeds: Vec<u64> = (first..last)
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
                .with_context(|| format!("at α = {}", self.alpha))?;
            self.made.push((prompt_index, prompt_ids, gens));
            self.next = if last == self.plan.samples {
                (prompt_index + 1, 0)
            } else {
                (prompt_index, last)
            };
            if self.next.0 < self.plan.prompts.len() {
                return Ok(None);
            }
        }
        if let Some(judge) = fluency.judge_alpha().filter(|&j| engine.alpha() != j) {
            engine.set_alpha(judge)?;
        }
        let mut point = Point {
            alpha: self.alpha,
            scores: vec![Vec::with_capacity(self.plan.samples); self.plan.prompts.len()],
            perplexities: Vec::new(),
            range: meter.range(),
        };
        for (prompt_index, prompt_ids, gens) in std::mem::take(&mut self.made) {
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
        Ok(Some(point))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{DeviceChoice, LoadOptions, SamplingParams};
    use crate::eval::Vader;

    /// A point is the same measured in batches of 1, 3 or 16: rows do not depend on their
    /// batch, and the scores land by prompt and sample whatever the order.
    #[test]
    fn a_point_does_not_depend_on_its_batches() {
        let (a, b) = crate::cli::demo_pair();
        let opts = LoadOptions {
            device: DeviceChoice::Cpu,
            ..Default::default()
        };
        let mut engine = Engine::load(&a, &b, &opts).unwrap();
        let plan = Plan {
            prompts: vec!["The food".into(), "My friend said".into()],
            samples: 5,
            params: GenerationParams {
                max_tokens: 16,
                sampling: SamplingParams {
                    temperature: 1.0,
                    seed: 11,
                    ..Default::default()
                },
                ..Default::default()
            },
        };
        let fluency = Fluency::new(PplRef::Blend, &engine).unwrap();
        let alpha = Alpha::new(0.4).unwrap();
        let whole = measure(&mut engine, &plan, alpha, &Vader, &fluency).unwrap();
        assert_eq!(whole.scores.iter().map(Vec::len).sum::<usize>(), 10);
        for batch in [1, 3] {
            let mut m = Measuring::new(&plan, alpha, batch);
            let mut steps = 1;
            let point = loop {
                // Another job moves the engine between batches.
                engine.set_alpha(Alpha::B).unwrap();
                match m.step(&mut engine, &Vader, &fluency).unwrap() {
                    Some(p) => break p,
                    None => steps += 1,
                }
            };
            assert_eq!(steps, 2 * 5usize.div_ceil(batch), "batch {batch}");
            assert_eq!(point, whole, "batch {batch}");
        }
    }
}
