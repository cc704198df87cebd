//! The in-place blend θ(α) = θ_A + α·(θ_B − θ_A), one fused pass over a flat buffer.
//!
//! Every weight of the working model is a view into one flat buffer; the endpoints A and B sit
//! beside it in buffers of the same layout. `BlendOp` rewrites the working buffer from the
//! endpoints in a single pass (no temporaries, no drift: it never reads its own output).
//!
//! Exactness at the endpoints: α = 0 and α = 1 copy A and B verbatim (bit for bit, signed zeros
//! included). Elsewhere the formula switches form at α = 0.5, as torch.lerp does, so that the
//! rounding error stays small on both halves of the line.

use candle_core::{CpuStorage, DType, Layout, Result, Tensor};
use half::{bf16, f16};
use rayon::prelude::*;

/// Elements handed to one rayon task: large enough to amortise scheduling, small enough to
/// split evenly over a few cores.
const CHUNK: usize = 1 << 16;

/// Elements converted through an f32 scratch buffer at a time for the half types (the
/// portable kernel's).
#[cfg(not(simd_kernels))]
const HALF_TILE: usize = 512;

/// One element of the blend, computed in f32. The reference every kernel is held to.
#[inline(always)]
pub fn lerp_scalar(a: f32, b: f32, alpha: f32) -> f32 {
    let d = b - a;
    if alpha < 0.5 {
        a + alpha * d
    } else {
        b - (1.0 - alpha) * d
    }
}

/// A slow, obviously correct blend: element by element, through f32, no threads, no SIMD.
pub fn blend_reference<T: Element>(w: &mut [T], a: &[T], b: &[T], alpha: f32) {
    assert!(w.len() == a.len() && a.len() == b.len());
    if alpha == 0.0 {
        w.copy_from_slice(a);
        return;
    }
    if alpha == 1.0 {
        w.copy_from_slice(b);
        return;
    }
    for ((w, &a), &b) in w.iter_mut().zip(a).zip(b) {
        *w = T::from_f32(lerp_scalar(a.to_f32(), b.to_f32(), alpha));
    }
}

/// The fast blend: multi-threaded, vectorised, streaming stores for f32.
pub fn blend<T: Element>(w: &mut [T], a: &[T], b: &[T], alpha: f32) {
    assert!(w.len() == a.len() && a.len() == b.len());
    w.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK))
        .zip(b.par_chunks(CHUNK))
        .for_each(|((w, a), b)| {
            if alpha == 0.0 {
                w.copy_from_slice(a)
            } else if alpha == 1.0 {
                w.copy_from_slice(b)
            } else {
                T::blend_chunk(w, a, b, alpha)
            }
        });
}

/// A plain parallel copy over the same chunking: the bandwidth yardstick for `bench blend`.
pub fn copy<T: Element>(w: &mut [T], a: &[T]) {
    w.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK))
        .for_each(|(w, a)| w.copy_from_slice(a));
}

/// The element types the blend supports, each with its own chunk kernel.
pub trait Element: Copy + Send + Sync + 'static {
    fn to_f32(self) -> f32;
    fn from_f32(x: f32) -> Self;
    fn blend_chunk(w: &mut [Self], a: &[Self], b: &[Self], alpha: f32);
    /// ca·a + cb·b element by element in f32 (two products and a sum, never fused): a blend
    /// table's pair rows (slerp). The plain loop vectorises for f32.
    fn combine_chunk(w: &mut [Self], a: &[Self], b: &[Self], ca: f32, cb: f32) {
        assert!(w.len() == a.len() && a.len() == b.len());
        for ((w, &a), &b) in w.iter_mut().zip(a).zip(b) {
            *w = Self::from_f32(ca * a.to_f32() + cb * b.to_f32());
        }
    }
    /// a + (kb·(b − a) + kc·(c − a)) element by element in f32: a blend table's plane rows.
    fn plane_chunk(w: &mut [Self], a: &[Self], b: &[Self], c: &[Self], kb: f32, kc: f32) {
        assert!(w.len() == a.len() && a.len() == b.len() && b.len() == c.len());
        for (((w, &a), &b), &c) in w.iter_mut().zip(a).zip(b).zip(c) {
            let (a, b, c) = (a.to_f32(), b.to_f32(), c.to_f32());
            *w = Self::from_f32(a + (kb * (b - a) + kc * (c - a)));
        }
    }
    /// a + (kb·(b − a) + kc·(c − a) + kd·(d − a)) element by element in f32: a blend table's
    /// rows through four endpoints (the plane's element with one more delta, summed before
    /// the base is added). The plain loop vectorises for f32.
    fn space_chunk(w: &mut [Self], [a, b, c, d]: [&[Self]; 4], [kb, kc, kd]: [f32; 3]) {
        assert!(w.len() == a.len() && a.len() == b.len() && b.len() == c.len());
        assert_eq!(c.len(), d.len());
        for ((((w, &a), &b), &c), &d) in w.iter_mut().zip(a).zip(b).zip(c).zip(d) {
            let (a, b, c, d) = (a.to_f32(), b.to_f32(), c.to_f32(), d.to_f32());
            *w = Self::from_f32(a + (kb * (b - a) + kc * (c - a) + kd * (d - a)));
        }
    }
    /// The slice as f32, when the element type is f32 (for kernels with an f32 fast path).
    fn as_f32(_: &[Self]) -> Option<&[f32]> {
        None
    }
    fn as_f32_mut(_: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
}

impl Element for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    fn as_f32(x: &[f32]) -> Option<&[f32]> {
        Some(x)
    }
    fn as_f32_mut(x: &mut [f32]) -> Option<&mut [f32]> {
        Some(x)
    }
    fn from_f32(x: f32) -> Self {
        x
    }
    fn blend_chunk(w: &mut [f32], a: &[f32], b: &[f32], alpha: f32) {
        #[cfg(simd_kernels)]
        {
            // SAFETY: the build targets AVX (cfg simd_kernels, and the start-up check holds
            // the CPU to it), and the three slices have equal lengths.
            unsafe { simd::blend_f32_avx_stream(w, a, b, alpha) };
        }
        #[cfg(not(simd_kernels))]
        blend_f32_portable(w, a, b, alpha);
    }
    fn combine_chunk(w: &mut [f32], a: &[f32], b: &[f32], ca: f32, cb: f32) {
        // The kernels read through raw pointers: the lengths are checked here, once a chunk.
        assert!(w.len() == a.len() && a.len() == b.len());
        #[cfg(simd_kernels)]
        {
            // SAFETY: as the blend's.
            unsafe { simd::combine_f32_avx_stream(w, a, b, ca, cb) };
        }
        #[cfg(not(simd_kernels))]
        combine_f32_portable(w, a, b, ca, cb);
    }
    fn plane_chunk(w: &mut [f32], a: &[f32], b: &[f32], c: &[f32], kb: f32, kc: f32) {
        assert!(w.len() == a.len() && a.len() == b.len() && b.len() == c.len());
        #[cfg(simd_kernels)]
        {
            // SAFETY: as the blend's.
            unsafe { simd::plane_f32_avx_stream(w, a, b, c, kb, kc) };
        }
        #[cfg(not(simd_kernels))]
        plane_f32_portable(w, a, b, c, kb, kc);
    }
    fn space_chunk(w: &mut [f32], x: [&[f32]; 4], k: [f32; 3]) {
        assert!(x.iter().all(|x| x.len() == w.len()));
        #[cfg(simd_kernels)]
        {
            // SAFETY: as the blend's.
            unsafe { simd::space_f32_avx_stream(w, x, k) };
        }
        #[cfg(not(simd_kernels))]
        space_f32_portable(w, x, k);
    }
}

fn space_f32_portable(w: &mut [f32], [a, b, c, d]: [&[f32]; 4], [kb, kc, kd]: [f32; 3]) {
    for (i, w) in w.iter_mut().enumerate() {
        let (a, b, c, d) = (a[i], b[i], c[i], d[i]);
        *w = a + (kb * (b - a) + kc * (c - a) + kd * (d - a));
    }
}

fn plane_f32_portable(w: &mut [f32], a: &[f32], b: &[f32], c: &[f32], kb: f32, kc: f32) {
    for (((w, &a), &b), &c) in w.iter_mut().zip(a).zip(b).zip(c) {
        *w = a + (kb * (b - a) + kc * (c - a));
    }
}

fn combine_f32_portable(w: &mut [f32], a: &[f32], b: &[f32], ca: f32, cb: f32) {
    for ((w, &a), &b) in w.iter_mut().zip(a).zip(b) {
        *w = ca * a + cb * b;
    }
}

fn blend_f32_portable(w: &mut [f32], a: &[f32], b: &[f32], alpha: f32) {
    if alpha < 0.5 {
        for ((w, &a), &b) in w.iter_mut().zip(a).zip(b) {
            *w = a + alpha * (b - a);
        }
    } else {
        let beta = 1.0 - alpha;
        for ((w, &a), &b) in w.iter_mut().zip(a).zip(b) {
            *w = b - beta * (b - a);
        }
    }
}

macro_rules! half_element {
    ($t:ty) => {
        impl Element for $t {
            fn to_f32(self) -> f32 {
                <$t>::to_f32(self)
            }
            fn from_f32(x: f32) -> Self {
                <$t>::from_f32(x)
            }
            fn blend_chunk(w: &mut [$t], a: &[$t], b: &[$t], alpha: f32) {
                // SAFETY: the build targets AVX2 and F16C (cfg simd_kernels, held to the CPU
                // at start-up); the slices have equal lengths.
                #[cfg(simd_kernels)]
                unsafe {
                    <$t as simd::HalfSimd>::blend(w, a, b, alpha)
                };
                #[cfg(not(simd_kernels))]
                {
                    use half::slice::HalfFloatSliceExt;
                    let mut fa = [0f32; HALF_TILE];
                    let mut fb = [0f32; HALF_TILE];
                    for ((w, a), b) in w
                        .chunks_mut(HALF_TILE)
                        .zip(a.chunks(HALF_TILE))
                        .zip(b.chunks(HALF_TILE))
                    {
                        let n = w.len();
                        a.convert_to_f32_slice(&mut fa[..n]);
                        b.convert_to_f32_slice(&mut fb[..n]);
                        let (fa, fb) = (&mut fa[..n], &fb[..n]);
                        blend_f32_portable_into(fa, fb, alpha);
                        w.convert_from_f32_slice(fa);
                    }
                }
            }
            fn plane_chunk(w: &mut [$t], a: &[$t], b: &[$t], c: &[$t], kb: f32, kc: f32) {
                assert!(w.len() == a.len() && a.len() == b.len() && b.len() == c.len());
                // SAFETY: as the blend's.
                #[cfg(simd_kernels)]
                unsafe {
                    <$t as simd::HalfSimd>::plane(w, a, b, c, kb, kc)
                };
                #[cfg(not(simd_kernels))]
                for (((w, &a), &b), &c) in w.iter_mut().zip(a).zip(b).zip(c) {
                    let (a, b, c) = (a.to_f32(), b.to_f32(), c.to_f32());
                    *w = <$t>::from_f32(a + (kb * (b - a) + kc * (c - a)));
                }
            }
            /// Sixteen at a time as the blend (AVX2/F16C), else through f32 tiles.
            fn combine_chunk(w: &mut [$t], a: &[$t], b: &[$t], ca: f32, cb: f32) {
                assert!(w.len() == a.len() && a.len() == b.len());
                // SAFETY: as the blend's.
                #[cfg(simd_kernels)]
                unsafe {
                    <$t as simd::HalfSimd>::combine(w, a, b, ca, cb)
                };
                #[cfg(not(simd_kernels))]
                {
                    use half::slice::HalfFloatSliceExt;
                    const TILE: usize = 512;
                    let mut fa = [0f32; TILE];
                    let mut fb = [0f32; TILE];
                    for ((w, a), b) in w.chunks_mut(TILE).zip(a.chunks(TILE)).zip(b.chunks(TILE)) {
                        let n = w.len();
                        a.convert_to_f32_slice(&mut fa[..n]);
                        b.convert_to_f32_slice(&mut fb[..n]);
                        for (x, &y) in fa[..n].iter_mut().zip(&fb[..n]) {
                            *x = ca * *x + cb * y;
                        }
                        w.convert_from_f32_slice(&fa[..n]);
                    }
                }
            }
        }
    };
}
half_element!(f16);
half_element!(bf16);

/// `a` becomes the blend of `a` and `b` (the scratch form used by the half-precision kernels).
fn blend_f32_portable_into(a: &mut [f32], b: &[f32], alpha: f32) {
    if alpha < 0.5 {
        for (a, &b) in a.iter_mut().zip(b) {
            *a += alpha * (b - *a);
        }
    } else {
        let beta = 1.0 - alpha;
        for (a, &b) in a.iter_mut().zip(b) {
            *a = b - beta * (b - *a);
        }
    }
}

#[cfg(simd_kernels)]
mod simd {
    use std::arch::x86_64::*;

    /// Elements before `w`'s first 32-byte boundary (all of `w` if it ends first): the scalar
    /// head every streaming kernel writes before its aligned body.
    fn head_to_align<T>(w: &[T]) -> usize {
        let misalign = (w.as_ptr() as usize) % 32;
        if misalign == 0 {
            0
        } else {
            ((32 - misalign) / std::mem::size_of::<T>()).min(w.len())
        }
    }

    /// The half-precision blends: elements widened to f32, blended with the same
    /// multiply-then-add as the reference, rounded back to nearest-even, sixteen at a time.
    pub trait HalfSimd: Sized + Copy {
        /// Sixteen elements of `a`, `b` and `c` widened to f32, `f` applied eight lanes at a
        /// time, rounded back to nearest-even. (A closure that ignores an input lets the
        /// compiler drop its loads: two-input callers pass `a` again.)
        ///
        /// # Safety
        /// The CPU must support AVX2 and F16C; both pointers valid for sixteen reads.
        unsafe fn map16(
            a: *const Self,
            b: *const Self,
            c: *const Self,
            f: impl Fn(__m256, __m256, __m256) -> __m256,
        ) -> __m256i;
        fn scalar(w: &mut Self, a: Self, b: Self, alpha: f32);
        fn from_f32(x: f32) -> Self;
        fn to_f32(self) -> f32;

        /// Sixteen blended elements from `a` and `b` (`k` is α below ½, else 1 − α).
        ///
        /// # Safety
        /// As [`HalfSimd::map16`].
        #[inline(always)]
        unsafe fn blend16(a: *const Self, b: *const Self, low: bool, k: __m256) -> __m256i {
            Self::map16(a, b, a, |va, vb, _| lerp8(va, vb, low, k))
        }

        /// ca·a + cb·b (multiply, multiply, add: the reference's arithmetic), streamed like
        /// the blend.
        #[target_feature(enable = "avx2,f16c")]
        unsafe fn combine(w: &mut [Self], a: &[Self], b: &[Self], ca: f32, cb: f32) {
            let n = w.len();
            let scalar = |w: &mut Self, a: Self, b: Self| {
                *w = Self::from_f32(ca * a.to_f32() + cb * b.to_f32());
            };
            let head = head_to_align(w);
            for j in 0..head {
                scalar(&mut w[j], a[j], b[j]);
            }
            let body = head + (n - head) / 16 * 16;
            let (vca, vcb) = (_mm256_set1_ps(ca), _mm256_set1_ps(cb));
            let (wp, ap, bp) = (w.as_mut_ptr(), a.as_ptr(), b.as_ptr());
            let mut i = head;
            while i < body {
                _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(i + 2048) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(i + 2048) as *const i8);
                let r = Self::map16(ap.add(i), bp.add(i), ap.add(i), |va, vb, _| {
                    _mm256_add_ps(_mm256_mul_ps(vca, va), _mm256_mul_ps(vcb, vb))
                });
                _mm256_stream_si256(wp.add(i) as *mut __m256i, r);
                i += 16;
            }
            _mm_sfence();
            for j in body..n {
                scalar(&mut w[j], a[j], b[j]);
            }
        }

        /// a + (kb·(b − a) + kc·(c − a)), the plane's element, streamed like the blend.
        #[target_feature(enable = "avx2,f16c")]
        unsafe fn plane(w: &mut [Self], a: &[Self], b: &[Self], c: &[Self], kb: f32, kc: f32) {
            let n = w.len();
            let scalar = |w: &mut Self, a: Self, b: Self, c: Self| {
                let (a, b, c) = (a.to_f32(), b.to_f32(), c.to_f32());
                *w = Self::from_f32(a + (kb * (b - a) + kc * (c - a)));
            };
            let head = head_to_align(w);
            for j in 0..head {
                scalar(&mut w[j], a[j], b[j], c[j]);
            }
            let body = head + (n - head) / 16 * 16;
            let (vkb, vkc) = (_mm256_set1_ps(kb), _mm256_set1_ps(kc));
            let (wp, ap, bp, cp) = (w.as_mut_ptr(), a.as_ptr(), b.as_ptr(), c.as_ptr());
            let mut i = head;
            while i < body {
                _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(i + 2048) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(i + 2048) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(cp.wrapping_add(i + 2048) as *const i8);
                let r = Self::map16(ap.add(i), bp.add(i), cp.add(i), |va, vb, vc| {
                    let db = _mm256_mul_ps(vkb, _mm256_sub_ps(vb, va));
                    let dc = _mm256_mul_ps(vkc, _mm256_sub_ps(vc, va));
                    _mm256_add_ps(va, _mm256_add_ps(db, dc))
                });
                _mm256_stream_si256(wp.add(i) as *mut __m256i, r);
                i += 16;
            }
            _mm_sfence();
            for j in body..n {
                scalar(&mut w[j], a[j], b[j], c[j]);
            }
        }

        /// Like the f32 blend, written with non-temporal stores: the working buffer is not
        /// read again before the next forward pass, and skipping the read-for-ownership saves
        /// a quarter of the traffic.
        #[target_feature(enable = "avx2,f16c")]
        unsafe fn blend(w: &mut [Self], a: &[Self], b: &[Self], alpha: f32) {
            let n = w.len();
            // Scalar head until the destination is 32-byte aligned (streaming stores need it).
            let head = head_to_align(w);
            for j in 0..head {
                Self::scalar(&mut w[j], a[j], b[j], alpha);
            }
            let body = head + (n - head) / 16 * 16;
            let low = alpha < 0.5;
            let k = _mm256_set1_ps(if low { alpha } else { 1.0 - alpha });
            let (wp, ap, bp) = (w.as_mut_ptr(), a.as_ptr(), b.as_ptr());
            let mut i = head;
            while i < body {
                // 4 KiB ahead: the widening and rounding fill the reorder window before it
                // reaches far enough ahead on its own (30 ms against 32).
                _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(i + 2048) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(i + 2048) as *const i8);
                let r = Self::blend16(ap.add(i), bp.add(i), low, k);
                _mm256_stream_si256(wp.add(i) as *mut __m256i, r);
                i += 16;
            }
            _mm_sfence();
            for j in body..n {
                Self::scalar(&mut w[j], a[j], b[j], alpha);
            }
        }
    }

    /// The reference's arithmetic on f32 lanes.
    #[inline(always)]
    unsafe fn lerp8(va: __m256, vb: __m256, low: bool, k: __m256) -> __m256 {
        let d = _mm256_sub_ps(vb, va);
        if low {
            _mm256_add_ps(va, _mm256_mul_ps(k, d))
        } else {
            _mm256_sub_ps(vb, _mm256_mul_ps(k, d))
        }
    }

    fn scalar_f32(a: f32, b: f32, alpha: f32) -> f32 {
        let mut x = [a];
        super::blend_f32_portable_into(&mut x, &[b], alpha);
        x[0]
    }

    impl HalfSimd for half::f16 {
        #[inline(always)]
        unsafe fn map16(
            a: *const Self,
            b: *const Self,
            c: *const Self,
            f: impl Fn(__m256, __m256, __m256) -> __m256,
        ) -> __m256i {
            let half = |i: usize| {
                let va = _mm256_cvtph_ps(_mm_loadu_si128(a.add(i) as *const __m128i));
                let vb = _mm256_cvtph_ps(_mm_loadu_si128(b.add(i) as *const __m128i));
                let vc = _mm256_cvtph_ps(_mm_loadu_si128(c.add(i) as *const __m128i));
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(f(va, vb, vc))
            };
            _mm256_set_m128i(half(8), half(0))
        }
        fn scalar(w: &mut Self, a: Self, b: Self, alpha: f32) {
            *w = half::f16::from_f32(scalar_f32(a.to_f32(), b.to_f32(), alpha));
        }
        fn from_f32(x: f32) -> Self {
            half::f16::from_f32(x)
        }
        fn to_f32(self) -> f32 {
            half::f16::to_f32(self)
        }
    }

    impl HalfSimd for half::bf16 {
        /// bf16 is the top half of an f32. Read as eight 32-bit lanes of two bf16 each: a lane
        /// shifted left by 16 is its even element as an f32, masked to its top half its odd
        /// one; the results go back the same way, so no shuffles are needed.
        ///
        /// Rounding to nearest-even adds 0x7FFF plus the kept part's lowest bit (a carry into
        /// the exponent is the correct overflow to the next binade or to ∞). A NaN result
        /// needs no special case: its low 16 bits are zero (NaNs only come from bf16 inputs,
        /// whose low bits are zero, or from ∞ − ∞, whose default NaN has them zero too; the
        /// arithmetic already made it quiet), so the bias cannot carry out of the mantissa.
        #[inline(always)]
        unsafe fn map16(
            a: *const Self,
            b: *const Self,
            c: *const Self,
            f: impl Fn(__m256, __m256, __m256) -> __m256,
        ) -> __m256i {
            let top = _mm256_set1_epi32(0xFFFF_0000u32 as i32);
            let (pa, pb, pc) = (
                _mm256_loadu_si256(a as *const __m256i),
                _mm256_loadu_si256(b as *const __m256i),
                _mm256_loadu_si256(c as *const __m256i),
            );
            let even = |p: __m256i| _mm256_castsi256_ps(_mm256_slli_epi32::<16>(p));
            let odd = |p: __m256i| _mm256_castsi256_ps(_mm256_and_si256(p, top));
            let round = |v: __m256| {
                let bits = _mm256_castps_si256(v);
                let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(1));
                _mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), lsb))
            };
            let e = round(f(even(pa), even(pb), even(pc)));
            let o = round(f(odd(pa), odd(pb), odd(pc)));
            _mm256_or_si256(_mm256_srli_epi32::<16>(e), _mm256_and_si256(o, top))
        }
        fn scalar(w: &mut Self, a: Self, b: Self, alpha: f32) {
            *w = half::bf16::from_f32(scalar_f32(a.to_f32(), b.to_f32(), alpha));
        }
        fn from_f32(x: f32) -> Self {
            half::bf16::from_f32(x)
        }
        fn to_f32(self) -> f32 {
            half::bf16::to_f32(self)
        }
    }

    /// ca·a + cb·b in f32 with streaming stores, as the blend (multiply, multiply, add: no FMA,
    /// so the bits are the reference's).
    ///
    /// # Safety
    /// The CPU must support AVX; the slices must have equal lengths.
    #[target_feature(enable = "avx")]
    pub unsafe fn combine_f32_avx_stream(w: &mut [f32], a: &[f32], b: &[f32], ca: f32, cb: f32) {
        let n = w.len();
        let head = head_to_align(w);
        super::combine_f32_portable(&mut w[..head], &a[..head], &b[..head], ca, cb);
        let body = (n - head) / 8 * 8;
        let (wp, ap, bp) = (
            w.as_mut_ptr().add(head),
            a.as_ptr().add(head),
            b.as_ptr().add(head),
        );
        let (vca, vcb) = (_mm256_set1_ps(ca), _mm256_set1_ps(cb));
        let mut i = 0;
        while i < body {
            _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(i + 1024) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(i + 1024) as *const i8);
            let r = _mm256_add_ps(
                _mm256_mul_ps(vca, _mm256_loadu_ps(ap.add(i))),
                _mm256_mul_ps(vcb, _mm256_loadu_ps(bp.add(i))),
            );
            _mm256_stream_ps(wp.add(i), r);
            i += 8;
        }
        _mm_sfence();
        let tail = head + body;
        super::combine_f32_portable(&mut w[tail..], &a[tail..], &b[tail..], ca, cb);
    }

    /// The plane's element in f32 with streaming stores, as the blend (no FMA).
    ///
    /// # Safety
    /// The CPU must support AVX; the slices must have equal lengths.
    #[target_feature(enable = "avx")]
    pub unsafe fn plane_f32_avx_stream(
        w: &mut [f32],
        a: &[f32],
        b: &[f32],
        c: &[f32],
        kb: f32,
        kc: f32,
    ) {
        let n = w.len();
        let head = head_to_align(w);
        super::plane_f32_portable(&mut w[..head], &a[..head], &b[..head], &c[..head], kb, kc);
        let body = (n - head) / 8 * 8;
        let (wp, ap, bp, cp) = (
            w.as_mut_ptr().add(head),
            a.as_ptr().add(head),
            b.as_ptr().add(head),
            c.as_ptr().add(head),
        );
        let (vkb, vkc) = (_mm256_set1_ps(kb), _mm256_set1_ps(kc));
        let mut i = 0;
        while i < body {
            _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(i + 1024) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(i + 1024) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(cp.wrapping_add(i + 1024) as *const i8);
            let va = _mm256_loadu_ps(ap.add(i));
            let db = _mm256_mul_ps(vkb, _mm256_sub_ps(_mm256_loadu_ps(bp.add(i)), va));
            let dc = _mm256_mul_ps(vkc, _mm256_sub_ps(_mm256_loadu_ps(cp.add(i)), va));
            _mm256_stream_ps(wp.add(i), _mm256_add_ps(va, _mm256_add_ps(db, dc)));
            i += 8;
        }
        _mm_sfence();
        let tail = head + body;
        super::plane_f32_portable(&mut w[tail..], &a[tail..], &b[tail..], &c[tail..], kb, kc);
    }

    /// The element of a row of four in f32 with streaming stores, as the plane's (no FMA; the
    /// three deltas summed in order, then added to A).
    ///
    /// # Safety
    /// The CPU must support AVX; the slices must have equal lengths.
    #[target_feature(enable = "avx")]
    pub unsafe fn space_f32_avx_stream(w: &mut [f32], x: [&[f32]; 4], k: [f32; 3]) {
        let n = w.len();
        let head = head_to_align(w);
        super::space_f32_portable(&mut w[..head], x.map(|x| &x[..head]), k);
        let body = (n - head) / 8 * 8;
        let wp = w.as_mut_ptr().add(head);
        let [ap, bp, cp, dp] = x.map(|x| x.as_ptr().add(head));
        let [vkb, vkc, vkd] = k.map(|k| _mm256_set1_ps(k));
        let mut i = 0;
        while i < body {
            for p in [ap, bp, cp, dp] {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(i + 1024) as *const i8);
            }
            let va = _mm256_loadu_ps(ap.add(i));
            let delta =
                |p: *const f32, k| _mm256_mul_ps(k, _mm256_sub_ps(_mm256_loadu_ps(p.add(i)), va));
            let sum = _mm256_add_ps(
                _mm256_add_ps(delta(bp, vkb), delta(cp, vkc)),
                delta(dp, vkd),
            );
            _mm256_stream_ps(wp.add(i), _mm256_add_ps(va, sum));
            i += 8;
        }
        _mm_sfence();
        let tail = head + body;
        super::space_f32_portable(&mut w[tail..], x.map(|x| &x[tail..]), k);
    }

    /// f32 blend with 256-bit loads and non-temporal stores: the working buffer is written once
    /// and not read again before the next forward pass, so bypassing the cache saves the
    /// read-for-ownership traffic and keeps the blend at memory bandwidth.
    ///
    /// # Safety
    /// The CPU must support AVX; the slices must have equal lengths.
    #[target_feature(enable = "avx")]
    pub unsafe fn blend_f32_avx_stream(w: &mut [f32], a: &[f32], b: &[f32], alpha: f32) {
        let n = w.len();
        // Scalar head until the destination is 32-byte aligned (streaming stores require it).
        let head = head_to_align(w);
        super::blend_f32_portable(&mut w[..head], &a[..head], &b[..head], alpha);
        let body = (n - head) / 8 * 8;
        let (wp, ap, bp) = (
            w.as_mut_ptr().add(head),
            a.as_ptr().add(head),
            b.as_ptr().add(head),
        );
        let low = alpha < 0.5;
        let k = _mm256_set1_ps(if low { alpha } else { 1.0 - alpha });
        let mut i = 0;
        while i < body {
            _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(i + 1024) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(i + 1024) as *const i8);
            let va = _mm256_loadu_ps(ap.add(i));
            let vb = _mm256_loadu_ps(bp.add(i));
            let d = _mm256_sub_ps(vb, va);
            // Multiply then add (no FMA) so the result matches `lerp_scalar` bit for bit.
            let r = if low {
                _mm256_add_ps(va, _mm256_mul_ps(k, d))
            } else {
                _mm256_sub_ps(vb, _mm256_mul_ps(k, d))
            };
            _mm256_stream_ps(wp.add(i), r);
            i += 8;
        }
        _mm_sfence();
        let tail = head + body;
        super::blend_f32_portable(&mut w[tail..], &a[tail..], &b[tail..], alpha);
    }
}

/// The blend as an in-place candle op: `working.inplace_op3(&a, &b, &BlendOp { alpha })`.
/// `cpu_fwd` runs the kernels above; with the `cuda` feature, `cuda_fwd` launches blend.cu
/// once over the whole buffer.
#[derive(Debug, Clone, Copy)]
pub struct BlendOp {
    pub alpha: f32,
}

fn contiguous_range(l: &Layout, what: &str) -> Result<(usize, usize)> {
    match l.contiguous_offsets() {
        Some(r) => Ok(r),
        None => candle_core::bail!("blend: the {what} buffer is not contiguous"),
    }
}

/// The element ranges of the working buffer and both endpoints: contiguous, equally long.
type Range = (usize, usize);
fn blend_ranges(lw: &Layout, la: &Layout, lb: &Layout) -> Result<(Range, Range, Range)> {
    let w = contiguous_range(lw, "working")?;
    let a = contiguous_range(la, "A")?;
    let b = contiguous_range(lb, "B")?;
    if w.1 - w.0 != a.1 - a.0 || a.1 - a.0 != b.1 - b.0 {
        candle_core::bail!("blend: buffer lengths differ");
    }
    Ok((w, a, b))
}

impl candle_core::InplaceOp3 for BlendOp {
    fn name(&self) -> &'static str {
        "lerpscope-blend"
    }

    fn cpu_fwd(
        &self,
        w: &mut CpuStorage,
        lw: &Layout,
        a: &CpuStorage,
        la: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> Result<()> {
        let ((w0, w1), (a0, a1), (b0, b1)) = blend_ranges(lw, la, lb)?;
        match (w, a, b) {
            (CpuStorage::F32(w), CpuStorage::F32(a), CpuStorage::F32(b)) => {
                blend(&mut w[w0..w1], &a[a0..a1], &b[b0..b1], self.alpha)
            }
            (CpuStorage::F16(w), CpuStorage::F16(a), CpuStorage::F16(b)) => {
                blend(&mut w[w0..w1], &a[a0..a1], &b[b0..b1], self.alpha)
            }
            (CpuStorage::BF16(w), CpuStorage::BF16(a), CpuStorage::BF16(b)) => {
                blend(&mut w[w0..w1], &a[a0..a1], &b[b0..b1], self.alpha)
            }
            _ => candle_core::bail!("blend: buffers must share one of f32, f16, bf16"),
        }
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        w: &mut candle_core::CudaStorage,
        lw: &Layout,
        a: &candle_core::CudaStorage,
        la: &Layout,
        b: &candle_core::CudaStorage,
        lb: &Layout,
    ) -> Result<()> {
        cuda::blend(self.alpha, w, lw, a, la, b, lb)
    }
}

/// A plain copy of `src` into the destination as an in-place op: the bandwidth yardstick the
/// blend is measured against, over the same buffers and plumbing.
#[derive(Debug, Clone, Copy)]
pub struct CopyOp;

impl candle_core::InplaceOp2 for CopyOp {
    fn name(&self) -> &'static str {
        "lerpscope-copy"
    }

    fn cpu_fwd(&self, w: &mut CpuStorage, lw: &Layout, a: &CpuStorage, la: &Layout) -> Result<()> {
        let (w0, w1) = contiguous_range(lw, "destination")?;
        let (a0, a1) = contiguous_range(la, "source")?;
        if w1 - w0 != a1 - a0 {
            candle_core::bail!("copy: buffer lengths differ");
        }
        match (w, a) {
            (CpuStorage::F32(w), CpuStorage::F32(a)) => copy(&mut w[w0..w1], &a[a0..a1]),
            (CpuStorage::F16(w), CpuStorage::F16(a)) => copy(&mut w[w0..w1], &a[a0..a1]),
            (CpuStorage::BF16(w), CpuStorage::BF16(a)) => copy(&mut w[w0..w1], &a[a0..a1]),
            _ => candle_core::bail!("copy: buffers must share one of f32, f16, bf16"),
        }
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        w: &mut candle_core::CudaStorage,
        lw: &Layout,
        a: &candle_core::CudaStorage,
        la: &Layout,
    ) -> Result<()> {
        cuda::copy(w, lw, a, la)
    }
}

/// blend.cu compiled to PTX by build.rs: the blend and the merged-adapter kernels.
#[cfg(feature = "cuda")]
pub(crate) const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/blend.ptx"));

/// The CUDA side: one launch of blend.cu (compiled to PTX by build.rs) per blend, and a
/// device-to-device copy for the bandwidth yardstick.
#[cfg(feature = "cuda")]
mod cuda {
    use super::contiguous_range;
    use candle_core::cuda_backend::cudarc::driver::{
        CudaView, CudaViewMut, LaunchConfig, PushKernelArg,
    };
    use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
    use candle_core::{CudaDevice, CudaStorage, Layout, Result};

    use super::PTX;
    const THREADS: u32 = 256;

    /// Enough blocks to cover the buffer with one 16-byte vector per thread, capped (the
    /// kernel is grid-stride): a few waves on the largest GPUs.
    fn config(n: usize, lanes: usize) -> LaunchConfig {
        let blocks = n
            .div_ceil(lanes)
            .div_ceil(THREADS as usize)
            .clamp(1, 1 << 16);
        LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    pub fn blend(
        alpha: f32,
        w: &mut CudaStorage,
        lw: &Layout,
        a: &CudaStorage,
        la: &Layout,
        b: &CudaStorage,
        lb: &Layout,
    ) -> Result<()> {
        let ((w0, w1), (a0, a1), (b0, b1)) = super::blend_ranges(lw, la, lb)?;
        let dev = w.device.clone();
        match (&mut w.slice, &a.slice, &b.slice) {
            (CudaStorageSlice::F32(w), CudaStorageSlice::F32(a), CudaStorageSlice::F32(b)) => {
                let views = (w.slice_mut(w0..w1), a.slice(a0..a1), b.slice(b0..b1));
                launch(&dev, "blend_f32", 4, views, alpha)
            }
            (CudaStorageSlice::F16(w), CudaStorageSlice::F16(a), CudaStorageSlice::F16(b)) => {
                let views = (w.slice_mut(w0..w1), a.slice(a0..a1), b.slice(b0..b1));
                launch(&dev, "blend_f16", 8, views, alpha)
            }
            (CudaStorageSlice::BF16(w), CudaStorageSlice::BF16(a), CudaStorageSlice::BF16(b)) => {
                let views = (w.slice_mut(w0..w1), a.slice(a0..a1), b.slice(b0..b1));
                launch(&dev, "blend_bf16", 8, views, alpha)
            }
            _ => candle_core::bail!("blend: buffers must share one of f32, f16, bf16"),
        }
    }

    /// One launch of `name` over the views (working, A, B) of equal length; `lanes` elements
    /// per 16-byte vector.
    fn launch<T>(
        dev: &CudaDevice,
        name: &str,
        lanes: usize,
        (mut w, a, b): (CudaViewMut<T>, CudaView<T>, CudaView<T>),
        alpha: f32,
    ) -> Result<()> {
        let n = w.len();
        let func = dev.get_or_load_custom_func(name, "lerpscope_blend", PTX)?;
        let mut builder = func.builder();
        builder.arg(&mut w);
        builder.arg(&a);
        builder.arg(&b);
        builder.arg(&alpha);
        builder.arg(&n);
        // SAFETY: the kernel reads n elements of a and b and writes n of w, all in bounds.
        unsafe { builder.launch(config(n, lanes)) }.w()?;
        Ok(())
    }

    pub fn copy(w: &mut CudaStorage, lw: &Layout, a: &CudaStorage, la: &Layout) -> Result<()> {
        let (w0, w1) = contiguous_range(lw, "destination")?;
        let (a0, a1) = contiguous_range(la, "source")?;
        if w1 - w0 != a1 - a0 {
            candle_core::bail!("copy: buffer lengths differ");
        }
        let dev = w.device.clone();
        match (&mut w.slice, &a.slice) {
            (CudaStorageSlice::F32(w), CudaStorageSlice::F32(a)) => {
                dev.memcpy_dtod(&a.slice(a0..a1), &mut w.slice_mut(w0..w1))
            }
            (CudaStorageSlice::F16(w), CudaStorageSlice::F16(a)) => {
                dev.memcpy_dtod(&a.slice(a0..a1), &mut w.slice_mut(w0..w1))
            }
            (CudaStorageSlice::BF16(w), CudaStorageSlice::BF16(a)) => {
                dev.memcpy_dtod(&a.slice(a0..a1), &mut w.slice_mut(w0..w1))
            }
            _ => candle_core::bail!("copy: buffers must share one of f32, f16, bf16"),
        }
    }
}

/// Copy `src` into `dst` in place (same dtype and length).
pub fn copy_tensor(dst: &Tensor, src: &Tensor) -> Result<()> {
    dst.inplace_op2(src, &CopyOp)
}

/// Blend `working` in place from `a` and `b` (1-D tensors of one dtype and length).
pub fn blend_tensor(working: &Tensor, a: &Tensor, b: &Tensor, alpha: f32) -> Result<()> {
    working.inplace_op3(a, b, &BlendOp { alpha })
}

/// Dtypes with a blend kernel.
pub fn supported(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every f16 and bf16 bit pattern (subnormals, ∞, NaN, the largest finite values whose
    /// blend overflows) against a shuffled partner, at alphas that round in every direction:
    /// the SIMD rounding must equal `half`'s, bit for bit.
    #[test]
    fn every_half_bit_pattern_blends_like_the_reference() {
        fn every<T: Element>(from_bits: fn(u16) -> T) {
            let a: Vec<T> = (0..=u16::MAX).map(from_bits).collect();
            let b: Vec<T> = (0..=u16::MAX)
                .map(|i| from_bits(i.wrapping_mul(40503).rotate_left(5)))
                .collect();
            for alpha in [0.0, 0.3, 0.5, 0.7, 1.0, 1.5, -0.5, 3.0] {
                let mut fast = a.clone();
                let mut slow = a.clone();
                blend(&mut fast, &a, &b, alpha);
                blend_reference(&mut slow, &a, &b, alpha);
                for (i, (f, s)) in fast.iter().zip(&slow).enumerate() {
                    let (f, s) = (f.to_f32(), s.to_f32());
                    assert!(
                        f.to_bits() == s.to_bits() || (f.is_nan() && s.is_nan()),
                        "α {alpha} element {i}: {f} vs {s}"
                    );
                }
            }
        }
        every(f16::from_bits);
        every(bf16::from_bits);
    }

    fn check<T: Element + PartialEq + std::fmt::Debug>(
        a: &[f32],
        b: &[f32],
        off: usize,
        alpha: f32,
    ) {
        let a: Vec<T> = a.iter().map(|&x| T::from_f32(x)).collect();
        let b: Vec<T> = b.iter().map(|&x| T::from_f32(x)).collect();
        let n = a.len() - off;
        let mut fast = vec![T::from_f32(0.0); n + off];
        let mut slow = fast.clone();
        blend(&mut fast[off..], &a[off..], &b[off..], alpha);
        blend_reference(&mut slow[off..], &a[off..], &b[off..], alpha);
        let bits = |v: &[T]| -> Vec<u32> { v.iter().map(|x| x.to_f32().to_bits()).collect() };
        assert_eq!(
            bits(&fast),
            bits(&slow),
            "alpha {alpha}, len {n}, offset {off}"
        );
        if alpha == 0.0 {
            assert_eq!(bits(&fast[off..]), bits(&a[off..]));
        }
        if alpha == 1.0 {
            assert_eq!(bits(&fast[off..]), bits(&b[off..]));
        }
    }

    fn buffers() -> impl Strategy<Value = (Vec<f32>, Vec<f32>, usize, f32)> {
        (1usize..3000, 0usize..9).prop_flat_map(|(n, off)| {
            let off = off.min(n - 1);
            (
                proptest::collection::vec(-4.0f32..4.0, n),
                proptest::collection::vec(-4.0f32..4.0, n),
                Just(off),
                prop_oneof![Just(0.0f32), Just(1.0f32), Just(0.5f32), -2.0f32..3.0],
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn fast_matches_reference_f32((a, b, off, alpha) in buffers()) {
            check::<f32>(&a, &b, off, alpha);
        }
        #[test]
        fn fast_matches_reference_f16((a, b, off, alpha) in buffers()) {
            check::<f16>(&a, &b, off, alpha);
        }
        #[test]
        fn fast_matches_reference_bf16((a, b, off, alpha) in buffers()) {
            check::<bf16>(&a, &b, off, alpha);
        }
    }

    #[test]
    fn endpoints_keep_signed_zeros() {
        let a = [-0.0f32, 1.0, -0.0];
        let b = [0.0f32, -0.0, 2.0];
        let mut w = [9.0f32; 3];
        blend(&mut w, &a, &b, 0.0);
        assert_eq!(w.map(f32::to_bits), a.map(f32::to_bits));
        blend(&mut w, &a, &b, 1.0);
        assert_eq!(w.map(f32::to_bits), b.map(f32::to_bits));
    }

    #[test]
    fn large_buffer_spans_many_chunks() {
        let n = CHUNK * 3 + 17;
        let a: Vec<f32> = (0..n).map(|i| (i % 97) as f32 * 0.01).collect();
        let b: Vec<f32> = (0..n).map(|i| (i % 89) as f32 * -0.02).collect();
        check::<f32>(&a, &b, 3, 0.3);
        check::<f16>(&a, &b, 5, 1.7);
    }

    #[test]
    fn op_on_tensors_matches_reference() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let a = Tensor::arange(0f32, 1000., &dev)?;
        let b = (Tensor::arange(0f32, 1000., &dev)? * -1.5)?;
        let w = Tensor::zeros(1000, DType::F32, &dev)?;
        // Blend a window at an offset, as the engine does with views.
        let (wv, av, bv) = (
            w.narrow(0, 7, 900)?,
            a.narrow(0, 7, 900)?,
            b.narrow(0, 7, 900)?,
        );
        blend_tensor(&wv, &av, &bv, -0.5)?;
        let got = w.to_vec1::<f32>()?;
        let (a, b) = (a.to_vec1::<f32>()?, b.to_vec1::<f32>()?);
        for i in 0..1000 {
            let want = if (7..907).contains(&i) {
                lerp_scalar(a[i], b[i], -0.5)
            } else {
                0.0
            };
            assert_eq!(got[i].to_bits(), want.to_bits(), "element {i}");
        }
        Ok(())
    }
}
