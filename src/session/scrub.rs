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
    /// Indices into `job.alphas`: the coarse pass, then the rest.
    passes: Vec<Vec<usize>>,
}

impl ScrubState {
    pub(super) fn new(job: ScrubJob) -> Self {
        let n = job.alphas.len();
        let coarse: Vec<usize> = (0..n)
            .filter(|i| i % COARSE_EVERY == 0 || i + 1 == n)
            .collect();
        let fine: Vec<usize> = (0..n).filter(|i| !coarse.contains(i)).collect();
        let passes = [coarse, fine]
            .into_iter()
            .filter(|p| !p.is_empty())
            .rev()
            .collect();
        Self { job, passes }
    }

    /// Run the next pass and emit its points; true when the scrub is over.
    pub(super) fn step(&mut self, engine: &Engine, emit: &Emit) -> bool {
        let Some(pass) = self.passes.pop() else {
            return true;
        };
        let alphas: Vec<Alpha> = pass.iter().map(|&i| self.job.alphas[i]).collect();
        let prompt = match &self.job.prompt {
            Some(p) => engine.encode(p),
            None => Ok(Vec::new()),
        };
        let result = prompt.and_then(|mut prefix| {
            prefix.extend_from_slice(&self.job.before);
            engine.scrub(&prefix, self.job.token, &alphas)
        });
        match result {
            Ok(p) => {
                emit(EngineEvent::ScrubPoints {
                    id: self.job.id,
                    points: alphas.into_iter().zip(p).collect(),
                    complete: self.passes.is_empty(),
                });
                self.passes.is_empty()
            }
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
