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
    fn seeds_ignore_alpha() {
        let g = SampleGrid {
            alphas: vec![Alpha::A, Alpha::B],
            prompts: vec!["x".into(), "y".into()],
            samples: 2,
            params: GenerationParams::default(),
        };
        assert_eq!(g.len(), 8);
        let seed = |alpha_index, prompt_index, sample| {
            g.params(Cell {
                alpha_index,
                prompt_index,
                sample,
            })
            .sampling
            .seed
        };
        assert_eq!(seed(0, 0, 1), seed(1, 0, 1));
        assert_ne!(seed(0, 0, 0), seed(0, 0, 1));
        assert_ne!(seed(0, 0, 0), seed(0, 1, 0));
    }
}
