//! The UI's quick attribute-vs-α curve: a small [`SampleGrid`] scored with VADER, run one
//! sample per turn of the engine thread so column jobs never wait long behind it.

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
    cells: Vec<Cell>,
    next: usize,
    scores: Vec<f64>,
}

impl CurveState {
    pub(super) fn new(job: CurveJob) -> Self {
        let grid = SampleGrid {
            alphas: job.alphas,
            prompts: vec![job.prompt],
            samples: job.samples,
            params: job.params,
        };
        Self {
            id: job.id,
            cells: grid.cells().collect(),
            grid,
            next: 0,
            scores: Vec::new(),
        }
    }

    pub(super) fn done(&self) -> bool {
        self.next >= self.cells.len()
    }

    /// Generate and score the next sample; emit the α's point once its samples are in.
    pub(super) fn step(&mut self, engine: &mut Engine, emit: &Emit) -> anyhow::Result<()> {
        let cell = self.cells[self.next];
        let g = self.grid.generate(engine, cell)?;
        self.scores
            .push(Vader.score(&crate::engine::token_stream::without_specials(&g.text))?);
        self.next += 1;
        let alpha_done = self
            .cells
            .get(self.next)
            .is_none_or(|c| c.alpha_index != cell.alpha_index);
        if alpha_done {
            let mean = self.scores.iter().sum::<f64>() / self.scores.len() as f64;
            emit(EngineEvent::CurvePoint {
                id: self.id,
                alpha: self.grid.alpha(cell),
                vader: mean,
            });
            self.scores.clear();
        }
        Ok(())
    }
}
