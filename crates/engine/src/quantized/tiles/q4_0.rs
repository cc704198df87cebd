//! Q4_0 in tiles of eight rows, against Q8_0 activations with their sums (Q8_0S). A tile's block holds, for its eight
//! rows: d (f16 bits), then the nibbles by [quarter of 8 values][row][4 bytes], byte k holding
//! values 8q + k (low nibble) and 8q + 4 + k (high) of the block of 32. A weight is
//! d·(q − 8).

use super::TILE_ROWS;

/// Bytes of one Q4_0 block: d (f16), 16 bytes of nibbles (value j < 16 low, j + 16 high).
pub const BLOCK_BYTES: usize = 18;
/// Bytes of one Q8_0S activation block: d (an f16 value as f32), Σ q (i32), 32 × i8.
pub const ACT_BYTES: usize = crate::quantized::activations::Q8_0S_BYTES;
/// Bytes of one block of a tile.
pub const TB_BYTES: usize = 16 + 128;
const D: usize = 0;
const QS: usize = 16;
const _: () = assert!(TB_BYTES == TILE_ROWS * BLOCK_BYTES);

/// Fill one tile block from its eight rows' blocks.
pub fn pack(blocks: [&[u8]; TILE_ROWS], tb: &mut [u8]) {
    for (r, b) in blocks.iter().enumerate() {
        tb[D + 2 * r..D + 2 * r + 2].copy_from_slice(&b[0..2]);
        super::put_nibbles(&mut tb[QS..], r, |v| super::block_nibble(&b[2..], v));
    }
}

/// Row r's original block, from a tile block.
#[cfg(test)]
pub fn unpack(tb: &[u8], r: usize, out: &mut [u8]) {
    out[0..2].copy_from_slice(&tb[D + 2 * r..D + 2 * r + 2]);
    super::block_nibbles(&tb[QS..], r, &mut out[2..]);
}

/// The plain twin: per row and block, the exact Σ (q − 8)·x, then one multiply-add by
/// d_w·d_x.
pub fn plain(tile: &[u8], blocks: usize, x: &[u8]) -> [f32; TILE_ROWS] {
    super::plain_rows(tile, blocks, (TB_BYTES, ACT_BYTES), x, |tb, x, r, acc| {
        let sumi: i32 = (0..32)
            .map(|v| {
                (super::nibble(&tb[QS..], r, v) as i32 - 8) * x[super::ACT_QS + v] as i8 as i32
            })
            .sum();
        (super::f16_at(tb, D + 2 * r) * super::f32_at(x, 0)).mul_add(sumi as f32, acc)
    })
}

#[cfg(simd_kernels)]
pub mod simd {
    use super::{ACT_BYTES, D, QS, TB_BYTES};

    kernels!(block, TB_BYTES, ACT_BYTES);

    /// One block: Σ (q − 8)·x per row, then d_w·d_x·Σ. AVX2 takes the nibbles less 8 as
    /// signed bytes and multiplies |w| by x with w's sign (eight `maddubs` add in 16 bits, at
    /// most 16 products of 8 × 127, before one widening add). VNNI multiplies the nibbles as
    /// they are, in two chains (low and high: its latency), and takes 8·Σ x off with the
    /// block's sum.
    #[inline(always)]
    unsafe fn block<L: Lanes, const R: usize, const VNNI: bool>(
        t: At,
        x: &[*const u8; R],
        acc: &mut [L::F; R],
    ) {
        L::prefetch(t, TB_BYTES);
        let (m4, eight) = (L::splat8(0x0F), L::splat8(8));
        let mut sums = [L::zero(); R];
        let mut highs = [L::zero(); R];
        for quarter in 0..4 {
            let bits = L::load(t.add(QS + 32 * quarter));
            let lo = L::and(bits, m4);
            let hi = L::high_nibbles(bits);
            let xq = |r: usize, i: usize| L::broadcast4(x[r].add(super::super::ACT_QS + 4 * i));
            if VNNI {
                for r in 0..R {
                    sums[r] = L::dpbusd(sums[r], lo, xq(r, 2 * quarter));
                    highs[r] = L::dpbusd(highs[r], hi, xq(r, 2 * quarter + 1));
                }
            } else {
                let (lo, hi) = (L::sub8(lo, eight), L::sub8(hi, eight));
                let (alo, ahi) = (L::abs8(lo), L::abs8(hi));
                for (r, sums) in sums.iter_mut().enumerate() {
                    let sl = L::sign8(xq(r, 2 * quarter), lo);
                    let sh = L::sign8(xq(r, 2 * quarter + 1), hi);
                    let s = L::add16(*sums, L::maddubs(alo, sl));
                    *sums = L::add16(s, L::maddubs(ahi, sh));
                }
            }
        }
        let d = L::f16_rows(t.add(D));
        for r in 0..R {
            let sumi = if VNNI {
                let offset = L::splat32(8 * super::super::act_sum(x[r]));
                L::sub32(L::add32(sums[r], highs[r]), offset)
            } else {
                super::super::widened::<L, false>(sums[r])
            };
            acc[r] = super::super::add_scaled::<L>(acc[r], d, super::super::act_scale(x[r]), sumi);
        }
    }
}
