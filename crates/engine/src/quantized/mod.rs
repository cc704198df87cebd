//! Weights kept in their GGUF quantization: a [`QMatrix`] views a tensor's blocks where they lie
//! in the memory-mapped file, and its products quantize the activations to Q8 first and sum
//! quantized dot products, as llama.cpp does. Beside each product, a plain twin that
//! dequantizes both sides and sums in f64.
//!
//! Kernels: Q4_0, Q4_1, Q8_0, Q4_K and Q6_K are repacked into tiles of eight rows (`tiles/`)
//! by their first product. Where rows fill no tile, this crate's row kernels unpack each
//! weight block once for several rows of a batch (`legacy.rs`, `k_rows.rs`); the other types
//! use candle's block dot products, one row at a time (AVX2 for Q2_K, Q3_K and Q5_K; scalar
//! for Q5_0 and Q5_1).

pub mod activations;
pub mod k_rows;
pub mod kernel_timing;
pub mod legacy;
pub mod random;
pub mod tiles;

use candle_core::quantized::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K,
    BlockQ8K, BlockQ8_0, BlockQ8_1, GgmlType,
};
use memmap2::Mmap;
use rayon::prelude::*;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

/// Type names joined by their share of bytes, largest first: "Q4_1 + Q6_K".
pub fn by_share(parts: impl IntoIterator<Item = (String, usize)>) -> String {
    let mut bytes: std::collections::BTreeMap<String, usize> = Default::default();
    for (name, n) in parts {
        *bytes.entry(name).or_default() += n;
    }
    let mut v: Vec<_> = bytes.into_iter().collect();
    v.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    v.into_iter()
        .map(|(t, _)| t)
        .collect::<Vec<_>>()
        .join(" + ")
}

/// The quantization types a weight can be kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QType {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
}

impl QType {
    /// The type of a ggml type id, where it is one of these.
    pub fn from_ggml(t: u32) -> Option<Self> {
        Some(match t {
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            10 => Self::Q2K,
            11 => Self::Q3K,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            _ => return None,
        })
    }

    /// ggml's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q2K => "Q2_K",
            Self::Q3K => "Q3_K",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
        }
    }

    /// Values per block.
    pub fn block_values(self) -> usize {
        match self {
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 => 32,
            _ => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        use std::mem::size_of;
        match self {
            Self::Q4_0 => size_of::<BlockQ4_0>(),
            Self::Q4_1 => size_of::<BlockQ4_1>(),
            Self::Q5_0 => size_of::<BlockQ5_0>(),
            Self::Q5_1 => size_of::<BlockQ5_1>(),
            Self::Q8_0 => size_of::<BlockQ8_0>(),
            Self::Q2K => size_of::<BlockQ2K>(),
            Self::Q3K => size_of::<BlockQ3K>(),
            Self::Q4K => size_of::<BlockQ4K>(),
            Self::Q5K => size_of::<BlockQ5K>(),
            Self::Q6K => size_of::<BlockQ6K>(),
        }
    }

    /// What the activations are quantized to for this type's dot product.
    fn activations(self) -> Act {
        match self {
            Self::Q4_0 | Self::Q5_0 | Self::Q8_0 => Act::Q8_0,
            Self::Q4_1 | Self::Q5_1 => Act::Q8_1,
            _ => Act::Q8K,
        }
    }

    /// What the activations are quantized to for this type's tiles.
    fn tile_activations(self) -> Act {
        match self {
            Self::Q4_0 | Self::Q8_0 => Act::Q8_0S,
            Self::Q4_1 => Act::Q8_1F,
            t => t.activations(),
        }
    }
}

/// The Q8 formats activations are quantized to.
#[derive(Clone, Copy, PartialEq)]
enum Act {
    Q8_0,
    /// Q8_0 with each block's integer sum (the tiled Q4_0 and Q8_0 kernels'), in 32 bits.
    Q8_0S,
    Q8_1,
    /// Q8_1 in 32 bits (the tiled Q4_1 kernels').
    Q8_1F,
    Q8K,
}

impl Act {
    /// Bytes of one row of `cols` values.
    fn row_bytes(self, cols: usize) -> usize {
        match self {
            Act::Q8_0 => cols / 32 * activations::Q8_0_BYTES,
            Act::Q8_0S => cols / 32 * activations::Q8_0S_BYTES,
            Act::Q8_1 => cols / 32 * activations::Q8_1_BYTES,
            Act::Q8_1F => cols / 32 * activations::Q8_1F_BYTES,
            Act::Q8K => cols / activations::QK_K * activations::Q8K_BYTES,
        }
    }

    /// Quantize `x` (one row) into `out` (its row bytes).
    fn quantize(self, x: &[f32], out: &mut [u8]) {
        match self {
            Act::Q8_0 => activations::q8_0_into(x, out),
            Act::Q8_0S => activations::q8_0s_into(x, out),
            Act::Q8_1 => activations::q8_1_into(x, out),
            Act::Q8_1F => activations::q8_1f_into(x, out),
            Act::Q8K => activations::q8k_into(x, out),
        }
    }

    /// The values a quantized row stands for (the plain twin's activations).
    fn dequantize(self, row: &[u8]) -> Vec<f32> {
        match self {
            Act::Q8_0 => activations::dequantize_q8(row, activations::Q8_0_BYTES),
            Act::Q8_0S | Act::Q8_1F => activations::dequantize_wide(row),
            Act::Q8_1 => activations::dequantize_q8(row, activations::Q8_1_BYTES),
            Act::Q8K => to_float::<BlockQ8K>(row),
        }
    }
}

/// A block slice's bytes.
fn bytes_of<T>(blocks: &[T]) -> &[u8] {
    // SAFETY: candle's blocks are repr(C) plain data without padding (it asserts their sizes).
    unsafe {
        std::slice::from_raw_parts(blocks.as_ptr() as *const u8, std::mem::size_of_val(blocks))
    }
}

/// Bytes as blocks of `T`.
fn blocks_of<T>(bytes: &[u8]) -> &[T] {
    let size = std::mem::size_of::<T>();
    assert!(
        bytes.len().is_multiple_of(size)
            && (bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>()),
        "whole, aligned blocks"
    );
    // SAFETY: the length and alignment are checked above; every bit pattern is a valid block
    // (integers and f16/f32 fields only).
    unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const T, bytes.len() / size) }
}

fn to_float<T: GgmlType>(bytes: &[u8]) -> Vec<f32> {
    let blocks = blocks_of::<T>(bytes);
    let mut out = vec![0f32; blocks.len() * T::BLCK_SIZE];
    T::to_float(blocks, &mut out);
    out
}

/// How a type's weight rows are dotted with the activation rows.
#[derive(Clone, Copy)]
enum Dot {
    /// All rows at once, each weight block unpacked once.
    Rows(legacy::Kind),
    /// One row at a time.
    One(fn(&[u8], &[u8]) -> f32),
    /// Q4_K and Q6_K: each weight super-block decoded once for up to four rows (`k_rows`).
    KRows(k_rows::Kind),
}

/// candle's dot product of a row of `T` blocks with its activation blocks.
fn candle_dot<T: GgmlType>(w: &[u8], x: &[u8]) -> f32 {
    let w = blocks_of::<T>(w);
    T::vec_dot(w.len() * T::BLCK_SIZE, w, blocks_of::<T::VecDotType>(x))
}

/// Quantized activation rows, in words so that every row's blocks are aligned (rows are whole
/// blocks, and no block needs more than 4-byte alignment).
struct ActRows {
    words: Vec<u64>,
    row_bytes: usize,
    m: usize,
}

impl ActRows {
    fn new(row_bytes: usize, m: usize) -> Self {
        Self {
            words: vec![0u64; (row_bytes * m).div_ceil(8)],
            row_bytes,
            m,
        }
    }

    fn row(&self, r: usize) -> &[u8] {
        // SAFETY: the words hold at least row_bytes·m bytes; callers ask for r < m.
        let all = unsafe {
            std::slice::from_raw_parts(self.words.as_ptr() as *const u8, self.words.len() * 8)
        };
        &all[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Every row's bytes, one after another (the padding to a word left out).
    fn all_mut(&mut self) -> &mut [u8] {
        let len = self.words.len() * 8;
        // SAFETY: as above, uniquely borrowed.
        let all =
            unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr() as *mut u8, len) };
        &mut all[..self.row_bytes * self.m]
    }
}

/// candle's Q5_0 and Q5_1 dot products take blocks in pairs (debug builds assert it): a row of
/// an odd number of blocks sums its products block by block from the dequantised values.
fn pairs_dot<T: GgmlType>(w: &[u8], x: &[u8]) -> f32 {
    let blocks = w.len() / std::mem::size_of::<T>();
    if blocks.is_multiple_of(2) {
        return candle_dot::<T>(w, x);
    }
    let (ws, xs) = (to_float::<T>(w), to_float::<T::VecDotType>(x));
    ws.iter().zip(&xs).map(|(a, b)| a * b).sum()
}

/// Where a matrix's blocks are.
enum Blocks {
    /// In place, in the mapped file.
    Mapped { map: Arc<Mmap>, range: Range<usize> },
    /// A copy, for blocks the file does not align (words, so the copy is aligned).
    Owned { words: Vec<u64>, len: usize },
}

/// Whether every value is finite: exponent bits tested without an early exit, which the
/// compiler turns into a few SIMD instructions per register of values.
fn all_finite(x: &[f32]) -> bool {
    const EXPONENT: u32 = 0x7f80_0000;
    !x.iter()
        .fold(false, |any, v| any | (v.to_bits() & EXPONENT == EXPONENT))
}

/// One matrix's share of a product pass: how it reads its rows, the activation rows in the
/// form it reads, its stretch per task, and what follows each stretch.
struct Part<'a> {
    matrix: &'a QMatrix,
    tiles: Option<&'a tiles::Tiles>,
    dot: Dot,
    act_rows: Vec<&'a [u8]>,
    per_task: usize,
    then: &'a Epilogue<'a>,
}

impl Part<'_> {
    /// Output rows `first..` of every activation row, each written where it ends up
    /// (`outs[a][j]` is y[a, first + j]): no transposition after.
    fn rows_into(&self, first: usize, outs: &mut [&mut [f32]]) {
        if let Some(tiles) = self.tiles {
            return tiles.rows_into(first, &self.act_rows, outs);
        }
        let mut out = vec![0f32; self.act_rows.len()];
        for j in 0..outs[0].len() {
            let w = self.matrix.row(first + j);
            match self.dot {
                Dot::Rows(kind) => legacy::dot_rows(kind, w, &self.act_rows, &mut out),
                Dot::KRows(kind) => k_rows::dot_rows(kind, w, &self.act_rows, &mut out),
                Dot::One(dot) => {
                    for (o, x) in out.iter_mut().zip(&self.act_rows) {
                        *o = dot(w, x);
                    }
                }
            }
            for (o, &v) in outs.iter_mut().zip(&out) {
                o[j] = v;
            }
        }
    }
}

/// A `[rows, cols]` weight (the `[out, in]` of a linear layer, or an embedding table) kept as
/// quantized blocks, rows whole blocks.
pub struct QMatrix {
    qtype: QType,
    rows: usize,
    cols: usize,
    blocks: Blocks,
    /// Stored row of each Hugging Face row, where llama.cpp stores them in another order
    /// (the interleaved Q and K rows of RoPE).
    stored_rows: Option<Vec<u32>>,
    /// The rows repacked for the products, in Hugging Face's order, by the first product
    /// (so a matrix only ever looked up, an untied embedding, is never copied); None where
    /// the type has no tiles or the rows fill none.
    tiles: OnceLock<Option<tiles::Tiles>>,
}

/// Work on a stretch of a product's outputs as its task finishes: `(first, ys)`, `ys[a]`
/// being y[a, first..] for each activation row a.
pub type Epilogue<'a> = dyn Fn(usize, &mut [&mut [f32]]) + Sync + 'a;

/// Products smaller than this many multiply-adds run on the calling thread: splitting them
/// costs more than it saves.
const SERIAL_BELOW: usize = 1 << 15;
/// The same for matrices in tiles, whose kernels are several times faster than the row
/// kernels (candle's among them). While the pool's other thread slept between products, a
/// split had to wake it, and SmolLM2 Q4_1 with an adapter decoded one row fastest at 2^21
/// (5.9–6.3 ms a step at 2^15, 4.9–5.3 ms at 2^21). A forward pass now keeps that thread
/// spinning ([`crate::threads::BusyWorkers`]), so a split costs a steal: at 2^17 one column
/// decodes at 160–164 steps/s against 118–121 at 2^21 (`bench columns --k 4`, two
/// alternating rounds; 2^19 and 2^15 within noise of 2^17), and four columns did not move.
/// Larger models' matrices split at either.
const SERIAL_BELOW_TILED: usize = 1 << 17;
/// Activation values from which a product quantizes its rows on both threads: a prompt's
/// rows, not a decode step's.
const QUANTIZE_SERIAL_BELOW: usize = 1 << 13;
/// Output rows per parallel task at least: enough to amortise scheduling.
const MIN_ROWS_PER_TASK: usize = 64;

impl QMatrix {
    /// The blocks of `range` in `map`, as `[rows, cols]` of `qtype`, Hugging Face row i
    /// stored at `stored_rows[i]` where given; a one-line reason where they cannot be.
    pub fn mapped(
        qtype: QType,
        (rows, cols): (usize, usize),
        map: Arc<Mmap>,
        range: Range<usize>,
        stored_rows: Option<Vec<u32>>,
    ) -> Result<Self, String> {
        if range.end > map.len() {
            return Err(format!(
                "ends at byte {} of a {}-byte file (truncated?)",
                range.end,
                map.len()
            ));
        }
        Self::check(qtype, (rows, cols), range.len())?;
        // Blocks hold f16 fields: read in place where they are 2-aligned (GGUF aligns tensor
        // data to 32 bytes by default), else copied once.
        let blocks = if (map.as_ptr() as usize + range.start).is_multiple_of(8) {
            Blocks::Mapped { map, range }
        } else {
            let mut words = vec![0u64; range.len().div_ceil(8)];
            // SAFETY: `words` has at least range.len() bytes.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, range.len())
            };
            bytes.copy_from_slice(&map[range.clone()]);
            Blocks::Owned {
                words,
                len: range.len(),
            }
        };
        let m = Self {
            qtype,
            rows,
            cols,
            blocks,
            stored_rows: None,
            tiles: OnceLock::new(),
        };
        match stored_rows {
            Some(order) => m.with_row_order(order),
            None => Ok(m),
        }
    }

    /// A copy of `bytes` as `[rows, cols]` of `qtype` (blocks not in a mapped file: tests,
    /// tensors read from elsewhere).
    pub fn owned(qtype: QType, shape: (usize, usize), bytes: &[u8]) -> Result<Self, String> {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        // SAFETY: `words` has at least bytes.len() bytes.
        unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, bytes.len()) }
            .copy_from_slice(bytes);
        Self::check(qtype, shape, bytes.len())?;
        Ok(Self {
            qtype,
            rows: shape.0,
            cols: shape.1,
            blocks: Blocks::Owned {
                words,
                len: bytes.len(),
            },
            stored_rows: None,
            tiles: OnceLock::new(),
        })
    }

    /// The tiles, packed on first use where the type has them (and the build their kernels).
    /// The mapped blocks are then read only for lookups and exports: their pages leave the
    /// resident set, so a repacked model holds about one copy of its weights.
    fn tiles(&self) -> Option<&tiles::Tiles> {
        self.tiles
            .get_or_init(|| {
                if !cfg!(simd_kernels) {
                    return None;
                }
                let tiles = tiles::Tiles::pack(self.qtype, self.rows, self.cols, |i| self.row(i));
                if let (Some(_), Blocks::Mapped { map, range }) = (&tiles, &self.blocks) {
                    crate::formats::pages::release(map, range.clone());
                }
                tiles
            })
            .as_ref()
    }

    /// Whether `len` bytes are `[rows, cols]` of `qtype`.
    fn check(qtype: QType, (rows, cols): (usize, usize), len: usize) -> Result<(), String> {
        let bv = qtype.block_values();
        if !cols.is_multiple_of(bv) {
            return Err(format!(
                "rows of {cols} values are not whole {} blocks of {bv}",
                qtype.name()
            ));
        }
        let want = rows * cols / bv * qtype.block_bytes();
        if len != want {
            return Err(format!(
                "holds {len} bytes, expected {want} for {rows}×{cols} {} (truncated?)",
                qtype.name()
            ));
        }
        Ok(())
    }

    /// Read rows in another order: Hugging Face row i is stored row `stored_rows[i]`.
    pub fn with_row_order(mut self, stored_rows: Vec<u32>) -> Result<Self, String> {
        if stored_rows.len() != self.rows || stored_rows.iter().any(|&r| r as usize >= self.rows) {
            return Err("a row order that is not one of its rows".into());
        }
        self.stored_rows = Some(stored_rows);
        self.tiles = OnceLock::new();
        Ok(self)
    }

    pub fn qtype(&self) -> QType {
        self.qtype
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes of its blocks.
    pub fn bytes(&self) -> usize {
        self.data().len()
    }

    fn data(&self) -> &[u8] {
        match &self.blocks {
            Blocks::Mapped { map, range } => &map[range.clone()],
            Blocks::Owned { words, len } => {
                // SAFETY: `words` holds `len` bytes of blocks.
                unsafe { std::slice::from_raw_parts(words.as_ptr() as *const u8, *len) }
            }
        }
    }

    fn row_bytes(&self) -> usize {
        self.cols / self.qtype.block_values() * self.qtype.block_bytes()
    }

    /// Hugging Face row `i`'s blocks.
    fn row(&self, i: usize) -> &[u8] {
        let stored = self.stored_rows.as_ref().map_or(i, |s| s[i] as usize);
        let n = self.row_bytes();
        &self.data()[stored * n..(stored + 1) * n]
    }

    /// `x [m, cols]` (f32, row-major) times the matrix transposed: `[m, rows]`.
    pub fn matmul_t(&self, x: &[f32], m: usize) -> Vec<f32> {
        self.matmul_t_then(x, m, &|_, _| {})
    }

    /// [`QMatrix::matmul_t`], then `then(first, ys)` on each stretch of output rows as the
    /// task that computed it finishes (`ys[a]` is y[a, first..], one slice per activation
    /// row), in the same parallel pass.
    pub fn matmul_t_then(&self, x: &[f32], m: usize, then: &Epilogue<'_>) -> Vec<f32> {
        Self::matmul_t_group(x, m, &[(self, then)])
            .pop()
            .expect("one product")
    }

    /// [`QMatrix::matmul_t_then`] of several matrices of one width on the same `x [m, cols]`
    /// (a layer's query, key and value, or its gate and up) in one parallel pass. The rows are
    /// quantized once for every matrix that reads them in the same form, and the matrices'
    /// stretches are tasks of one pass, so a matrix too small to split runs beside the others
    /// rather than alone while the other thread waits. Each output is bit for bit what its own
    /// product gives: a row's sums depend neither on its task nor on its neighbours.
    pub fn matmul_t_group(
        x: &[f32],
        m: usize,
        products: &[(&QMatrix, &Epilogue<'_>)],
    ) -> Vec<Vec<f32>> {
        let cols = products.first().map_or(0, |(q, _)| q.cols);
        assert!(
            products.iter().all(|(q, _)| q.cols == cols),
            "a group's matrices read one input: widths {:?}",
            products.iter().map(|(q, _)| q.cols).collect::<Vec<_>>()
        );
        // Quantizing to 8 bits reads a NaN as 0 and scales around an infinity, so a row that
        // is not all finite would come out as finite nonsense (all-zero logits: a uniform
        // distribution) after integer sums no kernel is made for. Such a row goes through the
        // kernels as zeros, and its outputs are NaN at the end, as a float product's.
        let bad: Vec<usize> = x
            .chunks(cols.max(1))
            .enumerate()
            .filter(|(_, row)| !all_finite(row))
            .map(|(a, _)| a)
            .collect();
        let zeroed;
        let x = if bad.is_empty() {
            x
        } else {
            let mut clean = x.to_vec();
            for &a in &bad {
                clean[a * cols..(a + 1) * cols].fill(0.0);
            }
            zeroed = clean;
            &zeroed
        };
        let mut forms: Vec<(Act, ActRows)> = Vec::new();
        for (q, _) in products {
            assert_eq!(x.len(), m * q.cols, "x is [m, cols]");
            let act = q.act();
            if !forms.iter().any(|(a, _)| *a == act) {
                forms.push((act, q.quantize_rows(x, m, act)));
            }
        }
        let parts: Vec<Part> = products
            .iter()
            .map(|&(matrix, then)| {
                let act = matrix.act();
                let (_, acts) = forms.iter().find(|(a, _)| *a == act).expect("quantized");
                Part {
                    matrix,
                    tiles: matrix.tiles(),
                    dot: matrix.dot(),
                    act_rows: (0..m).map(|r| acts.row(r)).collect(),
                    per_task: matrix.rows_per_task(m),
                    then,
                }
            })
            .collect();
        let mut ys: Vec<Vec<f32>> = parts
            .iter()
            .map(|p| vec![0f32; m * p.matrix.rows])
            .collect();
        // (part, its first output row, that stretch of every activation row's outputs).
        type Task<'y> = (usize, usize, Vec<&'y mut [f32]>);
        let mut tasks: Vec<Task> = Vec::new();
        for (p, (y, part)) in ys.iter_mut().zip(&parts).enumerate() {
            if y.is_empty() {
                continue;
            }
            let first_task = tasks.len();
            for row in y.chunks_mut(part.matrix.rows) {
                for (t, stretch) in row.chunks_mut(part.per_task).enumerate() {
                    if first_task + t == tasks.len() {
                        tasks.push((p, t * part.per_task, Vec::with_capacity(m)));
                    }
                    tasks[first_task + t].2.push(stretch);
                }
            }
        }
        let run = |(p, first, outs): &mut Task| {
            let part = &parts[*p];
            part.rows_into(*first, outs);
            (part.then)(*first, outs);
        };
        match tasks.as_mut_slice() {
            [] => {}
            [one] => run(one),
            all => all.par_iter_mut().for_each(run),
        }
        drop(tasks);
        for &a in &bad {
            for (y, part) in ys.iter_mut().zip(&parts) {
                let rows = part.matrix.rows;
                y[a * rows..(a + 1) * rows].fill(f32::NAN);
            }
        }
        ys
    }

    /// The form this matrix's products read their activation rows in.
    fn act(&self) -> Act {
        match self.tiles() {
            Some(_) => self.qtype.tile_activations(),
            None => self.qtype.activations(),
        }
    }

    /// The kernel for a row at a time, where the type has no tiles.
    fn dot(&self) -> Dot {
        match self.qtype {
            QType::Q4_0 => Dot::Rows(legacy::Kind::Q4_0),
            QType::Q4_1 => Dot::Rows(legacy::Kind::Q4_1),
            QType::Q8_0 => Dot::Rows(legacy::Kind::Q8_0),
            QType::Q5_0 => Dot::One(pairs_dot::<BlockQ5_0>),
            QType::Q5_1 => Dot::One(pairs_dot::<BlockQ5_1>),
            QType::Q2K => Dot::One(candle_dot::<BlockQ2K>),
            QType::Q3K => Dot::One(candle_dot::<BlockQ3K>),
            QType::Q4K => Dot::KRows(k_rows::Kind::Q4K),
            QType::Q5K => Dot::One(candle_dot::<BlockQ5K>),
            QType::Q6K => Dot::KRows(k_rows::Kind::Q6K),
        }
    }

    /// Output rows per task of a product with m activation rows: all of them below the size
    /// worth splitting, else one long stretch per task, which keeps each core's prefetcher on
    /// one stream, with a few tasks per thread to balance the load.
    fn rows_per_task(&self, m: usize) -> usize {
        let serial_below = if self.tiles().is_some() {
            SERIAL_BELOW_TILED
        } else {
            SERIAL_BELOW
        };
        if m * self.rows * self.cols < serial_below {
            self.rows
        } else {
            self.rows
                .div_ceil(4 * rayon::current_num_threads())
                .max(MIN_ROWS_PER_TASK)
                .next_multiple_of(tiles::TASK_ROWS)
        }
    }

    /// The m rows of `x` quantized for this type's dot product.
    /// Each row on its own, so a row's bytes do not depend on how the rows are split.
    fn quantize_rows(&self, x: &[f32], m: usize, act: Act) -> ActRows {
        let row_bytes = act.row_bytes(self.cols);
        let mut rows = ActRows::new(row_bytes, m);
        if m * self.cols < QUANTIZE_SERIAL_BELOW {
            rows.all_mut()
                .chunks_exact_mut(row_bytes)
                .zip(x.chunks_exact(self.cols))
                .for_each(|(q, x)| act.quantize(x, q));
        } else {
            rows.all_mut()
                .par_chunks_exact_mut(row_bytes)
                .zip(x.par_chunks_exact(self.cols))
                .for_each(|(q, x)| act.quantize(x, q));
        }
        rows
    }

    /// The plain twin of [`QMatrix::matmul_t`]: both sides dequantized (the activations after
    /// the same Q8 quantization), each dot product summed in f64.
    pub fn matmul_t_reference(&self, x: &[f32], m: usize) -> Vec<f32> {
        let act = self.qtype.activations();
        let acts = self.quantize_rows(x, m, act);
        let mut out = Vec::with_capacity(m * self.rows);
        for r in 0..m {
            let xs = act.dequantize(acts.row(r));
            for i in 0..self.rows {
                let w = self.dequantize_row(i);
                out.push(
                    w.iter()
                        .zip(&xs)
                        .map(|(&a, &b)| a as f64 * b as f64)
                        .sum::<f64>() as f32,
                );
            }
        }
        out
    }

    /// Hugging Face row `i` in f32.
    pub fn dequantize_row(&self, i: usize) -> Vec<f32> {
        let row = self.row(i);
        match self.qtype {
            QType::Q4_0 => to_float::<BlockQ4_0>(row),
            QType::Q4_1 => to_float::<BlockQ4_1>(row),
            QType::Q5_0 => to_float::<BlockQ5_0>(row),
            QType::Q5_1 => to_float::<BlockQ5_1>(row),
            QType::Q8_0 => to_float::<BlockQ8_0>(row),
            QType::Q2K => to_float::<BlockQ2K>(row),
            QType::Q3K => to_float::<BlockQ3K>(row),
            QType::Q4K => to_float::<BlockQ4K>(row),
            QType::Q5K => to_float::<BlockQ5K>(row),
            QType::Q6K => to_float::<BlockQ6K>(row),
        }
    }

    /// Rows `ids` in f32, `[ids.len(), cols]` (embedding lookups).
    pub fn dequantize_rows(&self, ids: &[u32]) -> Vec<f32> {
        ids.iter()
            .flat_map(|&i| self.dequantize_row(i as usize))
            .collect()
    }

    /// The whole matrix in f32, Hugging Face's row order (exports, the twin's checks).
    pub fn dequantize(&self) -> Vec<f32> {
        (0..self.rows)
            .into_par_iter()
            .flat_map_iter(|i| self.dequantize_row(i))
            .collect()
    }
}

// candle's block types must keep the sizes this module's byte arithmetic assumes.
const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == activations::Q8_1_BYTES);
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == activations::Q8_0_BYTES);
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const TYPES: [QType; 10] = [
        QType::Q4_0,
        QType::Q4_1,
        QType::Q5_0,
        QType::Q5_1,
        QType::Q8_0,
        QType::Q2K,
        QType::Q3K,
        QType::Q4K,
        QType::Q5K,
        QType::Q6K,
    ];

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104729) % 1009) as f32 - 504.0) / 300.0)
            .collect()
    }

    fn quantize<T: GgmlType>(w: &[f32]) -> Vec<u8> {
        let mut blocks = vec![T::zeros(); w.len() / T::BLCK_SIZE];
        T::from_float(w, &mut blocks);
        bytes_of(&blocks).to_vec()
    }

    /// A `[rows, cols]` matrix of `t` from made-up values, quantized by candle.
    pub(crate) fn matrix(t: QType, rows: usize, cols: usize) -> QMatrix {
        let w = values(rows * cols, 1);
        let bytes = match t {
            QType::Q4_0 => quantize::<BlockQ4_0>(&w),
            QType::Q4_1 => quantize::<BlockQ4_1>(&w),
            QType::Q5_0 => quantize::<BlockQ5_0>(&w),
            QType::Q5_1 => quantize::<BlockQ5_1>(&w),
            QType::Q8_0 => quantize::<BlockQ8_0>(&w),
            QType::Q2K => quantize::<BlockQ2K>(&w),
            QType::Q3K => quantize::<BlockQ3K>(&w),
            QType::Q4K => quantize::<BlockQ4K>(&w),
            QType::Q5K => quantize::<BlockQ5K>(&w),
            QType::Q6K => quantize::<BlockQ6K>(&w),
        };
        QMatrix::owned(t, (rows, cols), &bytes).unwrap()
    }

    /// Many rows (quantized on both threads) give each row the bytes it gets alone.
    #[test]
    fn rows_quantize_alike_split_or_alone() {
        let (cols, m) = (512, 40);
        assert!(m * cols >= QUANTIZE_SERIAL_BELOW && cols < QUANTIZE_SERIAL_BELOW);
        let x = values(m * cols, 9);
        for t in [QType::Q4_1, QType::Q4K, QType::Q8_0] {
            let q = matrix(t, 16, cols);
            for act in [t.activations(), t.tile_activations()] {
                let all = q.quantize_rows(&x, m, act);
                for r in 0..m {
                    let alone = q.quantize_rows(&x[r * cols..(r + 1) * cols], 1, act);
                    assert_eq!(all.row(r), alone.row(0), "{t:?} row {r}");
                }
            }
        }
    }

    /// The epilogue meets every output once, after the product wrote it, whether the product
    /// runs serially or split into tasks, tiled or not: the result is the product's, then
    /// the epilogue's step, bit for bit.
    #[test]
    fn the_epilogue_follows_the_product_on_every_stretch_once() {
        // 2^17 multiply-adds and more split into tasks; 72 rows of 512 at one row do not.
        for (t, rows, m) in [
            (QType::Q4_1, 72, 1),
            (QType::Q4_1, 576, 1),
            (QType::Q4_1, 576, 4),
            (QType::Q5_0, 576, 3),
        ] {
            let (q, cols) = (matrix(t, rows, 512), 512);
            let x = values(m * cols, 5);
            let plain = q.matmul_t(&x, m);
            let step = |a: usize, j: usize, y: f32| 0.25f32.mul_add(y, (a * rows + j) as f32);
            let seen = std::sync::Mutex::new(vec![0u32; m * rows]);
            let got = q.matmul_t_then(&x, m, &|first, ys: &mut [&mut [f32]]| {
                assert_eq!(ys.len(), m);
                let mut seen = seen.lock().unwrap();
                for (a, y) in ys.iter_mut().enumerate() {
                    for (j, y) in y.iter_mut().enumerate() {
                        seen[a * rows + first + j] += 1;
                        *y = step(a, first + j, *y);
                    }
                }
            });
            assert!(
                seen.into_inner().unwrap().iter().all(|&n| n == 1),
                "{t:?} {rows} {m}"
            );
            for (i, (g, p)) in got.iter().zip(&plain).enumerate() {
                let want = step(i / rows, i % rows, *p);
                assert_eq!(
                    g.to_bits(),
                    want.to_bits(),
                    "{t:?} {rows} × {m}: output {i}"
                );
            }
        }
    }

    /// Several matrices on one input in one pass give each its own product and epilogue, bit
    /// for bit: types that read the rows in different forms (so the rows are quantized once
    /// per form), tiled and not, small ones that run as one task beside split ones, and an
    /// empty one.
    #[test]
    fn a_group_of_products_gives_each_its_own() {
        let cols = 512;
        let group = [
            (QType::Q4_1, 576),
            (QType::Q4_1, 64),
            (QType::Q8_0, 192),
            (QType::Q4K, 72),
            (QType::Q5_0, 70),
            (QType::Q4_1, 0),
        ]
        .map(|(t, rows)| matrix(t, rows, cols));
        let step = |p: usize| {
            move |first: usize, ys: &mut [&mut [f32]]| {
                for (a, y) in ys.iter_mut().enumerate() {
                    for (j, y) in y.iter_mut().enumerate() {
                        *y = 0.5f32.mul_add(*y, (p * 1000 + a * 100 + first + j) as f32);
                    }
                }
            }
        };
        let epilogues: Vec<_> = (0..group.len()).map(step).collect();
        for m in [1, 4, 16] {
            let x = values(m * cols, 9);
            let products: Vec<(&QMatrix, &Epilogue)> = group
                .iter()
                .zip(&epilogues)
                .map(|(q, e)| (q, e as &Epilogue))
                .collect();
            let got = QMatrix::matmul_t_group(&x, m, &products);
            for (p, (q, y)) in group.iter().zip(&got).enumerate() {
                let alone = q.matmul_t_then(&x, m, &epilogues[p]);
                assert_eq!(y.len(), m * q.rows(), "{:?} × {m}", q.qtype());
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(y), bits(&alone), "{:?} {} × {m}", q.qtype(), q.rows());
            }
        }
    }

    /// A row with a NaN or an infinity gives NaN outputs, as a float product would, and the
    /// other rows of its batch keep their values.
    #[test]
    fn a_row_that_is_not_finite_gives_nan() {
        let cols = 512;
        for t in [QType::Q4_1, QType::Q8_0, QType::Q4K, QType::Q5_0] {
            let q = matrix(t, 72, cols);
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut x = values(3 * cols, 4);
                let clean = q.matmul_t(&x, 3);
                x[cols + 17] = bad;
                let y = q.matmul_t(&x, 3);
                assert!(y[72..144].iter().all(|v| v.is_nan()), "{t:?} {bad}");
                assert_eq!(y[..72], clean[..72]);
                assert_eq!(y[144..], clean[144..]);
            }
        }
    }

    #[test]
    fn every_type_matches_its_plain_twin_and_rows_do_not_depend_on_their_batch() {
        // 70 rows: two full tasks and a short one; 72, whole tiles of eight for the types that
        // have them.
        let (cols, m) = (512, 3);
        let x = values(m * cols, 2);
        let tiled = [
            QType::Q4_0,
            QType::Q4_1,
            QType::Q8_0,
            QType::Q4K,
            QType::Q6K,
        ]
        .map(|t| (t, 72));
        for (t, rows) in TYPES.map(|t| (t, 70)).into_iter().chain(tiled) {
            assert_eq!(
                matrix(t, rows, cols).tiles().is_some(),
                rows == 72 && cfg!(simd_kernels)
            );
            let q = matrix(t, rows, cols);
            let (fast, slow) = (q.matmul_t(&x, m), q.matmul_t_reference(&x, m));
            for r in 0..m {
                let xr = &x[r * cols..(r + 1) * cols];
                for i in 0..rows {
                    let w = q.dequantize_row(i);
                    let scale: f32 = w.iter().zip(xr).map(|(a, b)| (a * b).abs()).sum();
                    let (f, s) = (fast[r * rows + i], slow[r * rows + i]);
                    assert!(
                        (f - s).abs() <= 1e-5 * scale + 1e-6,
                        "{} row {r} out {i}: {f} vs {s}",
                        t.name()
                    );
                }
                let alone = q.matmul_t(xr, 1);
                assert_eq!(alone[..], fast[r * rows..(r + 1) * rows], "{}", t.name());
            }
        }
    }

    #[test]
    fn rows_of_an_odd_number_of_blocks_work_for_every_type() {
        // 96 values: three blocks of 32 (candle pairs Q5 blocks); the k-quants need 256.
        for t in TYPES.into_iter().filter(|t| t.block_values() == 32) {
            let q = matrix(t, 5, 96);
            let x = values(2 * 96, 4);
            let (fast, slow) = (q.matmul_t(&x, 2), q.matmul_t_reference(&x, 2));
            for (f, s) in fast.iter().zip(&slow) {
                assert!(
                    (f - s).abs() <= 1e-4 * s.abs().max(1.0),
                    "{}: {f} vs {s}",
                    t.name()
                );
            }
        }
    }

    #[test]
    fn a_row_order_reads_rows_where_llama_cpp_stored_them() {
        // Tiles take the rows in Hugging Face's order.
        for (t, cols) in [(QType::Q8_0, 64), (QType::Q4K, 256), (QType::Q6K, 256)] {
            let q = matrix(t, 8, cols);
            let plain = q.matmul_t(&values(cols, 3), 1);
            let order: Vec<u32> = vec![1, 0, 3, 2, 5, 4, 7, 6];
            let q = q.with_row_order(order.clone()).unwrap();
            let moved = q.matmul_t(&values(cols, 3), 1);
            for (i, &from) in order.iter().enumerate() {
                assert_eq!(moved[i], plain[from as usize], "{}", t.name());
            }
        }
        assert!(matrix(QType::Q8_0, 8, 64)
            .with_row_order(vec![8; 8])
            .is_err());
    }

    #[test]
    fn wrong_sizes_are_refused_with_a_reason() {
        let e = QMatrix::owned(QType::Q4_1, (2, 64), &[0u8; 79])
            .err()
            .unwrap();
        assert!(e.contains("expected 80") && e.contains("truncated"), "{e}");
        let e = QMatrix::owned(QType::Q4K, (1, 64), &[0u8; 144])
            .err()
            .unwrap();
        assert!(e.contains("not whole Q4_K blocks of 256"), "{e}");
    }
}
