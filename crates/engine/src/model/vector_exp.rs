//! e^x eight lanes at a time, for the softmax in attention and the MLP's SiLU: libm's scalar
//! `expf`, one value at a time, had been about half of a long context's attention.

#[cfg(simd_kernels)]
use std::arch::x86_64::*;

/// e^x in each lane, Cephes' `expf` (as in avx_mathfun): x = n·ln 2 + r with |r| ≤ ½ ln 2,
/// a degree-5 polynomial for e^r, 2^n put into the exponent. Within 2 ulp of e^x from −87
/// to 88 (a test holds it to f64); below, e^x flushes toward 0 (a softmax's weight of a key
/// 87 below the largest score), above it saturates at e^88.38, and NaN stays NaN.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[cfg(simd_kernels)]
#[inline(always)]
pub(crate) unsafe fn exp(x: __m256) -> __m256 {
    let x = _mm256_min_ps(_mm256_set1_ps(88.376_26), x);
    let x = _mm256_max_ps(_mm256_set1_ps(-88.376_26), x);
    let n = _mm256_floor_ps(_mm256_fmadd_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
        _mm256_set1_ps(0.5),
    ));
    // ln 2 in two parts, so r is exact: n·0.693359375 has few bits.
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut y = _mm256_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c));
    }
    let y = _mm256_fmadd_ps(
        y,
        _mm256_mul_ps(r, r),
        _mm256_add_ps(r, _mm256_set1_ps(1.0)),
    );
    let pow2 = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)),
        23,
    );
    _mm256_mul_ps(y, _mm256_castsi256_ps(pow2))
}

#[cfg(all(test, simd_kernels))]
mod tests {
    use super::*;

    #[test]
    fn the_vector_exponential_is_within_two_ulp() {
        use std::arch::x86_64::*;
        let xs: Vec<f32> = (0..=200_000)
            .map(|i| -87.0 + 175.0 * i as f32 / 200_000.0)
            .chain([0.0, -0.0, 1e-8, -1e-8, 0.5, -0.5])
            .collect();
        for x in xs.chunks(8) {
            let mut lanes = [0f32; 8];
            lanes[..x.len()].copy_from_slice(x);
            let mut got = [0f32; 8];
            // SAFETY: AVX2 and FMA are the build's target.
            unsafe {
                let e = exp(_mm256_loadu_ps(lanes.as_ptr()));
                _mm256_storeu_ps(got.as_mut_ptr(), e);
            }
            for (x, e) in x.iter().zip(got) {
                let want = (*x as f64).exp();
                let ulp = (want as f32).abs() * f32::EPSILON;
                assert!(
                    ((e as f64) - want).abs() <= 2.0 * ulp as f64,
                    "exp({x}) = {e}, want {want}"
                );
            }
        }
        let mut edge = [f32::NAN, -1e4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        // SAFETY: as above.
        unsafe {
            let e = exp(_mm256_loadu_ps(edge.as_ptr()));
            _mm256_storeu_ps(edge.as_mut_ptr(), e);
        }
        assert!(
            edge[0].is_nan() && edge[1] == 0.0 && edge[2] == 1.0,
            "{edge:?}"
        );
    }
}
