//! The UI's quick attribute-vs-α curve: a small [`SampleGrid`] scored with VADER, run one α
//! per turn of the engine thread (its samples as one batch) so column jobs never wait long
//! behind it.

use super::{Emit, EngineEvent};
use crate::engine::{Alpha, Engine, GenerationParams};
use crate::eval::grid::{Cell, SampleGrid};
use crate::eval::{Scorer, Vader};

#[derive(Debug, Clone, PartialEq)]
pub struct CurveJob {
    pub id: u64,
    pub alphas: Vec<Alpha>,
    pub prompt: String,
    pub samples: usize,
    pub params: GenerationParams,
}

pub(super) struct CurveState {
    id: u64,
    grid: SampleGrid,
    next_alpha: usize,
}

impl CurveState {
    pub(super) fn new(job: CurveJob) -> Self {
        Self {
            id: job.id,
            grid: SampleGrid {
                alphas: job.alphas,
                prompts: vec![job.prompt],
                samples: job.samples,
                params: job.params,
            },
            next_alpha: 0,
        }
    }

    pub(super) fn done(&self) -> bool {
        self.next_alpha >= self.grid.alphas.len()
    }

    /// Generate and score the next α's samples (one batch at the re-blended weights, each row
    /// with its sample's seed, as `sweep` does); emit that α's point.
    pub(super) fn step(&mut self, engine: &mut Engine, emit: &Emit) -> anyhow::Result<()> {
        let alpha_index = self.next_alpha;
        self.next_alpha += 1;
        let alpha = self.grid.alphas[alpha_index];
        if self.grid.samples == 0 {
            return Ok(());
        }
        let seeds: Vec<u64> = (0..self.grid.samples)
            .map(|sample| {
                let cell = Cell {
                    alpha_index,
                    prompt_index: 0,
                    sample,
                };
                self.grid.params(cell).sampling.seed
            })
            .collect();
        if engine.alpha() != alpha {
            engine.set_alpha(alpha)?;
        }
        let prompt_ids = engine.encode(&self.grid.prompts[0])?;
        let gens = engine.generator().run_samples(
            &prompt_ids,
            &seeds,
            None,
            &self.grid.params,
            &mut |_, _| {},
        )?;
        let mut total = 0.0;
        for g in &gens {
            total += Vader.score(&crate::engine::tokens::without_specials(&g.text))?;
        }
        emit(EngineEvent::CurvePoint {
            id: self.id,
            alpha,
            vader: total / gens.len() as f64,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{DeviceChoice, LoadOptions, SamplingParams};
    use std::sync::{Arc, Mutex};

    /// Each point is the mean VADER score of its α's samples, each generated alone with its
    /// sample's seed (the grid's one-cell path), whatever the batch.
    #[test]
    fn each_point_is_the_mean_of_its_samples_generated_alone() {
        // The demo pair writes words VADER knows, so the means are not all zero.
        let demo = |side: &str| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("assets/demo")
                .join(side)
                .display()
                .to_string()
        };
        let opts = LoadOptions {
            device: DeviceChoice::Cpu,
            ..Default::default()
        };
        let mut engine = Engine::load(&demo("negative"), &demo("positive"), &opts).unwrap();
        let job = CurveJob {
            id: 7,
            alphas: [0.0, 0.5, 1.5].map(|a| Alpha::new(a).unwrap()).to_vec(),
            prompt: "The food at this place".into(),
            samples: 4,
            params: GenerationParams {
                max_tokens: 24,
                sampling: SamplingParams {
                    temperature: 1.0,
                    top_p: 0.95,
                    seed: 3,
                    ..Default::default()
                },
                ..Default::default()
            },
        };
        let points = Arc::new(Mutex::new(Vec::new()));
        let seen = points.clone();
        let emit = move |e: EngineEvent| {
            if let EngineEvent::CurvePoint { id, alpha, vader } = e {
                seen.lock().unwrap().push((id, alpha, vader));
            }
        };
        let mut curve = CurveState::new(job.clone());
        while !curve.done() {
            curve.step(&mut engine, &emit).unwrap();
        }
        let grid = SampleGrid {
            alphas: job.alphas.clone(),
            prompts: vec![job.prompt.clone()],
            samples: job.samples,
            params: job.params,
        };
        let mut want = Vec::new();
        for (alpha_index, &alpha) in job.alphas.iter().enumerate() {
            let mut texts = std::collections::HashSet::new();
            let scores: Vec<f64> = (0..job.samples)
                .map(|sample| {
                    let cell = Cell {
                        alpha_index,
                        prompt_index: 0,
                        sample,
                    };
                    let g = grid.generate(&mut engine, cell).unwrap();
                    texts.insert(g.text.clone());
                    Vader
                        .score(&crate::engine::tokens::without_specials(&g.text))
                        .unwrap()
                })
                .collect();
            assert!(texts.len() > 1, "the samples should differ");
            want.push((7, alpha, scores.iter().sum::<f64>() / scores.len() as f64));
        }
        assert!(want.iter().any(|p| p.2 != 0.0), "{want:?}");
        assert_eq!(*points.lock().unwrap(), want);
    }
}
