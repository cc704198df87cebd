//! The UI's quick attribute-vs-α curve, and its search for the α of a target: points measured
//! by `eval::points` (VADER over the prompt's samples, common random numbers) one batch of
//! [`TURN_SAMPLES`] per turn of the engine thread, so column jobs never wait long behind them.

use super::{Emit, EngineEvent};
use crate::engine::{Alpha, AlphaRange, Engine, GenerationParams};
use crate::eval::find::{Outcome, Search, Settings, Step};
use crate::eval::points::{Fluency, Measuring, Plan};
use crate::eval::stats::Estimate;
use crate::eval::sweep::PplRef;
use crate::eval::Vader;

/// Samples generated per turn of the engine thread: a column job submitted meanwhile waits
/// for one such batch at most.
pub const TURN_SAMPLES: usize = 4;

#[derive(Debug, Clone, PartialEq)]
pub struct CurveJob {
    pub id: u64,
    pub alphas: Vec<Alpha>,
    /// On a plane: the grid's βs, each α measured at each (a heat map); empty on a line.
    pub betas: Vec<Alpha>,
    pub prompt: String,
    pub samples: usize,
    pub params: GenerationParams,
}

pub(super) struct CurveState {
    id: u64,
    /// (α, β) of each point in the order measured: the line's alphas, or the grid row by row.
    points: Vec<(Alpha, Option<Alpha>)>,
    plan: Plan,
    next_point: usize,
    measuring: Option<(Measuring, Option<Alpha>)>,
}

impl CurveState {
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn new(job: CurveJob) -> Self {
        let points = match job.betas.as_slice() {
            [] => job.alphas.iter().map(|&a| (a, None)).collect(),
            betas => betas
                .iter()
                .flat_map(|&b| job.alphas.iter().map(move |&a| (a, Some(b))))
                .collect(),
        };
        Self {
            id: job.id,
            points,
            plan: Plan {
                prompts: vec![job.prompt],
                samples: job.samples,
                params: job.params,
            },
            next_point: 0,
            measuring: None,
        }
    }

    pub(super) fn done(&self) -> bool {
        self.next_point >= self.points.len() && self.measuring.is_none()
    }

    /// Generate the next batch of the current α's samples (at the re-blended weights, each row
    /// with its sample's seed, as `sweep` does); once they are all made, emit that α's point
    /// with its interval.
    pub(super) fn step(&mut self, engine: &mut Engine, emit: &Emit) -> anyhow::Result<()> {
        if self.plan.samples == 0 {
            self.next_point = self.points.len();
            return Ok(());
        }
        let (m, beta) = match self.measuring.as_mut() {
            Some(m) => m,
            None => {
                let (alpha, beta) = self.points[self.next_point];
                self.next_point += 1;
                self.measuring
                    .insert((Measuring::new(&self.plan, alpha, TURN_SAMPLES), beta))
            }
        };
        let beta = *beta;
        super::to_point(engine, m.alpha(), beta)?;
        let fluency = Fluency::new(PplRef::Blend, engine)?;
        if let Some(point) = m.step(engine, &Vader, &fluency)? {
            self.measuring = None;
            emit(EngineEvent::CurvePoint {
                id: self.id,
                alpha: point.alpha,
                beta,
                vader: point.meter(),
            });
        }
        Ok(())
    }
}

/// Find the α at which the prompt's mean VADER reaches `target` (see `eval::find`).
#[derive(Debug, Clone, PartialEq)]
pub struct FindJob {
    pub id: u64,
    pub target: f64,
    pub range: AlphaRange,
    /// On a plane, the β the search runs at (its column's).
    pub beta: Option<Alpha>,
    pub prompt: String,
    pub samples: usize,
    pub params: GenerationParams,
}

/// How far a search has got, or how it ended.
#[derive(Debug, Clone, PartialEq)]
pub enum FindReport {
    /// A point is measured; the bracket is the current one, once found.
    Point {
        alpha: Alpha,
        vader: Estimate,
        bracket: Option<(Alpha, Alpha)>,
    },
    /// The search is over; `vader` is the meter at the outcome's α.
    Done {
        outcome: Outcome,
        vader: Estimate,
        points: usize,
    },
}

pub(super) struct FindState {
    id: u64,
    beta: Option<Alpha>,
    plan: Plan,
    search: Search,
    measuring: Option<Measuring>,
}

impl FindState {
    pub(super) fn new(job: FindJob) -> Self {
        let mut settings = Settings::new(job.target, job.range);
        settings.seed = job.params.sampling.seed;
        Self {
            id: job.id,
            beta: job.beta,
            plan: Plan {
                prompts: vec![job.prompt],
                samples: job.samples,
                params: job.params,
            },
            search: Search::new(settings),
            measuring: None,
        }
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// Measure one batch of the current point (reporting the point once it is whole), or
    /// report the outcome. Ok(true) once the search is over.
    pub(super) fn step(&mut self, engine: &mut Engine, emit: &Emit) -> anyhow::Result<bool> {
        let id = self.id;
        if self.measuring.is_none() {
            match self.search.next_step() {
                Step::Measure(alpha) => {
                    self.measuring = Some(Measuring::new(&self.plan, alpha, TURN_SAMPLES))
                }
                Step::Done => {
                    let outcome = self.search.outcome().expect("done").clone();
                    let points = self.search.points();
                    let vader = points
                        .iter()
                        .find(|p| p.alpha == outcome.alpha)
                        .map_or(crate::eval::stats::estimate(&[]), |p| p.meter());
                    emit(EngineEvent::Find {
                        id,
                        report: FindReport::Done {
                            outcome,
                            vader,
                            points: points.len(),
                        },
                    });
                    return Ok(true);
                }
            }
        }
        let m = self.measuring.as_mut().expect("set above");
        super::to_point(engine, m.alpha(), self.beta)?;
        let fluency = Fluency::new(PplRef::Blend, engine)?;
        if let Some(point) = m.step(engine, &Vader, &fluency)? {
            self.measuring = None;
            let (alpha, vader) = (point.alpha, point.meter());
            self.search.add(point);
            emit(EngineEvent::Find {
                id,
                report: FindReport::Point {
                    alpha,
                    vader,
                    bracket: self.search.bracket(),
                },
            });
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{DeviceChoice, LoadOptions, SamplingParams};
    use crate::eval::grid::{Cell, SampleGrid, Seeds};
    use crate::eval::Scorer;
    use std::sync::{Arc, Mutex};

    /// Each point is the mean VADER score of its α's samples, each generated alone with its
    /// sample's seed (the grid's one-cell path), whatever the batch.
    #[test]
    fn each_point_is_the_mean_of_its_samples_generated_alone() {
        // The demo pair writes words VADER knows, so the means are not all zero.
        let (a, b) = crate::cli::demo_pair();
        let opts = LoadOptions {
            device: DeviceChoice::Cpu,
            ..Default::default()
        };
        let mut engine = Engine::load(&a, &b, &opts).unwrap();
        let job = CurveJob {
            id: 7,
            alphas: [0.0, 0.5, 1.5].map(|a| Alpha::new(a).unwrap()).to_vec(),
            betas: vec![],
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
            if let EngineEvent::CurvePoint {
                id, alpha, vader, ..
            } = e
            {
                seen.lock().unwrap().push((id, alpha, vader.mean, vader.n));
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
            seeds: Seeds::Mixed,
        };
        let mut want = Vec::new();
        for (alpha_index, &alpha) in job.alphas.iter().enumerate() {
            let mut texts = std::collections::HashSet::new();
            let scores: Vec<f64> = (0..job.samples)
                .filter_map(|sample| {
                    let cell = Cell {
                        alpha_index,
                        prompt_index: 0,
                        sample,
                    };
                    let g = grid.generate(&mut engine, cell).unwrap();
                    texts.insert(g.text.clone());
                    // An empty sample (an end token first) is not scored.
                    (!g.token_ids.is_empty()).then(|| {
                        Vader
                            .score(&crate::engine::tokens::without_specials(&g.text))
                            .unwrap()
                    })
                })
                .collect();
            assert!(texts.len() > 1, "the samples should differ");
            want.push((
                7,
                alpha,
                scores.iter().sum::<f64>() / scores.len() as f64,
                scores.len(),
            ));
        }
        assert!(want.iter().any(|p| p.2 != 0.0), "{want:?}");
        assert_eq!(*points.lock().unwrap(), want);
    }
}
