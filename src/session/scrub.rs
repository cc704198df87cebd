//! The α-scrub behind the token cursor: p(token | its prefix) across the slider's range, from
//! the batched mode (one forward pass over the prefix, one row per α; with slerp, whose rows
//! cannot share a batch, a re-blend and a pass per α). Coarse points come
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
    /// On a plane, the column's β.
    pub beta: Option<Alpha>,
}

/// The coarse pass aims to be drawn within this many seconds of the request.
const COARSE_WITHIN: f64 = 0.8;
/// Points in the coarse pass: at least the ends and the middle, at most every fourth of 25.
const COARSE_POINTS: (usize, usize) = (3, 7);
/// Coarse points before any pass has been timed.
const COARSE_UNTIMED: usize = 4;

pub(super) struct ScrubState {
    job: ScrubJob,
    /// Indices into `job.alphas` of the passes still to run, the next one last (decided at
    /// the first step, once the prefix's length is known).
    passes: Option<Vec<Vec<usize>>>,
}

/// A scrub whose one pass is expected to take less than this runs as one pass: coarse
/// points first only pay where the wait would be felt.
const ONE_PASS_UNDER: f64 = 0.4;

/// The passes of a scrub of `n` points, in order, as indices into its alphas: `coarse` points
/// spread evenly (both ends included), then the rest.
pub fn passes(n: usize, coarse: usize) -> Vec<Vec<usize>> {
    let picked: Vec<usize> = match (n, coarse.clamp(2, n.max(2))) {
        (0, _) => vec![],
        (1, _) => vec![0],
        (n, c) => {
            let mut v: Vec<usize> = (0..c)
                .map(|j| (j * (n - 1) + (c - 1) / 2) / (c - 1))
                .collect();
            v.dedup();
            v
        }
    };
    let fine: Vec<usize> = (0..n).filter(|i| !picked.contains(i)).collect();
    [picked, fine]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect()
}

/// How many points the coarse pass takes over `tokens` of prefix, given the measured cost of
/// one row and token (None before any pass): as many as fit in [`COARSE_WITHIN`].
pub fn coarse_points(per_row_token: Option<f64>, tokens: usize) -> usize {
    match per_row_token {
        Some(per) if per > 0.0 => ((COARSE_WITHIN / (per * tokens.max(1) as f64)) as usize)
            .clamp(COARSE_POINTS.0, COARSE_POINTS.1),
        _ => COARSE_UNTIMED,
    }
}

/// What a scrub costs on this engine: seconds per row and prefix token, from the last pass.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ScrubCost(Option<f64>);

impl ScrubCost {
    /// The passes for `n` points over `tokens` of prefix: one when it is known to be quick.
    pub(super) fn plan(&self, n: usize, tokens: usize) -> Vec<Vec<usize>> {
        match self.0 {
            Some(per) if per * ((n * tokens) as f64) < ONE_PASS_UNDER => vec![(0..n).collect()],
            cost => passes(n, coarse_points(cost, tokens)),
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

    /// The scrub's id, for its events.
    pub(super) fn id(&self) -> u64 {
        self.job.id
    }

    /// Run the next pass and emit its points; true when the scrub is over.
    pub(super) fn step(&mut self, engine: &mut Engine, emit: &Emit, cost: &mut ScrubCost) -> bool {
        let prompt = match &self.job.prompt {
            Some(p) => engine.encode(p),
            None => Ok(Vec::new()),
        };
        let prompt =
            prompt.and_then(|p| super::to_point(engine, engine.alpha(), self.job.beta).map(|_| p));
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
            let p = engine.scrub_any(&prefix, self.job.token, &alphas)?;
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
                    error: super::Failure::engine(&e),
                });
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_pass_spreads_its_points_and_the_fine_pass_takes_the_rest() {
        assert_eq!(passes(25, 7)[0], vec![0, 4, 8, 12, 16, 20, 24]);
        assert_eq!(passes(25, 4)[0], vec![0, 8, 16, 24]);
        assert_eq!(passes(25, 3)[0], vec![0, 12, 24]);
        for (n, c) in [(25, 4), (9, 7), (2, 3), (1, 4), (5, 9)] {
            let p = passes(n, c);
            let mut all: Vec<usize> = p.concat();
            all.sort();
            assert_eq!(all, (0..n).collect::<Vec<_>>(), "n {n} coarse {c}");
        }
        // As many coarse points as fit in the time aimed at, within bounds.
        assert_eq!(coarse_points(None, 64), COARSE_UNTIMED);
        assert_eq!(coarse_points(Some(1e-3), 64), 12.min(COARSE_POINTS.1));
        assert_eq!(coarse_points(Some(3e-3), 64), 4);
        assert_eq!(coarse_points(Some(1.0), 64), COARSE_POINTS.0);
    }
}
