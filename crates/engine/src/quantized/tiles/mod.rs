//! Quantized weights repacked once (by a matrix's first product) into tiles of eight rows, so
//! that the eight lanes of a SIMD register are eight output rows. A one-row product (a decode
//! step) then needs no horizontal sums, and k-quant scales are unpacked once and applied once
//! per sub-block, where candle's row-at-a-time kernels spend a third of their work on those.
//! llama.cpp repacks some types into eight-row tiles for the same reason (its `block_q4_Kx8`);
//! these layouts are this crate's own, one file per type (Q4_0, Q4_1, Q8_0, Q4_K, Q6_K), each
//! as large as the blocks it holds but Q4_K's (its unpacked scales add 2.8%).
//!
//! The repack is lossless (every field is moved, none rounded: a test rebuilds the original
//! blocks) and the sums are exact integers up to each super-block's float multiply-adds, so
//! the AVX2 kernels, their VNNI variants (one tile in 256-bit registers, or two in 512-bit
//! ones) and their plain twins agree bit for bit, and a row's result never depends on the batch
//! it came in.

/// A type's kernels over one block function `$block::<L, R, VNNI>` (which adds one tile
/// block's products into R rows' accumulators, in the lanes L): AVX2 and VNNI over one tile,
/// and VNNI over two tiles at once in 512-bit registers. The block function picks its integer
/// instructions by `VNNI`; the sums are the same integers either way, and each lane's float
/// steps the same in both widths, so every kernel gives the same bits.
#[cfg(simd_kernels)]
macro_rules! kernels {
    (@one $block:ident, $sizes:expr, $name:ident, $lanes:ident, $vnni:expr, $features:literal,
     $doc:literal) => {
        #[doc = $doc]
        ///
        /// # Safety
        /// The CPU has the instructions named above; each tile holds `blocks` blocks, every
        /// `xs[r]` as many activation blocks, and `out` R values per row of the tiles.
        #[target_feature(enable = $features)]
        pub unsafe fn $name<const R: usize>(
            tiles: At,
            blocks: usize,
            xs: &[&[u8]],
            out: &mut [f32],
        ) {
            super::super::over_blocks::<$lanes, R>(tiles, blocks, $sizes, xs, out, |t, x, acc| {
                $block::<$lanes, R, $vnni>(t, x, acc)
            })
        }
    };
    ($block:ident, $tile_block:expr, $act:expr) => {
        use super::super::lanes::{At, Lanes, Y8, Z16};

        kernels!(@one $block, ($tile_block, $act), dot_tile, Y8, false, "avx2,fma,f16c",
            "One tile (`blocks` blocks of eight rows) against R activation rows, AVX2.");
        kernels!(@one $block, ($tile_block, $act), dot_tile_vnni, Y8, true,
            "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
            "[`dot_tile`] with VNNI's `vpdpbusd`, which multiplies and sums four byte pairs \
             into 32 bits in one instruction (the CPU must have AVX-512 VNNI and VL).");
        kernels!(@one $block, ($tile_block, $act), dot_pair_vnni, Z16, true,
            "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni",
            "[`dot_tile_vnni`] over two tiles at once (the second `tiles.next` bytes on), in \
             512-bit registers: `out` holds R × 16 values, the first tile's eight rows first \
             (the CPU must have AVX-512 F, BW, VL and VNNI, and GFNI).");
    };
}

#[cfg(simd_kernels)]
mod amx;
#[cfg(simd_kernels)]
mod lanes;
mod q4_0;
mod q4_1;
mod q4k;
mod q6k;
mod q8_0;

use super::k_rows::{Q4K_BYTES, Q6K_BYTES, X_BYTES};
use super::QType;
use rayon::prelude::*;

/// Output rows per tile.
pub const TILE_ROWS: usize = 8;
/// Output rows a task's stretch is a multiple of: whole pairs of tiles, so the wide kernels
/// cover all of it.
pub const TASK_ROWS: usize = 2 * TILE_ROWS;
/// Activation rows one pass over a tile serves (each unpacked weight register is reused for
/// all of them).
const PASS_ROWS: usize = 4;
/// Activation rows from which a product goes through AMX where it can: below, VNNI is faster.
/// `bench kernels` on one thread: Q4_K (8192 × 2048 and 2048 × 2048) AMX 1.5–1.6× slower at
/// 4 rows, 1.10× slower at 8, about even at 12, 1.14–1.17× faster at 16 and 64; Q4_1
/// (1536 × 576 and 576 × 1536) 1.7–2.7× slower at 4, 1.1–1.55× at 8, 1.08–1.10× at 12, even
/// to 1.2× faster at 16, 1.23–1.34× faster at 64.
#[cfg(simd_kernels)]
fn amx_from_rows(kind: Kind) -> usize {
    if kind == Kind::Q4K {
        12
    } else {
        16
    }
}

/// The types kept in tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Q4_0,
    Q4_1,
    Q8_0,
    Q4K,
    Q6K,
}

/// A type's sizes: values per block, bytes of one of its blocks, of a tile's eight, and of
/// one block of the activations its products take.
struct Sizes {
    values: usize,
    block: usize,
    tile_block: usize,
    act: usize,
}

impl Kind {
    fn sizes(self) -> Sizes {
        let (values, block, tile_block, act) = match self {
            Kind::Q4_0 => (32, q4_0::BLOCK_BYTES, q4_0::TB_BYTES, q4_0::ACT_BYTES),
            Kind::Q4_1 => (32, q4_1::BLOCK_BYTES, q4_1::TB_BYTES, q4_1::ACT_BYTES),
            Kind::Q8_0 => (32, q8_0::BLOCK_BYTES, q8_0::TB_BYTES, q8_0::ACT_BYTES),
            Kind::Q4K => (256, Q4K_BYTES, q4k::SB_BYTES, X_BYTES),
            Kind::Q6K => (256, Q6K_BYTES, q6k::SB_BYTES, X_BYTES),
        };
        Sizes {
            values,
            block,
            tile_block,
            act,
        }
    }
}

/// A kernel: one tile, or two (of `blocks` blocks each), against up to [`PASS_ROWS`]
/// activation rows, each row's outputs (eight a tile) one after another in `out`.
#[cfg(simd_kernels)]
type Kernel = unsafe fn(lanes::At, usize, &[&[u8]], &mut [f32]);

/// The instructions a kernel uses.
#[cfg(simd_kernels)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Avx2,
    /// AVX-512 VNNI on 256-bit registers, one tile at a time.
    Vnni,
    /// AVX-512 VNNI on 512-bit registers, two tiles at a time.
    Vnni512,
}

#[cfg(simd_kernels)]
impl Isa {
    /// Tiles one call covers.
    fn tiles(self) -> usize {
        if self == Isa::Vnni512 {
            2
        } else {
            1
        }
    }
}

/// A type's kernels by pass size (index R − 1).
#[cfg(simd_kernels)]
fn kernels(kind: Kind, isa: Isa) -> [Kernel; PASS_ROWS] {
    macro_rules! by_rows {
        ($($f:ident)::+) => {
            [$($f)::+::<1>, $($f)::+::<2>, $($f)::+::<3>, $($f)::+::<4>]
        };
    }
    use Isa::{Avx2, Vnni, Vnni512};
    match (kind, isa) {
        (Kind::Q4_0, Avx2) => by_rows!(q4_0::simd::dot_tile),
        (Kind::Q4_0, Vnni) => by_rows!(q4_0::simd::dot_tile_vnni),
        (Kind::Q4_0, Vnni512) => by_rows!(q4_0::simd::dot_pair_vnni),
        (Kind::Q4_1, Avx2) => by_rows!(q4_1::simd::dot_tile),
        (Kind::Q4_1, Vnni) => by_rows!(q4_1::simd::dot_tile_vnni),
        (Kind::Q4_1, Vnni512) => by_rows!(q4_1::simd::dot_pair_vnni),
        (Kind::Q8_0, Avx2) => by_rows!(q8_0::simd::dot_tile),
        (Kind::Q8_0, Vnni) => by_rows!(q8_0::simd::dot_tile_vnni),
        (Kind::Q8_0, Vnni512) => by_rows!(q8_0::simd::dot_pair_vnni),
        (Kind::Q4K, Avx2) => by_rows!(q4k::simd::dot_tile),
        (Kind::Q4K, Vnni) => by_rows!(q4k::simd::dot_tile_vnni),
        (Kind::Q4K, Vnni512) => by_rows!(q4k::simd::dot_pair_vnni),
        (Kind::Q6K, Avx2) => by_rows!(q6k::simd::dot_tile),
        (Kind::Q6K, Vnni) => by_rows!(q6k::simd::dot_tile_vnni),
        (Kind::Q6K, Vnni512) => by_rows!(q6k::simd::dot_pair_vnni),
    }
}

/// A named pass of one kernel set over every tile, given the activation rows.
pub type KernelRun<'a> = (&'static str, Box<dyn Fn(&[&[u8]]) + 'a>);

/// A `[rows, cols]` matrix as tiles of [`TILE_ROWS`] rows.
pub struct Tiles {
    kind: Kind,
    /// Tile t's block b at bytes `(t·blocks + b)·tile_block`; words keep it 8-aligned.
    words: Vec<u64>,
    /// Blocks per row.
    blocks: usize,
    /// One tile at a time, and two at a time where the CPU has the wide kernels.
    #[cfg(simd_kernels)]
    kernels: [Kernel; PASS_ROWS],
    #[cfg(simd_kernels)]
    pair_kernels: Option<[Kernel; PASS_ROWS]>,
    /// Several activation rows at once go through AMX's tiles (Q4_K and Q4_1, where the CPU has them).
    #[cfg(simd_kernels)]
    amx: bool,
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
            QType::Q4_0 => Kind::Q4_0,
            QType::Q4_1 => Kind::Q4_1,
            QType::Q8_0 => Kind::Q8_0,
            QType::Q4K => Kind::Q4K,
            QType::Q6K => Kind::Q6K,
            _ => return None,
        };
        let sizes = kind.sizes();
        if rows == 0 || !rows.is_multiple_of(TILE_ROWS) || !cols.is_multiple_of(sizes.values) {
            return None;
        }
        let blocks = cols / sizes.values;
        // Whole words per tile, so every tile starts 8-aligned.
        let tile_words = (blocks * sizes.tile_block).div_ceil(8);
        let mut words = vec![0u64; rows / TILE_ROWS * tile_words];
        words
            .par_chunks_mut(tile_words)
            .enumerate()
            .for_each(|(t, tile)| {
                let rows: [&[u8]; TILE_ROWS] = std::array::from_fn(|r| row(TILE_ROWS * t + r));
                let tile = &mut as_bytes_mut(tile)[..blocks * sizes.tile_block];
                for (b, tb) in tile.chunks_exact_mut(sizes.tile_block).enumerate() {
                    let blocks = rows.map(|row| &row[b * sizes.block..(b + 1) * sizes.block]);
                    match kind {
                        Kind::Q4_0 => q4_0::pack(blocks, tb),
                        Kind::Q4_1 => q4_1::pack(blocks, tb),
                        Kind::Q8_0 => q8_0::pack(blocks, tb),
                        Kind::Q4K => q4k::pack(blocks, tb),
                        Kind::Q6K => q6k::pack(blocks, tb),
                    }
                }
            });
        Some(Self {
            kind,
            words,
            blocks,
            #[cfg(simd_kernels)]
            kernels: kernels(kind, if has_vnni() { Isa::Vnni } else { Isa::Avx2 }),
            #[cfg(simd_kernels)]
            pair_kernels: has_vnni512().then(|| kernels(kind, Isa::Vnni512)),
            #[cfg(simd_kernels)]
            amx: matches!(kind, Kind::Q4K | Kind::Q4_1) && amx::has_amx(),
        })
    }

    /// Bytes from one tile's start to the next's.
    fn tile_stride(&self) -> usize {
        (self.blocks * self.kind.sizes().tile_block).next_multiple_of(8)
    }

    /// Tiles `t..t + count`, the last without its padding.
    fn tiles_at(&self, t: usize, count: usize) -> &[u8] {
        let n = self.blocks * self.kind.sizes().tile_block;
        // SAFETY: plain bytes of an owned word buffer.
        let bytes = unsafe {
            std::slice::from_raw_parts(self.words.as_ptr() as *const u8, self.words.len() * 8)
        };
        &bytes[t * self.tile_stride()..][..(count - 1) * self.tile_stride() + n]
    }

    #[cfg(any(test, not(simd_kernels)))]
    fn tile(&self, t: usize) -> &[u8] {
        self.tiles_at(t, 1)
    }

    /// Output rows `first..first + n` against every activation row (`xs`, quantized for this
    /// type), into `outs[a]` (n values each) for activation row a; `first` and `n` are whole
    /// tiles.
    pub fn rows_into(&self, first: usize, xs: &[&[u8]], outs: &mut [&mut [f32]]) {
        let n = outs.first().map_or(0, |o| o.len());
        debug_assert!(first.is_multiple_of(TILE_ROWS) && n.is_multiple_of(TILE_ROWS));
        debug_assert!(outs.len() == xs.len() && outs.iter().all(|o| o.len() == n));
        debug_assert!(xs
            .iter()
            .all(|x| x.len() == self.blocks * self.kind.sizes().act));
        let tiles = n / TILE_ROWS;
        let mut k = 0;
        #[cfg(simd_kernels)]
        if self.amx && xs.len() >= amx_from_rows(self.kind) {
            k = self.amx_pairs_into(first, xs, outs);
        }
        while k < tiles {
            let count = if k + 1 < tiles { self.widest() } else { 1 };
            let rows = count * TILE_ROWS;
            for (xs, outs) in xs.chunks(PASS_ROWS).zip(outs.chunks_mut(PASS_ROWS)) {
                let mut y = [0f32; 2 * TILE_ROWS * PASS_ROWS];
                self.dot_tiles(first / TILE_ROWS + k, count, xs, &mut y[..rows * xs.len()]);
                for (y, out) in y.chunks_exact(rows).zip(outs) {
                    out[k * TILE_ROWS..][..rows].copy_from_slice(y);
                }
            }
            k += count;
        }
    }

    /// [`Tiles::rows_into`]'s whole pairs of tiles on AMX, [`amx::ROWS`] activation rows to a
    /// tile multiply; the tiles done.
    #[cfg(simd_kernels)]
    fn amx_pairs_into(&self, first: usize, xs: &[&[u8]], outs: &mut [&mut [f32]]) -> usize {
        let pairs = outs[0].len() / TASK_ROWS;
        // The tile unit reads the activation rows at one stride: the caller's rows where they
        // lie so (one buffer, as products quantize them), else a copy.
        let row_bytes = xs[0].len();
        let stride = xs.get(1).map_or(row_bytes, |x1| {
            (x1.as_ptr() as usize).wrapping_sub(xs[0].as_ptr() as usize)
        });
        let in_place = xs
            .windows(2)
            .all(|w| (w[1].as_ptr() as usize).wrapping_sub(w[0].as_ptr() as usize) == stride);
        let copy: Vec<u8>;
        let (base, stride) = if in_place {
            (xs[0].as_ptr(), stride)
        } else {
            copy = xs.concat();
            (copy.as_ptr(), row_bytes)
        };
        // Whole tile multiplies of sixteen rows in one session (the weights unpacked once for
        // all of them), then the rows left over in another.
        let whole = outs.len() / amx::ROWS * amx::ROWS;
        let (head, tail) = outs.split_at_mut(whole);
        let mut y = vec![0f32; TASK_ROWS * head.len().max(tail.len())];
        for (start, tile_rows, outs) in [(0, amx::ROWS, head), (whole, tail.len(), tail)] {
            if outs.is_empty() {
                continue;
            }
            // SAFETY: `amx` is set only where `has_amx` is true; the session is this
            // thread's and ends with this pass.
            let _session = unsafe { amx::Session::new(tile_rows) };
            let y = &mut y[..TASK_ROWS * outs.len()];
            for p in 0..pairs {
                let at = lanes::At::new(
                    self.tiles_at(first / TILE_ROWS + 2 * p, 2).as_ptr(),
                    self.tile_stride(),
                );
                // SAFETY: the tiles hold `blocks` blocks, each activation row (at `stride` from
                // the last, all inside `xs` or its copy) as many activation blocks.
                unsafe {
                    let x = (base.add(start * stride), stride);
                    match self.kind {
                        Kind::Q4K => amx::q4k_pair(at, self.blocks, x, tile_rows, outs.len(), y),
                        _ => amx::q4_1_pair(at, self.blocks, x, tile_rows, outs.len(), y),
                    }
                };
                for (y, out) in y.chunks_exact(TASK_ROWS).zip(outs.iter_mut()) {
                    out[p * TASK_ROWS..][..TASK_ROWS].copy_from_slice(y);
                }
            }
        }
        2 * pairs
    }

    /// Tiles one kernel call can cover: two with the wide kernels, else one.
    fn widest(&self) -> usize {
        #[cfg(simd_kernels)]
        if self.pair_kernels.is_some() {
            return 2;
        }
        1
    }

    /// Tiles `t..t + count` (count ≤ [`Tiles::widest`]) against up to [`PASS_ROWS`]
    /// activation rows: each row's 8·count outputs one after another in `out`.
    fn dot_tiles(&self, t: usize, count: usize, xs: &[&[u8]], out: &mut [f32]) {
        let tiles = self.tiles_at(t, count);
        #[cfg(simd_kernels)]
        {
            let kernels = match (count, &self.pair_kernels) {
                (2, Some(pair)) => pair,
                _ => &self.kernels,
            };
            let at = lanes::At::new(tiles.as_ptr(), self.tile_stride());
            // SAFETY: the build targets AVX2, FMA and F16C (held to the CPU at start-up), and
            // VNNI kernels are chosen only where detected; `tiles` holds `count` tiles, every
            // activation row `blocks` blocks (both come from the matrix's columns), and `out`
            // 8·count values a row.
            unsafe { kernels[xs.len() - 1](at, self.blocks, xs, out) }
        }
        #[cfg(not(simd_kernels))]
        for (x, o) in xs.iter().zip(out.chunks_exact_mut(TILE_ROWS)) {
            debug_assert_eq!(count, 1);
            o.copy_from_slice(&self.plain(tiles, x));
        }
    }

    /// A full pass over every tile by each kernel set this CPU has, and by the plain twin,
    /// each named (`bench kernels`); the outputs go to a scratch buffer.
    pub fn kernel_runs(&self) -> Vec<KernelRun<'_>> {
        let tiles = self.words.len() * 8 / self.tile_stride();
        let mut runs: Vec<KernelRun<'_>> = vec![(
            "plain",
            Box::new(move |xs: &[&[u8]]| {
                for k in 0..tiles {
                    for x in xs {
                        std::hint::black_box(self.plain(self.tiles_at(k, 1), x));
                    }
                }
            }),
        )];
        #[cfg(simd_kernels)]
        {
            let mut isas = vec![("avx2", Isa::Avx2)];
            if has_vnni() {
                isas.push(("vnni-256", Isa::Vnni));
            }
            if has_vnni512() {
                isas.push(("vnni-512", Isa::Vnni512));
            }
            for (name, isa) in isas {
                let (set, count) = (kernels(self.kind, isa), isa.tiles());
                runs.push((
                    name,
                    Box::new(move |xs: &[&[u8]]| {
                        let mut y = [0f32; 2 * TILE_ROWS * PASS_ROWS];
                        for k in (0..tiles).step_by(count) {
                            let at = lanes::At::new(
                                self.tiles_at(k, count).as_ptr(),
                                self.tile_stride(),
                            );
                            for xs in xs.chunks(PASS_ROWS) {
                                let out = &mut y[..count * TILE_ROWS * xs.len()];
                                // SAFETY: as in `dot_tiles`; the caller's tiles are whole
                                // pairs where `count` is 2.
                                unsafe { set[xs.len() - 1](at, self.blocks, xs, out) };
                                std::hint::black_box(&y);
                            }
                        }
                    }),
                ));
            }
        }
        #[cfg(simd_kernels)]
        if self.amx && tiles >= 2 {
            runs.push((
                "amx",
                // The outputs allocated once, as the other runs' scratch is, so that only the
                // products are timed.
                Box::new({
                    let y = std::cell::RefCell::new(Vec::new());
                    move |xs: &[&[u8]]| {
                        let n = tiles / 2 * TASK_ROWS;
                        let mut y = y.borrow_mut();
                        y.resize(n * xs.len(), 0.0);
                        let mut outs: Vec<&mut [f32]> = y.chunks_mut(n).collect();
                        self.amx_pairs_into(0, xs, &mut outs);
                        std::hint::black_box(&outs);
                    }
                }),
            ));
        }
        runs
    }

    /// The plain twin of one tile against one activation row.
    fn plain(&self, tile: &[u8], x: &[u8]) -> [f32; TILE_ROWS] {
        match self.kind {
            Kind::Q4_0 => q4_0::plain(tile, self.blocks, x),
            Kind::Q4_1 => q4_1::plain(tile, self.blocks, x),
            Kind::Q8_0 => q8_0::plain(tile, self.blocks, x),
            Kind::Q4K => q4k::plain(tile, self.blocks, x),
            Kind::Q6K => q6k::plain(tile, self.blocks, x),
        }
    }
}

/// How far ahead of the loads a kernel asks for its tile's bytes, a few lines at a time as it
/// goes (a whole super-block's lines at once slowed Q6_K down), counted along the stream it
/// reads: on through its tile, then on into the tiles its next call takes ([`Ahead`]). This
/// machine's hardware prefetchers alone leave a stream under its bandwidth (as `few_rows`
/// found). Counted in plain bytes, the lines past a tile's end fell in the tile read beside
/// it (already on its way) rather than in the next pair: four activation rows then waited on
/// memory their products could have hidden. On the 1B Q4_K shape with an adapter, a K = 4
/// decode step went from 51.0–52.3 to 44.4–45.1 ms (one row: 37.3–38.6 and 37.7–38.6 ms);
/// 8 KiB along the stream gave 46.3–46.5 ms, 16 KiB in plain bytes 46.5–47.5.
#[cfg(simd_kernels)]
const PREFETCH_BYTES: usize = 4096;

/// Where a kernel's stream will be [`PREFETCH_BYTES`] after each of its blocks, as an offset
/// from the block: `lead` blocks further into its tile, or, past the tile's end, as far into
/// the tiles its next call reads (`tiles` tiles of `stride` bytes on: the next pair for the
/// wide kernels). Advanced block by block without a division.
#[cfg(simd_kernels)]
struct Ahead {
    tile_block: isize,
    blocks: usize,
    /// Bytes to the tiles of the call `calls` on.
    call_bytes: isize,
    /// The block the stream will be in, and how many calls on.
    block: usize,
    calls: isize,
}

#[cfg(simd_kernels)]
impl Ahead {
    fn new(tile_block: usize, blocks: usize, tiles: usize, stride: usize) -> Self {
        let lead = PREFETCH_BYTES.div_ceil(tile_block);
        Self {
            tile_block: tile_block as isize,
            blocks,
            call_bytes: (tiles * stride) as isize,
            block: lead % blocks.max(1),
            calls: (lead / blocks.max(1)) as isize,
        }
    }

    /// The offset for block `b`, asked for b = 0, 1, … in order.
    #[inline(always)]
    fn offset(&mut self, b: usize) -> isize {
        let off =
            self.calls * self.call_bytes + (self.block as isize - b as isize) * self.tile_block;
        self.block += 1;
        if self.block == self.blocks {
            self.block = 0;
            self.calls += 1;
        }
        off
    }
}

/// Prefetch the `len` bytes `ahead` of `at`: the same span of a later block in the stream
/// (past the buffer's end the hint is dropped; it never faults).
#[cfg(simd_kernels)]
#[inline(always)]
fn prefetch_ahead(at: *const u8, ahead: isize, len: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    let at = at.wrapping_offset(ahead);
    for line in (0..len).step_by(64) {
        // SAFETY: a prefetch is a hint; it reads nothing and cannot fault.
        unsafe { _mm_prefetch(at.wrapping_add(line) as *const i8, _MM_HINT_T0) };
    }
}

/// `acc + (d·dx)·Σ`: one activation row's block (its scale `dx`) against the rows' scales `d`
/// and integer sums `sumi`, the float step every kernel ends a block with.
///
/// # Safety
/// As [`lanes::Lanes`].
#[cfg(simd_kernels)]
#[inline(always)]
unsafe fn add_scaled<L: lanes::Lanes>(acc: L::F, d: L::F, dx: f32, sumi: L::I) -> L::F {
    L::fmadd(L::fmul(d, L::fsplat(dx)), L::to_f32(sumi), acc)
}

/// AVX2's pair sums, 16 bits each, widened to 32 (VNNI's sums are 32 bits already).
///
/// # Safety
/// As [`lanes::Lanes`].
#[cfg(simd_kernels)]
#[inline(always)]
unsafe fn widened<L: lanes::Lanes, const VNNI: bool>(sums: L::I) -> L::I {
    if VNNI {
        sums
    } else {
        L::madd16(sums, L::splat16(1))
    }
}

/// A wide activation block's scale (bytes 0..4: its f16 scale as f32), or Q8_1F's scaled sum
/// at `at + 4`.
///
/// # Safety
/// Four bytes are readable at `at`.
#[cfg(simd_kernels)]
#[inline(always)]
unsafe fn act_scale(at: *const u8) -> f32 {
    (at as *const f32).read_unaligned()
}

/// A Q8_0S activation block's integer sum (bytes 4..8).
///
/// # Safety
/// Eight bytes are readable at `at`.
#[cfg(simd_kernels)]
#[inline(always)]
unsafe fn act_sum(at: *const u8) -> i32 {
    (at.add(4) as *const i32).read_unaligned()
}

/// Where a wide activation block's 32 quants start.
const ACT_QS: usize = crate::quantized::activations::WIDE_QS;

/// The loop every tile kernel shares: `block` adds each block's products (given the tile
/// block's bytes and each activation row's block) into the R rows' accumulators, which end as
/// each activation row's outputs, [`lanes::Lanes::ROWS`] of them, one row after another in
/// `out`.
///
/// # Safety
/// Each tile at `tiles` holds `blocks` blocks of `tile_block` bytes, every `xs[r]` as many of
/// `act` bytes, `out` R·ROWS values; the caller has L's instructions.
#[cfg(simd_kernels)]
#[inline(always)]
unsafe fn over_blocks<L: lanes::Lanes, const R: usize>(
    tiles: lanes::At,
    blocks: usize,
    (tile_block, act): (usize, usize),
    xs: &[&[u8]],
    out: &mut [f32],
    mut block: impl FnMut(lanes::At, &[*const u8; R], &mut [L::F; R]),
) {
    debug_assert!(xs.len() == R && out.len() == R * L::ROWS);
    let mut acc = [L::fzero(); R];
    let mut ahead = Ahead::new(tile_block, blocks, L::ROWS / TILE_ROWS, tiles.next);
    for b in 0..blocks {
        let x = std::array::from_fn(|r| xs[r].as_ptr().add(b * act));
        let t = tiles.add(b * tile_block).ahead(ahead.offset(b));
        block(t, &x, &mut acc);
    }
    for (r, acc) in acc.iter().enumerate() {
        L::store(*acc, out.as_mut_ptr().add(r * L::ROWS));
    }
}

/// Whether this CPU has AVX-512 VNNI on 256-bit registers (AMD Zen 4 and later, Intel Ice
/// Lake and later): detected at run time, as the build targets plain x86-64-v3.
#[cfg(simd_kernels)]
fn has_vnni() -> bool {
    std::arch::is_x86_feature_detected!("avx512vnni")
        && std::arch::is_x86_feature_detected!("avx512vl")
}

/// Whether this CPU also has the 512-bit registers' byte instructions (AVX-512 F and BW, and
/// GFNI) for two tiles at a time.
#[cfg(simd_kernels)]
fn has_vnni512() -> bool {
    has_vnni()
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("gfni")
}

/// The nibble layout the 4-bit types' tiles share, per 32 values of each of the eight rows:
/// 128 bytes as [quarter][row][4 bytes], byte k of quarter q holding values 8q + k (low
/// nibble) and 8q + 4 + k (high), so one 32-byte load splits into two registers of four
/// values a row. Store row r's values `q(v)` (v < 32, each < 16) into `qs`.
fn put_nibbles(qs: &mut [u8], r: usize, q: impl Fn(usize) -> u8) {
    for quarter in 0..4 {
        for k in 0..4 {
            let v = 8 * quarter + k;
            qs[32 * quarter + 4 * r + k] = q(v) | (q(v + 4) << 4);
        }
    }
}

/// Value v (0..32) of row r in 128 bytes laid out by [`put_nibbles`].
fn nibble(qs: &[u8], r: usize, v: usize) -> u8 {
    let byte = qs[32 * (v / 8) + 4 * r + v % 4];
    if v % 8 < 4 {
        byte & 0xF
    } else {
        byte >> 4
    }
}

/// Value v (0..32) of a Q4_0 or Q4_1 block's 16 bytes of nibbles (ggml's order: value j < 16
/// in the low nibble of byte j, j + 16 in its high nibble).
fn block_nibble(bytes: &[u8], v: usize) -> u8 {
    let byte = bytes[v % 16];
    if v < 16 {
        byte & 0xF
    } else {
        byte >> 4
    }
}

/// Row r's 16 bytes of nibbles in ggml's order, from 128 bytes laid out by [`put_nibbles`].
#[cfg(test)]
fn block_nibbles(qs: &[u8], r: usize, out: &mut [u8]) {
    for (j, byte) in out[..16].iter_mut().enumerate() {
        *byte = nibble(qs, r, j) | (nibble(qs, r, j + 16) << 4);
    }
}

/// The plain twins' loop: `row(tile block, activation block, r, acc)` adds row r's terms of
/// one block to its accumulator, block by block as the kernels do.
fn plain_rows(
    tile: &[u8],
    blocks: usize,
    (tile_block, act): (usize, usize),
    x: &[u8],
    row: impl Fn(&[u8], &[u8], usize, f32) -> f32,
) -> [f32; TILE_ROWS] {
    let mut acc = [0f32; TILE_ROWS];
    for b in 0..blocks {
        let tb = &tile[b * tile_block..][..tile_block];
        let x = &x[b * act..][..act];
        for (r, acc) in acc.iter_mut().enumerate() {
            *acc = row(tb, x, r, *acc);
        }
    }
    acc
}

/// The f16 at byte `at` of `b`, as f32 (the plain twins' scales).
fn f16_at(b: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// The f32 at byte `at` of `b` (the plain twins' activation scales).
fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn as_bytes_mut(words: &mut [u64]) -> &mut [u8] {
    // SAFETY: plain bytes of a word buffer, uniquely borrowed.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, words.len() * 8) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantized::tests::matrix;

    const TYPES: [QType; 5] = [
        QType::Q4_0,
        QType::Q4_1,
        QType::Q8_0,
        QType::Q4K,
        QType::Q6K,
    ];

    /// Each block's prefetch lands [`PREFETCH_BYTES`] (rounded up to whole blocks) further
    /// along the stream the kernels read: through the tile, then into the tiles of the calls
    /// after it, however the blocks compare with the distance.
    #[cfg(simd_kernels)]
    #[test]
    fn prefetches_land_further_along_the_stream() {
        for (tile_block, blocks, tiles) in [(1184, 8, 2), (1184, 32, 1), (160, 18, 2), (272, 3, 1)]
        {
            let stride = blocks * tile_block + 8;
            // Stream position i: call i / blocks, block i % blocks of its first tile.
            let at = |i: usize| (i / blocks * tiles * stride + i % blocks * tile_block) as isize;
            let lead = PREFETCH_BYTES.div_ceil(tile_block);
            let mut ahead = Ahead::new(tile_block, blocks, tiles, stride);
            for b in 0..blocks {
                assert_eq!(
                    ahead.offset(b),
                    at(b + lead) - at(b),
                    "block {b} of {blocks} ({tile_block} bytes, {tiles} tiles a call)"
                );
            }
        }
    }

    #[test]
    fn the_repack_is_lossless() {
        for t in TYPES {
            let cols = 512;
            let q = matrix(t, 16, cols);
            let tiles = Tiles::pack(t, 16, cols, |i| q.row(i)).unwrap();
            let sizes = tiles.kind.sizes();
            for i in 0..16 {
                let mut back = vec![0u8; cols / sizes.values * sizes.block];
                for (b, out) in back.chunks_exact_mut(sizes.block).enumerate() {
                    let tb = &tiles.tile(i / TILE_ROWS)[b * sizes.tile_block..][..sizes.tile_block];
                    let r = i % TILE_ROWS;
                    match tiles.kind {
                        Kind::Q4_0 => q4_0::unpack(tb, r, out),
                        Kind::Q4_1 => q4_1::unpack(tb, r, out),
                        Kind::Q8_0 => q8_0::unpack(tb, r, out),
                        Kind::Q4K => q4k::unpack(tb, r, out),
                        Kind::Q6K => q6k::unpack(tb, r, out),
                    }
                }
                assert_eq!(back, q.row(i), "{} row {i}", t.name());
            }
            assert!(
                Tiles::pack(t, 12, cols, |i| q.row(i)).is_none(),
                "half a tile"
            );
        }
        let q = matrix(QType::Q5K, 8, 256);
        assert!(Tiles::pack(QType::Q5K, 8, 256, |i| q.row(i)).is_none());
    }

    /// Every kernel (AVX2, and VNNI on one tile and on two where this CPU has it; every pass
    /// size) equals the plain twin bit for bit, so a row's result does not depend on the rows
    /// it is computed with.
    #[test]
    fn the_kernels_are_their_plain_twin_whatever_the_batch() {
        // 1,024 columns: 32 blocks of 32, 4 super-blocks of 256; 32 + 3 columns make the
        // Q4_1 and Q8_0 rows an odd number of blocks. Three tiles: a pair and one alone.
        for t in TYPES {
            for cols in [1024, if t.block_values() == 32 { 96 } else { 256 }] {
                let rows = 24;
                let q = matrix(t, rows, cols);
                let tiles = Tiles::pack(t, rows, cols, |i| q.row(i)).unwrap();
                for m in 1..=6 {
                    let x: Vec<f32> = (0..m * cols)
                        .map(|i| ((i * 31 + m * 7) % 97) as f32 / 13.0 - 3.5)
                        .collect();
                    let acts = q.quantize_rows(&x, m, t.tile_activations());
                    let xs: Vec<&[u8]> = (0..m).map(|r| acts.row(r)).collect();
                    let plain = |k: usize, x: &[u8]| tiles.plain(tiles.tile(k), x);
                    for first in [0, TILE_ROWS] {
                        let n = rows - first;
                        let mut out = vec![0f32; n * m];
                        let mut outs: Vec<&mut [f32]> = out.chunks_mut(n).collect();
                        tiles.rows_into(first, &xs, &mut outs);
                        for i in 0..n {
                            let k = (first + i) / TILE_ROWS;
                            for (a, x) in xs.iter().enumerate() {
                                let p = plain(k, x)[(first + i) % TILE_ROWS];
                                let got = out[a * n + i];
                                assert_eq!(got.to_bits(), p.to_bits(), "{t:?} m {m} row {i} x {a}");
                            }
                        }
                    }
                    #[cfg(simd_kernels)]
                    for isa in [Isa::Avx2, Isa::Vnni, Isa::Vnni512] {
                        let detected = match isa {
                            Isa::Avx2 => true,
                            Isa::Vnni => has_vnni(),
                            Isa::Vnni512 => has_vnni512(),
                        };
                        if !detected {
                            continue;
                        }
                        let n = TILE_ROWS * isa.tiles();
                        for (pass, kernel) in kernels(tiles.kind, isa).iter().enumerate().take(m) {
                            let xs = &xs[..pass + 1];
                            let mut y = vec![0f32; n * xs.len()];
                            let at = lanes::At::new(
                                tiles.tiles_at(1, isa.tiles()).as_ptr(),
                                tiles.tile_stride(),
                            );
                            // SAFETY: AVX2 is the build's target; VNNI only where detected;
                            // tiles 1 and 2 exist.
                            unsafe { kernel(at, tiles.blocks, xs, &mut y) };
                            for (a, x) in xs.iter().enumerate() {
                                let want: Vec<u32> = (1..=isa.tiles())
                                    .flat_map(|k| plain(k, x).map(f32::to_bits))
                                    .collect();
                                let got: Vec<u32> =
                                    y[a * n..(a + 1) * n].iter().map(|v| v.to_bits()).collect();
                                assert_eq!(got, want, "{t:?} {isa:?} pass {pass} x {a}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// Q4_K and Q4_1 on AMX are their plain twins bit for bit: every number of rows one tile
    /// multiply takes, more than that (two sessions), rows copied to one stride and rows in
    /// place, whole pairs of tiles at both row offsets; Q4_1 rows of whole groups of four
    /// blocks and rows that end in a shorter group.
    #[cfg(simd_kernels)]
    #[test]
    fn amx_is_the_plain_twin_whatever_the_rows() {
        if !amx::has_amx() {
            eprintln!("no AMX here: skipped");
            return;
        }
        for (t, cols) in [(QType::Q4K, 512), (QType::Q4_1, 512), (QType::Q4_1, 224)] {
            let rows = 40;
            let q = matrix(t, rows, cols);
            let tiles = Tiles::pack(t, rows, cols, |i| q.row(i)).unwrap();
            assert!(tiles.amx);
            for m in (1..=18).chain([33]) {
                let x: Vec<f32> = (0..m * cols)
                    .map(|i| ((i * 29 + m * 5) % 101) as f32 / 11.0 - 4.5)
                    .collect();
                let acts = q.quantize_rows(&x, m, t.tile_activations());
                let in_place: Vec<&[u8]> = (0..m).map(|r| acts.row(r)).collect();
                let scattered: Vec<Vec<u8>> = in_place.iter().rev().map(|r| r.to_vec()).collect();
                let scattered: Vec<&[u8]> = scattered.iter().rev().map(|r| &r[..]).collect();
                for xs in [&in_place, &scattered] {
                    for first in [0, TILE_ROWS] {
                        let n = rows - first;
                        let mut out = vec![0f32; n * m];
                        let mut outs: Vec<&mut [f32]> = out.chunks_mut(n).collect();
                        // Whole pairs on AMX whatever the rows (products take it from
                        // `amx_from_rows`); the lone tile is left alone.
                        let done = TILE_ROWS * tiles.amx_pairs_into(first, xs, &mut outs);
                        assert_eq!(done, n / TASK_ROWS * TASK_ROWS);
                        for i in 0..n {
                            let k = (first + i) / TILE_ROWS;
                            for (a, x) in xs.iter().enumerate() {
                                let p = tiles.plain(tiles.tile(k), x)[(first + i) % TILE_ROWS];
                                let want = if i < done { p.to_bits() } else { 0 };
                                let got = out[a * n + i].to_bits();
                                assert_eq!(got, want, "{t:?} {cols} m {m} row {i} x {a}");
                            }
                        }
                    }
                }
            }
        }
    }
}
