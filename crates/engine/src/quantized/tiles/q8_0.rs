//! Q8_0 in tiles of eight rows, against Q8_0 activations with their sums (Q8_0S). A tile's
//! block holds, for its eight rows: d (f16 bits), then the quants by [quarter of 4
//! values][row][4 bytes].

use super::TILE_ROWS;

/// Bytes of one Q8_0 block: d (f16), 32 × i8.
pub const BLOCK_BYTES: usize = 34;
/// Bytes of one Q8_0S activation block: d (an f16 value as f32), Σ q (i32), 32 × i8.
pub const ACT_BYTES: usize = crate::quantized::activations::Q8_0S_BYTES;
/// Bytes of one block of a tile.
pub const TB_BYTES: usize = 16 + 256;
const D: usize = 0;
const QS: usize = 16;
const _: () = assert!(TB_BYTES == TILE_ROWS * BLOCK_BYTES);

/// Fill one tile block from its eight rows' blocks.
pub fn pack(blocks: [&[u8]; TILE_ROWS], tb: &mut [u8]) {
    for (r, b) in blocks.iter().enumerate() {
        tb[D + 2 * r..D + 2 * r + 2].copy_from_slice(&b[0..2]);
        for quarter in 0..8 {
            tb[QS + 32 * quarter + 4 * r..][..4].copy_from_slice(&b[2 + 4 * quarter..][..4]);
        }
    }
}

/// Value v (0..32) of row r in a tile block.
fn value(tb: &[u8], r: usize, v: usize) -> i8 {
    tb[QS + 32 * (v / 4) + 4 * r + v % 4] as i8
}

/// Row r's original block, from a tile block.
#[cfg(test)]
pub fn unpack(tb: &[u8], r: usize, out: &mut [u8]) {
    out[0..2].copy_from_slice(&tb[D + 2 * r..D + 2 * r + 2]);
    for v in 0..32 {
        out[2 + v] = value(tb, r, v) as u8;
    }
}

/// The plain twin: per row and block, the exact Σ q_w·q_x, then one multiply-add by d_w·d_x.
pub fn plain(tile: &[u8], blocks: usize, x: &[u8]) -> [f32; TILE_ROWS] {
    super::plain_rows(tile, blocks, (TB_BYTES, ACT_BYTES), x, |tb, x, r, acc| {
        let sumi: i32 = (0..32)
            .map(|v| value(tb, r, v) as i32 * x[super::ACT_QS + v] as i8 as i32)
            .sum();
        (super::f16_at(tb, D + 2 * r) * super::f32_at(x, 0)).mul_add(sumi as f32, acc)
    })
}

#[cfg(simd_kernels)]
pub mod simd {
    use super::{ACT_BYTES, D, QS, TB_BYTES};

    kernels!(block, TB_BYTES, ACT_BYTES);

    /// One block: Σ q_w·q_x per row, then d_w·d_x·Σ. AVX2 multiplies |w| by x with w's sign
    /// (the activations stay within ±127, so no product saturates; it widens per load). VNNI
    /// multiplies the weights offset to unsigned, w + 128, in two chains (its latency), and
    /// takes 128·Σ x off with the block's sum.
    #[inline(always)]
    unsafe fn block<L: Lanes, const R: usize, const VNNI: bool>(
        t: At,
        x: &[*const u8; R],
        acc: &mut [L::F; R],
    ) {
        L::prefetch(t, TB_BYTES);
        let mut sumi = [L::zero(); R];
        let mut odd = [L::zero(); R];
        for quarter in 0..8 {
            let w = L::load(t.add(QS + 32 * quarter));
            let xq = |r: usize| L::broadcast4(x[r].add(super::super::ACT_QS + 4 * quarter));
            if VNNI {
                let wu = L::xor(w, L::splat8(-128));
                for r in 0..R {
                    let chain = if quarter % 2 == 0 {
                        &mut sumi[r]
                    } else {
                        &mut odd[r]
                    };
                    *chain = L::dpbusd(*chain, wu, xq(r));
                }
            } else {
                let aw = L::abs8(w);
                for (r, sumi) in sumi.iter_mut().enumerate() {
                    let sx = L::sign8(xq(r), w);
                    let p = L::madd16(L::maddubs(aw, sx), L::splat16(1));
                    *sumi = L::add32(*sumi, p);
                }
            }
        }
        let d = L::f16_rows(t.add(D));
        for r in 0..R {
            if VNNI {
                let offset = 128 * super::super::act_sum(x[r]);
                sumi[r] = L::sub32(L::add32(sumi[r], odd[r]), L::splat32(offset));
            }
            acc[r] =
                super::super::add_scaled::<L>(acc[r], d, super::super::act_scale(x[r]), sumi[r]);
        }
    }
}
