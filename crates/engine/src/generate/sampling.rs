//! Next-token selection: repetition penalty, temperature, top-k, top-p, and one uniform draw
//! per step from a seeded stream.
//!
//! Common random numbers: every step consumes exactly one number from the stream whatever the
//! logits are, and the token is picked by inverse CDF over candidates in a fixed order, so two
//! runs with one seed at two alphas differ only where α changes the distribution.
//!
//! The arithmetic is fixed to the last bit so that the GPU's sampler (src/cuda/sample.cu)
//! picks the same token from the same logits: weights and the whole mass as
//! [`softmax_weights`](super::softmax_weights) makes them, and everything else a sequential
//! walk over the candidates in their sorted order.

use super::softmax_weights::{exp_weight, lane_sum, tempered_mass};
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

/// The smallest temperature other than 0, and the penalty's range: past them a logit divided or
/// multiplied overflows f32 to ±∞ (and the weights to NaN), where any finite logit stays
/// finite inside them (any logit below 10^26 in size, both at their extremes).
pub const MIN_TEMPERATURE: f32 = 1e-6;
pub const PENALTY_RANGE: (f32, f32) = (1e-6, 1e6);

impl SamplingParams {
    pub fn validate(&self) -> crate::Result<()> {
        let t = self.temperature;
        if !(t.is_finite() && (t == 0.0 || t >= MIN_TEMPERATURE)) {
            crate::error::bail!(
                Invalid,
                "--temperature must be 0 (greedy) or from {MIN_TEMPERATURE:e}, got {t}"
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            crate::error::bail!(Invalid, "--top-p must be in (0, 1], got {}", self.top_p);
        }
        let (low, high) = PENALTY_RANGE;
        if !(low..=high).contains(&self.repeat_penalty) {
            crate::error::bail!(
                Invalid,
                "--repeat-penalty must be from {low:e} to {high:e} (1 is none), got {}",
                self.repeat_penalty
            );
        }
        Ok(())
    }
}

/// How far below the largest tempered logit the first search for the top-p nucleus reaches
/// (weights down to e^−8 of the largest); each miss doubles it.
const NUCLEUS_REACH: f32 = 8.0;

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// Scratch reused across steps so the token loop does not allocate.
    candidates: Vec<(u32, f32)>,
    seen: Vec<bool>,
    /// The raw logits the last penalty changed, to report the model's own probabilities.
    changed: Vec<(u32, f32)>,
    /// The candidates' weights by token id, for the whole mass.
    weights: Vec<f32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        Self {
            params,
            rng: StdRng::seed_from_u64(params.seed),
            candidates: Vec::new(),
            seen: Vec::new(),
            changed: Vec::new(),
            weights: Vec::new(),
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
        let u = self.draw();
        self.pick(u, logits, history)
    }

    /// This step's uniform number. One draw per step, always, so the stream stays aligned
    /// across alphas (and across devices: the GPU's sampler is handed the same numbers).
    pub fn draw(&mut self) -> f32 {
        self.rng.random()
    }

    /// [`Sampler::sample`] with this step's number `u` already drawn.
    pub fn pick(&mut self, u: f32, logits: &mut [f32], history: &[u32]) -> u32 {
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
        let need = if top_p >= 1.0 {
            f32::INFINITY
        } else if c.len() == logits.len() {
            top_p * tempered_mass(logits, inv_t, max)
        } else {
            top_p * whole_mass(c, &mut self.weights, logits.len(), max)
        };
        // The nucleus is usually a few dozen tokens: look for it among the tokens within reach
        // of the largest (one pass), widening the reach until their mass holds it, instead of
        // sorting the vocabulary. Such tokens are a head of the sorted order, and the cut does
        // not depend on the head: a head's sorted walk is the start of the whole walk.
        let mut reach = NUCLEUS_REACH;
        let (keep, total) = loop {
            let head = if need.is_finite() {
                within(c, max - reach)
            } else {
                c.len()
            };
            if head < c.len() {
                // A head whose mass falls short is not sorted. (The walk decides: where
                // rounding tells the two apart, a wider head's walk cuts at the same place.)
                let mass: f32 = c[..head].iter().map(|e| exp_weight(e.1 - max)).sum();
                if mass < need {
                    reach *= 2.0;
                    continue;
                }
            }
            c[..head].sort_unstable_by(by_logit_desc);
            let (cut, total) = nucleus(&c[..head], max, need);
            if cut.is_some() || head == c.len() {
                break (cut.unwrap_or(head), total);
            }
            reach *= 2.0;
        };
        c.truncate(keep);
        for e in c.iter_mut() {
            e.1 = exp_weight(e.1 - max);
        }
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

/// Σ exp(s − max) over the top-k candidates `c` (s their tempered logits): their weights set
/// by token id into `weights`, the other tokens' 0, then [`lane_sum`], the order in which
/// [`tempered_mass`] adds up every token's.
fn whole_mass(c: &[(u32, f32)], weights: &mut Vec<f32>, vocab: usize, max: f32) -> f32 {
    weights.clear();
    weights.resize(vocab, 0.0);
    for e in c {
        weights[e.0 as usize] = exp_weight(e.1 - max);
    }
    lane_sum(weights)
}

/// Move the candidates whose tempered logit is at least `floor` to the front: how many.
fn within(c: &mut [(u32, f32)], floor: f32) -> usize {
    let mut n = 0;
    for i in 0..c.len() {
        if c[i].1 >= floor {
            c.swap(i, n);
            n += 1;
        }
    }
    n
}

/// Walk `head` (sorted, tempered logits) adding up their weights exp(s − max) until the
/// total reaches `need`: the count kept if it did, and the total.
fn nucleus(head: &[(u32, f32)], max: f32, need: f32) -> (Option<usize>, f32) {
    let mut total = 0.0f32;
    for (i, e) in head.iter().enumerate() {
        total += exp_weight(e.1 - max);
        if total >= need {
            return (Some(i + 1), total);
        }
    }
    (None, total)
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

    /// Values that would overflow a logit to ±∞ are refused, naming the flag; their edges pass.
    #[test]
    fn temperatures_and_penalties_that_overflow_are_refused() {
        let with = |temperature: f32, repeat_penalty: f32| SamplingParams {
            temperature,
            repeat_penalty,
            ..Default::default()
        };
        for (p, flag) in [
            (with(1e-38, 1.0), "--temperature"),
            (with(-1.0, 1.0), "--temperature"),
            (with(f32::INFINITY, 1.0), "--temperature"),
            (with(1.0, 1e-38), "--repeat-penalty"),
            (with(1.0, 1e7), "--repeat-penalty"),
            (with(1.0, f32::NAN), "--repeat-penalty"),
        ] {
            let e = p.validate().unwrap_err().to_string();
            assert!(e.contains(flag), "{e}");
        }
        for p in [with(0.0, 1.0), with(1e-6, 1e-6), with(1e6, 1e6)] {
            p.validate().unwrap();
        }
        // At the edges, a large logit stays finite through the penalty and the temperature.
        let mut s = Sampler::new(with(1e-6, 1e-6));
        let mut logits = [1e2, 99.0, -1e2];
        assert_eq!(s.sample(&mut logits, &[0, 2]), 0);
        assert!(
            logits.iter().all(|l| (l / 1e-6f32).is_finite()),
            "{logits:?}"
        );
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
        let w: Vec<f32> = c.iter().map(|e| exp_weight(e.1 - max)).collect();
        // The whole mass in the sampler's fixed order (lanes by token id, then a tree).
        let mut by_id = vec![0f32; logits.len()];
        for (e, &w) in c.iter().zip(&w) {
            by_id[e.0 as usize] = w;
        }
        let all = lane_sum(&by_id);
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
