//! The α-scrub behind the token cursor: p(token | its prefix) across the slider's range, from
//! the batched mode (one forward pass over the prefix, one row per α). Coarse points come
//! first so a slow model shows the curve's shape at once; the rest fill it in.

use super::{Emit, EngineEvent};
use crate::engine::{Alpha, Engine};

#[derive(Debug, Clone, PartialEq)]
pub struct ScrubJob {
    pub id: u64,
    /// The prompt before the column's tokens (None: the tokens are a scored text, whole).
    pub prompt: Option<String>,
    /// The column's tokens before the one scrubbed.
    pub before: Vec<u32>,
    pub token: u32,
    pub alphas: Vec<Alpha>,
}

/// Every this many points, one goes in the coarse pass.
const COARSE_EVERY: usize = 4;

pub(super) struct ScrubState {
    job: ScrubJob,
    /// Indices into `job.alphas` of the passes still to run, the next one last (decided at
    /// the first step, once the prefix's length is known).
    passes: Option<Vec<Vec<usize>>>,
}

/// A scrub whose one pass is expected to take less than this runs as one pass: coarse
/// points first only pay where the wait would be felt.
const ONE_PASS_UNDER: f64 = 0.4;

/// The passes of a scrub of `n` points, in order, as indices into its alphas: every fourth
/// point and the last, then the rest.
pub fn passes(n: usize) -> Vec<Vec<usize>> {
    let coarse: Vec<usize> = (0..n)
        .filter(|i| i % COARSE_EVERY == 0 || i + 1 == n)
        .collect();
    let fine: Vec<usize> = (0..n).filter(|i| !coarse.contains(i)).collect();
    [coarse, fine]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect()
}

/// What a scrub costs on this engine: seconds per row and prefix token, from the last pass.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ScrubCost(Option<f64>);

impl ScrubCost {
    /// The passes for `n` points over `tokens` of prefix: one when it is known to be quick.
    pub(super) fn plan(&self, n: usize, tokens: usize) -> Vec<Vec<usize>> {
        match self.0 {
            Some(per) if per * ((n * tokens) as f64) < ONE_PASS_UNDER => vec![(0..n).collect()],
            _ => passes(n),
        }
    }

    fn record(&mut self, rows: usize, tokens: usize, took: std::time::Duration) {
        self.0 = Some(took.as_secs_f64() / (rows * tokens).max(1) as f64);
    }
}

impl ScrubState {
    pub(super) fn new(job: ScrubJob) -> Self {
        Self { job, passes: None }
    }

    /// Run the next pass and emit its points; true when the scrub is over.
    pub(super) fn step(&mut self, engine: &Engine, emit: &Emit, cost: &mut ScrubCost) -> bool {
        let prompt = match &self.job.prompt {
            Some(p) => engine.encode(p),
            None => Ok(Vec::new()),
        };
        let prefix = prompt.map(|mut prefix| {
            prefix.extend_from_slice(&self.job.before);
            prefix
        });
        let result = prefix.and_then(|prefix| {
            let passes = self.passes.get_or_insert_with(|| {
                let mut plan = cost.plan(self.job.alphas.len(), prefix.len());
                plan.reverse();
                plan
            });
            let Some(pass) = passes.pop() else {
                return Ok(None);
            };
            let alphas: Vec<Alpha> = pass.iter().map(|&i| self.job.alphas[i]).collect();
            let t = std::time::Instant::now();
            let p = engine.scrub(&prefix, self.job.token, &alphas)?;
            cost.record(alphas.len(), prefix.len(), t.elapsed());
            Ok(Some(alphas.into_iter().zip(p).collect()))
        });
        let done = self.passes.as_ref().is_none_or(|p| p.is_empty());
        match result {
            Ok(Some(points)) => {
                emit(EngineEvent::ScrubPoints {
                    id: self.job.id,
                    points,
                    complete: done,
                });
                done
            }
            Ok(None) => true,
            Err(e) => {
                emit(EngineEvent::ScrubFailed {
                    id: self.job.id,
                    error: e.to_string(),
                });
                true
            }
        }
    }
}
