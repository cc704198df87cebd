//! The supported architectures, behind one enum. Models hold candle tensors that may be views
//! into the blended working buffer: they never copy or transform a weight at load time, so an
//! in-place blend is seen by the next forward pass.

mod activation;
mod attention;
pub mod decoder;
#[cfg(feature = "cuda")]
pub mod fused;
pub mod gpt2;
pub mod param;
mod rope;
mod vector_exp;

use crate::formats::config::ModelConfig;
use crate::weights::few_rows::{matmul_w, matmul_wt, Weight};
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::kv_cache::KvCache;
use candle_nn::VarBuilder;
use param::{Loader, Mix};

pub enum Model {
    Decoder(decoder::Decoder),
    Gpt2(gpt2::Gpt2),
}

/// The environment variable that turns the fused GPU kernels on (`1`) or off (`0`) at load:
/// the fused forward pass ([`fused`]) and the one-launch adapter merge. Off by default until
/// `scripts/gpu-check.sh` has held them to the existing paths on a GPU; the existing paths are
/// their twins either way ([`crate::Engine::set_fused`] switches a loaded pair).
pub const FUSED_SWITCH: &str = "LERPSCOPE_GPU_FUSED";

/// Whether [`FUSED_SWITCH`] asks for the fused GPU kernels.
pub fn fused_requested() -> bool {
    std::env::var(FUSED_SWITCH).is_ok_and(|v| v == "1")
}

/// Which implementation of the fused ops a model runs. `Fast` uses candle's fused kernels
/// (inference); `Differentiable` composes them from plain tensor ops, which autograd can
/// differentiate (training) — and which tests hold the fast kernels to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    Fast,
    Differentiable,
}

/// The dtype activations are computed in for weights held in `weights` on `device`. On the
/// CPU always f32: candle's f16/bf16 CPU kernels are many times slower than its f32 ones, and
/// the matmuls that dominate read half weights directly ([`few_rows`](crate::weights::few_rows)), so
/// the half dtype saves memory traffic without costing f32 arithmetic. On a GPU, the weights'.
pub fn compute_dtype(weights: DType, device: &Device) -> DType {
    if device.is_cpu() {
        DType::F32
    } else {
        weights
    }
}

/// `w` in the dtype of the activations it meets (a no-op when they agree): norm gains, biases
/// and position rows are small, so converting them per call costs little.
pub(crate) fn like(w: &Tensor, x: &Tensor) -> Result<Tensor> {
    w.to_dtype(x.dtype())
}

impl Kernels {
    pub(crate) fn rms_norm(self, x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
        let w = &like(w, x)?;
        match self {
            Kernels::Fast => candle_nn::ops::rms_norm(&x.contiguous()?, w, eps as f32),
            Kernels::Differentiable => candle_nn::ops::rms_norm_slow(x, w, eps as f32),
        }
    }
    pub(crate) fn layer_norm(self, x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
        let (w, b) = (&like(w, x)?, &like(b, x)?);
        match self {
            Kernels::Fast => candle_nn::ops::layer_norm(&x.contiguous()?, w, b, eps as f32),
            Kernels::Differentiable => candle_nn::ops::layer_norm_slow(x, w, b, eps as f32),
        }
    }
    pub(crate) fn softmax_last_dim(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Kernels::Fast => candle_nn::ops::softmax_last_dim(x),
            Kernels::Differentiable => candle_nn::ops::softmax(x, candle_core::D::Minus1),
        }
    }
    /// `x [.., in] · wᵀ` for `w [out, in]`. The fast kernels take few-row products on the
    /// CPU (f32 activations; f32, f16 or bf16 weights) through [`few_rows`](crate::weights::few_rows),
    /// which streams the weights once instead of packing them; half weights take every
    /// product there, [`MAX_ROWS`](crate::weights::few_rows::MAX_ROWS) rows at a time, rather than
    /// being converted whole for candle's GEMM.
    pub(crate) fn linear_t(self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        if self == Kernels::Fast {
            if let Some(y) = linear_t_few_rows(x, w)? {
                return Ok(y);
            }
            if let Some(y) = linear_t_row_chunks(x, w)? {
                return Ok(y);
            }
        }
        linear_t(x, &like(w, x)?)
    }
    /// The gated MLP's `silu(g)·u`: the fast kernels in one pass on the CPU in f32
    /// ([`activation`]); elsewhere, and as its twin, candle's `silu` and a product.
    pub(crate) fn silu_mul(self, g: &Tensor, u: &Tensor) -> Result<Tensor> {
        if self == Kernels::Fast {
            if let Some(y) = activation::silu_mul(g, u)? {
                return Ok(y);
            }
        }
        candle_nn::ops::silu(g)? * u
    }
    /// RoPE over the last dimension: i with i + d/2 (rotate-half), or with `interleaved`
    /// adjacent pairs (2i, 2i + 1).
    pub(crate) fn rope(
        self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        interleaved: bool,
    ) -> Result<Tensor> {
        use candle_nn::rotary_emb as r;
        match (self, interleaved) {
            (Kernels::Fast, false) => r::rope(x, cos, sin),
            (Kernels::Differentiable, false) => r::rope_slow(x, cos, sin),
            (Kernels::Fast, true) => r::rope_i(x, cos, sin),
            (Kernels::Differentiable, true) => r::rope_i_slow(x, cos, sin),
        }
    }
}

/// Per-sequence state: one key/value cache per layer, grown in place up to its capacity (the
/// candle path's), or the fused GPU pass's cache and buffers, made at the first pass.
pub struct Cache {
    pub layers: Vec<KvCache>,
    pub pos: usize,
    #[cfg(feature = "cuda")]
    capacity: usize,
    #[cfg(feature = "cuda")]
    fused: Option<fused::FusedCache>,
}

impl Cache {
    pub fn new(layers: usize, capacity: usize) -> Self {
        Self {
            layers: (0..layers).map(|_| KvCache::new(2, capacity)).collect(),
            pos: 0,
            #[cfg(feature = "cuda")]
            capacity,
            #[cfg(feature = "cuda")]
            fused: None,
        }
    }
}

impl Model {
    pub fn load(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        Self::load_with(config, vb, Kernels::Fast)
    }

    pub fn load_with(config: &ModelConfig, vb: VarBuilder, kernels: Kernels) -> Result<Self> {
        Self::load_params(config, Loader::single(vb), kernels)
    }

    /// A model holding both endpoints, for [`Model::forward_rows`] with a [`Mix`]: each row
    /// of a batch at its own α. Without a mix it runs endpoint A.
    pub fn load_pair(config: &ModelConfig, a: VarBuilder, b: VarBuilder) -> Result<Self> {
        Self::load_params(config, Loader::pair(a, b), Kernels::Fast)
    }

    /// An adapter pair's factored model: A's version of every weight, B's version of those
    /// either side replaces, and both sides' low-rank updates by weight name.
    pub fn load_factored(
        config: &ModelConfig,
        a: VarBuilder,
        b: VarBuilder,
        low_rank: std::collections::HashMap<String, std::sync::Arc<param::LowRankPair>>,
    ) -> Result<Self> {
        Self::load_params(config, Loader::factored(a, b, low_rank), Kernels::Fast)
    }

    /// A model over a base kept quantized (`quantized`, by tensor name; the rest from
    /// `dense`) and both adapters' factors: the factored path at every α. `dense_b` holds B's
    /// version of the tensors an adapter replaces whole (`dense` A's), where there are any.
    pub fn load_quantized(
        config: &ModelConfig,
        (dense, dense_b): (VarBuilder, Option<VarBuilder>),
        quantized: std::collections::HashMap<String, std::sync::Arc<param::QuantizedWeight>>,
        low_rank: std::collections::HashMap<String, std::sync::Arc<param::LowRankPair>>,
    ) -> Result<Self> {
        if !matches!(config, ModelConfig::Decoder(_)) {
            candle_core::bail!("only decoder families keep a base quantized");
        }
        let loader = match dense_b {
            Some(b) => Loader::factored(dense, b, low_rank),
            None => Loader::single(dense).with_low_rank(low_rank),
        }
        .with_quantized(quantized);
        Self::load_params(config, loader, Kernels::Fast)
    }

    /// A model over two quantized full endpoints: their matrices kept quantized (by tensor
    /// name; the rest from `dense_a` and `dense_b`), each row mixing both products at its α.
    pub fn load_quantized_pair(
        config: &ModelConfig,
        (dense_a, dense_b): (VarBuilder, VarBuilder),
        quantized_a: std::collections::HashMap<String, std::sync::Arc<param::QuantizedWeight>>,
        quantized_b: std::collections::HashMap<String, std::sync::Arc<param::QuantizedWeight>>,
    ) -> Result<Self> {
        if !matches!(config, ModelConfig::Decoder(_)) {
            candle_core::bail!("only decoder families keep endpoints quantized");
        }
        let loader = Loader::pair(dense_a, dense_b)
            .with_quantized(quantized_a)
            .with_quantized_b(quantized_b);
        Self::load_params(config, loader, Kernels::Fast)
    }

    fn load_params(config: &ModelConfig, vb: Loader, kernels: Kernels) -> Result<Self> {
        Ok(match config {
            ModelConfig::Decoder(c) => Model::Decoder(decoder::Decoder::load(c, vb, kernels)?),
            ModelConfig::Gpt2(c) => Model::Gpt2(gpt2::Gpt2::load(c, vb, kernels)?),
        })
    }

    pub fn new_cache(&self, capacity: usize) -> Cache {
        let layers = match self {
            Model::Decoder(m) => m.num_layers(),
            Model::Gpt2(m) => m.num_layers(),
        };
        Cache::new(layers, capacity)
    }

    /// Run `ids` (one sequence) from `cache.pos`; returns the logits of the last position as
    /// f32 `[vocab]`, and advances the cache.
    pub fn forward(&self, ids: &[u32], cache: &mut Cache) -> Result<Tensor> {
        self.forward_ids(ids, 1, cache, None)?.squeeze(0)
    }

    /// [`Model::forward_rows`] from host ids: K rows of equal length, row-major. On a GPU
    /// with the fused pass the ids go up once, with no tensor op around them.
    pub fn forward_ids(
        &self,
        ids: &[u32],
        k: usize,
        cache: &mut Cache,
        mix: Option<&Mix>,
    ) -> Result<Tensor> {
        if k == 0 || !ids.len().is_multiple_of(k) {
            candle_core::bail!("{} ids do not make {k} equal rows", ids.len());
        }
        #[cfg(feature = "cuda")]
        if let Some(out) = self.forward_fused(ids, k, cache, mix)? {
            return Ok(out);
        }
        let input = Tensor::from_slice(ids, (k, ids.len() / k), self.device())?;
        self.forward_candle(&input, cache, mix)
    }

    /// The fused GPU pass, where the model has one on and the cache is its own (or new).
    #[cfg(feature = "cuda")]
    fn forward_fused(
        &self,
        ids: &[u32],
        k: usize,
        cache: &mut Cache,
        mix: Option<&Mix>,
    ) -> Result<Option<Tensor>> {
        let Model::Decoder(m) = self else {
            return Ok(None);
        };
        let Some(f) = m.fused() else { return Ok(None) };
        if cache.fused.is_none() && cache.pos > 0 {
            return Ok(None);
        }
        let t = ids.len() / k;
        check_context(cache.pos, t, m.context())?;
        let pos = cache.pos;
        let state = match &mut cache.fused {
            Some(s) => s,
            none => none.insert(f.new_cache(k, cache.capacity)?),
        };
        let out = f.forward(state, ids, k, pos, mix)?;
        cache.pos += t;
        Ok(Some(out))
    }

    /// Whether forward passes take the fused GPU pass where it applies (a Llama-family model
    /// on a GPU; see [`FUSED_SWITCH`] for the default) or candle's ops, its twin. Without the
    /// `cuda` feature there is none.
    pub fn set_fused(&mut self, on: bool) -> Result<()> {
        #[cfg(feature = "cuda")]
        if let Model::Decoder(m) = self {
            m.set_fused(on)?;
        }
        let _ = on;
        Ok(())
    }

    /// Run passes given no [`Mix`] at this one: a model over a base kept quantized and two
    /// adapters' factors moves with α this way, with nothing merged. Decoder families only
    /// (the only ones a base is kept quantized for).
    pub fn set_default_mix(&mut self, mix: Option<Mix>) -> Result<()> {
        match self {
            Model::Decoder(m) => {
                m.set_default_mix(mix);
                Ok(())
            }
            Model::Gpt2(_) => candle_core::bail!("GPT-2 runs on merged weights only"),
        }
    }

    /// Whether this model runs the fused GPU pass.
    pub fn is_fused(&self) -> bool {
        #[cfg(feature = "cuda")]
        if let Model::Decoder(m) = self {
            return m.fused().is_some();
        }
        false
    }

    /// Run a batch `ids [K, t]` of equally long rows from `cache.pos` (a cache made for K
    /// rows); returns the last position's logits as f32 `[K, vocab]`. With a `mix` (a model
    /// from [`Model::load_pair`]), row i runs at its own α.
    pub fn forward_rows(
        &self,
        ids: &Tensor,
        cache: &mut Cache,
        mix: Option<&Mix>,
    ) -> Result<Tensor> {
        if self.is_fused() {
            let k = ids.dim(0)?;
            let host = ids.flatten_all()?.to_vec1::<u32>()?;
            return self.forward_ids(&host, k, cache, mix);
        }
        self.forward_candle(ids, cache, mix)
    }

    /// [`Model::forward_rows`] through candle's ops.
    fn forward_candle(&self, ids: &Tensor, cache: &mut Cache, mix: Option<&Mix>) -> Result<Tensor> {
        let t = ids.dim(1)?;
        // Workers kept spinning between the pass's ops: most of a decode step's ops are too
        // small to be worth a wake-up each.
        let _busy = self
            .device()
            .is_cpu()
            .then(crate::threads::BusyWorkers::start)
            .flatten();
        let hidden = match self {
            Model::Decoder(m) => m.hidden(ids, Some(&mut *cache), mix)?,
            Model::Gpt2(m) => m.hidden(ids, Some(&mut *cache), mix)?,
        };
        cache.pos += t;
        self.logits(&last_position(&hidden)?, mix)?
            .squeeze(1)?
            .to_dtype(DType::F32)
    }

    /// Logits at every position of `ids [b, t]` (no cache): `[b, t, vocab]` in the model's
    /// dtype. For training and perplexity.
    pub fn forward_all(&self, ids: &Tensor) -> Result<Tensor> {
        let hidden = match self {
            Model::Decoder(m) => m.hidden(ids, None, None)?,
            Model::Gpt2(m) => m.hidden(ids, None, None)?,
        };
        self.logits(&hidden, None)
    }

    /// Final norm and LM head.
    fn logits(&self, hidden: &Tensor, mix: Option<&Mix>) -> Result<Tensor> {
        match self {
            Model::Decoder(m) => m.head(hidden, mix),
            Model::Gpt2(m) => m.head(hidden, mix),
        }
    }

    pub fn device(&self) -> &Device {
        match self {
            Model::Decoder(m) => m.device(),
            Model::Gpt2(m) => m.device(),
        }
    }
}

/// `x [.., in] · wᵀ` for a weight stored `[out, in]` (PyTorch's nn.Linear layout).
pub(crate) fn linear_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let inner = dims[dims.len() - 1];
    let rows = x.elem_count() / inner;
    let y = x.reshape((rows, inner))?.matmul(&w.t()?)?;
    let mut out = dims;
    *out.last_mut().expect("rank ≥ 1") = w.dim(0)?;
    y.reshape(out)
}

/// [`linear_t`] by [`few_rows::matmul_wt`](crate::weights::few_rows::matmul_wt), where it
/// applies (CPU, f32, few rows, contiguous weight); `None` elsewhere.
fn linear_t_few_rows(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    let (n, k) = w.dims2()?;
    let m = x.elem_count() / k;
    few_rows_call(x, &[w], n, k, |xs, ws, y| match ws {
        HostWeights::F32(ws) => matmul_wt(xs, ws[0], m, n, k, y),
        HostWeights::F16(ws) => matmul_wt(xs, ws[0], m, n, k, y),
        HostWeights::BF16(ws) => matmul_wt(xs, ws[0], m, n, k, y),
    })
}

/// Half weights against more rows than one few-rows call takes (a prompt): the rows in
/// chunks, each streaming the weights once. `None` for f32 weights (candle's GEMM packs them
/// well) and off the CPU.
fn linear_t_row_chunks(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    let (n, k) = w.dims2()?;
    in_row_chunks(x, w, k, n, |chunk| linear_t_few_rows(chunk, w))
}

/// `product` over x's rows in chunks of at most `MAX_ROWS`, for half weights `w` against
/// more rows than one few-rows call takes; `None` unless every chunk ran.
fn in_row_chunks(
    x: &Tensor,
    w: &Tensor,
    k: usize,
    n: usize,
    product: impl Fn(&Tensor) -> Result<Option<Tensor>>,
) -> Result<Option<Tensor>> {
    use crate::weights::few_rows::MAX_ROWS;
    let m = x.elem_count() / k;
    if !(x.device().is_cpu() && x.dtype() == DType::F32 && is_half(w.dtype())) || m <= MAX_ROWS {
        return Ok(None);
    }
    let rows = x.reshape((m, k))?;
    let mut parts = Vec::with_capacity(m.div_ceil(MAX_ROWS));
    for start in (0..m).step_by(MAX_ROWS) {
        let chunk = rows.narrow(0, start, MAX_ROWS.min(m - start))?;
        match product(&chunk)? {
            Some(y) => parts.push(y),
            None => return Ok(None),
        }
    }
    let mut dims = x.dims().to_vec();
    *dims.last_mut().expect("rank ≥ 1") = n;
    Tensor::cat(&parts, 0)?.reshape(dims).map(Some)
}

fn is_half(d: DType) -> bool {
    matches!(d, DType::F16 | DType::BF16)
}

/// `(1−α)·x·w_aᵀ + α·x·w_bᵀ` with each row's α from `mix` (x `[K, t, in]`), in one pass by
/// [`few_rows::matmul_wt_mixed`](crate::weights::few_rows::matmul_wt_mixed); `None` where
/// it does not apply.
pub(crate) fn linear_t_mixed(
    x: &Tensor,
    wa: &Tensor,
    wb: &Tensor,
    mix: &Mix,
) -> Result<Option<Tensor>> {
    use crate::weights::few_rows::matmul_wt_mixed;
    let (n, k) = wa.dims2()?;
    let m = x.elem_count() / k;
    few_rows_call(x, &[wa, wb], n, k, |xs, ws, y| {
        let (keep, take) = row_weights(mix, m);
        match ws {
            HostWeights::F32(w) => matmul_wt_mixed(xs, w[0], w[1], &keep, &take, m, n, k, y),
            HostWeights::F16(w) => matmul_wt_mixed(xs, w[0], w[1], &keep, &take, m, n, k, y),
            HostWeights::BF16(w) => matmul_wt_mixed(xs, w[0], w[1], &keep, &take, m, n, k, y),
        }
    })
}

/// `x·w0ᵀ + Σ_side c_k·(x·downᵀ)·upᵀ` (an adapter pair's factored linear layer, x `[K, t, in]`)
/// with every product on [`few_rows`](crate::weights::few_rows): W0 streamed once for all rows, the
/// low-rank factors (small) once more. `None` where it does not apply.
pub(crate) fn linear_t_lowrank(
    x: &Tensor,
    w0: &Tensor,
    up: &Tensor,
    down: &Tensor,
    sides: (crate::weights::lowrank::RankSides, f64),
    mix: &Mix,
) -> Result<Option<Tensor>> {
    let (n, k) = w0.dims2()?;
    let rank = down.dim(0)?;
    let m = x.elem_count() / k;
    few_rows_call(x, &[w0, down, up], n, k, |xs, ws, y| match ws {
        HostWeights::F32(ws) => lowrank_rows(xs, &ws, mix, sides, (m, n, k, rank), y),
        HostWeights::F16(ws) => lowrank_rows(xs, &ws, mix, sides, (m, n, k, rank), y),
        HostWeights::BF16(ws) => lowrank_rows(xs, &ws, mix, sides, (m, n, k, rank), y),
    })
}

/// [`linear_t_lowrank`] on host slices: `ws` = [W0, down, up].
fn lowrank_rows<W: Weight>(
    xs: &[f32],
    ws: &[&[W]],
    mix: &Mix,
    (sides, factor): (crate::weights::lowrank::RankSides, f64),
    (m, n, k, rank): (usize, usize, usize, usize),
    y: &mut [f32],
) {
    {
        matmul_wt(xs, ws[0], m, n, k, y);
        let mut u = vec![0f32; m * rank];
        matmul_wt(xs, ws[1], m, rank, k, &mut u);
        // Row r of x belongs to batch row r / t; its ranks take that row's weights.
        let per_row = m / mix.alphas().len();
        let weights = mix.rank_weights_host(sides, factor);
        for (r, u) in u.chunks_mut(rank).enumerate() {
            let w = &weights[(r / per_row) * rank..][..rank];
            u.iter_mut().zip(w).for_each(|(u, w)| *u *= w);
        }
        let mut delta = vec![0f32; m * n];
        matmul_wt(&u, ws[2], m, n, rank, &mut delta);
        y.iter_mut().zip(&delta).for_each(|(y, d)| *y += d);
    }
}

/// The weights of one few-rows call as host slices, all of one dtype.
enum HostWeights<'a> {
    F32(Vec<&'a [f32]>),
    F16(Vec<&'a [half::f16]>),
    BF16(Vec<&'a [half::bf16]>),
}

/// Run a few-rows kernel on host slices of `x` and the weights, where it applies: CPU, f32
/// activations, at most `MAX_ROWS` rows, contiguous weights all of one dtype (f32, f16 or
/// bf16). The output has x's shape with `n` last.
fn few_rows_call(
    x: &Tensor,
    ws: &[&Tensor],
    n: usize,
    k: usize,
    kernel: impl FnOnce(&[f32], HostWeights, &mut [f32]),
) -> Result<Option<Tensor>> {
    use crate::weights::few_rows::MAX_ROWS;
    use candle_core::{CpuStorage, Storage};
    let m = x.elem_count() / k;
    let dtype = ws[0].dtype();
    let eligible = x.device().is_cpu()
        && x.dtype() == DType::F32
        && m <= MAX_ROWS
        && matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
        && ws.iter().all(|w| w.dtype() == dtype && w.is_contiguous());
    if !eligible {
        return Ok(None);
    }
    let x = x.contiguous()?;
    let mut y = vec![0f32; m * n];
    {
        let (xs, xl) = x.storage_and_layout();
        let Storage::Cpu(xc) = &*xs else {
            return Ok(None);
        };
        let xa = &xc.as_slice::<f32>()?[xl.start_offset()..][..m * k];
        let guards: Vec<_> = ws.iter().map(|w| w.storage_and_layout()).collect();
        let mut host = match dtype {
            DType::F16 => HostWeights::F16(vec![]),
            DType::BF16 => HostWeights::BF16(vec![]),
            _ => HostWeights::F32(vec![]),
        };
        for ((s, l), w) in guards.iter().zip(ws) {
            let (start, len) = (l.start_offset(), w.elem_count());
            match (&**s, &mut host) {
                (Storage::Cpu(CpuStorage::F32(c)), HostWeights::F32(v)) => {
                    v.push(&c[start..][..len])
                }
                (Storage::Cpu(CpuStorage::F16(c)), HostWeights::F16(v)) => {
                    v.push(&c[start..][..len])
                }
                (Storage::Cpu(CpuStorage::BF16(c)), HostWeights::BF16(v)) => {
                    v.push(&c[start..][..len])
                }
                _ => return Ok(None),
            }
        }
        kernel(xa, host, &mut y);
    }
    let mut dims = x.dims().to_vec();
    *dims.last_mut().expect("rank ≥ 1") = n;
    Tensor::from_vec(y, dims, &Device::Cpu).map(Some)
}

/// `x [.., in] · w + b` for a weight stored `[in, out]` (GPT-2's Conv1D layout).
pub(crate) fn conv1d(x: &Tensor, w: &Tensor, b: &Tensor, kernels: Kernels) -> Result<Tensor> {
    let (k, n) = w.dims2()?;
    // Up to few_rows::MAX_ROWS rows (decode, batched columns, short prompts) stream each
    // weight row once through few_rows: a 16-token GPT-2 prompt in 52 ms against 97 through
    // candle's GEMM, a batch of four in 250 against 420. Half weights take that path for
    // longer prompts too, in row chunks.
    let few = |x: &Tensor| {
        few_rows_call(x, &[w], n, k, |xs, ws, y| {
            let m = xs.len() / k;
            match ws {
                HostWeights::F32(ws) => matmul_w(xs, ws[0], m, n, k, y),
                HostWeights::F16(ws) => matmul_w(xs, ws[0], m, n, k, y),
                HostWeights::BF16(ws) => matmul_w(xs, ws[0], m, n, k, y),
            }
        })
    };
    let fast = kernels == Kernels::Fast;
    let y = match if fast { few(x)? } else { None } {
        Some(y) => y,
        None => match if fast {
            in_row_chunks(x, w, k, n, few)?
        } else {
            None
        } {
            Some(y) => y,
            None => {
                let rows = x.elem_count() / k;
                let mut out = x.dims().to_vec();
                *out.last_mut().expect("rank ≥ 1") = n;
                x.reshape((rows, k))?.matmul(&like(w, x)?)?.reshape(out)?
            }
        },
    };
    y.broadcast_add(&like(b, &y)?)
}

/// The batched columns' Conv1D product without its bias, `keep[r]·(x[r]·wa) + take[r]·(x[r]·wb)`
/// for each batch row's α, in one pass over both endpoints; `None` where few_rows does not
/// apply.
pub(crate) fn conv1d_mixed(
    x: &Tensor,
    wa: &Tensor,
    wb: &Tensor,
    mix: &Mix,
) -> Result<Option<Tensor>> {
    use crate::weights::few_rows::matmul_w_mixed;
    let (k, n) = wa.dims2()?;
    let m = x.elem_count() / k;
    few_rows_call(x, &[wa, wb], n, k, |xs, ws, y| {
        let (keep, take) = row_weights(mix, m);
        match ws {
            HostWeights::F32(w) => matmul_w_mixed(xs, w[0], w[1], &keep, &take, m, n, k, y),
            HostWeights::F16(w) => matmul_w_mixed(xs, w[0], w[1], &keep, &take, m, n, k, y),
            HostWeights::BF16(w) => matmul_w_mixed(xs, w[0], w[1], &keep, &take, m, n, k, y),
        }
    })
}

/// `1 − α` and `α` for each of the m rows of x `[K, t, ..]` flattened: row r belongs to batch
/// row r / t.
fn row_weights(mix: &Mix, m: usize) -> (Vec<f32>, Vec<f32>) {
    let per_row = m / mix.alphas().len();
    let spread = |w: &[f32]| -> Vec<f32> {
        w.iter()
            .flat_map(|&w| std::iter::repeat_n(w, per_row))
            .collect()
    };
    (spread(mix.keep()), spread(mix.take()))
}

/// The last position of `[b, t, d]` as `[b, 1, d]`.
pub(crate) fn last_position(x: &Tensor) -> Result<Tensor> {
    let t = x.dim(1)?;
    x.narrow(1, t - 1, 1)
}

pub(crate) fn check_context(pos: usize, t: usize, max: usize) -> Result<()> {
    if pos + t > max {
        candle_core::bail!(
            "sequence of {} tokens exceeds the model's context of {max} positions",
            pos + t
        );
    }
    Ok(())
}
