//! k-quant weights repacked once, at load, into tiles of eight rows, so that the eight lanes
//! of a SIMD register are eight output rows. A one-row product (a decode step) then needs no
//! horizontal sums and no scale unpacking per block, and multiplies by the scales once per
//! sub-block, where candle's row-at-a-time kernels spend a third of their work on those.
//! llama.cpp repacks Q4_K into eight-row tiles for the same reason (its `block_q4_Kx8`); these
//! layouts are this crate's own (`q4k.rs`, `q6k.rs`), and each is as large as the blocks it
//! holds (Q4_K's unpacked scales add 2.8%).
//!
//! The repack is lossless (every field is moved, none rounded: a test rebuilds the original
//! blocks) and the sums are exact integers up to each super-block's float multiply-adds, so
//! the AVX2 kernels, their VNNI variants and their plain twins agree bit for bit, and a row's
//! result never depends on the batch it came in.

mod q4k;
mod q6k;

use super::k_rows::{Q4K_BYTES, Q6K_BYTES, X_BYTES};
use super::QType;
use rayon::prelude::*;

/// Output rows per tile.
pub const TILE_ROWS: usize = 8;
/// Activation rows one pass over a tile serves (each unpacked weight register is reused for
/// all of them).
const PASS_ROWS: usize = 4;

/// The types kept in tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Q4K,
    Q6K,
}

impl Kind {
    /// Bytes of one of the type's super-blocks, and of a tile's eight.
    fn sizes(self) -> (usize, usize) {
        match self {
            Kind::Q4K => (Q4K_BYTES, q4k::SB_BYTES),
            Kind::Q6K => (Q6K_BYTES, q6k::SB_BYTES),
        }
    }
}

/// A `[rows, cols]` matrix as tiles of [`TILE_ROWS`] rows.
pub struct Tiles {
    kind: Kind,
    /// Tile t's super-block b at bytes `(t·blocks + b)·sb_bytes`; words keep it 8-aligned.
    words: Vec<u64>,
    /// Super-blocks per row.
    blocks: usize,
}

impl Tiles {
    /// Repack `rows` rows of `cols` values of `qtype`, row i's blocks given by `row(i)`; None
    /// for another type or where the rows do not fill whole tiles.
    pub fn pack<'a>(
        qtype: QType,
        rows: usize,
        cols: usize,
        row: impl Fn(usize) -> &'a [u8] + Sync,
    ) -> Option<Self> {
        let kind = match qtype {
            QType::Q4K => Kind::Q4K,
            QType::Q6K => Kind::Q6K,
            _ => return None,
        };
        if rows == 0 || !rows.is_multiple_of(TILE_ROWS) || !cols.is_multiple_of(256) {
            return None;
        }
        let (block_bytes, sb_bytes) = kind.sizes();
        let blocks = cols / 256;
        let tile_words = blocks * sb_bytes / 8;
        let mut words = vec![0u64; rows / TILE_ROWS * tile_words];
        words
            .par_chunks_mut(tile_words)
            .enumerate()
            .for_each(|(t, tile)| {
                let rows: [&[u8]; TILE_ROWS] = std::array::from_fn(|r| row(TILE_ROWS * t + r));
                for (b, sb) in as_bytes_mut(tile).chunks_exact_mut(sb_bytes).enumerate() {
                    let blocks = rows.map(|row| &row[b * block_bytes..(b + 1) * block_bytes]);
                    match kind {
                        Kind::Q4K => q4k::pack(blocks, sb),
                        Kind::Q6K => q6k::pack(blocks, sb),
                    }
                }
            });
        Some(Self {
            kind,
            words,
            blocks,
        })
    }

    fn tile(&self, t: usize) -> &[u8] {
        let n = self.blocks * self.kind.sizes().1;
        // SAFETY: plain bytes of an owned word buffer.
        let bytes = unsafe {
            std::slice::from_raw_parts(self.words.as_ptr() as *const u8, self.words.len() * 8)
        };
        &bytes[t * n..(t + 1) * n]
    }

    /// Output rows `first..first + n` against every activation row (Q8_K, `xs`), into `out`
    /// as `[n][xs.len()]`; `first` and `n` are whole tiles.
    pub fn rows_into(&self, first: usize, xs: &[&[u8]], out: &mut [f32]) {
        let m = xs.len();
        debug_assert!(first.is_multiple_of(TILE_ROWS) && out.len().is_multiple_of(TILE_ROWS * m));
        debug_assert!(xs.iter().all(|x| x.len() == self.blocks * X_BYTES));
        for (k, out) in out.chunks_exact_mut(TILE_ROWS * m).enumerate() {
            let tile = self.tile(first / TILE_ROWS + k);
            for (a, xs) in xs.chunks(PASS_ROWS).enumerate() {
                let mut y = [[0f32; TILE_ROWS]; PASS_ROWS];
                self.dot_tile(tile, xs, &mut y[..xs.len()]);
                for (g, y) in y[..xs.len()].iter().enumerate() {
                    for (r, &v) in y.iter().enumerate() {
                        out[r * m + a * PASS_ROWS + g] = v;
                    }
                }
            }
        }
    }

    /// One tile against up to [`PASS_ROWS`] activation rows.
    fn dot_tile(&self, tile: &[u8], xs: &[&[u8]], out: &mut [[f32; TILE_ROWS]]) {
        #[cfg(simd_kernels)]
        {
            use crate::quantized::tiles::{q4k::simd as s4, q6k::simd as s6};
            let b = self.blocks;
            // SAFETY: the build targets AVX2, FMA and F16C (held to the CPU at start-up), and
            // VNNI is used where detected; the tile and every activation row have `blocks`
            // super-blocks (both come from the matrix's columns).
            unsafe {
                match (self.kind, has_vnni(), xs.len()) {
                    (Kind::Q4K, true, 4) => s4::dot_tile_vnni::<4>(tile, b, xs, out),
                    (Kind::Q4K, true, 3) => s4::dot_tile_vnni::<3>(tile, b, xs, out),
                    (Kind::Q4K, true, 2) => s4::dot_tile_vnni::<2>(tile, b, xs, out),
                    (Kind::Q4K, true, _) => s4::dot_tile_vnni::<1>(tile, b, xs, out),
                    (Kind::Q4K, false, 4) => s4::dot_tile::<4>(tile, b, xs, out),
                    (Kind::Q4K, false, 3) => s4::dot_tile::<3>(tile, b, xs, out),
                    (Kind::Q4K, false, 2) => s4::dot_tile::<2>(tile, b, xs, out),
                    (Kind::Q4K, false, _) => s4::dot_tile::<1>(tile, b, xs, out),
                    (Kind::Q6K, true, 4) => s6::dot_tile_vnni::<4>(tile, b, xs, out),
                    (Kind::Q6K, true, 3) => s6::dot_tile_vnni::<3>(tile, b, xs, out),
                    (Kind::Q6K, true, 2) => s6::dot_tile_vnni::<2>(tile, b, xs, out),
                    (Kind::Q6K, true, _) => s6::dot_tile_vnni::<1>(tile, b, xs, out),
                    (Kind::Q6K, false, 4) => s6::dot_tile::<4>(tile, b, xs, out),
                    (Kind::Q6K, false, 3) => s6::dot_tile::<3>(tile, b, xs, out),
                    (Kind::Q6K, false, 2) => s6::dot_tile::<2>(tile, b, xs, out),
                    (Kind::Q6K, false, _) => s6::dot_tile::<1>(tile, b, xs, out),
                }
            }
        }
        #[cfg(not(simd_kernels))]
        for (x, o) in xs.iter().zip(out) {
            *o = self.plain(tile, x);
        }
    }

    /// The plain twin of one tile against one activation row.
    #[cfg(any(test, not(simd_kernels)))]
    fn plain(&self, tile: &[u8], x: &[u8]) -> [f32; TILE_ROWS] {
        match self.kind {
            Kind::Q4K => q4k::plain(tile, self.blocks, x),
            Kind::Q6K => q6k::plain(tile, self.blocks, x),
        }
    }
}

/// How far ahead of the loads a kernel asks for its tile's bytes, a few lines at a time as it
/// goes (a whole super-block's lines at once slowed Q6_K down). This machine's hardware
/// prefetchers alone leave a stream under its bandwidth (as `few_rows` found): one thread
/// over an 8192 × 8192 matrix read from memory went from 21–23 to 26 GB/s in Q4_K and from
/// 21 to 28 GB/s in Q6_K (candle's row-at-a-time kernels: 19 and 23).
#[cfg(simd_kernels)]
const PREFETCH_BYTES: usize = 4096;

/// Prefetch the `len` bytes [`PREFETCH_BYTES`] past `at`: the same span of a later
/// super-block (past the buffer's end the hint is dropped; it never faults).
#[cfg(simd_kernels)]
#[inline(always)]
fn prefetch_ahead(at: *const u8, len: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    for line in (0..len).step_by(64) {
        // SAFETY: a prefetch is a hint; it reads nothing and cannot fault.
        unsafe {
            _mm_prefetch(
                at.wrapping_add(PREFETCH_BYTES + line) as *const i8,
                _MM_HINT_T0,
            )
        };
    }
}

/// Whether this CPU has AVX-512 VNNI on 256-bit registers (AMD Zen 4 and later, Intel Ice
/// Lake and later): detected at run time, as the build targets plain x86-64-v3.
#[cfg(simd_kernels)]
fn has_vnni() -> bool {
    std::arch::is_x86_feature_detected!("avx512vnni")
        && std::arch::is_x86_feature_detected!("avx512vl")
}

fn as_bytes_mut(words: &mut [u64]) -> &mut [u8] {
    // SAFETY: plain bytes of a word buffer, uniquely borrowed.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, words.len() * 8) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantized::tests::matrix;

    const KINDS: [(QType, usize); 2] = [(QType::Q4K, Q4K_BYTES), (QType::Q6K, Q6K_BYTES)];

    #[test]
    fn the_repack_is_lossless() {
        for (t, block_bytes) in KINDS {
            let q = matrix(t, 16, 512);
            let tiles = Tiles::pack(t, 16, 512, |i| q.row(i)).unwrap();
            let sb_bytes = tiles.kind.sizes().1;
            for i in 0..16 {
                let mut back = vec![0u8; 2 * block_bytes];
                for (b, out) in back.chunks_exact_mut(block_bytes).enumerate() {
                    let sb = &tiles.tile(i / TILE_ROWS)[b * sb_bytes..(b + 1) * sb_bytes];
                    match tiles.kind {
                        Kind::Q4K => q4k::unpack(sb, i % TILE_ROWS, out),
                        Kind::Q6K => q6k::unpack(sb, i % TILE_ROWS, out),
                    }
                }
                assert_eq!(back, q.row(i), "{} row {i}", t.name());
            }
            assert!(
                Tiles::pack(t, 12, 512, |i| q.row(i)).is_none(),
                "half a tile"
            );
        }
        let q = matrix(QType::Q5K, 8, 256);
        assert!(Tiles::pack(QType::Q5K, 8, 256, |i| q.row(i)).is_none());
    }

    /// The kernels equal their plain twin bit for bit, for every pass size, and a row's
    /// result does not depend on the rows it is computed with.
    #[test]
    fn the_kernels_are_their_plain_twin_whatever_the_batch() {
        let (rows, cols) = (16, 1024);
        for (t, _) in KINDS {
            let q = matrix(t, rows, cols);
            let tiles = Tiles::pack(t, rows, cols, |i| q.row(i)).unwrap();
            for m in 1..=6 {
                let x: Vec<f32> = (0..m * cols)
                    .map(|i| ((i * 31 + m * 7) % 97) as f32 / 13.0 - 3.5)
                    .collect();
                let acts = q.quantize_rows(&x, m);
                let xs: Vec<&[u8]> = (0..m).map(|r| acts.row(r)).collect();
                let mut out = vec![0f32; rows * m];
                tiles.rows_into(0, &xs, &mut out);
                for k in 0..rows / TILE_ROWS {
                    for (a, x) in xs.iter().enumerate() {
                        let plain = tiles.plain(tiles.tile(k), x);
                        for (r, p) in plain.iter().enumerate() {
                            let i = TILE_ROWS * k + r;
                            let got = out[i * m + a];
                            assert_eq!(got.to_bits(), p.to_bits(), "{t:?} m {m} row {i} x {a}");
                        }
                    }
                }
            }
            // Both SIMD kernels, whichever this CPU dispatches to.
            #[cfg(simd_kernels)]
            {
                let x: Vec<f32> = (0..cols).map(|i| (i % 29) as f32 / 7.0 - 2.0).collect();
                let acts = q.quantize_rows(&x, 1);
                let xs = [acts.row(0)];
                let plain = tiles.plain(tiles.tile(1), xs[0]);
                let (tile, b) = (tiles.tile(1), tiles.blocks);
                let mut y = [[0f32; TILE_ROWS]; 1];
                // SAFETY: AVX2 is the build's target; VNNI only where detected.
                unsafe {
                    match tiles.kind {
                        Kind::Q4K => q4k::simd::dot_tile::<1>(tile, b, &xs, &mut y),
                        Kind::Q6K => q6k::simd::dot_tile::<1>(tile, b, &xs, &mut y),
                    }
                    assert_eq!(
                        y[0].map(f32::to_bits),
                        plain.map(f32::to_bits),
                        "{t:?} AVX2"
                    );
                    if has_vnni() {
                        match tiles.kind {
                            Kind::Q4K => q4k::simd::dot_tile_vnni::<1>(tile, b, &xs, &mut y),
                            Kind::Q6K => q6k::simd::dot_tile_vnni::<1>(tile, b, &xs, &mut y),
                        }
                        assert_eq!(
                            y[0].map(f32::to_bits),
                            plain.map(f32::to_bits),
                            "{t:?} VNNI"
                        );
                    }
                }
            }
        }
    }
}
