//! What the model thought of each token it wrote: the token's log-probability, the entropy of
//! the distribution it was drawn from, and the most likely alternatives. All of it from the
//! model's own distribution, the softmax of the raw logits at temperature 1, before the
//! repetition penalty, top-k and top-p: what the model believes, not what the sampler did.
//!
//! [`Summary::of`] is two passes over the vocabulary (max and top-k, then the partition sum
//! and the entropy), cheap beside a decode step; [`reference`] is its plain twin.

use serde::{Deserialize, Serialize};

/// How many alternatives are kept per token.
pub const TOP: usize = 5;

/// One candidate token and its log-probability (natural log).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Alternative {
    pub id: u32,
    pub logprob: f32,
}

/// One written token under its model's distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: u32,
    /// log p(token | what came before), natural log.
    pub logprob: f32,
    /// Entropy of the distribution, in nats.
    pub entropy: f32,
    /// The most likely tokens, most likely first (ties: lower id first).
    pub top: [Alternative; TOP],
}

impl TokenInfo {
    pub fn prob(&self) -> f32 {
        self.logprob.exp()
    }

    /// The same position had the model written `id` instead (one of the alternatives).
    pub fn with_choice(&self, id: u32) -> Option<TokenInfo> {
        let alt = self.top.iter().find(|a| a.id == id)?;
        Some(TokenInfo {
            id,
            logprob: alt.logprob,
            ..*self
        })
    }
}

/// The distribution behind one step: enough to describe any token drawn from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    max: f32,
    /// log Σ exp(l − max).
    log_z: f64,
    entropy: f32,
    top: [Alternative; TOP],
}

impl Summary {
    /// Summarise raw logits (finite, at least one).
    pub fn of(logits: &[f32]) -> Self {
        // Pass 1: the max and the best TOP, by insertion into a short sorted list.
        let mut best = [(f32::NEG_INFINITY, u32::MAX); TOP];
        let mut floor = f32::NEG_INFINITY;
        for (i, &l) in logits.iter().enumerate() {
            if l > floor {
                let mut at = TOP - 1;
                while at > 0 && best[at - 1].0 < l {
                    best[at] = best[at - 1];
                    at -= 1;
                }
                best[at] = (l, i as u32);
                floor = best[TOP - 1].0;
            }
        }
        let max = best[0].0;
        // Pass 2: Z = Σ e^d and Σ e^d·d with d = l − max ≤ 0; H = log Z − (Σ e^d·d) / Z.
        // Eight lanes keep the loop free of a serial dependency. The sums are f64: in f32 a
        // lane's thousands of terms far below its sum round away, Z comes out short and every
        // log-probability high (by ~2e-5 nats on a 49k vocabulary, the same sign each token).
        let mut z = [0f64; 8];
        let mut zd = [0f64; 8];
        let chunks = logits.chunks_exact(8);
        let tail = chunks.remainder();
        for c in chunks {
            for j in 0..8 {
                let d = c[j] - max;
                let e = d.exp();
                z[j] += e as f64;
                zd[j] += (e * d) as f64;
            }
        }
        let (mut z, mut zd) = (z.iter().sum::<f64>(), zd.iter().sum::<f64>());
        for &l in tail {
            let d = (l - max) as f64;
            z += d.exp();
            zd += d.exp() * d;
        }
        let log_z = z.ln();
        let top = best.map(|(l, id)| Alternative {
            id,
            logprob: ((l - max) as f64 - log_z) as f32,
        });
        Self {
            max,
            log_z,
            entropy: (log_z - zd / z).max(0.0) as f32,
            top,
        }
    }

    /// The token `id`, whose raw logit was `logit`.
    pub fn info(&self, id: u32, logit: f32) -> TokenInfo {
        TokenInfo {
            id,
            logprob: ((logit - self.max) as f64 - self.log_z) as f32,
            entropy: self.entropy,
            top: self.top,
        }
    }
}

/// Log-softmax of `logits` (f64 throughout): for scoring and for tests.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &l| m.max(l as f64));
    let log_z = logits
        .iter()
        .map(|&l| (l as f64 - max).exp())
        .sum::<f64>()
        .ln();
    logits.iter().map(|&l| l as f64 - max - log_z).collect()
}

/// The plain twin of [`Summary::of`] + [`Summary::info`]: f64 log-softmax, a full sort.
pub fn reference(logits: &[f32], id: u32) -> TokenInfo {
    let lp = log_softmax(logits);
    let entropy = -lp.iter().map(|&l| l.exp() * l).sum::<f64>();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    let top = std::array::from_fn(|i| Alternative {
        id: order[i] as u32,
        logprob: lp[order[i]] as f32,
    });
    TokenInfo {
        id,
        logprob: lp[id as usize] as f32,
        entropy: entropy as f32,
        top,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn fast_summary_equals_the_reference() {
        let mut rng = StdRng::seed_from_u64(3);
        for (case, &n) in [5usize, 7, 8, 13, 300, 5000, 49_152].iter().enumerate() {
            for sharp in [0.1f32, 1.0, 8.0] {
                let logits: Vec<f32> = (0..n)
                    .map(|_| sharp * (rng.random::<f32>() * 20.0 - 10.0))
                    .collect();
                let id = rng.random_range(0..n as u32);
                let want = reference(&logits, id);
                let got = Summary::of(&logits).info(id, logits[id as usize]);
                assert_eq!(got.id, want.id);
                assert!(
                    close(got.logprob, want.logprob, 1e-5),
                    "case {case}: logprob {} vs {}",
                    got.logprob,
                    want.logprob
                );
                assert!(
                    close(got.entropy, want.entropy, 1e-4),
                    "case {case}: entropy {} vs {}",
                    got.entropy,
                    want.entropy
                );
                for (g, w) in got.top.iter().zip(&want.top) {
                    assert_eq!(g.id, w.id, "case {case}: top ids");
                    assert!(close(g.logprob, w.logprob, 1e-5));
                }
            }
        }
    }

    #[test]
    fn many_small_terms_are_not_rounded_away() {
        // Each e^-17 is below half an f32 ulp of a lane already holding e^0: summed in f32
        // they would vanish, Z would be 0.04% short and the logprobs that much too high.
        let mut logits = vec![-17f32; 80_001];
        logits[0] = 0.0;
        for id in [0, 1] {
            let (got, want) = (
                Summary::of(&logits).info(id, logits[id as usize]),
                reference(&logits, id),
            );
            assert!(
                (got.logprob - want.logprob).abs() < 1e-6,
                "{id}: {} vs {}",
                got.logprob,
                want.logprob
            );
        }
    }

    #[test]
    fn ties_keep_the_lower_id_first() {
        let logits = [1.0f32, 3.0, 3.0, 2.0, 3.0, 0.0, 2.0];
        let got = Summary::of(&logits).info(0, 1.0);
        let ids: Vec<u32> = got.top.iter().map(|a| a.id).collect();
        assert_eq!(ids, [1, 2, 4, 3, 6]);
        assert_eq!(got, reference(&logits, 0));
    }

    #[test]
    fn uniform_has_entropy_log_n_and_one_hot_none() {
        let s = Summary::of(&[0.5f32; 64]);
        assert!(close(s.entropy, 64f32.ln(), 1e-6));
        let mut peaked = vec![-1e4f32; 64];
        peaked[9] = 0.0;
        let s = Summary::of(&peaked);
        assert_eq!(s.entropy, 0.0);
        assert_eq!(s.info(9, 0.0).logprob, 0.0);
    }
}
