//! Softmax weights exp(s − max) and the whole mass they add up to, in arithmetic fixed to the
//! bit so that the GPU's sampler (src/cuda/sample.cu) repeats the host's: weights from plain
//! multiply-adds ([`exp_weight`], not each platform's `exp`), the mass in [`MASS_LANES`]
//! interleaved lanes and a fixed tree ([`lane_sum`]). [`tempered_mass`] is the host's fast
//! path (AVX2, eight weights at a time, no scratch), bit for bit its plain twin.

/// Lanes of the whole-mass sum: lane j adds tokens j, j + L, j + 2L, … in order, then lanes
/// pair up in halves (j += j + L/2, …). One GPU block of this many threads does the same.
pub const MASS_LANES: usize = 1024;

/// `values` summed as [`MASS_LANES`] interleaved lanes and a fixed tree over them.
pub fn lane_sum(values: &[f32]) -> f32 {
    let mut lanes = [0f32; MASS_LANES];
    for chunk in values.chunks(MASS_LANES) {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l += v;
        }
    }
    tree(lanes)
}

/// [`exp_weight`]'s constants by the names sample.cu gives them: log2(e), ln 2 split so that
/// n·LN2_HI is exact for |n| < 2^9, and the Taylor coefficients 1/k!, k = 7 … 3.
pub(crate) const EXP_CONSTANTS: [(&str, f32); 8] = [
    ("LOG2E", std::f32::consts::LOG2_E),
    ("LN2_HI", 0.693_145_75),
    ("LN2_LO", 1.428_606_8e-6),
    ("C7", 1.0 / 5040.0),
    ("C6", 1.0 / 720.0),
    ("C5", 1.0 / 120.0),
    ("C4", 1.0 / 24.0),
    ("C3", 1.0 / 6.0),
];

/// exp(x) for x ≤ 0 (a softmax weight), to about 1 ulp, in plain IEEE operations that a GPU
/// kernel repeats bit for bit: x = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by a degree-7
/// polynomial (Horner, fused multiply-adds), times 2^n. Below −87 it is 0 (f32's normal
/// range ends there); NaN stays NaN.
pub fn exp_weight(x: f32) -> f32 {
    let [(_, log2e), (_, ln2_hi), (_, ln2_lo), c @ ..] = EXP_CONSTANTS;
    if x < -87.0 {
        return 0.0;
    }
    if x.is_nan() {
        return x;
    }
    let n = (x * log2e + 0.5).floor();
    let r = (-n).mul_add(ln2_lo, (-n).mul_add(ln2_hi, x));
    let mut p = c[0].1;
    for (_, c) in &c[1..] {
        p = p.mul_add(r, *c);
    }
    p = p.mul_add(r, 0.5);
    p = p.mul_add(r, 1.0);
    p = p.mul_add(r, 1.0);
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Σ exp_weight(l·inv_t − max) over every logit, in [`lane_sum`]'s lanes and tree: the whole
/// mass of the tempered logits `l` without a vector of weights.
pub fn tempered_mass(l: &[f32], inv_t: f32, max: f32) -> f32 {
    let mut lanes = [0f32; MASS_LANES];
    for chunk in l.chunks(MASS_LANES) {
        add_weights(chunk, inv_t, max, &mut lanes[..chunk.len()]);
    }
    tree(lanes)
}

/// `lanes[i] += exp_weight(l[i]·inv_t − max)`.
fn add_weights(l: &[f32], inv_t: f32, max: f32, lanes: &mut [f32]) {
    #[cfg(simd_kernels)]
    // SAFETY: the build targets AVX2 and FMA (held to the CPU at start-up); the slices are
    // as long as each other.
    unsafe {
        simd::add_weights(l, inv_t, max, lanes)
    }
    #[cfg(not(simd_kernels))]
    add_weights_plain(l, inv_t, max, lanes)
}

/// [`add_weights`]' plain twin.
#[cfg(any(test, not(simd_kernels)))]
fn add_weights_plain(l: &[f32], inv_t: f32, max: f32, lanes: &mut [f32]) {
    for (lane, &x) in lanes.iter_mut().zip(l) {
        *lane += exp_weight(x * inv_t - max);
    }
}

/// The lanes' fixed tree: each half added onto the lower half until one lane is left.
fn tree(mut lanes: [f32; MASS_LANES]) -> f32 {
    let mut half = MASS_LANES / 2;
    while half > 0 {
        let (low, high) = lanes.split_at_mut(half);
        for (l, &h) in low.iter_mut().zip(&high[..half]) {
            *l += h;
        }
        half /= 2;
    }
    lanes[0]
}

#[cfg(simd_kernels)]
mod simd {
    use super::{exp_weight, EXP_CONSTANTS};
    use std::arch::x86_64::*;

    /// [`super::add_weights`] eight at a time: [`exp_weight`]'s operations in the same order
    /// (a multiply, an add, a floor, fused multiply-adds, the exponent's bits), so the same
    /// bits; below −87 the weight is 0 as there.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn add_weights(l: &[f32], inv_t: f32, max: f32, lanes: &mut [f32]) {
        let [(_, log2e), (_, ln2_hi), (_, ln2_lo), c @ ..] = EXP_CONSTANTS;
        let n = l.len().min(lanes.len());
        let (vt, vmax) = (_mm256_set1_ps(inv_t), _mm256_set1_ps(max));
        let mut i = 0;
        while i + 8 <= n {
            let s = _mm256_mul_ps(_mm256_loadu_ps(l.as_ptr().add(i)), vt);
            let x = _mm256_sub_ps(s, vmax);
            let k = _mm256_floor_ps(_mm256_add_ps(
                _mm256_mul_ps(x, _mm256_set1_ps(log2e)),
                _mm256_set1_ps(0.5),
            ));
            let r = _mm256_fnmadd_ps(k, _mm256_set1_ps(ln2_hi), x);
            let r = _mm256_fnmadd_ps(k, _mm256_set1_ps(ln2_lo), r);
            let mut p = _mm256_set1_ps(c[0].1);
            for (_, c) in &c[1..] {
                p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
            }
            for c in [0.5, 1.0, 1.0] {
                p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
            }
            let scale = _mm256_slli_epi32::<23>(_mm256_add_epi32(
                _mm256_cvttps_epi32(k),
                _mm256_set1_epi32(127),
            ));
            let w = _mm256_mul_ps(p, _mm256_castsi256_ps(scale));
            let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-87.0));
            let w = _mm256_andnot_ps(under, w);
            let at = lanes.as_mut_ptr().add(i);
            _mm256_storeu_ps(at, _mm256_add_ps(_mm256_loadu_ps(at), w));
            i += 8;
        }
        for j in i..n {
            lanes[j] += exp_weight(l[j] * inv_t - max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weights_exp_is_within_an_ulp_and_exact_where_it_must_be() {
        assert_eq!(exp_weight(0.0), 1.0);
        assert_eq!(exp_weight(-0.0), 1.0);
        assert_eq!(exp_weight(-87.5), 0.0);
        assert_eq!(exp_weight(f32::NEG_INFINITY), 0.0);
        assert!(exp_weight(f32::NAN).is_nan());
        let mut worst = 0f64;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let want = (x as f64).exp();
            let got = exp_weight(x) as f64;
            let ulp = (want as f32).to_bits();
            let ulp = (f32::from_bits(ulp + 1) - f32::from_bits(ulp)) as f64;
            worst = worst.max((got - want).abs() / ulp);
        }
        assert!(worst <= 1.5, "worst error {worst} ulp");
    }

    #[test]
    fn the_lane_sum_adds_every_value() {
        for n in [0, 1, 1023, 1024, 1025, 49_152, 50_000] {
            let v: Vec<f32> = (0..n).map(|i| ((i * 37) % 101) as f32 / 8.0).collect();
            let want: f64 = v.iter().map(|&x| x as f64).sum();
            let got = lane_sum(&v) as f64;
            assert!((got - want).abs() <= want * 1e-6, "{n}: {got} vs {want}");
        }
    }

    /// The fast whole mass is the plain one bit for bit: every lane, every length's tail,
    /// logits that underflow, ties and signed zeros.
    #[test]
    fn the_tempered_mass_is_its_plain_twin() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(8);
        for n in [1, 7, 8, 9, 1023, 1024, 1031, 49_152, 50_007] {
            let l: Vec<f32> = (0..n)
                .map(|i| match i % 7 {
                    0 => -0.0,
                    1 => 0.0,
                    2 => -200.0 * rng.random::<f32>(),
                    _ => 30.0 * rng.random::<f32>() - 25.0,
                })
                .collect();
            for inv_t in [1.0f32, 1.25, 1.0 / 0.7, 1e3] {
                let max = l
                    .iter()
                    .map(|&x| x * inv_t)
                    .fold(f32::NEG_INFINITY, f32::max);
                let weights: Vec<f32> = l.iter().map(|&x| exp_weight(x * inv_t - max)).collect();
                let want = lane_sum(&weights);
                assert_eq!(
                    tempered_mass(&l, inv_t, max).to_bits(),
                    want.to_bits(),
                    "n {n} 1/T {inv_t}"
                );
                let mut fast = vec![0.5f32; n];
                let mut plain = fast.clone();
                add_weights(&l, inv_t, max, &mut fast);
                add_weights_plain(&l, inv_t, max, &mut plain);
                assert_eq!(
                    fast.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    plain.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                );
            }
        }
    }
}
