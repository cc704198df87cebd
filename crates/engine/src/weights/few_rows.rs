//! `y = x · wᵀ` for a few rows of `x` (decode steps, batched columns, short prompts) on the
//! CPU: x and y in f32, the weights in f32, f16 or bf16 (converted as they stream in, f32
//! accumulation), in PyTorch's nn.Linear layout `[out, in]` or GPT-2's Conv1D `[in, out]`.
//!
//! A general GEMM packs its operands into panels before multiplying. For one row it has a
//! matrix-vector path, but for 2–16 rows it packs the whole weight matrix on every call, and
//! a 4-row product took 5× as long as a 1-row one. Here each weight row is streamed once from
//! memory and dotted with every row of `x` (which stays in L1), so the cost is one pass over
//! the weights whatever the row count: the batched-columns mode reads each weight once for K
//! columns, as intended.

use rayon::prelude::*;

/// A weight element the kernels read: converted to f32 eight at a time as it is loaded.
pub trait Weight: Copy + Send + Sync + 'static {
    fn to_f32(self) -> f32;

    /// Eight consecutive weights from `p` as f32.
    ///
    /// # Safety
    /// `p` must be valid for reads of eight elements.
    #[cfg(simd_kernels)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;

    /// Whether [`Weight::load16`] returns a block's even elements then its odd ones (so x
    /// must be [`arranged`] to match) rather than its two halves.
    const EVENS_THEN_ODDS: bool = false;

    /// Sixteen consecutive weights from `p` as two vectors of f32: elements 0–7 and 8–15, or
    /// the even and the odd ones where [`Weight::EVENS_THEN_ODDS`].
    ///
    /// # Safety
    /// `p` must be valid for reads of sixteen elements.
    #[cfg(simd_kernels)]
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> [std::arch::x86_64::__m256; 2] {
        [Self::load8(p), Self::load8(p.add(8))]
    }

    /// Thirty-two consecutive weights from `p` in 512-bit registers, in [`Weight::load16`]'s
    /// order over blocks of 32.
    ///
    /// # Safety
    /// `p` must be valid for reads of 32 elements, and the CPU must have AVX-512 F and BW.
    #[cfg(simd_kernels)]
    unsafe fn load32(p: *const Self) -> [std::arch::x86_64::__m512; 2];
}

impl Weight for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    #[cfg(simd_kernels)]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        std::arch::x86_64::_mm256_loadu_ps(p)
    }
    #[cfg(simd_kernels)]
    #[inline(always)]
    unsafe fn load32(p: *const Self) -> [std::arch::x86_64::__m512; 2] {
        use std::arch::x86_64::*;
        [_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16))]
    }
}

impl Weight for half::f16 {
    fn to_f32(self) -> f32 {
        self.to_f32()
    }
    #[cfg(simd_kernels)]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
    #[cfg(simd_kernels)]
    #[inline(always)]
    unsafe fn load32(p: *const Self) -> [std::arch::x86_64::__m512; 2] {
        use std::arch::x86_64::*;
        let half = |p: *const Self| _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i));
        [half(p), half(p.add(16))]
    }
}

impl Weight for half::bf16 {
    fn to_f32(self) -> f32 {
        self.to_f32()
    }
    /// bf16 is the top half of an f32: widen to 32 bits and shift into place.
    #[cfg(simd_kernels)]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        let wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
        _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16))
    }

    /// Read as eight 32-bit lanes, each holding two bf16: shifting a lane left by 16 gives
    /// its even element as an f32, masking off its low half gives the odd one. Two cheap
    /// integer ops per sixteen weights, where widening takes a shuffle per eight.
    const EVENS_THEN_ODDS: bool = true;
    #[cfg(simd_kernels)]
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> [std::arch::x86_64::__m256; 2] {
        use std::arch::x86_64::*;
        let pairs = _mm256_loadu_si256(p as *const __m256i);
        let odd = _mm256_and_si256(pairs, _mm256_set1_epi32(0xffff_0000u32 as i32));
        [
            _mm256_castsi256_ps(_mm256_slli_epi32(pairs, 16)),
            _mm256_castsi256_ps(odd),
        ]
    }
    #[cfg(simd_kernels)]
    #[inline(always)]
    unsafe fn load32(p: *const Self) -> [std::arch::x86_64::__m512; 2] {
        use std::arch::x86_64::*;
        let pairs = _mm512_loadu_si512(p as *const _);
        let odd = _mm512_and_si512(pairs, _mm512_set1_epi32(0xffff_0000u32 as i32));
        [
            _mm512_castsi512_ps(_mm512_slli_epi32(pairs, 16)),
            _mm512_castsi512_ps(odd),
        ]
    }
}

/// `x [m, k]` in the order [`Weight::load16`] (`block` 16) or [`Weight::load32`] (`block` 32)
/// yields W's elements: unchanged, or each whole block split into its even elements then its
/// odd ones (the tail stays in place).
fn arranged<W: Weight>(x: &[f32], m: usize, k: usize, block: usize) -> std::borrow::Cow<'_, [f32]> {
    if !W::EVENS_THEN_ODDS || !cfg!(simd_kernels) {
        return x.into();
    }
    let mut out = x.to_vec();
    let half = block / 2;
    for r in 0..m {
        let row = &x[r * k..(r + 1) * k];
        let dst = &mut out[r * k..(r + 1) * k];
        for (src, dst) in row.chunks_exact(block).zip(dst.chunks_exact_mut(block)) {
            for t in 0..half {
                dst[t] = src[2 * t];
                dst[half + t] = src[2 * t + 1];
            }
        }
    }
    out.into()
}

/// The register width the `[out, in]` kernels take for rows of k values: 512 bits where the
/// CPU has AVX-512 (twice the multiply-adds an instruction; a product of several rows is
/// bound by them) and a row holds whole blocks of 32, else 256. It depends on k alone, so a
/// matrix is always read the same way and a row's result does not depend on its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Width {
    Avx2,
    #[cfg_attr(not(simd_kernels), allow(dead_code))]
    Avx512,
}

impl Width {
    fn for_rows_of(k: usize) -> Self {
        #[cfg(simd_kernels)]
        if k.is_multiple_of(32) && has_avx512() {
            return Width::Avx512;
        }
        let _ = k;
        Width::Avx2
    }

    /// Elements a kernel step takes from each weight row (x is arranged in blocks of them).
    fn block(self) -> usize {
        match self {
            Width::Avx2 => 16,
            Width::Avx512 => 32,
        }
    }
}

/// Whether the CPU has AVX-512 F and BW (detected once; the build targets x86-64-v3).
#[cfg(simd_kernels)]
pub(crate) fn has_avx512() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
    })
}

/// `y [m, n]` back in order from outputs the `[in, out]` kernel wrote in [`Weight::load16`]'s
/// order (each whole block of sixteen: the even outputs, then the odd ones).
fn unarrange<W: Weight>(y: &mut [f32], n: usize) {
    if !W::EVENS_THEN_ODDS || !cfg!(simd_kernels) || n == 0 {
        return;
    }
    for row in y.chunks_exact_mut(n) {
        for block in row.chunks_exact_mut(16) {
            let held: [f32; 16] = block.try_into().expect("sixteen");
            for t in 0..8 {
                block[2 * t] = held[t];
                block[2 * t + 1] = held[8 + t];
            }
        }
    }
}

/// How far ahead of the loads each weight stream is prefetched. The hardware prefetchers
/// alone left a one-row product over a 113 MB weight at half the copy bandwidth on this
/// 2-core machine; 4 KiB ahead took it from 12.5 to 28.7 GB/s in f32 and from 10.6 to
/// 16.8 GB/s in bf16 (1 and 2 KiB: 16–18 GB/s; 8 and 16 KiB: no better, noisier).
#[cfg(simd_kernels)]
const PREFETCH_BYTES: usize = 4096;

/// Above this many rows the general GEMM (blocked for cache reuse) is the better choice.
pub const MAX_ROWS: usize = 64;

/// Products smaller than this many multiply-adds run on the calling thread: splitting them
/// costs more than it saves.
const SERIAL_BELOW: usize = 1 << 15;

/// Weight rows per parallel task at least, where rows are split by count alone.
const MIN_ROWS_PER_TASK: usize = 64;

/// Multiply-adds per parallel task at least: enough to amortise scheduling, while a few long
/// rows (an adapter's 16 down rows of 2,048) still split over the cores.
const MIN_TASK_WORK: usize = 1 << 14;

/// `y [m, n] = x [m, k] · w [n, k]ᵀ`, all row-major and contiguous.
pub fn matmul_wt<W: Weight>(x: &[f32], w: &[W], m: usize, n: usize, k: usize, y: &mut [f32]) {
    matmul_wt_in(Width::for_rows_of(k), x, w, m, n, k, y)
}

/// [`matmul_wt`] in registers of `width`.
fn matmul_wt_in<W: Weight>(
    width: Width,
    x: &[f32],
    w: &[W],
    m: usize,
    n: usize,
    k: usize,
    y: &mut [f32],
) {
    assert_eq!(w.len(), n * k, "w is [n, k]");
    let x = &arranged::<W>(x, m, k, width.block())[..];
    run(x, m, n, k, y, |first, rows, out| {
        dot_rows(width, x, &w[first * k..(first + rows) * k], None, m, k, out)
    });
}

/// The batched-columns product in one pass: `y[r] = keep[r]·(x[r]·waᵀ) + take[r]·(x[r]·wbᵀ)`,
/// reading row j of both endpoints together.
#[allow(clippy::too_many_arguments)]
pub fn matmul_wt_mixed<W: Weight>(
    x: &[f32],
    wa: &[W],
    wb: &[W],
    keep: &[f32],
    take: &[f32],
    m: usize,
    n: usize,
    k: usize,
    y: &mut [f32],
) {
    assert_eq!(wa.len(), n * k, "wa is [n, k]");
    assert_eq!(wb.len(), n * k, "wb is [n, k]");
    assert!(keep.len() == m && take.len() == m, "one weight per row");
    let width = Width::for_rows_of(k);
    let x = &arranged::<W>(x, m, k, width.block())[..];
    run(x, m, n, k, y, |first, rows, out| {
        let range = first * k..(first + rows) * k;
        dot_rows(
            width,
            x,
            &wa[range.clone()],
            Some((&wb[range], keep, take)),
            m,
            k,
            out,
        )
    });
}

/// Split the n outputs into contiguous stretches of weight rows, one per task; each task
/// fills its transposed block `[rows, m]`, which is then scattered into y's rows (m·n
/// floats: small next to the n·k weights).
fn run(
    x: &[f32],
    m: usize,
    n: usize,
    k: usize,
    y: &mut [f32],
    task: impl Fn(usize, usize, &mut [f32]) + Sync,
) {
    assert_eq!(x.len(), m * k, "x is [m, k]");
    assert_eq!(y.len(), m * n, "y is [m, n]");
    if m == 0 || n == 0 {
        return;
    }
    let mut yt = vec![0f32; n * m];
    if m * n * k < SERIAL_BELOW {
        task(0, n, &mut yt);
        scatter(&yt, m, n, y);
        return;
    }
    // One long stretch per task keeps each core's prefetcher on one stream; a few tasks per
    // thread still balance the load.
    let per_task = n
        .div_ceil(4 * rayon::current_num_threads())
        .max(MIN_TASK_WORK.div_ceil(m * k));
    yt.par_chunks_mut(per_task * m)
        .enumerate()
        .for_each(|(i, out)| task(i * per_task, out.len() / m, out));
    scatter(&yt, m, n, y);
}

/// `y [m, n]` from its transpose.
fn scatter(yt: &[f32], m: usize, n: usize, y: &mut [f32]) {
    for (j, col) in yt.chunks_exact(m).enumerate() {
        for (r, v) in col.iter().enumerate() {
            y[r * n + j] = *v;
        }
    }
}

/// The plain twin the tests hold [`matmul_wt`] to: one dot product per output, in f64.
pub fn matmul_wt_reference<W: Weight>(
    x: &[f32],
    w: &[W],
    m: usize,
    n: usize,
    k: usize,
) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    for r in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k)
                .map(|i| x[r * k + i] as f64 * w[j * k + i].to_f32() as f64)
                .sum();
            y[r * n + j] = dot as f32;
        }
    }
    y
}

/// Endpoint B's rows and the per-row weights of A and B, for the mixed product.
type Mixed<'a, W> = Option<(&'a [W], &'a [f32], &'a [f32])>;

/// `out [rows, m]`: each of `w`'s rows dotted with each of `x`'s m rows (mixed with `wb`'s).
fn dot_rows<W: Weight>(
    width: Width,
    x: &[f32],
    w: &[W],
    mixed: Mixed<W>,
    m: usize,
    k: usize,
    out: &mut [f32],
) {
    #[cfg(simd_kernels)]
    {
        // SAFETY: AVX2, FMA and F16C are the build's target (see .cargo/config.toml), AVX-512
        // is chosen only where detected.
        unsafe {
            match width {
                Width::Avx2 => simd::dot_rows_avx2(x, w, mixed, m, k, out),
                Width::Avx512 => simd::dot_rows_avx512(x, w, mixed, m, k, out),
            }
        }
    }
    #[cfg(not(simd_kernels))]
    {
        let _ = width;
        let dot =
            |a: &[f32], b: &[W]| -> f32 { a.iter().zip(b).map(|(p, q)| p * q.to_f32()).sum() };
        for (j, wrow) in w.chunks_exact(k).enumerate() {
            for r in 0..m {
                let xr = &x[r * k..(r + 1) * k];
                out[j * m + r] = match mixed {
                    None => dot(xr, wrow),
                    Some((wb, keep, take)) => {
                        keep[r] * dot(xr, wrow) + take[r] * dot(xr, &wb[j * k..(j + 1) * k])
                    }
                };
            }
        }
    }
}

#[cfg(simd_kernels)]
mod simd {
    use super::{Mixed, Weight, PREFETCH_BYTES};
    use std::arch::x86_64::*;

    /// f32 registers of one width: what the kernels below need of them.
    trait Lanes {
        /// f32 values a register holds.
        const LANES: usize;
        type F: Copy;
        unsafe fn zero() -> Self::F;
        unsafe fn load(p: *const f32) -> Self::F;
        unsafe fn fmadd(a: Self::F, b: Self::F, c: Self::F) -> Self::F;
        unsafe fn hsum(v: Self::F) -> f32;
        /// 2·LANES weights from `p` ([`Weight::load16`] or [`Weight::load32`]).
        unsafe fn weights<W: Weight>(p: *const W) -> [Self::F; 2];
    }

    struct Y8;
    struct Z16;

    impl Lanes for Y8 {
        const LANES: usize = 8;
        type F = __m256;
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            _mm256_setzero_ps()
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn hsum(v: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
            _mm_cvtss_f32(s)
        }
        #[inline(always)]
        unsafe fn weights<W: Weight>(p: *const W) -> [__m256; 2] {
            W::load16(p)
        }
    }

    impl Lanes for Z16 {
        const LANES: usize = 16;
        type F = __m512;
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn hsum(v: __m512) -> f32 {
            // The two halves added, then the 256-bit register's sum: a fixed order.
            let h = _mm256_add_ps(
                _mm512_castps512_ps256(v),
                _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)),
            );
            Y8::hsum(h)
        }
        #[inline(always)]
        unsafe fn weights<W: Weight>(p: *const W) -> [__m512; 2] {
            W::load32(p)
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_rows_avx2<W: Weight>(
        x: &[f32],
        w: &[W],
        mixed: Mixed<W>,
        m: usize,
        k: usize,
        out: &mut [f32],
    ) {
        dot_rows::<Y8, W>(x, w, mixed, m, k, out)
    }

    /// [`dot_rows_avx2`] in 512-bit registers (k a multiple of 32).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw")]
    pub unsafe fn dot_rows_avx512<W: Weight>(
        x: &[f32],
        w: &[W],
        mixed: Mixed<W>,
        m: usize,
        k: usize,
        out: &mut [f32],
    ) {
        dot_rows::<Z16, W>(x, w, mixed, m, k, out)
    }

    #[inline(always)]
    unsafe fn dot_rows<L: Lanes, W: Weight>(
        x: &[f32],
        w: &[W],
        mixed: Mixed<W>,
        m: usize,
        k: usize,
        out: &mut [f32],
    ) {
        let n = w.len() / k;
        // Many rows of x (prompts, batched prompts) outgrow L1, and each pair of weight rows
        // would read them all from L2 again: take the weights in chunks that stay in L2 and
        // x in blocks that stay in L1, so x comes from L1 and the weights from L2.
        let x_block = (X_BLOCK_BYTES / (4 * k)).max(4) / 4 * 4;
        let per_row = k * std::mem::size_of::<W>() * if mixed.is_some() { 2 } else { 1 };
        let w_chunk = (W_CHUNK_BYTES / per_row).max(2) / 2 * 2;
        let (w_chunk, x_block) = if m <= x_block {
            (n, m)
        } else {
            (w_chunk, x_block)
        };
        for j0 in (0..n).step_by(w_chunk) {
            for r0 in (0..m).step_by(x_block) {
                let rows = j0..(j0 + w_chunk).min(n);
                dot_block::<L, W>(x, w, mixed, m, k, r0..(r0 + x_block).min(m), rows, out);
            }
        }
    }

    /// Bytes of x a block of rows takes at most (L1 is 32–48 KiB).
    const X_BLOCK_BYTES: usize = 24 << 10;
    /// Bytes of weights a chunk of rows takes at most (L2 is 1–2 MiB).
    const W_CHUNK_BYTES: usize = 256 << 10;

    /// `out[j·m + r]` for the weight rows `js` and the rows `rs` of x.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn dot_block<L: Lanes, W: Weight>(
        x: &[f32],
        w: &[W],
        mixed: Mixed<W>,
        m: usize,
        k: usize,
        rs: std::ops::Range<usize>,
        js: std::ops::Range<usize>,
        out: &mut [f32],
    ) {
        let r0 = rs.start;
        let rows = rs.len();
        let xp = x.as_ptr().add(r0 * k);
        let row = |j: usize| w.as_ptr().add(j * k);
        if let Some((wb, keep, take)) = mixed {
            // Rows j of A and B form the tile's two weight rows.
            let store = |r: usize, j: usize, d: &[[f32; 2]], out: &mut [f32]| {
                for (i, [a, b]) in d.iter().enumerate() {
                    let r = r0 + r + i;
                    out[j * m + r] = keep[r] * a + take[r] * b;
                }
            };
            for j in js {
                let ws = [row(j), wb.as_ptr().add(j * k)];
                every_row::<L, W>(xp, rows, k, ws, |r, d| store(r, j, d, out));
            }
            return;
        }
        let store = |r: usize, j: usize, d: &[[f32; 2]], out: &mut [f32]| {
            for (i, cols) in d.iter().enumerate() {
                for (c, v) in cols.iter().enumerate() {
                    out[(j + c) * m + r0 + r + i] = *v;
                }
            }
        };
        let (mut j, end) = (js.start, js.end);
        while j + 2 <= end {
            every_row::<L, W>(xp, rows, k, [row(j), row(j + 1)], |r, d| {
                store(r, j, d, out)
            });
            j += 2;
        }
        if j < end {
            for r in 0..rows {
                out[j * m + r0 + r] = tile::<L, W, 1, 1>(xp.add(r * k), [row(j)], k)[0][0];
            }
        }
    }

    /// Every row of x (m rows from `xp`) against two weight rows, four rows at a time; `store`
    /// gets the first row of each tile and its dot products.
    #[inline(always)]
    unsafe fn every_row<L: Lanes, W: Weight>(
        xp: *const f32,
        m: usize,
        k: usize,
        ws: [*const W; 2],
        mut store: impl FnMut(usize, &[[f32; 2]]),
    ) {
        let mut r = 0;
        while r + 4 <= m {
            store(r, &tile::<L, W, 4, 2>(xp.add(r * k), ws, k));
            r += 4;
        }
        match m - r {
            3 => store(r, &tile::<L, W, 3, 2>(xp.add(r * k), ws, k)),
            2 => store(r, &tile::<L, W, 2, 2>(xp.add(r * k), ws, k)),
            1 => store(r, &tile::<L, W, 1, 2>(xp.add(r * k), ws, k)),
            _ => {}
        }
    }

    /// Dot products of R consecutive rows of x (from `xp`, [`super::arranged`]) with C weight
    /// rows: every load of a weight vector feeds R multiply-adds. Each product adds its terms
    /// in the same order whatever R and C are, so a row's result does not depend on the other
    /// rows of its batch.
    #[inline(always)]
    unsafe fn tile<L: Lanes, W: Weight, const R: usize, const C: usize>(
        xp: *const f32,
        ws: [*const W; C],
        k: usize,
    ) -> [[f32; C]; R] {
        let mut acc = [[L::zero(); C]; R];
        let step = 2 * L::LANES;
        let body = k / step * step;
        let ahead = PREFETCH_BYTES / std::mem::size_of::<W>();
        // A prefetch per 32 bytes of weights: per 64-byte line measured slower (f32 decode on
        // the smollm2-135m shape 34.6 tok/s against 36.2).
        let half_line = 32 / std::mem::size_of::<W>();
        let mut i = 0;
        while i < body {
            let mut wv = [[L::zero(); 2]; C];
            for (v, w) in wv.iter_mut().zip(ws) {
                let mut at = 0;
                while at < step {
                    _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(i + ahead + at) as *const i8);
                    at += half_line;
                }
                *v = L::weights(w.add(i));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let x0 = L::load(xp.add(r * k + i));
                let x1 = L::load(xp.add(r * k + i + L::LANES));
                for c in 0..C {
                    row[c] = L::fmadd(wv[c][0], x0, row[c]);
                    row[c] = L::fmadd(wv[c][1], x1, row[c]);
                }
            }
            i += step;
        }
        let mut d = [[0f32; C]; R];
        for r in 0..R {
            for c in 0..C {
                let mut s = L::hsum(acc[r][c]);
                for t in body..k {
                    s += *xp.add(r * k + t) * (*ws[c].add(t)).to_f32();
                }
                d[r][c] = s;
            }
        }
        d
    }
}

/// `y [m, n] = x [m, k] · w [k, n]` for weights stored `[in, out]` (GPT-2's Conv1D).
///
/// Each weight row is a run of n outputs' coefficients for one input, so the kernel streams
/// the rows in order, adding `x[r, i] · w[i, ..]` into every row's outputs (held in cache).
/// Walking down columns instead would jump a whole row per step, which the prefetchers do not
/// follow. The k rows are split into contiguous stretches, one per task, whose partial sums
/// are added at the end (m·n floats each: small next to the weights).
pub fn matmul_w<W: Weight>(x: &[f32], w: &[W], m: usize, n: usize, k: usize, y: &mut [f32]) {
    assert_eq!(w.len(), k * n, "w is [k, n]");
    let [ya] = run_rows(x, m, n, k, |i0, i1, acc: &mut [Vec<f32>; 1]| {
        in_out::stream(x, w, m, n, k, i0, i1, &mut acc[0])
    });
    y.copy_from_slice(&ya);
    unarrange::<W>(y, n);
}

/// [`matmul_w`] for the batched columns: `y[r] = keep[r]·(x[r]·wa) + take[r]·(x[r]·wb)`,
/// each task streaming its stretch of A's rows, then of B's.
#[allow(clippy::too_many_arguments)]
pub fn matmul_w_mixed<W: Weight>(
    x: &[f32],
    wa: &[W],
    wb: &[W],
    keep: &[f32],
    take: &[f32],
    m: usize,
    n: usize,
    k: usize,
    y: &mut [f32],
) {
    assert_eq!(wa.len(), k * n, "wa is [k, n]");
    assert_eq!(wb.len(), k * n, "wb is [k, n]");
    assert!(keep.len() == m && take.len() == m, "one weight per row");
    let [ya, yb] = run_rows(x, m, n, k, |i0, i1, acc: &mut [Vec<f32>; 2]| {
        let [a, b] = acc;
        in_out::stream(x, wa, m, n, k, i0, i1, a);
        in_out::stream(x, wb, m, n, k, i0, i1, b);
    });
    for r in 0..m {
        for j in 0..n {
            y[r * n + j] = keep[r] * ya[r * n + j] + take[r] * yb[r * n + j];
        }
    }
    unarrange::<W>(y, n);
}

/// The plain twin of [`matmul_w`], in f64.
pub fn matmul_w_reference<W: Weight>(x: &[f32], w: &[W], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    for r in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k)
                .map(|i| x[r * k + i] as f64 * w[i * n + j].to_f32() as f64)
                .sum();
            y[r * n + j] = dot as f32;
        }
    }
    y
}

/// Split the k weight rows into stretches, one per task, each accumulating `S` partial
/// outputs `[m, n]` over its stretch; returns their sums. The stretches depend on k alone and
/// the partial sums are added in stretch order, so a row's result does not depend on m or on
/// which thread ran what.
fn run_rows<const S: usize>(
    x: &[f32],
    m: usize,
    n: usize,
    k: usize,
    task: impl Fn(usize, usize, &mut [Vec<f32>; S]) + Sync,
) -> [Vec<f32>; S] {
    assert_eq!(x.len(), m * k, "x is [m, k]");
    let zero = || std::array::from_fn(|_| vec![0f32; m * n]);
    if m == 0 || n == 0 || k == 0 {
        return zero();
    }
    let tasks = (2 * rayon::current_num_threads())
        .min(k.div_ceil(MIN_ROWS_PER_TASK))
        .max(1);
    let per_task = k.div_ceil(tasks);
    let stretch = |i0: usize| {
        let mut acc = zero();
        task(i0, (i0 + per_task).min(k), &mut acc);
        acc
    };
    let starts: Vec<usize> = (0..k).step_by(per_task).collect();
    let partials: Vec<[Vec<f32>; S]> = if m * n * k < SERIAL_BELOW {
        starts.into_iter().map(stretch).collect()
    } else {
        starts.into_par_iter().map(stretch).collect()
    };
    let mut parts = partials.into_iter();
    let mut sum = parts.next().expect("k > 0: at least one stretch");
    for part in parts {
        for (a, b) in sum.iter_mut().zip(&part) {
            a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        }
    }
    sum
}

/// The row-streaming kernel of [`matmul_w`] and [`matmul_w_mixed`].
mod in_out {
    use super::Weight;

    /// `y [m, n] += x[:, i0..i1] · w[i0..i1, :]`.
    #[allow(clippy::too_many_arguments)]
    pub fn stream<W: Weight>(
        x: &[f32],
        w: &[W],
        m: usize,
        n: usize,
        k: usize,
        i0: usize,
        i1: usize,
        y: &mut [f32],
    ) {
        #[cfg(simd_kernels)]
        // SAFETY: the target features are enabled at compile time (see .cargo/config.toml).
        unsafe {
            simd::stream(x, w, m, n, k, i0, i1, y)
        }
        #[cfg(not(simd_kernels))]
        for i in i0..i1 {
            for r in 0..m {
                let xv = x[r * k + i];
                for j in 0..n {
                    y[r * n + j] += xv * w[i * n + j].to_f32();
                }
            }
        }
    }

    #[cfg(simd_kernels)]
    mod simd {
        use super::Weight;
        use std::arch::x86_64::*;

        /// Four weight rows at a time (four sequential streams), so each output vector is
        /// loaded and stored once per four inputs; two rows of x at a time, so each weight
        /// vector loaded serves both (the four rows are read again from cache for the next
        /// pair). Every output adds its terms in the same order whatever m is.
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn stream<W: Weight>(
            x: &[f32],
            w: &[W],
            m: usize,
            n: usize,
            k: usize,
            i0: usize,
            i1: usize,
            y: &mut [f32],
        ) {
            const BLOCK: usize = 1024;
            let (wp, yp) = (w.as_ptr(), y.as_mut_ptr());
            let xs = |r: usize, i: usize| x.as_ptr().add(r * k + i);
            let mut i = i0;
            while i + 4 <= i1 {
                // In blocks of outputs whose four weight rows stay in L1 for the next pair.
                let mut j0 = 0;
                while j0 < n {
                    let j1 = (j0 + BLOCK).min(n);
                    let rows = std::array::from_fn(|t| wp.add((i + t) * n + j0));
                    let out = |r: usize| yp.add(r * n + j0);
                    let mut r = 0;
                    while r + 2 <= m {
                        tile::<W, 2, 4>(
                            [xs(r, i), xs(r + 1, i)],
                            rows,
                            [out(r), out(r + 1)],
                            j1 - j0,
                        );
                        r += 2;
                    }
                    if r < m {
                        tile::<W, 1, 4>([xs(r, i)], rows, [out(r)], j1 - j0);
                    }
                    j0 = j1;
                }
                i += 4;
            }
            for i in i..i1 {
                for r in 0..m {
                    tile::<W, 1, 1>([xs(r, i)], [wp.add(i * n)], [yp.add(r * n)], n);
                }
            }
        }

        /// `outs[r][..n] += Σ_t x[r][t] · rows[t][..n]` for R rows of x and G weight rows.
        #[inline(always)]
        unsafe fn tile<W: Weight, const R: usize, const G: usize>(
            x: [*const f32; R],
            rows: [*const W; G],
            outs: [*mut f32; R],
            n: usize,
        ) {
            let mut xs = [[0f32; G]; R];
            let mut xv = [[_mm256_setzero_ps(); G]; R];
            for r in 0..R {
                for t in 0..G {
                    xs[r][t] = *x[r].add(t);
                    xv[r][t] = _mm256_set1_ps(xs[r][t]);
                }
            }
            let mut j = 0;
            if W::EVENS_THEN_ODDS {
                // Sixteen outputs at a time, written even ones first (see `unarrange`).
                while j + 16 <= n {
                    for r in 0..R {
                        let mut lo = _mm256_loadu_ps(outs[r].add(j));
                        let mut hi = _mm256_loadu_ps(outs[r].add(j + 8));
                        for t in 0..G {
                            let [even, odd] = W::load16(rows[t].add(j));
                            lo = _mm256_fmadd_ps(xv[r][t], even, lo);
                            hi = _mm256_fmadd_ps(xv[r][t], odd, hi);
                        }
                        _mm256_storeu_ps(outs[r].add(j), lo);
                        _mm256_storeu_ps(outs[r].add(j + 8), hi);
                    }
                    j += 16;
                }
            }
            let body = if W::EVENS_THEN_ODDS { j } else { n / 8 * 8 };
            while j < body {
                let mut wv = [_mm256_setzero_ps(); G];
                for t in 0..G {
                    wv[t] = W::load8(rows[t].add(j));
                }
                for r in 0..R {
                    let mut acc = _mm256_loadu_ps(outs[r].add(j));
                    for t in 0..G {
                        acc = _mm256_fmadd_ps(xv[r][t], wv[t], acc);
                    }
                    _mm256_storeu_ps(outs[r].add(j), acc);
                }
                j += 8;
            }
            for j in body..n {
                for r in 0..R {
                    for t in 0..G {
                        *outs[r].add(j) += xs[r][t] * (*rows[t].add(j)).to_f32();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn assert_close(got: &[f32], want: &[f32], k: usize, what: &str) {
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()) * (k as f32).sqrt(),
                "{what} at {i}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn matches_the_reference_for_every_row_count_and_odd_sizes() {
        let mut rng = StdRng::seed_from_u64(3);
        for &(n, k) in &[(1, 1), (7, 13), (130, 64), (257, 200), (64, 577)] {
            for m in (1..=17).chain([31, MAX_ROWS]) {
                let x: Vec<f32> = (0..m * k).map(|_| rng.random::<f32>() - 0.5).collect();
                let w: Vec<f32> = (0..n * k).map(|_| rng.random::<f32>() - 0.5).collect();
                let mut y = vec![f32::NAN; m * n];
                matmul_wt(&x, &w, m, n, k, &mut y);
                let want = matmul_wt_reference(&x, &w, m, n, k);
                assert_close(&y, &want, k, &format!("m {m} n {n} k {k}"));
                // The mixed product against two plain products mixed afterwards.
                let wb: Vec<f32> = (0..n * k).map(|_| rng.random::<f32>() - 0.5).collect();
                let alphas: Vec<f32> = (0..m).map(|r| r as f32 * 0.4 - 0.5).collect();
                let keep: Vec<f32> = alphas.iter().map(|a| 1.0 - a).collect();
                let mut mixed = vec![f32::NAN; m * n];
                matmul_wt_mixed(&x, &w, &wb, &keep, &alphas, m, n, k, &mut mixed);
                let at_b = matmul_wt_reference(&x, &wb, m, n, k);
                let want: Vec<f32> = (0..m * n)
                    .map(|i| keep[i / n] * want[i] + alphas[i / n] * at_b[i])
                    .collect();
                assert_close(&mixed, &want, k, &format!("mixed m {m} n {n} k {k}"));
            }
        }
    }

    /// A row's result is bit for bit the same alone as in a batch of any size (batched
    /// columns and sweep samples rely on it: resumed runs repeat earlier ones exactly).
    #[test]
    fn a_rows_result_does_not_depend_on_its_batch() {
        fn check<W: Weight>(convert: fn(f32) -> W) {
            // k large enough that the [in, out] kernel splits it across tasks at every m; 416
            // is whole blocks of 32 (the 512-bit kernels where the CPU has them), 403 is not.
            for k in [403, 416] {
                check_k(convert, k);
            }
        }
        fn check_k<W: Weight>(convert: fn(f32) -> W, k: usize) {
            let mut rng = StdRng::seed_from_u64(9);
            let n = 67;
            let m = 17;
            let x: Vec<f32> = (0..m * k).map(|_| rng.random::<f32>() - 0.5).collect();
            let w: Vec<W> = (0..n * k)
                .map(|_| convert(rng.random::<f32>() - 0.5))
                .collect();
            let wb: Vec<W> = (0..n * k)
                .map(|_| convert(rng.random::<f32>() - 0.5))
                .collect();
            let (keep, take) = ([0.7f32; 17], [0.3f32; 17]);
            // Both layouts: w as [n, k] and as [k, n].
            type Plain<W> = fn(&[f32], &[W], usize, usize, usize, &mut [f32]);
            type Mixed<W> = fn(&[f32], &[W], &[W], &[f32], &[f32], usize, usize, usize, &mut [f32]);
            let kernels: [(Plain<W>, Mixed<W>, &str); 2] = [
                (matmul_wt, matmul_wt_mixed, "[out, in]"),
                (matmul_w, matmul_w_mixed, "[in, out]"),
            ];
            for (plain, mixed, layout) in kernels {
                let alone: Vec<(Vec<f32>, Vec<f32>)> = (0..m)
                    .map(|r| {
                        let (mut y, mut ym) = (vec![0f32; n], vec![0f32; n]);
                        let xr = &x[r * k..(r + 1) * k];
                        plain(xr, &w, 1, n, k, &mut y);
                        mixed(xr, &w, &wb, &keep[..1], &take[..1], 1, n, k, &mut ym);
                        (y, ym)
                    })
                    .collect();
                for rows in 1..=m {
                    let (mut y, mut ym) = (vec![0f32; rows * n], vec![0f32; rows * n]);
                    let xs = &x[..rows * k];
                    plain(xs, &w, rows, n, k, &mut y);
                    let (kp, tk) = (&keep[..rows], &take[..rows]);
                    mixed(xs, &w, &wb, kp, tk, rows, n, k, &mut ym);
                    for (r, (p, mx)) in alone.iter().take(rows).enumerate() {
                        let at = r * n..(r + 1) * n;
                        assert_eq!(&y[at.clone()], &p[..], "{layout} k {k} row {r} of {rows}");
                        assert_eq!(&ym[at], &mx[..], "{layout} k {k} mixed row {r} of {rows}");
                    }
                }
            }
        }
        check::<f32>(|v| v);
        check::<half::f16>(half::f16::from_f32);
        check::<half::bf16>(half::bf16::from_f32);
    }

    /// Both register widths (each where the CPU has it) are held to the f64 reference, for
    /// every weight type and row count.
    #[test]
    fn both_widths_match_the_reference() {
        let mut rng = StdRng::seed_from_u64(11);
        let widths = [Width::Avx2, Width::Avx512];
        #[cfg(simd_kernels)]
        let widths = &widths[..if has_avx512() { 2 } else { 1 }];
        #[cfg(not(simd_kernels))]
        let widths = &widths[..1];
        if widths.len() == 1 {
            eprintln!("both_widths_match_the_reference: no AVX-512 here, the 256-bit kernels only");
        }
        for &(n, k) in &[(9, 32), (130, 64), (33, 576)] {
            for m in (1..=9).chain([17, MAX_ROWS]) {
                let x: Vec<f32> = (0..m * k).map(|_| rng.random::<f32>() - 0.5).collect();
                let w: Vec<f32> = (0..n * k).map(|_| rng.random::<f32>() - 0.5).collect();
                let w16: Vec<half::f16> = w.iter().map(|&v| half::f16::from_f32(v)).collect();
                let wbf: Vec<half::bf16> = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
                for &width in widths {
                    let what = |t: &str| format!("{width:?} {t} m {m} n {n} k {k}");
                    let mut y = vec![f32::NAN; m * n];
                    matmul_wt_in(width, &x, &w, m, n, k, &mut y);
                    assert_close(&y, &matmul_wt_reference(&x, &w, m, n, k), k, &what("f32"));
                    matmul_wt_in(width, &x, &w16, m, n, k, &mut y);
                    let want = matmul_wt_reference(&x, &w16, m, n, k);
                    assert_close(&y, &want, k, &what("f16"));
                    matmul_wt_in(width, &x, &wbf, m, n, k, &mut y);
                    let want = matmul_wt_reference(&x, &wbf, m, n, k);
                    assert_close(&y, &want, k, &what("bf16"));
                }
            }
        }
    }

    #[test]
    fn half_precision_weights_match_the_reference() {
        let mut rng = StdRng::seed_from_u64(5);
        for &(n, k) in &[(7, 13), (130, 64), (33, 203), (64, 577)] {
            for m in [1, 2, 3, 5, 8, 17, MAX_ROWS] {
                let x: Vec<f32> = (0..m * k).map(|_| rng.random::<f32>() - 0.5).collect();
                let w: Vec<f32> = (0..n * k).map(|_| rng.random::<f32>() - 0.5).collect();
                let w16: Vec<half::f16> = w.iter().map(|&v| half::f16::from_f32(v)).collect();
                let wbf: Vec<half::bf16> = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
                let mut y = vec![f32::NAN; m * n];
                matmul_wt(&x, &w16, m, n, k, &mut y);
                assert_close(&y, &matmul_wt_reference(&x, &w16, m, n, k), k, "f16");
                matmul_wt(&x, &wbf, m, n, k, &mut y);
                assert_close(&y, &matmul_wt_reference(&x, &wbf, m, n, k), k, "bf16");
                // The conversion itself: the f16 product is the f32 product of rounded weights.
                let rounded: Vec<f32> = w16.iter().map(|v| v.to_f32()).collect();
                let mut exact = vec![f32::NAN; m * n];
                matmul_wt(&x, &rounded, m, n, k, &mut exact);
                matmul_wt(&x, &w16, m, n, k, &mut y);
                assert_close(&y, &exact, k, "f16 against rounded f32");
                // The mixed product reads x in the same arranged order as the plain one.
                let wb2: Vec<half::bf16> = (0..n * k)
                    .map(|_| half::bf16::from_f32(rng.random::<f32>() - 0.5))
                    .collect();
                let keep: Vec<f32> = (0..m).map(|r| 1.0 - r as f32 * 0.3).collect();
                let take: Vec<f32> = keep.iter().map(|v| 1.0 - v).collect();
                matmul_wt_mixed(&x, &wbf, &wb2, &keep, &take, m, n, k, &mut y);
                let (at_a, at_b) = (
                    matmul_wt_reference(&x, &wbf, m, n, k),
                    matmul_wt_reference(&x, &wb2, m, n, k),
                );
                let want: Vec<f32> = (0..m * n)
                    .map(|i| keep[i / n] * at_a[i] + take[i / n] * at_b[i])
                    .collect();
                assert_close(&y, &want, k, "mixed bf16");
            }
        }
    }

    #[test]
    fn in_out_layout_matches_the_reference_for_every_row_count() {
        let mut rng = StdRng::seed_from_u64(7);
        for &(n, k) in &[(1, 1), (7, 13), (16, 5), (130, 64), (2304, 48), (100, 577)] {
            for m in (1..=9).chain([17, MAX_ROWS]) {
                let x: Vec<f32> = (0..m * k).map(|_| rng.random::<f32>() - 0.5).collect();
                let w: Vec<f32> = (0..n * k).map(|_| rng.random::<f32>() - 0.5).collect();
                let wb: Vec<f32> = (0..n * k).map(|_| rng.random::<f32>() - 0.5).collect();
                let mut y = vec![f32::NAN; m * n];
                matmul_w(&x, &w, m, n, k, &mut y);
                let want = matmul_w_reference(&x, &w, m, n, k);
                assert_close(&y, &want, k, &format!("m {m} n {n} k {k}"));
                let w16: Vec<half::bf16> = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
                matmul_w(&x, &w16, m, n, k, &mut y);
                let want16 = matmul_w_reference(&x, &w16, m, n, k);
                assert_close(&y, &want16, k, &format!("bf16 m {m} n {n} k {k}"));
                let alphas: Vec<f32> = (0..m).map(|r| r as f32 * 0.4 - 0.5).collect();
                let keep: Vec<f32> = alphas.iter().map(|a| 1.0 - a).collect();
                matmul_w_mixed(&x, &w, &wb, &keep, &alphas, m, n, k, &mut y);
                let at_b = matmul_w_reference(&x, &wb, m, n, k);
                let mixed: Vec<f32> = (0..m * n)
                    .map(|i| keep[i / n] * want[i] + alphas[i / n] * at_b[i])
                    .collect();
                assert_close(&y, &mixed, k, &format!("mixed m {m} n {n} k {k}"));
            }
        }
    }
}
