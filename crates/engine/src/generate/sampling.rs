//! Next-token selection: repetition penalty, temperature, top-k, top-p, and one uniform draw
//! per step from a seeded stream.
//!
//! Common random numbers: every step consumes exactly one number from the stream whatever the
//! logits are, and the token is picked by inverse CDF over candidates in a fixed order, so two
//! runs with one seed at two alphas differ only where α changes the distribution.

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 disables top-k.
    pub top_k: usize,
    /// 1 disables top-p.
    pub top_p: f32,
    /// 1 disables the penalty.
    pub repeat_penalty: f32,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 0,
            top_p: 0.95,
            repeat_penalty: 1.1,
            seed: 42,
        }
    }
}

impl SamplingParams {
    pub fn validate(&self) -> crate::Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            crate::error::bail!(
                Invalid,
                "--temperature must be ≥ 0, got {}",
                self.temperature
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            crate::error::bail!(Invalid, "--top-p must be in (0, 1], got {}", self.top_p);
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            crate::error::bail!(
                Invalid,
                "--repeat-penalty must be > 0, got {}",
                self.repeat_penalty
            );
        }
        Ok(())
    }
}

/// The first head searched for the top-p nucleus; each miss widens it eightfold.
const NUCLEUS_HEAD: usize = 64;

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// Scratch reused across steps so the token loop does not allocate.
    candidates: Vec<(u32, f32)>,
    seen: Vec<bool>,
    /// The raw logits the last penalty changed, to report the model's own probabilities.
    changed: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        Self {
            params,
            rng: StdRng::seed_from_u64(params.seed),
            candidates: Vec::new(),
            seen: Vec::new(),
            changed: Vec::new(),
        }
    }

    /// Consume the random numbers of `steps` steps without sampling: a generation resumed
    /// after `steps` given tokens goes on with the draws it would have had.
    pub fn skip(&mut self, steps: usize) {
        for _ in 0..steps {
            let _: f32 = self.rng.random();
        }
    }

    /// The logit `token` had before the last [`Sampler::sample`] penalised `logits`.
    pub fn raw_logit(&self, logits: &[f32], token: u32) -> f32 {
        self.changed
            .iter()
            .find(|c| c.0 == token)
            .map_or(logits[token as usize], |c| c.1)
    }

    /// Pick the next token from `logits` (modified in place by the penalty), given the
    /// tokens seen so far.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        // One draw per step, always, so the stream stays aligned across alphas.
        let u: f32 = self.rng.random();
        self.changed.clear();
        penalise(
            logits,
            history,
            self.params.repeat_penalty,
            &mut self.seen,
            &mut self.changed,
        );
        if self.params.temperature == 0.0 {
            return argmax(logits);
        }
        let inv_t = 1.0 / self.params.temperature;
        let c = &mut self.candidates;
        c.clear();
        c.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u32, l * inv_t)),
        );
        let by_logit_desc =
            |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let k = self.params.top_k;
        if k > 0 && k < c.len() {
            // O(V) selection of the k best; only those are sorted.
            c.select_nth_unstable_by(k - 1, by_logit_desc);
            c.truncate(k);
        }
        let max = c.iter().map(|e| e.1).fold(f32::NEG_INFINITY, f32::max);
        let top_p = self.params.top_p;
        let mut need = f32::INFINITY;
        if top_p < 1.0 {
            // The nucleus is usually a few dozen tokens: find it by selecting ever larger
            // heads (O(V) each) instead of sorting the vocabulary.
            let all: f32 = c.iter().map(|e| (e.1 - max).exp()).sum();
            need = top_p * all;
            let mut m = NUCLEUS_HEAD;
            while m < c.len() {
                c.select_nth_unstable_by(m - 1, by_logit_desc);
                let mass: f32 = c[..m].iter().map(|e| (e.1 - max).exp()).sum();
                if mass >= need {
                    c.truncate(m);
                    break;
                }
                m *= 8;
            }
        }
        c.sort_unstable_by(by_logit_desc);
        // Softmax weights of the survivors (max first, so exp never overflows), cut where
        // the mass reaches top-p of the whole distribution.
        let mut total = 0.0f32;
        let mut keep = c.len();
        for (i, e) in c.iter_mut().enumerate() {
            e.1 = (e.1 - max).exp();
            total += e.1;
            if total >= need {
                keep = i + 1;
                break;
            }
        }
        c.truncate(keep);
        let target = u * total;
        let mut acc = 0.0;
        for e in c.iter() {
            acc += e.1;
            if acc > target {
                return e.0;
            }
        }
        c.last().expect("at least one candidate").0
    }
}

/// CTRL-style penalty, as in Hugging Face: positive logits are divided, negative multiplied,
/// once per distinct token seen.
#[cfg(test)]
fn apply_repeat_penalty(logits: &mut [f32], history: &[u32], penalty: f32) {
    penalise(logits, history, penalty, &mut Vec::new(), &mut Vec::new());
}

/// The penalty with a caller-owned scratch (all false on entry and on return), so the token
/// loop does not allocate a vocabulary-sized mask per step; `changed` receives each changed
/// token with its logit before.
fn penalise(
    logits: &mut [f32],
    history: &[u32],
    penalty: f32,
    seen: &mut Vec<bool>,
    changed: &mut Vec<(u32, f32)>,
) {
    if penalty == 1.0 {
        return;
    }
    seen.resize(logits.len(), false);
    for &t in history {
        let i = t as usize;
        if i < logits.len() && !seen[i] {
            seen[i] = true;
            let l = &mut logits[i];
            changed.push((t, *l));
            *l = if *l >= 0.0 {
                *l / penalty
            } else {
                *l * penalty
            };
        }
    }
    for &t in history {
        if let Some(s) = seen.get_mut(t as usize) {
            *s = false;
        }
    }
}

pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: f32, k: usize, p: f32) -> SamplingParams {
        SamplingParams {
            temperature: t,
            top_k: k,
            top_p: p,
            repeat_penalty: 1.0,
            seed: 7,
        }
    }

    #[test]
    fn greedy_takes_the_max_and_first_on_ties() {
        let mut s = Sampler::new(params(0.0, 0, 1.0));
        assert_eq!(s.sample(&mut [0.1, 3.0, 3.0, -1.0], &[]), 1);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(params(1.0, 1, 1.0));
        for _ in 0..20 {
            assert_eq!(s.sample(&mut [0.1, 0.2, 5.0, 0.3], &[]), 2);
        }
    }

    #[test]
    fn top_p_excludes_the_tail() {
        // p(0) ≈ 0.88: top_p 0.5 leaves only token 0.
        let mut s = Sampler::new(params(1.0, 0, 0.5));
        for _ in 0..50 {
            assert_eq!(s.sample(&mut [3.0, 1.0, 0.0, -1.0], &[]), 0);
        }
    }

    #[test]
    fn frequencies_follow_the_softmax() {
        let mut s = Sampler::new(params(1.0, 0, 1.0));
        let logits = [0.0f32, (2.0f32).ln(), (3.0f32).ln()];
        let mut counts = [0usize; 3];
        for _ in 0..60_000 {
            counts[s.sample(&mut logits.clone(), &[]) as usize] += 1;
        }
        for (i, want) in [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0].iter().enumerate() {
            let got = counts[i] as f64 / 60_000.0;
            assert!((got - want).abs() < 0.01, "token {i}: {got} vs {want}");
        }
    }

    #[test]
    fn same_seed_same_stream() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = || {
            let mut s = Sampler::new(params(1.0, 10, 0.9));
            (0..30)
                .map(|_| s.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    /// The plain twin: sort the whole vocabulary, softmax, cut, inverse CDF.
    fn sample_reference(p: SamplingParams, logits: &[f32], u: f32) -> u32 {
        let mut c: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l * (1.0 / p.temperature)))
            .collect();
        c.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if p.top_k > 0 {
            c.truncate(p.top_k);
        }
        let max = c[0].1;
        let w: Vec<f32> = c.iter().map(|e| (e.1 - max).exp()).collect();
        // The whole mass summed in token order, as the fast path must (it never sorts the
        // whole vocabulary); rounding then cannot move the cut between the two.
        let mut by_id = c.clone();
        by_id.sort_by_key(|e| e.0);
        let all: f32 = by_id.iter().map(|e| (e.1 - max).exp()).sum();
        let (mut acc, mut keep) = (0.0, c.len());
        for (i, x) in w.iter().enumerate() {
            acc += x;
            if p.top_p < 1.0 && acc >= p.top_p * all {
                keep = i + 1;
                break;
            }
        }
        let kept: f32 = w[..keep].iter().sum();
        let target = u * kept;
        let mut acc = 0.0;
        for i in 0..keep {
            acc += w[i];
            if acc > target {
                return c[i].0;
            }
        }
        c[keep - 1].0
    }

    #[test]
    fn partial_selection_matches_a_full_sort() {
        let mut rng = StdRng::seed_from_u64(11);
        for &(t, k, p) in &[
            (1.0, 0, 0.95),
            (0.7, 0, 0.5),
            (1.3, 0, 0.999),
            (1.0, 40, 0.9),
            (0.8, 0, 1.0),
        ] {
            let params = SamplingParams {
                seed: 5,
                ..params(t, k, p)
            };
            let mut fast = Sampler::new(params);
            let mut draws = StdRng::seed_from_u64(5);
            for step in 0..300 {
                // Language-model-like logits over a 5,000-token vocabulary: a few likely
                // tokens and a long tail, in random order, sharper or flatter by turns.
                let sharp = if step % 2 == 0 { 1.5 } else { 0.6 };
                let logits: Vec<f32> = (0..5000)
                    .map(|_| {
                        -sharp * (1.0 + 4999.0 * rng.random::<f32>()).ln()
                            + 0.1 * rng.random::<f32>()
                    })
                    .collect();
                let u: f32 = draws.random();
                let want = sample_reference(params, &logits, u);
                assert_eq!(
                    fast.sample(&mut logits.clone(), &[]),
                    want,
                    "t {t} k {k} p {p} step {step}"
                );
            }
        }
    }

    #[test]
    fn raw_logits_survive_the_penalty() {
        let mut s = Sampler::new(SamplingParams {
            repeat_penalty: 1.3,
            ..params(0.0, 0, 1.0)
        });
        let raw = [2.0f32, -2.0, 1.0, 0.7];
        let mut l = raw;
        s.sample(&mut l, &[0, 1, 1]);
        assert_ne!(l, raw);
        for t in 0..4 {
            assert_eq!(s.raw_logit(&l, t), raw[t as usize]);
        }
    }

    #[test]
    fn skipping_steps_aligns_the_stream() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut whole = Sampler::new(params(1.0, 0, 1.0));
        let all: Vec<u32> = (0..8)
            .map(|_| whole.sample(&mut logits.clone(), &[]))
            .collect();
        let mut resumed = Sampler::new(params(1.0, 0, 1.0));
        resumed.skip(5);
        let rest: Vec<u32> = (0..3)
            .map(|_| resumed.sample(&mut logits.clone(), &[]))
            .collect();
        assert_eq!(rest, all[5..]);
    }

    #[test]
    fn penalty_matches_hugging_face() {
        let mut l = [2.0f32, -2.0, 1.0];
        apply_repeat_penalty(&mut l, &[0, 1, 1], 2.0);
        assert_eq!(l, [1.0, -4.0, 1.0]);
    }
}
