//! "These alphas × prompts × samples, with common random numbers": the one way lerpscope
//! samples a grid of α, used by `sweep` and by the UI's quick curve.
//!
//! Sample s of prompt p uses the same seed at every α, so two alphas' samples differ only
//! because α differs (the sampler draws one number per token whatever the logits). Runs with
//! two `--seed`s share no sample seed, so they are independent replicates.

use crate::engine::{Alpha, Engine, Generation, GenerationParams};
use std::sync::atomic::AtomicBool;

#[derive(Debug, Clone, PartialEq)]
pub struct SampleGrid {
    pub alphas: Vec<Alpha>,
    pub prompts: Vec<String>,
    pub samples: usize,
    /// The seed in here is the base every sample's seed is derived from.
    pub params: GenerationParams,
    pub seeds: Seeds,
}

/// How a sample's seed comes from the base seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seeds {
    /// The base scrambled (SplitMix64's finaliser), then offset by prompt and sample: any
    /// two bases land far apart, so `--seed 1` and `--seed 2` share no sample.
    #[default]
    Mixed,
    /// base + prompt·2^32 + sample: neighbouring bases share most of their samples. Sweeps
    /// written before sweep.json recorded `seeds` were made this way, and resume so.
    Offset,
}

impl Seeds {
    /// What a sweep.json that does not say was made with.
    pub fn unrecorded() -> Self {
        Self::Offset
    }
}

/// One sample of the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub alpha_index: usize,
    pub prompt_index: usize,
    pub sample: usize,
}

/// The seed of one (prompt, sample): the same at every α.
pub fn sample_seed(seeds: Seeds, base: u64, prompt_index: usize, sample: usize) -> u64 {
    let start = match seeds {
        Seeds::Mixed => mix(base),
        Seeds::Offset => base,
    };
    start
        .wrapping_add((prompt_index as u64) << 32)
        .wrapping_add(sample as u64)
}

/// SplitMix64's finaliser: a bijection of u64 that sends neighbouring inputs far apart.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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
        p.sampling.seed = sample_seed(
            self.seeds,
            self.params.sampling.seed,
            cell.prompt_index,
            cell.sample,
        );
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
            seeds: Seeds::Mixed,
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

    /// Runs at neighbouring --seed values share no sample seed (a study's replicates), and a
    /// sweep made before the scheme was recorded keeps its seeds.
    #[test]
    fn neighbouring_base_seeds_share_no_sample() {
        let all = |seeds: Seeds, base: u64| -> std::collections::HashSet<u64> {
            (0..64)
                .flat_map(|p| (0..64).map(move |s| sample_seed(seeds, base, p, s)))
                .collect()
        };
        for base in [0, 1, 7, 1000] {
            let (x, y) = (all(Seeds::Mixed, base), all(Seeds::Mixed, base + 1));
            assert_eq!(x.len(), 64 * 64);
            assert_eq!(x.intersection(&y).count(), 0, "base {base}");
        }
        let overlap = all(Seeds::Offset, 7)
            .intersection(&all(Seeds::Offset, 8))
            .count();
        assert_eq!(
            overlap,
            64 * 63,
            "the old scheme's overlap, kept for old sweeps"
        );
        assert_eq!(sample_seed(Seeds::Offset, 7, 2, 3), 7 + (2 << 32) + 3);
    }
}
