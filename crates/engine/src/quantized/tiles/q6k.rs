//! Q6_K in tiles of eight rows. A tile's super-block holds, for its eight rows: d (f16 bits),
//! the sixteen scales' i8 by [sub-block][row], then per sub-block of sixteen values 96 bytes:
//! the low nibbles of its two quarters as Q4_K's tiles hold them ([quarter][row][4 bytes]:
//! byte k holds values 8q + k and 8q + 4 + k) and its high two bits by [row][4 bytes] (bits
//! 2p..2p + 2 of byte k: value 4p + k of the sub-block), so the kernel reads one stream. The values stay unsigned (0..=63); the −32 of Q6_K comes off each sub-block's
//! sum through the activations' sums of sixteen, as candle's kernel does.

use super::TILE_ROWS;
use crate::quantized::k_rows::{Q6K_BYTES, X_BYTES};

/// Bytes of one super-block of a tile.
pub const SB_BYTES: usize = 16 + 128 + 1024 + 512;
const D: usize = 0;
const SCALES: usize = 16;
/// The quants, sub-block by sub-block: 96 bytes each, read in one sequential stream.
const Q: usize = 144;
const _: () = assert!(Q + 16 * 96 == SB_BYTES && SB_BYTES == TILE_ROWS * Q6K_BYTES);

/// Where a quarter's (eight values') low nibbles start: the sub-block's first 64 bytes.
const fn ql(quarter: usize) -> usize {
    Q + 96 * (quarter / 2) + 32 * (quarter % 2)
}

/// Where sub-block s's high bits start: its last 32 bytes.
const fn qh(s: usize) -> usize {
    Q + 96 * s + 64
}

/// One Q6_K super-block's fields, unpacked.
struct Unpacked {
    d: u16,
    scales: [i8; 16],
    /// The 256 values, 0..=63 (the stored value, before Q6_K's −32), in order.
    q: [u8; 256],
}

impl Unpacked {
    /// ggml's dequantize_row_q6_K layout: 128 bytes of low nibbles, 64 of high bit pairs,
    /// 16 scales, d.
    fn read(b: &[u8]) -> Self {
        let (ql, qh) = (&b[..128], &b[128..192]);
        let mut q = [0u8; 256];
        for n in 0..2 {
            for l in 0..32 {
                let (lo, hi, h) = (ql[64 * n + l], ql[64 * n + l + 32], qh[32 * n + l]);
                q[128 * n + l] = (lo & 0xF) | ((h & 3) << 4);
                q[128 * n + l + 32] = (hi & 0xF) | (((h >> 2) & 3) << 4);
                q[128 * n + l + 64] = (lo >> 4) | (((h >> 4) & 3) << 4);
                q[128 * n + l + 96] = (hi >> 4) | (((h >> 6) & 3) << 4);
            }
        }
        Self {
            d: u16::from_le_bytes([b[208], b[209]]),
            scales: std::array::from_fn(|i| b[192 + i] as i8),
            q,
        }
    }

    #[cfg(test)]
    fn write(&self, b: &mut [u8]) {
        b.fill(0);
        for n in 0..2 {
            for l in 0..32 {
                let v = |k: usize| self.q[128 * n + l + k];
                b[64 * n + l] = (v(0) & 0xF) | ((v(64) & 0xF) << 4);
                b[64 * n + l + 32] = (v(32) & 0xF) | ((v(96) & 0xF) << 4);
                b[128 + 32 * n + l] =
                    (v(0) >> 4) | ((v(32) >> 4) << 2) | ((v(64) >> 4) << 4) | ((v(96) >> 4) << 6);
            }
        }
        for (i, s) in self.scales.iter().enumerate() {
            b[192 + i] = *s as u8;
        }
        b[208..210].copy_from_slice(&self.d.to_le_bytes());
    }
}

/// Fill one tile super-block from its eight rows' blocks.
pub fn pack(blocks: [&[u8]; TILE_ROWS], sb: &mut [u8]) {
    for (r, block) in blocks.iter().enumerate() {
        let u = Unpacked::read(block);
        sb[D + 2 * r..D + 2 * r + 2].copy_from_slice(&u.d.to_le_bytes());
        for s in 0..16 {
            sb[SCALES + 8 * s + r] = u.scales[s] as u8;
            let mut high = [0u8; 4];
            for (p, v) in u.q[16 * s..16 * s + 16].chunks_exact(4).enumerate() {
                for k in 0..4 {
                    high[k] |= (v[k] >> 4) << (2 * p);
                }
            }
            sb[qh(s) + 4 * r..][..4].copy_from_slice(&high);
        }
        for quarter in 0..32 {
            let v = &u.q[8 * quarter..];
            for k in 0..4 {
                sb[ql(quarter) + 4 * r + k] = (v[k] & 0xF) | ((v[4 + k] & 0xF) << 4);
            }
        }
    }
}

/// Row r's original block, from a tile super-block.
#[cfg(test)]
pub fn unpack(sb: &[u8], r: usize, out: &mut [u8]) {
    let u = Unpacked {
        d: u16::from_le_bytes([sb[D + 2 * r], sb[D + 2 * r + 1]]),
        scales: std::array::from_fn(|s| sb[SCALES + 8 * s + r] as i8),
        q: std::array::from_fn(|v| value(sb, r, v)),
    };
    u.write(out);
}

/// Value v (0..256, unsigned) of row r in a tile's super-block.
fn value(sb: &[u8], r: usize, v: usize) -> u8 {
    let (quarter, i) = (v / 8, v % 8);
    let byte = sb[ql(quarter) + 4 * r + i % 4];
    let low = if i < 4 { byte & 0xF } else { byte >> 4 };
    let (s, w) = (v / 16, v % 16);
    let high = (sb[qh(s) + 4 * r + w % 4] >> (2 * (w / 4))) & 3;
    low | (high << 4)
}

/// The plain twin of the SIMD kernels: per row, Σ_s scale·(Σ q·x − 32·Σ x) exactly, then one
/// float multiply-add per super-block.
pub fn plain(tile: &[u8], blocks: usize, x: &[u8]) -> [f32; TILE_ROWS] {
    super::plain_rows(tile, blocks, (SB_BYTES, X_BYTES), x, |sb, x, r, acc| {
        let xd = f32::from_le_bytes([x[0], x[1], x[2], x[3]]);
        let bsum = |s: usize| i16::from_le_bytes([x[260 + 2 * s], x[261 + 2 * s]]) as i32;
        let mut sumi = 0i32;
        for s in 0..16 {
            let dot: i32 = (16 * s..16 * s + 16)
                .map(|v| value(sb, r, v) as i32 * x[4 + v] as i8 as i32)
                .sum();
            sumi += sb[SCALES + 8 * s + r] as i8 as i32 * (dot - 32 * bsum(s));
        }
        (super::f16_at(sb, D + 2 * r) * xd).mul_add(sumi as f32, acc)
    })
}

#[cfg(simd_kernels)]
pub mod simd {
    use super::{qh, ql, D, Q, SB_BYTES, SCALES, X_BYTES};

    /// The four 4-value chunks of sub-block s of a tile super-block, as unsigned bytes (each
    /// lane a row's four values).
    #[inline(always)]
    unsafe fn sub_block<L: Lanes>(t: At, s: usize) -> [L::I; 4] {
        let m4 = L::splat8(0x0F);
        let m2 = L::splat8(0x30);
        let high_bits = L::load(t.add(qh(s)));
        // Bits 2p, 2p + 1 of each byte to bits 4, 5 (16-bit shifts: the mask drops what
        // crosses a byte).
        let high = [
            L::and(L::sll16_4(high_bits), m2),
            L::and(L::sll16_2(high_bits), m2),
            L::and(high_bits, m2),
            L::and(L::srl16_2(high_bits), m2),
        ];
        let a = L::load(t.add(ql(2 * s)));
        let b = L::load(t.add(ql(2 * s + 1)));
        [
            L::or(L::and(a, m4), high[0]),
            L::or(L::and(L::srl16_4(a), m4), high[1]),
            L::or(L::and(b, m4), high[2]),
            L::or(L::and(L::srl16_4(b), m4), high[3]),
        ]
    }

    /// Activation bytes 4c..4c + 4 of sub-block s, in every lane.
    #[inline(always)]
    unsafe fn x4<L: Lanes>(x: *const u8, s: usize, c: usize) -> L::I {
        L::broadcast4(x.add(4 + 16 * s + 4 * c))
    }

    /// 32 × sub-block s's activation sum, in every lane.
    #[inline(always)]
    unsafe fn offset(x: *const u8, s: usize) -> i32 {
        32 * (x.add(260 + 2 * s) as *const i16).read_unaligned() as i32
    }

    /// The super-block's float multiply-add per row.
    #[inline(always)]
    unsafe fn accumulate<L: Lanes, const R: usize>(
        t: At,
        x: &[*const u8; R],
        sumi: &[L::I; R],
        acc: &mut [L::F; R],
    ) {
        let d = L::f16_rows(t.add(D));
        for r in 0..R {
            let dx = (x[r] as *const f32).read_unaligned();
            acc[r] = super::super::add_scaled::<L>(acc[r], d, dx, sumi[r]);
        }
    }

    kernels!(block, SB_BYTES, X_BYTES);

    /// One super-block. Per row and sub-block, AVX2's `maddubs` sums add in 16 bits two at a
    /// time (at most 4 products of 63 × 128) before each multiply by the scales (in both
    /// 16-bit halves of each lane), and 32·scale·Σx comes off through a 16·Σx pair; VNNI's
    /// start from −32·Σx, sum in 32 bits, then one multiply.
    #[inline(always)]
    unsafe fn block<L: Lanes, const R: usize, const VNNI: bool>(
        t: At,
        x: &[*const u8; R],
        acc: &mut [L::F; R],
    ) {
        L::prefetch(t, Q);
        let mut sumi = [L::zero(); R];
        for s in 0..16 {
            L::prefetch(t.add(Q + 96 * s), 96);
            let q = sub_block::<L>(t, s);
            let sc = L::i8_rows(t.add(SCALES + 8 * s));
            let sc16 = L::or(L::and(sc, L::splat32(0xFFFF)), L::sll32_16(sc));
            for r in 0..R {
                let v = if VNNI {
                    let mut a = L::splat32(-offset(x[r], s));
                    for (c, q) in q.iter().enumerate() {
                        a = L::dpbusd(a, *q, x4::<L>(x[r], s, c));
                    }
                    L::mullo32(a, sc)
                } else {
                    let p0 = L::add16(
                        L::maddubs(q[0], x4::<L>(x[r], s, 0)),
                        L::maddubs(q[1], x4::<L>(x[r], s, 1)),
                    );
                    let p1 = L::add16(
                        L::maddubs(q[2], x4::<L>(x[r], s, 2)),
                        L::maddubs(q[3], x4::<L>(x[r], s, 3)),
                    );
                    let o = offset(x[r], s) / 2;
                    let o = L::splat32((o & 0xFFFF) | (o << 16));
                    L::sub32(
                        L::add32(L::madd16(p0, sc16), L::madd16(p1, sc16)),
                        L::madd16(o, sc16),
                    )
                };
                sumi[r] = L::add32(sumi[r], v);
            }
        }
        accumulate::<L, R>(t, x, &sumi, acc);
    }
}
