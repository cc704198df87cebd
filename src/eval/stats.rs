//! Means with 95% confidence intervals: Student's t over the samples, cut to what the metric
//! can read.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub mean: f64,
    /// NaN (`null` in JSON) where the interval is undefined: fewer than two samples.
    pub ci_low: f64,
    pub ci_high: f64,
    pub n: usize,
}

/// Mean ± t·s/√n, t the 97.5% quantile of Student's t with n − 1 degrees of freedom and s the
/// sample standard deviation: with few samples the normal 1.96 covers far less than 95% (70%
/// at n = 2). One sample gives no spread, so no interval (NaN bounds).
pub fn estimate(xs: &[f64]) -> Estimate {
    let n = xs.len();
    if n == 0 {
        return Estimate {
            mean: f64::NAN,
            ci_low: f64::NAN,
            ci_high: f64::NAN,
            n,
        };
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    let half = if n < 2 {
        f64::NAN
    } else {
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        t975(n - 1) * (var / n as f64).sqrt()
    };
    Estimate {
        mean,
        ci_low: mean - half,
        ci_high: mean + half,
        n,
    }
}

impl Estimate {
    /// The interval cut to `[lo, hi]`, the values the metric can take (VADER's compound in
    /// [−1, 1], a perplexity from 1 up): the t interval is symmetric and can reach past them.
    /// An undefined bound stays undefined.
    pub fn within(self, lo: f64, hi: f64) -> Self {
        let cut = |b: f64| if b.is_nan() { b } else { b.clamp(lo, hi) };
        Self {
            ci_low: cut(self.ci_low),
            ci_high: cut(self.ci_high),
            ..self
        }
    }
}

/// The 97.5% quantile of Student's t with `df` degrees of freedom: a table to 30 (six
/// decimals, as scipy.stats.t.ppf gives them), then the Cornish–Fisher expansion in 1/df,
/// within 1e-7 of the exact quantile there.
fn t975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157,
        2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922,
        2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831,
        2.048407, 2.045230, 2.042272,
    ];
    if (1..=30).contains(&df) {
        return TABLE[df - 1];
    }
    let z: f64 = 1.959_963_984_540_054;
    let v = df as f64;
    let g1 = (z.powi(3) + z) / 4.0;
    let g2 = (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / 96.0;
    let g3 = (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z) / 384.0;
    let g4 = (79.0 * z.powi(9) + 776.0 * z.powi(7) + 1482.0 * z.powi(5)
        - 1920.0 * z.powi(3)
        - 945.0 * z)
        / 92160.0;
    z + g1 / v + g2 / v.powi(2) + g3 / v.powi(3) + g4 / v.powi(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let e = estimate(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(e.mean, 2.5);
        // s = 1.2910; t(3) · s / 2 = 3.182446 · 0.645497 = 2.054260
        assert!((e.ci_high - 2.5 - 2.054260).abs() < 1e-5, "{e:?}");
        // One sample: a mean and no interval.
        let one = estimate(&[5.0]);
        assert_eq!(one.mean, 5.0);
        assert!(one.ci_low.is_nan() && one.ci_high.is_nan());
    }

    /// The quantiles against scipy.stats.t.ppf(0.975, df) past the table's end, and the
    /// normal limit.
    #[test]
    fn the_expansion_continues_the_table() {
        for (df, want) in [
            (31, 2.039513),
            (40, 2.021075),
            (60, 2.000298),
            (100, 1.983972),
            (1000, 1.962339),
        ] {
            assert!((t975(df) - want).abs() < 1e-6, "df {df}: {}", t975(df));
        }
    }

    /// Perplexities far apart reach below zero under a symmetric interval; cut to [1, ∞)
    /// they do not. An undefined bound stays so.
    #[test]
    fn an_interval_is_cut_to_the_metrics_range() {
        let e = estimate(&[2.0, 100.0]).within(1.0, f64::INFINITY);
        assert_eq!(e.ci_low, 1.0);
        assert!(e.ci_high > 100.0);
        let v = estimate(&[-0.9, 0.9, 0.0]).within(-1.0, 1.0);
        assert_eq!((v.ci_low, v.ci_high), (-1.0, 1.0));
        assert!(estimate(&[3.0]).within(1.0, 5.0).ci_low.is_nan());
    }
}
