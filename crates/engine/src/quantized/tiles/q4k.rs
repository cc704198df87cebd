//! Q4_K in tiles of eight rows. A tile's super-block holds, for its eight rows: d and dmin
//! (f16 bits), the 6-bit scales by [sub-block][row], the mins by [sub-block pair][row][2], and
//! the nibbles by [sub-block][quarter][row][4 bytes], byte k of a quarter q holding values
//! 8q + k (low nibble) and 8q + 4 + k (high) of its sub-block of 32.

use super::TILE_ROWS;
use crate::quantized::k_rows::{Q4K_BYTES, X_BYTES};

/// Bytes of one super-block of a tile, and where its fields lie.
pub const SB_BYTES: usize = 16 + 16 + 64 + 64 + 1024;
const D: usize = 0;
const DMIN: usize = 16;
pub(super) const SCALES: usize = 32;
const MINS: usize = 96;
pub(super) const QS: usize = 160;
const _: () = assert!(QS + 1024 == SB_BYTES && SB_BYTES.is_multiple_of(8));

/// One Q4_K super-block's fields, unpacked.
struct Unpacked {
    d: u16,
    dmin: u16,
    scales: [u8; 8],
    mins: [u8; 8],
    /// The 256 values, 0..=15, in order.
    q: [u8; 256],
}

impl Unpacked {
    fn read(b: &[u8]) -> Self {
        let d = u16::from_le_bytes([b[0], b[1]]);
        let dmin = u16::from_le_bytes([b[2], b[3]]);
        let s = &b[4..16];
        let (mut scales, mut mins) = ([0u8; 8], [0u8; 8]);
        // ggml's get_scale_min_k4.
        for j in 0..8 {
            (scales[j], mins[j]) = if j < 4 {
                (s[j] & 63, s[j + 4] & 63)
            } else {
                (
                    (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
                    (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
                )
            };
        }
        let mut q = [0u8; 256];
        for (g, bytes) in b[16..Q4K_BYTES].chunks_exact(32).enumerate() {
            for (l, &byte) in bytes.iter().enumerate() {
                q[64 * g + l] = byte & 0xF;
                q[64 * g + 32 + l] = byte >> 4;
            }
        }
        Self {
            d,
            dmin,
            scales,
            mins,
            q,
        }
    }

    /// The block back in Q4_K's layout (ggml's quantize_row_q4_K packing).
    #[cfg(test)]
    fn write(&self, b: &mut [u8]) {
        b[0..2].copy_from_slice(&self.d.to_le_bytes());
        b[2..4].copy_from_slice(&self.dmin.to_le_bytes());
        let s = &mut b[4..16];
        s.fill(0);
        for j in 0..8 {
            let (ls, lm) = (self.scales[j], self.mins[j]);
            if j < 4 {
                s[j] = ls;
                s[j + 4] = lm;
            } else {
                s[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
                s[j - 4] |= (ls >> 4) << 6;
                s[j] |= (lm >> 4) << 6;
            }
        }
        for (g, bytes) in b[16..Q4K_BYTES].chunks_exact_mut(32).enumerate() {
            for (l, byte) in bytes.iter_mut().enumerate() {
                *byte = self.q[64 * g + l] | (self.q[64 * g + 32 + l] << 4);
            }
        }
    }
}

/// Fill one tile super-block from its eight rows' blocks.
pub fn pack(blocks: [&[u8]; TILE_ROWS], sb: &mut [u8]) {
    for (r, block) in blocks.iter().enumerate() {
        let u = Unpacked::read(block);
        sb[D + 2 * r..D + 2 * r + 2].copy_from_slice(&u.d.to_le_bytes());
        sb[DMIN + 2 * r..DMIN + 2 * r + 2].copy_from_slice(&u.dmin.to_le_bytes());
        for s in 0..8 {
            sb[SCALES + 8 * s + r] = u.scales[s];
            sb[MINS + 16 * (s / 2) + 2 * r + s % 2] = u.mins[s];
            super::put_nibbles(&mut sb[QS + 128 * s..], r, |v| u.q[32 * s + v]);
        }
    }
}

/// Row r's original block, from a tile super-block.
#[cfg(test)]
pub fn unpack(sb: &[u8], r: usize, out: &mut [u8]) {
    let u = Unpacked {
        d: u16::from_le_bytes([sb[D + 2 * r], sb[D + 2 * r + 1]]),
        dmin: u16::from_le_bytes([sb[DMIN + 2 * r], sb[DMIN + 2 * r + 1]]),
        scales: std::array::from_fn(|s| sb[SCALES + 8 * s + r]),
        mins: std::array::from_fn(|s| sb[MINS + 16 * (s / 2) + 2 * r + s % 2]),
        q: std::array::from_fn(|k| super::nibble(&sb[QS + 128 * (k / 32)..], r, k % 32)),
    };
    u.write(out);
}

/// The plain twin of the SIMD kernels: the same exact integer sums and the same two float
/// multiply-adds per super-block, so the same bits.
pub fn plain(tile: &[u8], blocks: usize, x: &[u8]) -> [f32; TILE_ROWS] {
    super::plain_rows(tile, blocks, (SB_BYTES, X_BYTES), x, |sb, x, r, acc| {
        let xd = f32::from_le_bytes([x[0], x[1], x[2], x[3]]);
        let bsum = |j: usize| i16::from_le_bytes([x[260 + 2 * j], x[261 + 2 * j]]) as i32;
        let (mut sumi, mut summ) = (0i32, 0i32);
        for s in 0..8 {
            let dot: i32 = (0..32)
                .map(|v| {
                    super::nibble(&sb[QS + 128 * s..], r, v) as i32 * x[4 + 32 * s + v] as i8 as i32
                })
                .sum();
            sumi += sb[SCALES + 8 * s + r] as i32 * dot;
            summ +=
                sb[MINS + 16 * (s / 2) + 2 * r + s % 2] as i32 * (bsum(2 * s) + bsum(2 * s + 1));
        }
        let acc = (super::f16_at(sb, D + 2 * r) * xd).mul_add(sumi as f32, acc);
        (-(super::f16_at(sb, DMIN + 2 * r) * xd)).mul_add(summ as f32, acc)
    })
}

#[cfg(simd_kernels)]
pub mod simd {
    use super::{D, DMIN, MINS, QS, SB_BYTES, SCALES, X_BYTES};
    use std::arch::x86_64::*;

    kernels!(block, SB_BYTES, X_BYTES);

    /// One super-block: each 32-byte load of nibbles is split once and serves every row.
    /// Per row and sub-block, AVX2's eight `maddubs` sums add up in 16 bits (at most 16
    /// products of 15 × 128: no overflow) before one multiply by the eight rows' scales (in
    /// both 16-bit halves of each lane); VNNI's sum in 32 bits, in two chains (low and high
    /// nibbles: one dependent chain per row stalls on `vpdpbusd`'s latency), then each chain
    /// meets the scales in a `vpdpwssd` (where packing the two chains into one register cost
    /// two instructions a row).
    #[inline(always)]
    unsafe fn block<L: Lanes, const R: usize, const VNNI: bool>(
        t: At,
        x: &[*const u8; R],
        acc: &mut [L::F; R],
    ) {
        L::prefetch(t, QS);
        let m4 = L::splat8(0x0F);
        let summ = mins_term::<L, R>(t, x);
        let mut sumi = [L::zero(); R];
        for s in 0..8 {
            L::prefetch(t.add(QS + 128 * s), 128);
            let mut sums = [L::zero(); R];
            let mut highs = [L::zero(); R];
            for quarter in 0..4 {
                let bits = L::load(t.add(QS + 32 * (4 * s + quarter)));
                let lo = L::and(bits, m4);
                let hi = L::high_nibbles(bits);
                for r in 0..R {
                    let q8 = x[r].add(4 + 32 * s + 8 * quarter);
                    let (xl, xh) = (L::broadcast4(q8), L::broadcast4(q8.add(4)));
                    if VNNI {
                        sums[r] = L::dpbusd(sums[r], lo, xl);
                        highs[r] = L::dpbusd(highs[r], hi, xh);
                    } else {
                        let a = L::add16(sums[r], L::maddubs(lo, xl));
                        sums[r] = L::add16(a, L::maddubs(hi, xh));
                    }
                }
            }
            // The scales zero-extended (a lane's low 16 bits its row's scale, its high 16 bits
            // zero) for VNNI, in both halves for AVX2.
            let sc = L::u8_rows(t.add(SCALES + 8 * s));
            let sc = if VNNI { sc } else { L::or(sc, L::sll32_16(sc)) };
            for r in 0..R {
                sumi[r] = if VNNI {
                    // Each chain's sum fits 16 bits (16 products of 15 × ±128), so the low
                    // half of its lane is the whole sum: one `vpdpwssd` per chain takes it
                    // times the scale (the high half meets a zero).
                    L::dpwssd(L::dpwssd(sumi[r], sums[r], sc), highs[r], sc)
                } else {
                    L::add32(sumi[r], L::madd16(sums[r], sc))
                };
            }
        }
        accumulate::<L, R>(t, x, &sumi, &summ, acc);
    }

    /// The mins' term of one super-block for each activation row: Σ_s min(row, s)·(sum of
    /// sub-block s's activation quants), the sums paired as the mins are.
    #[inline(always)]
    pub(in crate::quantized::tiles) unsafe fn mins_term<L: Lanes, const R: usize>(
        t: At,
        x: &[*const u8; R],
    ) -> [L::I; R] {
        let mut pairs = [[0i32; 4]; R];
        for r in 0..R {
            let bsums = _mm256_loadu_si256(x[r].add(260) as *const __m256i);
            let bs = _mm_hadd_epi16(
                _mm256_castsi256_si128(bsums),
                _mm256_extracti128_si256(bsums, 1),
            );
            _mm_storeu_si128(pairs[r].as_mut_ptr() as *mut __m128i, bs);
        }
        let mut summ = [L::zero(); R];
        #[allow(clippy::needless_range_loop)] // p picks the mins' bytes and each row's pair
        for p in 0..4 {
            let mins = L::u8_pairs(t.add(MINS + 16 * p));
            for r in 0..R {
                let pair = L::splat32(pairs[r][p]);
                summ[r] = L::add32(summ[r], L::madd16(mins, pair));
            }
        }
        summ
    }

    /// A super-block's two float multiply-adds per row: d·xd·sumi, then − dmin·xd·summ.
    #[inline(always)]
    pub(in crate::quantized::tiles) unsafe fn accumulate<L: Lanes, const R: usize>(
        t: At,
        x: &[*const u8; R],
        sumi: &[L::I; R],
        summ: &[L::I; R],
        acc: &mut [L::F; R],
    ) {
        let d = L::f16_rows(t.add(D));
        let dmin = L::f16_rows(t.add(DMIN));
        for r in 0..R {
            let dx = (x[r] as *const f32).read_unaligned();
            acc[r] = super::super::add_scaled::<L>(acc[r], d, dx, sumi[r]);
            acc[r] = L::fnmadd(L::fmul(dmin, L::fsplat(dx)), L::to_f32(summ[r]), acc[r]);
        }
    }
}
