//! The registers a tile kernel computes in, as one trait with two widths, so that each type's
//! block function is written once:
//!
//! - [`Y8`]: one tile in 256-bit registers, lane j its row j (AVX2, or AVX-512 VNNI on VL);
//! - [`Z16`]: two neighbouring tiles in 512-bit registers, lanes 0..8 the first tile's rows and
//!   8..16 the second's. Every broadcast activation and every integer instruction then serves
//!   sixteen rows. This machine's cores issue `vpdpbusd` on 512 bits as often as on 256, so a
//!   batch's products, compute-bound at four rows, take about half the instructions.
//!
//! Each lane's arithmetic is the same in both, so the two widths give the same bits.

use std::arch::x86_64::*;

/// Where a kernel reads its tiles: the first tile's block at `at`, and (for [`Z16`]) the
/// second's `next` bytes on; `ahead` bytes from `at` is where this stream will read
/// [`super::PREFETCH_BYTES`] later (see [`super::Ahead`]).
#[derive(Clone, Copy)]
pub struct At {
    pub at: *const u8,
    pub next: usize,
    pub ahead: isize,
}

impl At {
    /// The tiles at `at`, `next` bytes apart, not yet placed in their stream.
    pub fn new(at: *const u8, next: usize) -> Self {
        Self { at, next, ahead: 0 }
    }

    /// `off` bytes into the block.
    #[inline(always)]
    pub fn add(self, off: usize) -> Self {
        Self {
            // SAFETY of use: callers stay within the tile block, as with a plain pointer.
            at: self.at.wrapping_add(off),
            ..self
        }
    }

    /// The same bytes, whose stream reads `ahead` bytes on [`super::PREFETCH_BYTES`] later.
    #[inline(always)]
    pub fn ahead(self, ahead: isize) -> Self {
        Self { ahead, ..self }
    }
}

/// Lanes of the rows of one tile ([`Y8`]) or of two ([`Z16`]).
///
/// # Safety
/// Every method needs the instruction sets its type's kernels are compiled for (AVX2, FMA and
/// F16C; [`Z16`] also AVX-512 F, BW and VNNI, and GFNI); the loads need their bytes readable.
pub trait Lanes: Copy {
    /// Rows (lanes of 32 bits).
    const ROWS: usize;
    type I: Copy;
    type F: Copy;

    unsafe fn zero() -> Self::I;
    /// 32 bytes of each tile at `at` (four bytes a row).
    unsafe fn load(at: At) -> Self::I;
    /// Four bytes at `p`, in every lane.
    unsafe fn broadcast4(p: *const u8) -> Self::I;
    unsafe fn splat32(v: i32) -> Self::I;
    unsafe fn splat16(v: i16) -> Self::I;
    unsafe fn splat8(v: i8) -> Self::I;
    unsafe fn and(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn or(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn xor(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn srl16_4(a: Self::I) -> Self::I;
    unsafe fn srl16_2(a: Self::I) -> Self::I;
    unsafe fn sll16_4(a: Self::I) -> Self::I;
    unsafe fn sll16_2(a: Self::I) -> Self::I;
    unsafe fn sll32_16(a: Self::I) -> Self::I;
    unsafe fn add16(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn add32(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn sub32(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn sub8(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn mullo32(a: Self::I, b: Self::I) -> Self::I;
    /// Pairs of i16 products summed into 32 bits.
    unsafe fn madd16(a: Self::I, b: Self::I) -> Self::I;
    /// Pairs of u8·i8 products summed into 16 bits (saturating).
    unsafe fn maddubs(a: Self::I, b: Self::I) -> Self::I;
    /// acc + four u8·i8 products per 32-bit lane (`vpdpbusd`).
    unsafe fn dpbusd(acc: Self::I, a: Self::I, b: Self::I) -> Self::I;
    /// acc + two i16·i16 products per 32-bit lane (`vpdpwssd`).
    unsafe fn dpwssd(acc: Self::I, a: Self::I, b: Self::I) -> Self::I;
    /// Each byte's high nibble, as a byte 0..=15.
    unsafe fn high_nibbles(a: Self::I) -> Self::I;
    unsafe fn abs8(a: Self::I) -> Self::I;
    /// a with the sign of b per byte (0 where b is 0).
    unsafe fn sign8(a: Self::I, b: Self::I) -> Self::I;
    /// Eight bytes per tile at `at`, zero-extended into the row lanes.
    unsafe fn u8_rows(at: At) -> Self::I;
    /// Eight bytes per tile at `at`, sign-extended into the row lanes.
    unsafe fn i8_rows(at: At) -> Self::I;
    /// Sixteen bytes per tile at `at` (two a row), zero-extended to 16 bits: a row's lane
    /// holds its two values.
    unsafe fn u8_pairs(at: At) -> Self::I;
    /// Eight f16 bit patterns per tile at `at`, one a row, as f32.
    unsafe fn f16_rows(at: At) -> Self::F;
    unsafe fn prefetch(at: At, len: usize);

    unsafe fn fzero() -> Self::F;
    unsafe fn fsplat(v: f32) -> Self::F;
    unsafe fn fmul(a: Self::F, b: Self::F) -> Self::F;
    /// a·b + c.
    unsafe fn fmadd(a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    /// c − a·b.
    unsafe fn fnmadd(a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    unsafe fn to_f32(a: Self::I) -> Self::F;
    /// The [`Lanes::ROWS`] values to `out`.
    unsafe fn store(a: Self::F, out: *mut f32);
}

/// One tile's eight rows in 256-bit registers.
#[derive(Clone, Copy)]
pub struct Y8;

/// Two tiles' sixteen rows in 512-bit registers.
#[derive(Clone, Copy)]
pub struct Z16;

impl Lanes for Y8 {
    const ROWS: usize = 8;
    type I = __m256i;
    type F = __m256;

    #[inline(always)]
    unsafe fn zero() -> __m256i {
        _mm256_setzero_si256()
    }
    #[inline(always)]
    unsafe fn load(at: At) -> __m256i {
        _mm256_loadu_si256(at.at as *const __m256i)
    }
    #[inline(always)]
    unsafe fn broadcast4(p: *const u8) -> __m256i {
        _mm256_set1_epi32((p as *const i32).read_unaligned())
    }
    #[inline(always)]
    unsafe fn splat32(v: i32) -> __m256i {
        _mm256_set1_epi32(v)
    }
    #[inline(always)]
    unsafe fn splat16(v: i16) -> __m256i {
        _mm256_set1_epi16(v)
    }
    #[inline(always)]
    unsafe fn splat8(v: i8) -> __m256i {
        _mm256_set1_epi8(v)
    }
    #[inline(always)]
    unsafe fn and(a: __m256i, b: __m256i) -> __m256i {
        _mm256_and_si256(a, b)
    }
    #[inline(always)]
    unsafe fn or(a: __m256i, b: __m256i) -> __m256i {
        _mm256_or_si256(a, b)
    }
    #[inline(always)]
    unsafe fn xor(a: __m256i, b: __m256i) -> __m256i {
        _mm256_xor_si256(a, b)
    }
    #[inline(always)]
    unsafe fn srl16_4(a: __m256i) -> __m256i {
        _mm256_srli_epi16(a, 4)
    }
    #[inline(always)]
    unsafe fn srl16_2(a: __m256i) -> __m256i {
        _mm256_srli_epi16(a, 2)
    }
    #[inline(always)]
    unsafe fn sll16_4(a: __m256i) -> __m256i {
        _mm256_slli_epi16(a, 4)
    }
    #[inline(always)]
    unsafe fn sll16_2(a: __m256i) -> __m256i {
        _mm256_slli_epi16(a, 2)
    }
    #[inline(always)]
    unsafe fn sll32_16(a: __m256i) -> __m256i {
        _mm256_slli_epi32(a, 16)
    }
    #[inline(always)]
    unsafe fn add16(a: __m256i, b: __m256i) -> __m256i {
        _mm256_add_epi16(a, b)
    }
    #[inline(always)]
    unsafe fn add32(a: __m256i, b: __m256i) -> __m256i {
        _mm256_add_epi32(a, b)
    }
    #[inline(always)]
    unsafe fn sub32(a: __m256i, b: __m256i) -> __m256i {
        _mm256_sub_epi32(a, b)
    }
    #[inline(always)]
    unsafe fn sub8(a: __m256i, b: __m256i) -> __m256i {
        _mm256_sub_epi8(a, b)
    }
    #[inline(always)]
    unsafe fn mullo32(a: __m256i, b: __m256i) -> __m256i {
        _mm256_mullo_epi32(a, b)
    }
    #[inline(always)]
    unsafe fn madd16(a: __m256i, b: __m256i) -> __m256i {
        _mm256_madd_epi16(a, b)
    }
    #[inline(always)]
    unsafe fn maddubs(a: __m256i, b: __m256i) -> __m256i {
        _mm256_maddubs_epi16(a, b)
    }
    #[inline(always)]
    unsafe fn dpbusd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, a, b)
    }
    #[inline(always)]
    unsafe fn dpwssd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_dpwssd_epi32(acc, a, b)
    }
    #[inline(always)]
    unsafe fn high_nibbles(a: __m256i) -> __m256i {
        _mm256_and_si256(_mm256_srli_epi16(a, 4), _mm256_set1_epi8(0x0F))
    }
    #[inline(always)]
    unsafe fn abs8(a: __m256i) -> __m256i {
        _mm256_abs_epi8(a)
    }
    #[inline(always)]
    unsafe fn sign8(a: __m256i, b: __m256i) -> __m256i {
        _mm256_sign_epi8(a, b)
    }
    #[inline(always)]
    unsafe fn u8_rows(at: At) -> __m256i {
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(at.at as *const __m128i))
    }
    #[inline(always)]
    unsafe fn i8_rows(at: At) -> __m256i {
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(at.at as *const __m128i))
    }
    #[inline(always)]
    unsafe fn u8_pairs(at: At) -> __m256i {
        _mm256_cvtepu8_epi16(_mm_loadu_si128(at.at as *const __m128i))
    }
    #[inline(always)]
    unsafe fn f16_rows(at: At) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(at.at as *const __m128i))
    }
    #[inline(always)]
    unsafe fn prefetch(at: At, len: usize) {
        super::prefetch_ahead(at.at, at.ahead, len)
    }
    #[inline(always)]
    unsafe fn fzero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn fsplat(v: f32) -> __m256 {
        _mm256_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn fmul(a: __m256, b: __m256) -> __m256 {
        _mm256_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn fnmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fnmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn to_f32(a: __m256i) -> __m256 {
        _mm256_cvtepi32_ps(a)
    }
    #[inline(always)]
    unsafe fn store(a: __m256, out: *mut f32) {
        _mm256_storeu_ps(out, a)
    }
}

impl Z16 {
    /// The second tile's block beside the first's.
    #[inline(always)]
    fn second(at: At) -> *const u8 {
        at.at.wrapping_add(at.next)
    }

    /// Eight bytes of each tile, the first tile's low.
    #[inline(always)]
    unsafe fn eight_each(at: At) -> __m128i {
        _mm_unpacklo_epi64(
            _mm_loadl_epi64(at.at as *const __m128i),
            _mm_loadl_epi64(Self::second(at) as *const __m128i),
        )
    }

    /// Sixteen bytes of each tile, the first tile's low.
    #[inline(always)]
    unsafe fn sixteen_each(at: At) -> __m256i {
        _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128(at.at as *const __m128i)),
            _mm_loadu_si128(Self::second(at) as *const __m128i),
            1,
        )
    }
}

impl Lanes for Z16 {
    const ROWS: usize = 16;
    type I = __m512i;
    type F = __m512;

    #[inline(always)]
    unsafe fn zero() -> __m512i {
        _mm512_setzero_si512()
    }
    #[inline(always)]
    unsafe fn load(at: At) -> __m512i {
        _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256(at.at as *const __m256i)),
            _mm256_loadu_si256(Self::second(at) as *const __m256i),
            1,
        )
    }
    #[inline(always)]
    unsafe fn broadcast4(p: *const u8) -> __m512i {
        _mm512_set1_epi32((p as *const i32).read_unaligned())
    }
    #[inline(always)]
    unsafe fn splat32(v: i32) -> __m512i {
        _mm512_set1_epi32(v)
    }
    #[inline(always)]
    unsafe fn splat16(v: i16) -> __m512i {
        _mm512_set1_epi16(v)
    }
    #[inline(always)]
    unsafe fn splat8(v: i8) -> __m512i {
        _mm512_set1_epi8(v)
    }
    #[inline(always)]
    unsafe fn and(a: __m512i, b: __m512i) -> __m512i {
        _mm512_and_si512(a, b)
    }
    #[inline(always)]
    unsafe fn or(a: __m512i, b: __m512i) -> __m512i {
        _mm512_or_si512(a, b)
    }
    #[inline(always)]
    unsafe fn xor(a: __m512i, b: __m512i) -> __m512i {
        _mm512_xor_si512(a, b)
    }
    #[inline(always)]
    unsafe fn srl16_4(a: __m512i) -> __m512i {
        _mm512_srli_epi16(a, 4)
    }
    #[inline(always)]
    unsafe fn srl16_2(a: __m512i) -> __m512i {
        _mm512_srli_epi16(a, 2)
    }
    #[inline(always)]
    unsafe fn sll16_4(a: __m512i) -> __m512i {
        _mm512_slli_epi16(a, 4)
    }
    #[inline(always)]
    unsafe fn sll16_2(a: __m512i) -> __m512i {
        _mm512_slli_epi16(a, 2)
    }
    #[inline(always)]
    unsafe fn sll32_16(a: __m512i) -> __m512i {
        _mm512_slli_epi32(a, 16)
    }
    #[inline(always)]
    unsafe fn add16(a: __m512i, b: __m512i) -> __m512i {
        _mm512_add_epi16(a, b)
    }
    #[inline(always)]
    unsafe fn add32(a: __m512i, b: __m512i) -> __m512i {
        _mm512_add_epi32(a, b)
    }
    #[inline(always)]
    unsafe fn sub32(a: __m512i, b: __m512i) -> __m512i {
        _mm512_sub_epi32(a, b)
    }
    #[inline(always)]
    unsafe fn sub8(a: __m512i, b: __m512i) -> __m512i {
        _mm512_sub_epi8(a, b)
    }
    #[inline(always)]
    unsafe fn mullo32(a: __m512i, b: __m512i) -> __m512i {
        _mm512_mullo_epi32(a, b)
    }
    #[inline(always)]
    unsafe fn madd16(a: __m512i, b: __m512i) -> __m512i {
        _mm512_madd_epi16(a, b)
    }
    #[inline(always)]
    unsafe fn maddubs(a: __m512i, b: __m512i) -> __m512i {
        _mm512_maddubs_epi16(a, b)
    }
    #[inline(always)]
    unsafe fn dpbusd(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
        _mm512_dpbusd_epi32(acc, a, b)
    }
    #[inline(always)]
    unsafe fn dpwssd(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
        _mm512_dpwssd_epi32(acc, a, b)
    }
    #[inline(always)]
    unsafe fn high_nibbles(a: __m512i) -> __m512i {
        // One GFNI affine step: each byte's bits 4..8 to bits 0..4 (matrix byte 7 − i picks
        // the source of bit i), where a shift and a mask take two.
        _mm512_gf2p8affine_epi64_epi8(a, _mm512_set1_epi64(0x1020_4080_0000_0000), 0)
    }
    #[inline(always)]
    unsafe fn abs8(a: __m512i) -> __m512i {
        _mm512_abs_epi8(a)
    }
    #[inline(always)]
    unsafe fn sign8(a: __m512i, b: __m512i) -> __m512i {
        // AVX-512 has no `vpsignb`: negate where b < 0, zero where b = 0.
        let negated = _mm512_mask_sub_epi8(a, _mm512_movepi8_mask(b), _mm512_setzero_si512(), a);
        _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(b, b), negated)
    }
    #[inline(always)]
    unsafe fn u8_rows(at: At) -> __m512i {
        _mm512_cvtepu8_epi32(Self::eight_each(at))
    }
    #[inline(always)]
    unsafe fn i8_rows(at: At) -> __m512i {
        _mm512_cvtepi8_epi32(Self::eight_each(at))
    }
    #[inline(always)]
    unsafe fn u8_pairs(at: At) -> __m512i {
        _mm512_cvtepu8_epi16(Self::sixteen_each(at))
    }
    #[inline(always)]
    unsafe fn f16_rows(at: At) -> __m512 {
        _mm512_cvtph_ps(Self::sixteen_each(at))
    }
    #[inline(always)]
    unsafe fn prefetch(at: At, len: usize) {
        super::prefetch_ahead(at.at, at.ahead, len);
        super::prefetch_ahead(Self::second(at), at.ahead, len);
    }
    #[inline(always)]
    unsafe fn fzero() -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn fsplat(v: f32) -> __m512 {
        _mm512_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn fmul(a: __m512, b: __m512) -> __m512 {
        _mm512_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn fnmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fnmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn to_f32(a: __m512i) -> __m512 {
        _mm512_cvtepi32_ps(a)
    }
    #[inline(always)]
    unsafe fn store(a: __m512, out: *mut f32) {
        _mm512_storeu_ps(out, a)
    }
}
