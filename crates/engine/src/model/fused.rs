//! The fused GPU forward pass of a Llama-family model: decode.cu's kernels launched straight
//! from here, a handful per layer, over activation buffers allocated once per generation.
//!
//! candle runs a decode step as about thirty ops per layer, each with its own allocation,
//! launch and (for strided inputs) a host-to-device copy of its layout; attention copies the
//! whole key/value cache contiguous and repeats grouped heads every layer and token. Here a
//! layer is nine launches with fixed arguments: norm, the q/k/v products (one launch), RoPE
//! with the cache write, attention over the cache in place, the output product added to the
//! residual, norm, gate and up (one launch), SwiGLU, and the down product added to the
//! residual. The only host round trips are the token ids going up and the logits coming back.
//!
//! Weights are read where they live: the blended working buffer (an α change is seen by the
//! next step), both endpoints for batched columns (each sequence at its own α), or the base and
//! both adapters' factors for the factored path (their low-rank products beside the weight's,
//! in the same launch). The candle path in llama.rs stays the reference: tests/gpu.rs holds
//! the two together.

use super::param::{Mix, Param};
use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaDevice, DType, Device, Result, Storage, Tensor};
use std::sync::Arc;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/decode.ptx"));
const MODULE: &str = "lerpscope_decode";

/// Rows one product launch takes at most (decode.cu's largest `MR`).
const ROWS_PER_LAUNCH: usize = 16;
/// Rows one pass through the layers takes at most: the activation buffers are sized for it (or
/// for the batch, if larger), and longer prompts go through in chunks of whole tokens.
const ROWS_PER_PASS: usize = 64;
/// Warps per block of the product kernel: one output each.
const PRODUCT_WARPS: u32 = 8;
const THREADS: u32 = 256;
/// decode.cu's `MAX_SEGS` and `MAX_LR_SEGS`.
const MAX_SEGS: usize = 6;
const MAX_LR_SEGS: usize = 3;
/// Head dimensions the attention kernel takes (even, 32 lanes × at most 8 each).
const MAX_HEAD_DIM: usize = 256;
/// decode.cu's `ATT_WARPS`: one block of this many warps per (row, head).
const ATTENTION_THREADS: u32 = 8 * 32;

/// What the fused pass needs of a Llama model: its params and shape.
pub(crate) struct Parts<'a> {
    pub embed: &'a Param,
    pub blocks: Vec<BlockParts<'a>>,
    pub norm: &'a Param,
    pub lm_head: &'a Param,
    /// `[1, head_dim / 2]` f32 (scaling already applied).
    pub inv_freq: &'a Tensor,
    pub eps: f64,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub vocab: usize,
}

pub(crate) struct BlockParts<'a> {
    pub attn_norm: &'a Param,
    pub q: &'a Param,
    pub k: &'a Param,
    pub v: &'a Param,
    pub o: &'a Param,
    pub mlp_norm: &'a Param,
    pub gate: &'a Param,
    pub up: &'a Param,
    pub down: &'a Param,
}

/// A weight as device addresses.
#[derive(Clone, Copy, Default)]
struct Weight {
    /// Endpoint A, or the working tensor.
    a: u64,
    /// Endpoint B where the pair differs there, else 0.
    b: u64,
    low_rank: Option<LowRank>,
    /// Outputs (rows of an `[out, in]` weight; columns of a vector are its length).
    n: usize,
}

/// Both adapters' factors of a weight: `up [n, rank]`, `down [rank, in]`, A's ranks first.
#[derive(Clone, Copy, Default)]
struct LowRank {
    up: u64,
    down: u64,
    rank: usize,
    split: usize,
}

struct Layer {
    attn_norm: Weight,
    q: Weight,
    k: Weight,
    v: Weight,
    o: Weight,
    mlp_norm: Weight,
    gate: Weight,
    up: Weight,
    down: Weight,
}

/// decode.cu's kernels for one dtype.
struct Kernels {
    /// Products for up to 1, 4 and 16 rows.
    linear: [CudaFunction; 3],
    lowrank_add: CudaFunction,
    embed: CudaFunction,
    rms_norm: CudaFunction,
    rope_kv: CudaFunction,
    attention: CudaFunction,
    swiglu: CudaFunction,
}

impl Kernels {
    fn load(dev: &CudaDevice, dtype: DType) -> Result<Self> {
        let suffix = match dtype {
            DType::F32 => "f32",
            DType::F16 => "f16",
            _ => "bf16",
        };
        // Through candle's module cache: the PTX is JIT-compiled once per device.
        let load = |name: &str| -> Result<CudaFunction> {
            Ok((*dev.get_or_load_custom_func(name, MODULE, PTX)?).clone())
        };
        let f = |name: &str| load(&format!("{name}_{suffix}"));
        let linear = |rows: usize| load(&format!("linear_{suffix}_{rows}"));
        Ok(Self {
            linear: [linear(1)?, linear(4)?, linear(16)?],
            lowrank_add: f("lowrank_add")?,
            embed: f("embed")?,
            rms_norm: f("rms_norm")?,
            rope_kv: f("rope_kv")?,
            attention: f("attention")?,
            swiglu: load("swiglu")?,
        })
    }
}

/// decode.cu's `Seg`: one weight's product in a launch.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Seg {
    wa: u64,
    wb: u64,
    ba: u64,
    bb: u64,
    y: u64,
    n: i32,
    ldy: i32,
    accumulate: i32,
    pad: i32,
}

/// decode.cu's `Segs`: the products of one launch.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Segs {
    s: [Seg; MAX_SEGS],
    start: [i32; MAX_SEGS + 1],
    count: i32,
    pad: i32,
}

/// decode.cu's `LrSeg`: one weight's low-rank update in a launch.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct LrSeg {
    up: u64,
    u: u64,
    y: u64,
    n: i32,
    rank: i32,
    split: i32,
    ldu: i32,
    ldy: i32,
    pad: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct LrSegs {
    s: [LrSeg; MAX_LR_SEGS],
    count: i32,
    pad: i32,
}

// SAFETY: plain C structs of integers, laid out as decode.cu's (sizes asserted on both sides).
unsafe impl DeviceRepr for Segs {}
unsafe impl DeviceRepr for LrSegs {}
const _: () = assert!(std::mem::size_of::<Seg>() == 56 && std::mem::size_of::<Segs>() == 376);
const _: () = assert!(std::mem::size_of::<LrSeg>() == 48 && std::mem::size_of::<LrSegs>() == 152);

/// One launch of `$f` with `$cfg`, its arguments named in the kernel's order (each bound to a
/// local first: the launch reads them through pointers).
macro_rules! launch {
    ($stream:expr, $f:expr, $cfg:expr; $($name:ident = $value:expr),* $(,)?) => {{
        // (`x = x` is how a launch names an argument already bound to the kernel's name.)
        $(#[allow(clippy::redundant_locals)] let $name = $value;)*
        let mut builder = $stream.launch_builder(&$f);
        $(builder.arg(&$name);)*
        // SAFETY: every address points into a live buffer sized for the rows and shapes passed
        // beside it (weights from the model's tensors, activations from `FusedCache`).
        unsafe { builder.launch($cfg) }.w()?;
    }};
}

fn grid(blocks: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks.max(1) as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The device address of a tensor's first element, for a contiguous CUDA tensor.
fn address(t: &Tensor) -> Result<u64> {
    if !t.is_contiguous() {
        candle_core::bail!("fused pass: a weight is not contiguous");
    }
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cuda(c) = &*storage else {
        candle_core::bail!("fused pass: a weight is not on the GPU");
    };
    let stream = c.device.cuda_stream();
    let base = match t.dtype() {
        DType::F32 => c.as_cuda_slice::<f32>()?.device_ptr(&stream).0,
        DType::F16 => c.as_cuda_slice::<half::f16>()?.device_ptr(&stream).0,
        DType::BF16 => c.as_cuda_slice::<half::bf16>()?.device_ptr(&stream).0,
        d => candle_core::bail!("fused pass: weights in {d:?}"),
    };
    Ok(base + (layout.start_offset() * t.dtype().size_in_bytes()) as u64)
}

fn slice_address<T>(s: &CudaSlice<T>, dev: &CudaDevice) -> u64 {
    s.device_ptr(&dev.cuda_stream()).0
}

/// The model's decoder stack as device addresses and the kernels for its dtype.
pub struct FusedLlama {
    dev: CudaDevice,
    /// candle's stream for this device: launches queue behind its ops (the blend).
    stream: Arc<CudaStream>,
    dtype: DType,
    kernels: Kernels,
    embed: Weight,
    layers: Vec<Layer>,
    norm: Weight,
    head: Weight,
    inv_freq: u64,
    eps: f32,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    hidden: usize,
    intermediate: usize,
    vocab: usize,
    /// The most ranks one stage's low-rank products write side by side.
    stage_rank: usize,
    /// The tensors the addresses point into, kept alive.
    _held: Vec<Tensor>,
}

impl FusedLlama {
    /// The fused pass for a model with these parts, where it applies: CUDA, weights of one
    /// half or f32 dtype and contiguous, an even head dimension up to 256, no dynamic RoPE
    /// scaling. `None` elsewhere: the candle path runs.
    pub(crate) fn new(p: &Parts<'_>, dynamic_rope: bool) -> Result<Option<Self>> {
        let Device::Cuda(dev) = p.lm_head.tensor().device() else {
            return Ok(None);
        };
        let dtype = p.lm_head.tensor().dtype();
        let shaped = p.head_dim.is_multiple_of(2)
            && p.head_dim <= MAX_HEAD_DIM
            && p.kv_heads > 0
            && p.heads.is_multiple_of(p.kv_heads);
        if dynamic_rope || !shaped || !crate::weights::blend::supported(dtype) {
            return Ok(None);
        }
        let mut held = vec![p.inv_freq.clone()];
        let mut all_usable = true;
        let mut weight = |param: &Param, n: usize| -> Result<Weight> {
            let tensors = [Some(param.tensor()), param.endpoint_b()];
            let low_rank = param.low_rank();
            let mut usable = tensors
                .iter()
                .flatten()
                .all(|t| t.dtype() == dtype && t.is_contiguous());
            if let Some(lr) = low_rank {
                usable &= [lr.up(), lr.down()]
                    .iter()
                    .all(|t| t.dtype() == dtype && t.is_contiguous());
            }
            if !usable {
                all_usable = false;
                return Ok(Weight::default());
            }
            let a = address(param.tensor())?;
            held.push(param.tensor().clone());
            let b = match param.endpoint_b() {
                Some(t) => {
                    held.push(t.clone());
                    address(t)?
                }
                None => 0,
            };
            let low_rank = match low_rank {
                Some(lr) => {
                    held.extend([lr.up().clone(), lr.down().clone()]);
                    Some(LowRank {
                        up: address(lr.up())?,
                        down: address(lr.down())?,
                        rank: lr.rank(),
                        split: lr.split(),
                    })
                }
                None => None,
            };
            Ok(Weight { a, b, low_rank, n })
        };
        let (h, qn, kvn, inter) = (
            p.hidden,
            p.heads * p.head_dim,
            p.kv_heads * p.head_dim,
            p.intermediate,
        );
        let embed = weight(p.embed, h)?;
        let mut layers = Vec::with_capacity(p.blocks.len());
        for b in &p.blocks {
            layers.push(Layer {
                attn_norm: weight(b.attn_norm, h)?,
                q: weight(b.q, qn)?,
                k: weight(b.k, kvn)?,
                v: weight(b.v, kvn)?,
                o: weight(b.o, h)?,
                mlp_norm: weight(b.mlp_norm, h)?,
                gate: weight(b.gate, inter)?,
                up: weight(b.up, inter)?,
                down: weight(b.down, h)?,
            });
        }
        let norm = weight(p.norm, h)?;
        let head = weight(p.lm_head, p.vocab)?;
        if !all_usable || p.inv_freq.dtype() != DType::F32 {
            return Ok(None);
        }
        let rank = |ws: &[&Weight]| -> usize {
            ws.iter().filter_map(|w| w.low_rank.map(|l| l.rank)).sum()
        };
        let stage_rank = layers
            .iter()
            .flat_map(|l| {
                [
                    rank(&[&l.q, &l.k, &l.v]),
                    rank(&[&l.o]),
                    rank(&[&l.gate, &l.up]),
                    rank(&[&l.down]),
                ]
            })
            .chain([rank(&[&head])])
            .max()
            .unwrap_or(0);
        Ok(Some(Self {
            kernels: Kernels::load(dev, dtype)?,
            stream: dev.cuda_stream(),
            dev: dev.clone(),
            dtype,
            embed,
            layers,
            norm,
            head,
            inv_freq: address(p.inv_freq)?,
            eps: p.eps as f32,
            heads: p.heads,
            kv_heads: p.kv_heads,
            head_dim: p.head_dim,
            hidden: h,
            intermediate: inter,
            vocab: p.vocab,
            stage_rank,
            _held: held,
        }))
    }

    /// Run `ids` (K sequences of t tokens, row-major by sequence) from position `pos` of
    /// `cache`, writing the cache; returns the last position's logits `[K, vocab]` (f32, on
    /// the GPU). With a mix, sequence i runs at `mix.alphas()[i]`.
    pub fn forward(
        &self,
        cache: &mut FusedCache,
        ids: &[u32],
        k: usize,
        pos: usize,
        mix: Option<&Mix>,
    ) -> Result<Tensor> {
        let t = ids.len() / k.max(1);
        if k == 0 || t == 0 || t * k != ids.len() {
            candle_core::bail!("fused pass: {} ids for {k} sequences", ids.len());
        }
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= self.vocab) {
            candle_core::bail!("token id {bad} is outside the vocabulary of {}", self.vocab);
        }
        if pos + t > cache.capacity {
            candle_core::bail!(
                "sequence of {} tokens exceeds the cache of {} positions",
                pos + t,
                cache.capacity
            );
        }
        if cache.sequences != k {
            candle_core::bail!(
                "fused pass: a cache for {} sequences given {k}",
                cache.sequences
            );
        }
        cache.set_mix(&self.dev, mix, k)?;
        let mixed = mix.is_some();
        // Whole tokens per pass, as many as the buffers hold.
        let per_pass = (cache.rows / k).max(1);
        let mut chunk = Vec::with_capacity(k * per_pass.min(t));
        let mut t0 = 0;
        while t0 < t {
            let tc = per_pass.min(t - t0);
            chunk.clear();
            for s in 0..k {
                chunk.extend_from_slice(&ids[s * t + t0..s * t + t0 + tc]);
            }
            let pass = Pass {
                m: k * tc,
                per_seq: tc,
                pos0: pos + t0,
                mixed,
            };
            self.dev
                .memcpy_htod(chunk.as_slice(), &mut cache.ids.slice_mut(..chunk.len()))?;
            self.layers_pass(cache, &pass)?;
            t0 += tc;
            if t0 == t {
                return self.logits(cache, &pass, k);
            }
        }
        unreachable!("t > 0")
    }

    /// Embedding and every layer for the rows of one pass; the residual stream ends in `x`.
    fn layers_pass(&self, c: &FusedCache, p: &Pass) -> Result<()> {
        let b = &c.buf;
        let (keep, take) = c.mix_addresses(p.mixed);
        let (h, m) = (self.hidden, p.m);
        // Low-rank updates are per-sequence weights: without a mix the base runs alone, as on
        // the candle path.
        let (embed_up, embed_down, embed_rank, embed_split) = match self.embed.low_rank {
            Some(lr) if p.mixed => (lr.up, lr.down, lr.rank, lr.split),
            _ => (0, 0, 0, 0),
        };
        launch!(self.stream, self.kernels.embed, grid(m);
            ids = b.ids, ea = self.embed.a, eb = self.embed.b, up = embed_up,
            down = embed_down, rank = embed_rank as i32, split = embed_split as i32,
            keep = keep, take = take, rows_per_seq = p.per_seq as i32, x = b.x, h = h as i32);
        let (qn, kvn) = (self.heads * self.head_dim, self.kv_heads * self.head_dim);
        for (li, l) in self.layers.iter().enumerate() {
            self.norm(c, p, &l.attn_norm, (0, 1, m))?;
            self.products(
                c,
                p,
                (b.hn, h),
                &[
                    (&l.q, b.q, qn, false),
                    (&l.k, b.k, kvn, false),
                    (&l.v, b.v, kvn, false),
                ],
            )?;
            let (kc, vc) = c.layer_cache(li, self.dtype);
            let half = self.head_dim / 2;
            let work = m * (self.heads + self.kv_heads) * half + m * kvn;
            launch!(self.stream, self.kernels.rope_kv, grid(work.div_ceil(THREADS as usize));
                q = b.q, ldq = qn as i32, k = b.k, v = b.v, ldkv = kvn as i32, kc = kc,
                vc = vc, inv_freq = self.inv_freq, heads = self.heads as i32,
                kv_heads = self.kv_heads as i32, hd = self.head_dim as i32,
                cap = c.capacity as i32, pos0 = p.pos0 as i32, rows_per_seq = p.per_seq as i32,
                m = m as i32);
            let cfg = LaunchConfig {
                grid_dim: (m as u32, self.heads as u32, 1),
                block_dim: (ATTENTION_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            launch!(self.stream, self.kernels.attention, cfg;
                q = b.q, ldq = qn as i32, out = b.att, ldo = qn as i32, kc = kc, vc = vc,
                heads = self.heads as i32, kv_heads = self.kv_heads as i32,
                hd = self.head_dim as i32, cap = c.capacity as i32, pos0 = p.pos0 as i32,
                rows_per_seq = p.per_seq as i32,
                scale = 1.0f32 / (self.head_dim as f32).sqrt());
            self.products(c, p, (b.att, qn), &[(&l.o, b.x, h, true)])?;
            self.norm(c, p, &l.mlp_norm, (0, 1, m))?;
            let inter = self.intermediate;
            self.products(
                c,
                p,
                (b.hn, h),
                &[(&l.gate, b.gate, inter, false), (&l.up, b.up, inter, false)],
            )?;
            let n = m * inter;
            launch!(self.stream, self.kernels.swiglu, grid(n.div_ceil(THREADS as usize));
                gate = b.gate, up = b.up, n = n);
            self.products(c, p, (b.gate, inter), &[(&l.down, b.x, h, true)])?;
        }
        Ok(())
    }

    /// RMS norm of `rows` source rows of `x` (first, step, count) into `hn`.
    fn norm(
        &self,
        c: &FusedCache,
        p: &Pass,
        g: &Weight,
        rows: (usize, usize, usize),
    ) -> Result<()> {
        let b = &c.buf;
        let (keep, take) = c.mix_addresses(p.mixed);
        let (first, step, count) = rows;
        launch!(self.stream, self.kernels.rms_norm, grid(count);
            x = b.x, ldx = self.hidden as i32, src_row0 = first as i32, src_step = step as i32,
            y = b.hn, ldy = self.hidden as i32, ga = g.a, gb = g.b, keep = keep, take = take,
            rows_per_seq = p.per_seq as i32, h = self.hidden as i32, eps = self.eps);
        Ok(())
    }

    /// The products of one stage, all reading `x` (address, row length): each `(weight, y,
    /// ldy, accumulate)`, with their low-rank updates after (the down factors' products ride
    /// in the same launches, into `u`).
    fn products(
        &self,
        c: &FusedCache,
        p: &Pass,
        (x, k_in): (u64, usize),
        outs: &[(&Weight, u64, usize, bool)],
    ) -> Result<()> {
        self.products_rows(c, p, p.m, (x, k_in), outs)
    }

    fn products_rows(
        &self,
        c: &FusedCache,
        p: &Pass,
        m: usize,
        (x, k_in): (u64, usize),
        outs: &[(&Weight, u64, usize, bool)],
    ) -> Result<()> {
        let b = &c.buf;
        let (keep, take) = c.mix_addresses(p.mixed);
        let low_rank = |w: &Weight| if p.mixed { w.low_rank } else { None };
        // Where each low-rank update's u = x·downᵀ goes: side by side in `u`.
        let ldu = outs
            .iter()
            .filter_map(|o| low_rank(o.0).map(|l| l.rank))
            .sum::<usize>();
        let mut lr_segs = LrSegs::default();
        let mut u_col = 0;
        for &(w, y, ldy, _) in outs {
            if let Some(lr) = low_rank(w) {
                let i = lr_segs.count as usize;
                lr_segs.s[i] = LrSeg {
                    up: lr.up,
                    u: b.u + (u_col * 4) as u64,
                    y,
                    n: w.n as i32,
                    rank: lr.rank as i32,
                    split: lr.split as i32,
                    ldu: ldu as i32,
                    ldy: ldy as i32,
                    pad: 0,
                };
                lr_segs.count += 1;
                u_col += lr.rank;
            }
        }
        for row0 in (0..m).step_by(ROWS_PER_LAUNCH) {
            let rows = ROWS_PER_LAUNCH.min(m - row0);
            let mut segs = Segs::default();
            let mut push = |wa: u64, wb: u64, n: usize, y: u64, ldy: usize, accumulate: bool| {
                let i = segs.count as usize;
                segs.s[i] = Seg {
                    wa,
                    wb,
                    ba: 0,
                    bb: 0,
                    y: y + (row0 * ldy * 4) as u64,
                    n: n as i32,
                    ldy: ldy as i32,
                    accumulate: accumulate as i32,
                    pad: 0,
                };
                segs.start[i + 1] = segs.start[i] + n as i32;
                segs.count += 1;
            };
            for &(w, y, ldy, accumulate) in outs {
                push(w.a, w.b, w.n, y, ldy, accumulate);
            }
            let mut u_col = 0;
            for &(w, _, _, _) in outs {
                if let Some(lr) = low_rank(w) {
                    push(lr.down, 0, lr.rank, b.u + (u_col * 4) as u64, ldu, false);
                    u_col += lr.rank;
                }
            }
            let total = segs.start[segs.count as usize] as usize;
            let kernel = match rows {
                1 => &self.kernels.linear[0],
                2..=4 => &self.kernels.linear[1],
                _ => &self.kernels.linear[2],
            };
            launch!(self.stream, kernel, grid(total.div_ceil(PRODUCT_WARPS as usize));
                segs = segs, x = x + (row0 * k_in * 4) as u64, ldx = k_in as i32,
                m = rows as i32, k = k_in as i32, keep = keep, take = take,
                row0 = row0 as i32, rows_per_seq = p.per_seq as i32);
        }
        if lr_segs.count > 0 {
            let widest = outs.iter().map(|o| o.0.n).max().unwrap_or(0);
            let cfg = LaunchConfig {
                grid_dim: (
                    widest.div_ceil(THREADS as usize) as u32,
                    lr_segs.count as u32,
                    1,
                ),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            launch!(self.stream, self.kernels.lowrank_add, cfg;
                segs = lr_segs, m = m as i32, keep = keep, take = take, row0 = 0i32,
                rows_per_seq = p.per_seq as i32);
        }
        Ok(())
    }

    /// Final norm of each sequence's last row and the LM head: `[K, vocab]` logits.
    fn logits(&self, c: &FusedCache, p: &Pass, k: usize) -> Result<Tensor> {
        self.norm(c, p, &self.norm, (p.per_seq - 1, p.per_seq, k))?;
        let out = self.dev.alloc_zeros::<f32>(k * self.vocab)?;
        let y = slice_address(&out, &self.dev);
        // The head's rows are sequences: one row each.
        let head_pass = Pass {
            m: k,
            per_seq: 1,
            pos0: p.pos0,
            mixed: p.mixed,
        };
        self.products_rows(
            c,
            &head_pass,
            k,
            (c.buf.hn, self.hidden),
            &[(&self.head, y, self.vocab, false)],
        )?;
        let storage = candle_core::CudaStorage::wrap_cuda_slice(out, self.dev.clone());
        Ok(Tensor::from_storage(
            Storage::Cuda(storage),
            (k, self.vocab),
            candle_core::op::BackpropOp::none(),
            false,
        ))
    }

    /// A cache for `sequences` sequences of up to `capacity` positions, with activation
    /// buffers for one pass.
    pub fn new_cache(&self, sequences: usize, capacity: usize) -> Result<FusedCache> {
        let rows = ROWS_PER_PASS.max(sequences);
        let dev = &self.dev;
        let f32s = |n: usize| dev.alloc_zeros::<f32>(n.max(1));
        let (h, qn, kvn) = (
            self.hidden,
            self.heads * self.head_dim,
            self.kv_heads * self.head_dim,
        );
        let kv_elems = self.layers.len() * 2 * sequences * kvn * capacity;
        // SAFETY: attention reads only positions already written by rope_kv.
        let kv = unsafe { dev.alloc::<u8>((kv_elems * self.dtype.size_in_bytes()).max(1)) }?;
        let slices = Buffers {
            x: f32s(rows * h)?,
            hn: f32s(rows * h)?,
            q: f32s(rows * qn)?,
            k: f32s(rows * kvn)?,
            v: f32s(rows * kvn)?,
            att: f32s(rows * qn)?,
            gate: f32s(rows * self.intermediate)?,
            up: f32s(rows * self.intermediate)?,
            u: f32s(rows * self.stage_rank)?,
        };
        let ids = dev.alloc_zeros::<u32>(rows)?;
        let mix = dev.alloc_zeros::<f32>(2 * sequences)?;
        let a = |s: &CudaSlice<f32>| slice_address(s, dev);
        let buf = Addresses {
            x: a(&slices.x),
            hn: a(&slices.hn),
            q: a(&slices.q),
            k: a(&slices.k),
            v: a(&slices.v),
            att: a(&slices.att),
            gate: a(&slices.gate),
            up: a(&slices.up),
            u: a(&slices.u),
            ids: slice_address(&ids, dev),
        };
        Ok(FusedCache {
            kv_address: slice_address(&kv, dev),
            mix_address: slice_address(&mix, dev),
            _kv: kv,
            per_layer: sequences * kvn * capacity,
            sequences,
            capacity,
            rows,
            buf,
            ids,
            mix,
            mix_host: Vec::new(),
            _slices: slices,
        })
    }
}

/// The rows of one pass through the layers.
struct Pass {
    m: usize,
    per_seq: usize,
    pos0: usize,
    mixed: bool,
}

/// The activation buffers (f32, `rows` each): residual stream, normed input, q/k/v, attention
/// output, gate and up (gate holds SwiGLU's output), the low-rank products.
struct Buffers {
    x: CudaSlice<f32>,
    hn: CudaSlice<f32>,
    q: CudaSlice<f32>,
    k: CudaSlice<f32>,
    v: CudaSlice<f32>,
    att: CudaSlice<f32>,
    gate: CudaSlice<f32>,
    up: CudaSlice<f32>,
    u: CudaSlice<f32>,
}

#[derive(Clone, Copy)]
struct Addresses {
    x: u64,
    hn: u64,
    q: u64,
    k: u64,
    v: u64,
    att: u64,
    gate: u64,
    up: u64,
    u: u64,
    ids: u64,
}

/// Per generation: the key/value cache of every layer (`[K, kv_heads, capacity, head_dim]`
/// each, keys then values, in the weights' dtype), the activation buffers, and the batch's
/// per-sequence weights on the device.
pub struct FusedCache {
    _kv: CudaSlice<u8>,
    kv_address: u64,
    /// Elements of one layer's keys (or values).
    per_layer: usize,
    sequences: usize,
    capacity: usize,
    /// Rows the activation buffers hold.
    rows: usize,
    buf: Addresses,
    ids: CudaSlice<u32>,
    /// `1 − α` then `α` of each sequence.
    mix: CudaSlice<f32>,
    mix_address: u64,
    mix_host: Vec<f32>,
    _slices: Buffers,
}

impl FusedCache {
    /// Keys and values of layer `l`.
    fn layer_cache(&self, l: usize, dtype: DType) -> (u64, u64) {
        let bytes = (self.per_layer * dtype.size_in_bytes()) as u64;
        let keys = self.kv_address + 2 * l as u64 * bytes;
        (keys, keys + bytes)
    }

    /// The device's copy of the mix (uploaded when it changes).
    fn set_mix(&mut self, dev: &CudaDevice, mix: Option<&Mix>, k: usize) -> Result<()> {
        let Some(mix) = mix else { return Ok(()) };
        if mix.alphas().len() != k {
            candle_core::bail!(
                "fused pass: a mix of {} alphas for {k} sequences",
                mix.alphas().len()
            );
        }
        let host: Vec<f32> = mix.keep().iter().chain(mix.take()).copied().collect();
        if host != self.mix_host {
            dev.memcpy_htod(host.as_slice(), &mut self.mix)?;
            self.mix_host = host;
        }
        Ok(())
    }

    /// `keep` and `take` addresses (null without a mix).
    fn mix_addresses(&self, mixed: bool) -> (u64, u64) {
        if mixed {
            (
                self.mix_address,
                self.mix_address + (4 * self.sequences) as u64,
            )
        } else {
            (0, 0)
        }
    }
}
