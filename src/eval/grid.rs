//! "These alphas × prompts × samples, with common random numbers": the one way lerpscope
//! samples a grid of α, used by `sweep` and by the UI's quick curve.
//!
//! Sample s of prompt p uses the same seed at every α, so two alphas' samples differ only
//! because α differs (the sampler draws one number per token whatever the logits).

use crate::engine::{Alpha, Engine, Generation, GenerationParams};
use std::sync::atomic::AtomicBool;

#[derive(Debug, Clone, PartialEq)]
pub struct SampleGrid {
    pub alphas: Vec<Alpha>,
    pub prompts: Vec<String>,
    pub samples: usize,
    /// The seed in here is the base every sample's seed is derived from.
    pub params: GenerationParams,
}

/// One sample of the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub alpha_index: usize,
    pub prompt_index: usize,
    pub sample: usize,
}

/// The seed of one (prompt, sample): the same at every α.
pub fn sample_seed(base: u64, prompt_index: usize, sample: usize) -> u64 {
    base.wrapping_add((prompt_index as u64) << 32)
        .wrapping_add(sample as u64)
}

impl SampleGrid {
    pub fn len(&self) -> usize {
        self.alphas.len() * self.prompts.len() * self.samples
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every cell, α-major (all of one α before the next, so the weights are blended once per
    /// α), then prompt, then sample.
    pub fn cells(&self) -> impl Iterator<Item = Cell> + '_ {
        (0..self.alphas.len()).flat_map(move |alpha_index| {
            (0..self.prompts.len()).flat_map(move |prompt_index| {
                (0..self.samples).map(move |sample| Cell {
                    alpha_index,
                    prompt_index,
                    sample,
                })
            })
        })
    }

    pub fn alpha(&self, cell: Cell) -> Alpha {
        self.alphas[cell.alpha_index]
    }

    /// The sampling settings of one cell: the grid's, with the cell's seed.
    pub fn params(&self, cell: Cell) -> GenerationParams {
        let mut p = self.params;
        p.sampling.seed = sample_seed(self.params.sampling.seed, cell.prompt_index, cell.sample);
        p
    }

    /// Generate one cell's sample, blending to its α first when the engine is elsewhere.
    pub fn generate(&self, engine: &mut Engine, cell: Cell) -> anyhow::Result<Generation> {
        let alpha = self.alpha(cell);
        if engine.alpha() != alpha {
            engine.set_alpha(alpha)?;
        }
        let never = AtomicBool::new(false);
        Ok(engine.generate(
            &self.prompts[cell.prompt_index],
            &self.params(cell),
            &never,
            &mut |_| {},
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_alpha_major_and_seeds_ignore_alpha() {
        let g = SampleGrid {
            alphas: vec![Alpha::A, Alpha::B],
            prompts: vec!["x".into(), "y".into()],
            samples: 2,
            params: GenerationParams::default(),
        };
        let cells: Vec<Cell> = g.cells().collect();
        assert_eq!(cells.len(), g.len());
        assert!(cells[..4].iter().all(|c| c.alpha_index == 0));
        let seed = |c: Cell| g.params(c).sampling.seed;
        assert_eq!(seed(cells[1]), seed(cells[5]));
        assert_ne!(seed(cells[0]), seed(cells[1]));
        assert_ne!(seed(cells[0]), seed(cells[2]));
    }
}
