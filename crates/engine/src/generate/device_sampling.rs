//! Sampling where the logits are: on a GPU, one CUDA block per row (src/cuda/sample.cu) picks
//! each row's token from logits that never leave the device, and only the token ids come
//! back, where the host path copies every row's whole vocabulary back every step.
//!
//! The pick is [`Sampler`](super::sampling::Sampler)'s to the last bit: the same penalty,
//! temperature, top-k and top-p, the same weights ([`exp_weight`]), the same whole-mass sum
//! ([`lane_sum`]'s lanes are the block's threads) and the same sequential walk over the
//! candidates in their sorted order, with the uniform number the host's stream drew for the
//! step. Sorting the vocabulary is what a GPU block cannot do cheaply, so the kernel finds the
//! [`HEAD`] best candidates by radix selection (8 bits a pass over 64-bit keys: the value's
//! order, then the token id) and walks those; a nucleus wider than that (or top-p 1 over more
//! candidates) is left to the host, which copies that row alone and picks as before.
//!
//! [`pick_as_the_kernel`] is the kernel's algorithm step for step on the CPU: a test holds it
//! to the host sampler, and the GPU test holds the kernel to both.

use super::sampling::{exp_weight, lane_sum, SamplingParams, MASS_LANES};

/// Candidates the kernel sorts and walks at most: one per thread of its block.
pub const HEAD: usize = MASS_LANES;

/// The kernel's answer for a row whose nucleus it cannot walk: pick on the host.
pub const ON_HOST: u32 = u32::MAX - 1;
/// The kernel's answer for a row with a non-finite logit.
pub const NON_FINITE: u32 = u32::MAX;

/// What the device picked for one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Token(u32),
    /// The nucleus is wider than [`HEAD`]: the host picks from this row's logits.
    OnHost,
    /// A logit is NaN or infinite (the weights overflow).
    NonFinite,
}

impl Pick {
    /// The kernel's output word.
    pub fn from_word(w: u32) -> Self {
        match w {
            NON_FINITE => Pick::NonFinite,
            ON_HOST => Pick::OnHost,
            t => Pick::Token(t),
        }
    }
}

/// f32 bits in `total_cmp`'s order as an unsigned integer (negatives below positives).
pub fn ordered(s: f32) -> u32 {
    let b = s.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// [`ordered`]'s inverse.
pub fn unordered(o: u32) -> f32 {
    f32::from_bits(if o & 0x8000_0000 != 0 {
        o & 0x7FFF_FFFF
    } else {
        !o
    })
}

/// A candidate's sort key: larger for a larger value, then for a smaller id (the sampler's
/// order), and unique.
pub fn key(s: f32, id: u32) -> u64 {
    ((ordered(s) as u64) << 32) | (!id) as u64
}

/// The `n`-th largest (from 1) of `len` unique keys: radix selection from the top byte, each
/// pass counting the keys that share the prefix found so far (the kernel's passes).
pub fn nth_largest(len: usize, n: usize, key: impl Fn(usize) -> u64) -> u64 {
    debug_assert!((1..=len).contains(&n));
    let (mut prefix, mut mask, mut rest) = (0u64, 0u64, n);
    for pass in 0..8 {
        let shift = 56 - 8 * pass;
        let mut hist = [0usize; 256];
        for i in 0..len {
            let k = key(i);
            if k & mask == prefix {
                hist[((k >> shift) & 0xFF) as usize] += 1;
            }
        }
        let mut digit = 255;
        while hist[digit] < rest {
            rest -= hist[digit];
            digit -= 1;
        }
        prefix |= (digit as u64) << shift;
        mask |= 0xFF << shift;
    }
    prefix
}

/// The kernel's pick for one row on the CPU: raw `logits`, `seen[i]` for tokens the penalty
/// applies to, this step's uniform `u`.
pub fn pick_as_the_kernel(logits: &[f32], seen: &[bool], p: &SamplingParams, u: f32) -> Pick {
    let v = logits.len();
    if logits.iter().any(|l| !l.is_finite()) {
        return Pick::NonFinite;
    }
    let penalised = |i: usize| {
        let l = logits[i];
        match (p.repeat_penalty != 1.0 && seen[i], l >= 0.0) {
            (false, _) => l,
            (true, true) => l / p.repeat_penalty,
            (true, false) => l * p.repeat_penalty,
        }
    };
    if p.temperature == 0.0 {
        // The first of the largest.
        let mut best = 0;
        for i in 1..v {
            if penalised(i) > penalised(best) {
                best = i;
            }
        }
        return Pick::Token(best as u32);
    }
    let inv_t = 1.0 / p.temperature;
    let s = |i: usize| penalised(i) * inv_t;
    let max = (0..v).map(s).fold(f32::NEG_INFINITY, f32::max);
    let key_of = |i: usize| key(s(i), i as u32);
    let candidates = if p.top_k > 0 && p.top_k < v {
        p.top_k
    } else {
        v
    };
    if p.top_p >= 1.0 && candidates > HEAD {
        return Pick::OnHost;
    }
    let kth = if candidates < v {
        nth_largest(v, candidates, key_of)
    } else {
        0
    };
    let need = if p.top_p < 1.0 {
        let w: Vec<f32> = (0..v)
            .map(|i| {
                if key_of(i) >= kth {
                    exp_weight(s(i) - max)
                } else {
                    0.0
                }
            })
            .collect();
        p.top_p * lane_sum(&w)
    } else {
        f32::INFINITY
    };
    let h = candidates.min(HEAD);
    let hk = if h < v { nth_largest(v, h, key_of) } else { 0 };
    let mut head: Vec<u64> = (0..v).map(key_of).filter(|&k| k >= hk).collect();
    debug_assert_eq!(head.len(), h);
    head.sort_unstable_by(|a, b| b.cmp(a));
    let weights: Vec<f32> = head
        .iter()
        .map(|&k| exp_weight(unordered((k >> 32) as u32) - max))
        .collect();
    let mut total = 0.0f32;
    let mut keep = None;
    for (j, w) in weights.iter().enumerate() {
        total += w;
        if total >= need {
            keep = Some(j + 1);
            break;
        }
    }
    let keep = match keep {
        Some(k) => k,
        None if h < candidates => return Pick::OnHost,
        None => h,
    };
    let target = u * total;
    let mut acc = 0.0f32;
    for (k, w) in head[..keep].iter().zip(&weights) {
        acc += w;
        if acc > target {
            return Pick::Token(!(*k as u32));
        }
    }
    Pick::Token(!(head[keep - 1] as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::sampling::Sampler;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    #[test]
    fn keys_order_as_the_sampler_does() {
        let values = [-3.5f32, -0.0, 0.0, 1e-30, 2.0, 2.0, f32::MAX, -f32::MAX];
        for (i, &a) in values.iter().enumerate() {
            assert_eq!(unordered(ordered(a)).to_bits(), a.to_bits());
            for (j, &b) in values.iter().enumerate() {
                let sampler = b.total_cmp(&a).then((i as u32).cmp(&(j as u32)));
                // Descending keys are the sampler's ascending order.
                let keys = key(b, j as u32).cmp(&key(a, i as u32));
                assert_eq!(keys, sampler, "{a} #{i} vs {b} #{j}");
            }
        }
    }

    #[test]
    fn radix_selection_finds_the_nth_largest() {
        let mut rng = StdRng::seed_from_u64(3);
        let keys: Vec<u64> = (0..3000)
            .map(|i| key((rng.random::<f32>() * 8.0).round() - 4.0, i))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        for n in [1, 2, 17, 1024, 2999, 3000] {
            assert_eq!(
                nth_largest(keys.len(), n, |i| keys[i]),
                sorted[n - 1],
                "n {n}"
            );
        }
    }

    /// The kernel's algorithm picks what the host sampler picks, or hands the row back, for
    /// language-model-like logits (a few likely tokens and a long tail), ties, penalties,
    /// top-k and top-p, at two vocabulary sizes around the head's.
    #[test]
    fn the_kernels_algorithm_is_the_samplers() {
        let mut rng = StdRng::seed_from_u64(19);
        let mut on_host = 0;
        let mut picked = 0;
        for &(t, k, top_p, penalty) in &[
            (1.0, 0, 0.95, 1.0),
            (0.7, 0, 0.5, 1.3),
            (1.3, 0, 0.999, 1.0),
            (1.0, 40, 0.9, 1.1),
            (0.8, 0, 1.0, 1.0),
            (0.8, 700, 1.0, 1.2),
            (0.0, 0, 0.9, 1.5),
            (1.0, 2000, 0.97, 1.0),
        ] {
            let params = SamplingParams {
                temperature: t,
                top_k: k,
                top_p,
                repeat_penalty: penalty,
                seed: 5,
            };
            for vocab in [700, 5000] {
                let mut host = Sampler::new(params);
                for step in 0..120 {
                    let sharp = [2.5, 1.5, 0.6][step % 3];
                    let logits: Vec<f32> = (0..vocab)
                        .map(|_| {
                            let l = -sharp * (1.0 + (vocab - 1) as f32 * rng.random::<f32>()).ln();
                            // Coarse values every few steps: many exact ties.
                            if step % 4 == 0 {
                                (l * 2.0).round() / 2.0
                            } else {
                                l + 0.1 * rng.random::<f32>()
                            }
                        })
                        .collect();
                    let history: Vec<u32> =
                        (0..20).map(|_| rng.random_range(0..vocab as u32)).collect();
                    let mut seen = vec![false; vocab];
                    for &h in &history {
                        seen[h as usize] = true;
                    }
                    let u = host.draw();
                    let want = host.pick(u, &mut logits.clone(), &history);
                    match pick_as_the_kernel(&logits, &seen, &params, u) {
                        Pick::Token(got) => {
                            picked += 1;
                            assert_eq!(got, want, "t {t} k {k} p {top_p} V {vocab} step {step}")
                        }
                        Pick::OnHost => {
                            on_host += 1;
                            assert!(
                                vocab > HEAD && (top_p >= 1.0 || k == 0 || k > HEAD),
                                "handed back with a nucleus the head holds"
                            );
                        }
                        Pick::NonFinite => panic!("finite logits"),
                    }
                }
            }
        }
        assert!(
            picked > 4 * on_host,
            "{picked} picked, {on_host} handed back"
        );
        let mut bad = vec![0.5f32; 10];
        bad[3] = f32::NAN;
        let p = SamplingParams::default();
        assert_eq!(
            pick_as_the_kernel(&bad, &[false; 10], &p, 0.5),
            Pick::NonFinite
        );
    }
}
