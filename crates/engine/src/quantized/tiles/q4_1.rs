//! Q4_1 in tiles of eight rows, against Q8_1 activations in 32-bit fields (Q8_1F). A tile's block holds, for its eight
//! rows: d and m (f16 bits), then the nibbles by [quarter of 8 values][row][4 bytes], byte k
//! holding values 8q + k (low nibble) and 8q + 4 + k (high) of the block of 32.

use super::TILE_ROWS;

/// Bytes of one Q4_1 block: d, m (f16), 16 bytes of nibbles (value j < 16 low, j + 16 high).
pub const BLOCK_BYTES: usize = 20;
/// Bytes of one Q8_1F activation block: d, d·Σq (f16 values as f32), 32 × i8.
pub const ACT_BYTES: usize = crate::quantized::activations::Q8_1F_BYTES;
/// Bytes of one block of a tile.
pub const TB_BYTES: usize = 16 + 16 + 128;
pub(super) const D: usize = 0;
pub(super) const M: usize = 16;
pub(super) const QS: usize = 32;
const _: () = assert!(TB_BYTES == TILE_ROWS * BLOCK_BYTES);

/// Fill one tile block from its eight rows' blocks.
pub fn pack(blocks: [&[u8]; TILE_ROWS], tb: &mut [u8]) {
    for (r, b) in blocks.iter().enumerate() {
        tb[D + 2 * r..D + 2 * r + 2].copy_from_slice(&b[0..2]);
        tb[M + 2 * r..M + 2 * r + 2].copy_from_slice(&b[2..4]);
        super::put_nibbles(&mut tb[QS..], r, |v| super::block_nibble(&b[4..], v));
    }
}

/// Row r's original block, from a tile block.
#[cfg(test)]
pub fn unpack(tb: &[u8], r: usize, out: &mut [u8]) {
    out[0..2].copy_from_slice(&tb[D + 2 * r..D + 2 * r + 2]);
    out[2..4].copy_from_slice(&tb[M + 2 * r..M + 2 * r + 2]);
    super::block_nibbles(&tb[QS..], r, &mut out[4..]);
}

/// The plain twin: per row and block, the exact Σ q·x, then d_w·d_x·Σ and m_w·s_x added in
/// that order.
pub fn plain(tile: &[u8], blocks: usize, x: &[u8]) -> [f32; TILE_ROWS] {
    super::plain_rows(tile, blocks, (TB_BYTES, ACT_BYTES), x, |tb, x, r, acc| {
        let sumi: i32 = (0..32)
            .map(|v| super::nibble(&tb[QS..], r, v) as i32 * x[super::ACT_QS + v] as i8 as i32)
            .sum();
        let acc = (super::f16_at(tb, D + 2 * r) * super::f32_at(x, 0)).mul_add(sumi as f32, acc);
        super::f16_at(tb, M + 2 * r).mul_add(super::f32_at(x, 4), acc)
    })
}

#[cfg(simd_kernels)]
pub mod simd {
    use super::{ACT_BYTES, D, M, QS, TB_BYTES};

    kernels!(block, TB_BYTES, ACT_BYTES);

    /// Activation bytes 4i..4i + 4 of a block, in every lane.
    #[inline(always)]
    unsafe fn x4<L: Lanes>(x: *const u8, i: usize) -> L::I {
        L::broadcast4(x.add(super::super::ACT_QS + 4 * i))
    }

    /// One block: Σ q·x per row (AVX2: eight `maddubs` add in 16 bits, at most 16 products of
    /// 15 × 127, before one widening add), then d_w·d_x·Σ and m_w·s_x.
    #[inline(always)]
    unsafe fn block<L: Lanes, const R: usize, const VNNI: bool>(
        t: At,
        x: &[*const u8; R],
        acc: &mut [L::F; R],
    ) {
        L::prefetch(t, TB_BYTES);
        let m4 = L::splat8(0x0F);
        let mut sums = [L::zero(); R];
        for quarter in 0..4 {
            let bits = L::load(t.add(QS + 32 * quarter));
            let lo = L::and(bits, m4);
            let hi = L::high_nibbles(bits);
            for r in 0..R {
                let (xl, xh) = (x4::<L>(x[r], 2 * quarter), x4::<L>(x[r], 2 * quarter + 1));
                sums[r] = if VNNI {
                    L::dpbusd(L::dpbusd(sums[r], lo, xl), hi, xh)
                } else {
                    let s = L::add16(sums[r], L::maddubs(lo, xl));
                    L::add16(s, L::maddubs(hi, xh))
                };
            }
        }
        let d = L::f16_rows(t.add(D));
        let m = L::f16_rows(t.add(M));
        for r in 0..R {
            let sumi = super::super::widened::<L, VNNI>(sums[r]);
            let (dx, sx) = (
                super::super::act_scale(x[r]),
                super::super::act_scale(x[r].add(4)),
            );
            acc[r] = super::super::add_scaled::<L>(acc[r], d, dx, sumi);
            acc[r] = L::fmadd(m, L::fsplat(sx), acc[r]);
        }
    }
}
