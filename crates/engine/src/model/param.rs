//! Weights that are either one tensor (the blended working set) or both endpoints, for the
//! batched-columns mode; with adapters, also the low-rank updates of both.
//!
//! Every op a model applies to a weight is affine in that weight (matmuls, norm gains, biases,
//! embedding lookups), so `op(x; (1−α)·A + α·B) = (1−α)·op(x; A) + α·op(x; B)`. With both
//! endpoints at hand, K rows of one batch can each run at their own α while every weight is
//! read once per step for all of them — no re-blend between columns. For adapters on one base
//! the endpoints share W0 and differ by low-rank updates, so row k computes
//! `W0·x + (1−α_k)·ΔA·x + α_k·ΔB·x`, reading W0 once for all rows (the factored path).

use super::Kernels;
use crate::quantized::{Epilogue, QMatrix};
use crate::weights::few_rows::matmul_wt;
use crate::weights::lowrank::RankSides;
use crate::Alpha;
use candle_core::{CpuStorage, DType, Device, Result, Shape, Storage, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// One weight: the working tensor, or endpoints A and B, and (adapters) both endpoints'
/// low-rank updates on top. A base kept quantized holds A (or the base) as GGUF blocks.
#[derive(Clone)]
pub struct Param {
    a: Stored,
    b: Option<Tensor>,
    /// Endpoint B kept quantized too (two quantized full endpoints; `b` is then None).
    b_quantized: Option<Arc<QuantizedWeight>>,
    low_rank: Option<Arc<LowRankPair>>,
}

/// How the first (or only) tensor of a weight is held.
#[derive(Clone)]
enum Stored {
    Dense(Tensor),
    Quantized(Arc<QuantizedWeight>),
}

/// A weight kept quantized (on the CPU), with a dequantized copy made only if some op without a
/// quantized kernel asks for the tensor (none of the decoder's forward pass does).
pub struct QuantizedWeight {
    matrix: QMatrix,
    dense: OnceLock<Tensor>,
}

impl QuantizedWeight {
    pub fn new(matrix: QMatrix) -> Self {
        Self {
            matrix,
            dense: OnceLock::new(),
        }
    }

    pub fn matrix(&self) -> &QMatrix {
        &self.matrix
    }

    fn dense(&self) -> &Tensor {
        self.dense.get_or_init(|| {
            let m = &self.matrix;
            Tensor::from_vec(m.dequantize(), (m.rows(), m.cols()), &Device::Cpu)
                .expect("a dequantized weight of its own shape")
        })
    }

    /// `x [.., in] · Wᵀ`: `[.., out]` in x's dtype, with the low-rank updates of `delta` at
    /// the mix's rows where their factors are on the host (then the second value is true).
    fn linear(&self, x: &Tensor, delta: Option<(&Mix, &LowRankPair)>) -> Result<(Tensor, bool)> {
        let mut ys = Self::linear_group(&[(self, delta)], x)?;
        Ok(ys.pop().expect("one product"))
    }

    /// [`QuantizedWeight::linear`] of several weights on the same x, as one parallel pass
    /// ([`QMatrix::matmul_t_group`]).
    fn linear_group(
        weights: &[(&QuantizedWeight, Option<(&Mix, &LowRankPair)>)],
        x: &Tensor,
    ) -> Result<Vec<(Tensor, bool)>> {
        let dims = x.dims().to_vec();
        let inp = *dims.last().expect("x has a last dimension");
        let m = x.elem_count() / inp.max(1);
        let ys = with_host_f32(x, |xs| {
            let terms: Vec<_> = weights
                .iter()
                .map(|(_, delta)| {
                    delta.and_then(|(mix, lr)| Some((lr, lr.host_terms(xs, m, mix)?)))
                })
                .collect();
            // The low-rank terms join each task's stretch of the product while it is in
            // cache, in the same parallel pass.
            let epilogues: Vec<_> = terms
                .iter()
                .map(|t| {
                    move |first, ys: &mut [&mut [f32]]| {
                        if let Some((lr, u)) = t {
                            lr.add_host_stretch(u, first, ys)
                        }
                    }
                })
                .collect();
            let products: Vec<(&QMatrix, &Epilogue)> = weights
                .iter()
                .zip(&epilogues)
                .map(|((w, _), then)| (&w.matrix, then as &Epilogue))
                .collect();
            let ys = QMatrix::matmul_t_group(xs, m, &products);
            ys.into_iter()
                .zip(terms.iter().map(Option::is_some))
                .collect::<Vec<_>>()
        })?;
        ys.into_iter()
            .zip(weights)
            .map(|((y, added), (w, _))| {
                let mut shape = dims.clone();
                *shape.last_mut().expect("x has a last dimension") = w.matrix.rows();
                let y = Tensor::from_vec(y, shape, x.device())?.to_dtype(x.dtype())?;
                Ok((y, added))
            })
            .collect()
    }

    /// Rows of `ids [b, t]`: `[b, t, cols]` in f32.
    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let rows = self
            .matrix
            .dequantize_rows(&ids.flatten_all()?.to_vec1::<u32>()?);
        Tensor::from_vec(rows, (b, t, self.matrix.cols()), ids.device())
    }
}

/// `f` on x's values as one f32 slice: read in place where x is a contiguous f32 tensor on the
/// CPU (a forward pass's activations), else from a copy.
fn with_host_f32<R>(x: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    {
        let (storage, layout) = x.storage_and_layout();
        if let (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) =
            (&*storage, layout.contiguous_offsets())
        {
            return Ok(f(&data[start..end]));
        }
    }
    Ok(f(&x
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?))
}

/// The adapters' updates of one weight, ΔW = up·down in the forward's orientation (`[out, in]`;
/// `[vocab, dim]` for an embedding), A's ranks first: row k of a batch adds
/// `(1−α_k)·up_A·down_A + α_k·up_B·down_B` (on a plane, C's ranks after B's, with
/// `1−α_k−β_k`, `α_k` and `β_k`; with a fourth endpoint D's last, at γ).
pub struct LowRankPair {
    /// `[out, rank]` in the model's dtype, the scales folded in.
    up: Tensor,
    /// `[rank, in]`.
    down: Tensor,
    rank: usize,
    sides: RankSides,
    /// With α per layer: this weight's factor on α (1 otherwise), as f64 bits: the layer
    /// strip edits it while the models holding this pair stay as they are.
    factor: AtomicU64,
    /// `upᵀ` (`[rank, out]`) and `down` as host f32, where the factored pass runs on host
    /// slices (a base kept quantized): no tensor op per factor.
    host: Option<(Vec<f32>, Vec<f32>)>,
}

impl LowRankPair {
    #[cfg(feature = "cuda")]
    pub(crate) fn up(&self) -> &Tensor {
        &self.up
    }

    #[cfg(feature = "cuda")]
    pub(crate) fn down(&self) -> &Tensor {
        &self.down
    }

    #[cfg(feature = "cuda")]
    pub(crate) fn rank(&self) -> usize {
        self.rank
    }

    /// Ranks that belong to endpoint A (the first ones); the GPU passes are built for the
    /// line, so every other rank is B's.
    #[cfg(feature = "cuda")]
    pub(crate) fn split(&self) -> usize {
        debug_assert_eq!(
            self.sides.c + self.sides.d,
            0,
            "the GPU passes take no plane"
        );
        self.sides.a
    }

    pub fn new(up: Tensor, down: Tensor, sides: RankSides) -> Result<Self> {
        let rank = down.dim(0)?;
        if rank != sides.total() {
            candle_core::bail!("low-rank update: {rank} ranks, but the sides hold {sides:?}");
        }
        Ok(Self {
            up,
            down,
            rank,
            sides,
            factor: AtomicU64::new(1f64.to_bits()),
            host: None,
        })
    }

    /// This weight moves by α times `factor` (α per layer).
    pub fn with_factor(self, factor: f64) -> Self {
        self.set_factor(factor);
        self
    }

    /// Move this weight's factor on α (α per layer edited live); the next pass takes it.
    pub fn set_factor(&self, factor: f64) {
        self.factor.store(factor.to_bits(), Ordering::Relaxed);
    }

    pub fn factor(&self) -> f64 {
        f64::from_bits(self.factor.load(Ordering::Relaxed))
    }

    /// f32 factors on the CPU, kept as host slices too: `up [out, rank]`, `down [rank, in]`.
    pub fn on_host(
        up: Vec<f32>,
        down: Vec<f32>,
        (out, inp): (usize, usize),
        sides: RankSides,
    ) -> Result<Self> {
        let rank = down.len() / inp.max(1);
        let mut pair = Self::new(
            Tensor::from_slice(&up, (out, rank), &Device::Cpu)?,
            Tensor::from_slice(&down, (rank, inp), &Device::Cpu)?,
            sides,
        )?;
        pair.host = Some((crate::formats::layout::transpose(&up, out, rank), down));
        Ok(pair)
    }

    /// The low-rank terms' weights for `x [m, in]` on host slices: `u [m, rank]` =
    /// c[row]·(x·downᵀ), rows belonging to the mix's rows in order (all to its one row, if it
    /// has one); None where this pair has no host factors or the rows do not fit the mix.
    fn host_terms(&self, x: &[f32], m: usize, mix: &Mix) -> Option<Vec<f32>> {
        let (_, down) = self.host.as_ref()?;
        let (rank, inp) = (self.rank, down.len() / self.rank.max(1));
        let k = mix.alphas().len();
        if rank == 0 || m == 0 || (k != 1 && !m.is_multiple_of(k)) {
            return None;
        }
        let coef = mix.rank_weights_host(self.sides, self.factor());
        let per_mix_row = m / k;
        let mut u = vec![0f32; m * rank];
        matmul_wt(x, down, m, rank, inp, &mut u);
        for (row, u) in u.chunks_mut(rank).enumerate() {
            let c = &coef[(row / per_mix_row % k) * rank..][..rank];
            u.iter_mut().zip(c).for_each(|(u, c)| *u *= c);
        }
        Some(u)
    }

    /// `ys[a] += Σ_r u[a, r]·up[first.., r]` for a stretch of output columns starting at
    /// `first` (one slice per row of `u`, from [`LowRankPair::host_terms`]). `up` is held
    /// transposed (`[rank, out]`), so each rank adds one contiguous run; each output's rank
    /// terms add in rank order, however the columns are split.
    ///
    /// The columns go in blocks held in registers across every rank, so each output is loaded
    /// and stored once rather than once per rank, and a block of `up` is read from L1 for
    /// every row after the first. The same fused multiply-adds in the same order as
    /// [`add_stretch_plain`], so the same bits.
    fn add_host_stretch(&self, u: &[f32], first: usize, ys: &mut [&mut [f32]]) {
        const BLOCK: usize = 64;
        let Some((up_t, _)) = &self.host else {
            return;
        };
        let rank = self.rank;
        let out = up_t.len() / rank.max(1);
        let len = ys.first().map_or(0, |y| y.len());
        let whole = len - len % BLOCK;
        for start in (0..whole).step_by(BLOCK) {
            for (y, u) in ys.iter_mut().zip(u.chunks(rank)) {
                let y: &mut [f32; BLOCK] = (&mut y[start..start + BLOCK])
                    .try_into()
                    .expect("a whole block");
                let mut acc = *y;
                for (r, &s) in u.iter().enumerate() {
                    if s != 0.0 {
                        let up: &[f32; BLOCK] = up_t[r * out + first + start..][..BLOCK]
                            .try_into()
                            .expect("a whole block");
                        for (acc, &w) in acc.iter_mut().zip(up) {
                            *acc = s.mul_add(w, *acc);
                        }
                    }
                }
                *y = acc;
            }
        }
        if whole < len {
            let mut tails: Vec<&mut [f32]> = ys.iter_mut().map(|y| &mut y[whole..]).collect();
            add_stretch_plain(up_t, rank, u, first + whole, &mut tails);
        }
    }

    /// `Σ_side c_k·(x·downᵀ)·upᵀ` for x `[K, t, in]`: `[K, t, out]`.
    fn linear_delta(&self, x: &Tensor, mix: &Mix) -> Result<Tensor> {
        let (k, t, inp) = x.dims3()?;
        let coef = mix.rank_weights(self.sides, self.factor(), x.dtype())?;
        let (down, up) = (super::like(&self.down, x)?, super::like(&self.up, x)?);
        let u = x
            .reshape((k * t, inp))?
            .matmul(&down.t()?)?
            .reshape((k, t, self.rank))?
            .broadcast_mul(&coef)?;
        let out = up.dim(0)?;
        u.reshape((k * t, self.rank))?
            .matmul(&up.t()?)?
            .reshape((k, t, out))
    }

    /// The embedding rows of `ids [K, t]`: `Σ_side c_k·up[id]·down`, `[K, t, dim]`.
    fn embed_delta(&self, ids: &Tensor, mix: &Mix) -> Result<Tensor> {
        let (k, t) = ids.dims2()?;
        let coef = mix.rank_weights(self.sides, self.factor(), self.up.dtype())?;
        let u = self
            .up
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((k, t, self.rank))?
            .broadcast_mul(&coef)?;
        let dim = self.down.dim(1)?;
        u.reshape((k * t, self.rank))?
            .matmul(&self.down)?
            .reshape((k, t, dim))
    }
}

/// [`LowRankPair::add_host_stretch`] one rank at a time over the whole stretch: its twin, and
/// its last partial block. `up_t` is `[rank, out]`.
fn add_stretch_plain(up_t: &[f32], rank: usize, u: &[f32], first: usize, ys: &mut [&mut [f32]]) {
    let out = up_t.len() / rank.max(1);
    for (y, u) in ys.iter_mut().zip(u.chunks(rank)) {
        for (up, &s) in up_t.chunks(out).zip(u) {
            if s != 0.0 {
                y.iter_mut()
                    .zip(&up[first..])
                    .for_each(|(y, w)| *y = s.mul_add(*w, *y));
            }
        }
    }
}

impl Param {
    /// The tensor the single-α path reads (A in the batched mode); for a weight kept
    /// quantized, its dequantized copy (made on first use).
    pub fn tensor(&self) -> &Tensor {
        match &self.a {
            Stored::Dense(t) => t,
            Stored::Quantized(q) => q.dense(),
        }
    }

    /// The weight's quantized blocks, where it is kept quantized.
    pub fn quantized(&self) -> Option<&QMatrix> {
        match &self.a {
            Stored::Dense(_) => None,
            Stored::Quantized(q) => Some(q.matrix()),
        }
    }

    /// `op` applied to this weight: once, or per row as `(1−α)·op(A) + α·op(B)` when a
    /// [`Mix`] is given and the weight has both endpoints. `op`'s output must have the batch
    /// as its first dimension and rank 3.
    pub fn apply(
        &self,
        mix: Option<&Mix>,
        op: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        match (mix, &self.b) {
            (Some(m), Some(b)) => m.combine(&op(self.tensor())?, &op(b)?),
            _ => op(self.tensor()),
        }
    }

    /// `x · wᵀ` (nn.Linear layout); in the batched mode one fused pass over both endpoints
    /// (or over W0 and the low-rank updates) where the CPU kernel applies.
    pub fn linear(&self, x: &Tensor, mix: Option<&Mix>, kernels: Kernels) -> Result<Tensor> {
        let a = match &self.a {
            Stored::Dense(a) => a,
            Stored::Quantized(q) => {
                if let (Some(m), Some(qb)) = (mix, &self.b_quantized) {
                    return mix_endpoints(m, |w| Ok(w.linear(x, None)?.0), q, qb);
                }
                let delta = match (mix, &self.b) {
                    (Some(m), None) => self.low_rank.as_deref().map(|lr| (m, lr)),
                    _ => None,
                };
                let (y, added) = q.linear(x, delta)?;
                if added {
                    return Ok(y);
                }
                let y = match (mix, &self.b) {
                    (Some(m), Some(b)) => m.combine(&y, &kernels.linear_t(x, b)?)?,
                    _ => y,
                };
                return self.add_delta(y, x, mix);
            }
        };
        if let (Some(m), Some(b), Kernels::Fast) = (mix, &self.b, kernels) {
            if self.low_rank.is_none() {
                if let Some(y) = super::linear_t_mixed(x, a, b, m)? {
                    return Ok(y);
                }
            }
        }
        if let (Some(m), None, Some(lr), Kernels::Fast) = (mix, &self.b, &self.low_rank, kernels) {
            if let Some(y) =
                super::linear_t_lowrank(x, a, &lr.up, &lr.down, (lr.sides, lr.factor()), m)?
            {
                return Ok(y);
            }
        }
        let y = self.apply(mix, |w| kernels.linear_t(x, w))?;
        self.add_delta(y, x, mix)
    }

    /// [`Param::linear`] of several weights on the same x (a layer's query, key and value, or
    /// its gate and up) as one parallel pass, where each is kept quantized and its product needs
    /// no second one (neither two quantized endpoints nor a dense B mixed in): None otherwise,
    /// for the caller to take them one at a time. The outputs are those of `linear`, bit for bit.
    pub fn linear_group(
        params: &[&Param],
        x: &Tensor,
        mix: Option<&Mix>,
    ) -> Result<Option<Vec<Tensor>>> {
        let mut weights = Vec::with_capacity(params.len());
        let width = x.dims().last().copied();
        for p in params {
            // One pass reads one input: anything else goes a product at a time.
            let Stored::Quantized(q) = &p.a else {
                return Ok(None);
            };
            if Some(q.matrix.cols()) != width {
                return Ok(None);
            }
            if mix.is_some() && (p.b.is_some() || p.b_quantized.is_some()) {
                return Ok(None);
            }
            let delta = mix.and_then(|m| p.low_rank.as_deref().map(|lr| (m, lr)));
            weights.push((q.as_ref(), delta));
        }
        let ys = QuantizedWeight::linear_group(&weights, x)?;
        ys.into_iter()
            .zip(params)
            .map(|((y, added), p)| if added { Ok(y) } else { p.add_delta(y, x, mix) })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// `y` plus the low-rank updates' share of the op on `x` (for ops linear in the weight
    /// along its input: linear layers, Conv1D, the tied head).
    pub fn add_delta(&self, y: Tensor, x: &Tensor, mix: Option<&Mix>) -> Result<Tensor> {
        match (mix, &self.low_rank) {
            (Some(m), Some(lr)) => y + lr.linear_delta(x, m)?,
            _ => Ok(y),
        }
    }

    /// The embedding rows of `ids [b, t]`: `[b, t, d]`, with the updates' rows.
    pub fn embed(&self, ids: &Tensor, mix: Option<&Mix>) -> Result<Tensor> {
        let rows = match (&self.a, mix, &self.b) {
            (Stored::Quantized(q), Some(m), _) if self.b_quantized.is_some() => {
                let qb = self.b_quantized.as_deref().expect("checked");
                mix_endpoints(m, |w| w.embed(ids), q, qb)?
            }
            (Stored::Quantized(q), Some(m), Some(b)) => {
                m.combine(&q.embed(ids)?, &embed(b, ids)?)?
            }
            (Stored::Quantized(q), ..) => q.embed(ids)?,
            (Stored::Dense(_), ..) => self.apply(mix, |w| embed(w, ids))?,
        };
        match (mix, &self.low_rank) {
            (Some(m), Some(lr)) => rows + lr.embed_delta(ids, m)?,
            _ => Ok(rows),
        }
    }

    /// Endpoint B, in the batched mode.
    pub fn endpoint_b(&self) -> Option<&Tensor> {
        self.b.as_ref()
    }

    /// Both adapters' updates of this weight, on the factored path.
    #[cfg(feature = "cuda")]
    pub(crate) fn low_rank(&self) -> Option<&LowRankPair> {
        self.low_rank.as_deref()
    }
}

/// `op` on both quantized endpoints, mixed per row; where every row sits at one endpoint, the
/// other is not read at all.
fn mix_endpoints(
    m: &Mix,
    op: impl Fn(&QuantizedWeight) -> Result<Tensor>,
    a: &QuantizedWeight,
    b: &QuantizedWeight,
) -> Result<Tensor> {
    if m.take().iter().all(|&t| t == 0.0) {
        op(a)
    } else if m.keep().iter().all(|&k| k == 0.0) {
        op(b)
    } else {
        m.combine(&op(a)?, &op(b)?)
    }
}

/// Per-row interpolation weights for a batch of K rows: `keep = 1 − α` and `take = α`; on a
/// plane over adapters, `keep = 1 − α − β − γ` and C's weight β (and D's γ) besides. They stay f32 whatever
/// the model's dtype (rounded to bf16, α = 0.3 would run at 0.30078).
pub struct Mix {
    alphas: Vec<Alpha>,
    keep: Vec<f32>,
    take: Vec<f32>,
    /// C's weight of each row (0 on the line), and as given.
    third: Vec<f32>,
    /// Each row's β (0 on the line).
    betas: Vec<f64>,
    /// D's weight, the same in every row (0 without a fourth endpoint), and as given.
    fourth: f32,
    gamma: f64,
    /// `keep` and `take` as `[K, 1, 1]` f32 tensors on the model's device.
    keep_t: Tensor,
    take_t: Tensor,
    /// Per (sides, factor's bits, dtype): each row's weight of every rank, `[K, 1, rank]`.
    rank_weights: Mutex<HashMap<(RankSides, u64, DType), Tensor>>,
}

impl Mix {
    /// Rows on the line, each at its α.
    pub fn new(alphas: &[Alpha], device: &Device) -> Result<Self> {
        Self::on_plane(alphas, [0.0, 0.0], device)
    }

    /// Rows on the plane θ_A + α·(θ_B − θ_A) + β·(θ_C − θ_A) at one β (and with a fourth
    /// endpoint, + γ·(θ_D − θ_A)), each at its α; β = γ = 0 is the line, bit for bit. Only
    /// low-rank updates take C's and D's weights: the plane is built for adapters, whose C
    /// and D are more sets of ranks.
    pub fn on_plane(alphas: &[Alpha], [beta, gamma]: [f64; 2], device: &Device) -> Result<Self> {
        Self::at_points(alphas, &vec![beta; alphas.len()], gamma, device)
    }

    /// Rows on the plane, row k at (α_k, β_k), every row at D's weight γ: columns at points
    /// of their own, still one batch (C's ranks take a weight per row like A's and B's).
    pub fn at_points(alphas: &[Alpha], betas: &[f64], gamma: f64, device: &Device) -> Result<Self> {
        assert_eq!(alphas.len(), betas.len(), "one β per row");
        let k = alphas.len();
        let weights: Vec<[f32; 4]> = alphas
            .iter()
            .zip(betas)
            .map(|(a, &beta)| a.point_weights_f32(beta, gamma))
            .collect();
        let keep: Vec<f32> = weights.iter().map(|w| w[0]).collect();
        let take: Vec<f32> = weights.iter().map(|w| w[1]).collect();
        Ok(Self {
            keep_t: Tensor::from_slice(&keep, (k, 1, 1), device)?,
            take_t: Tensor::from_slice(&take, (k, 1, 1), device)?,
            alphas: alphas.to_vec(),
            third: weights.iter().map(|w| w[2]).collect(),
            betas: betas.to_vec(),
            fourth: gamma as f32,
            gamma,
            keep,
            take,
            rank_weights: Mutex::new(HashMap::new()),
        })
    }

    /// `[K, 1, rank]`: for row k, each rank's endpoint weight (`1 − α_k` on A's ranks, `α_k`
    /// on B's; on a plane `1 − α_k − β − γ`, `α_k`, `β`, `γ`), with α_k times `factor` (α per
    /// layer).
    pub fn rank_weights(&self, sides: RankSides, factor: f64, dtype: DType) -> Result<Tensor> {
        let key = (sides, factor.to_bits(), dtype);
        let mut cache = self.rank_weights.lock().expect("rank weights lock");
        if let Some(t) = cache.get(&key) {
            return Ok(t.clone());
        }
        let w = self.rank_weights_host(sides, factor);
        let t = Tensor::from_vec(
            w,
            (self.alphas.len(), 1, sides.total()),
            self.keep_t.device(),
        )?
        .to_dtype(dtype)?;
        cache.insert(key, t.clone());
        Ok(t)
    }

    /// [`Mix::rank_weights`] on the host, row-major `[K, rank]`.
    pub fn rank_weights_host(&self, sides: RankSides, factor: f64) -> Vec<f32> {
        (0..self.alphas.len())
            .flat_map(|k| {
                let w = if factor == 1.0 {
                    [self.keep[k], self.take[k], self.third[k], self.fourth]
                } else {
                    let at = self.alphas[k].value() * factor;
                    crate::alpha::point_weights_f32(at, self.betas[k], self.gamma)
                };
                sides.spread(w)
            })
            .collect()
    }

    pub fn alphas(&self) -> &[Alpha] {
        &self.alphas
    }

    /// `1 − α` of each row.
    pub fn keep(&self) -> &[f32] {
        &self.keep
    }

    /// `α` of each row.
    pub fn take(&self) -> &[f32] {
        &self.take
    }

    /// `(1−α)·at_a + α·at_b` row by row, for outputs `[K, ..]` (rank 3, or 4 for per-head
    /// values), computed in f32.
    pub fn combine(&self, at_a: &Tensor, at_b: &Tensor) -> Result<Tensor> {
        debug_assert!(
            self.third.iter().all(|&c| c == 0.0) && self.fourth == 0.0,
            "two endpoints: no plane"
        );
        let dtype = at_a.dtype();
        let f32_of = |t: &Tensor| t.to_dtype(DType::F32);
        // keep_t and take_t are [K, 1, 1]: one more unit dimension for each beyond rank 3.
        let per_row = |w: &Tensor| -> Result<Tensor> {
            let mut shape = vec![self.alphas.len()];
            shape.resize(at_a.rank().max(3), 1);
            w.reshape(shape)
        };
        f32_of(at_a)?
            .broadcast_mul(&per_row(&self.keep_t)?)?
            .add(&f32_of(at_b)?.broadcast_mul(&per_row(&self.take_t)?)?)?
            .to_dtype(dtype)
    }
}

/// Reads [`Param`]s from one VarBuilder, from two (A and B) sharing names and shapes, or (the
/// factored path) from A's tensors, B's versions of the tensors it replaces, and the low-rank
/// updates by tensor name.
#[derive(Clone)]
pub struct Loader<'a> {
    a: VarBuilder<'a>,
    b: Option<VarBuilder<'a>>,
    low_rank: Option<Arc<HashMap<String, Arc<LowRankPair>>>>,
    /// A's (the base's) weights kept quantized, by tensor name: these are not in `a`.
    quantized: Option<Arc<HashMap<String, Arc<QuantizedWeight>>>>,
    /// B's, for two quantized full endpoints: not in `b`.
    quantized_b: Option<Arc<HashMap<String, Arc<QuantizedWeight>>>>,
    prefix: String,
}

impl<'a> Loader<'a> {
    pub fn single(vb: VarBuilder<'a>) -> Self {
        Self {
            a: vb,
            b: None,
            low_rank: None,
            quantized: None,
            quantized_b: None,
            prefix: String::new(),
        }
    }

    /// Weights kept quantized take the place of A's tensors of the same names.
    pub fn with_quantized(self, quantized: HashMap<String, Arc<QuantizedWeight>>) -> Self {
        Self {
            quantized: Some(Arc::new(quantized)),
            ..self
        }
    }

    /// B's weights kept quantized take the place of B's tensors of the same names.
    pub fn with_quantized_b(self, quantized: HashMap<String, Arc<QuantizedWeight>>) -> Self {
        Self {
            quantized_b: Some(Arc::new(quantized)),
            ..self
        }
    }

    /// Both adapters' factors apply to the weights of these names (the factored path).
    pub fn with_low_rank(self, low_rank: HashMap<String, Arc<LowRankPair>>) -> Self {
        Self {
            low_rank: Some(Arc::new(low_rank)),
            ..self
        }
    }

    fn quantized(&self, full: &str) -> Option<&Arc<QuantizedWeight>> {
        self.quantized.as_ref().and_then(|q| q.get(full))
    }

    pub fn pair(a: VarBuilder<'a>, b: VarBuilder<'a>) -> Self {
        Self {
            b: Some(b),
            ..Self::single(a)
        }
    }

    pub fn factored(
        a: VarBuilder<'a>,
        b: VarBuilder<'a>,
        low_rank: HashMap<String, Arc<LowRankPair>>,
    ) -> Self {
        Self {
            b: Some(b),
            low_rank: Some(Arc::new(low_rank)),
            ..Self::single(a)
        }
    }

    pub fn pp(&self, prefix: impl ToString) -> Self {
        let p = prefix.to_string();
        Self {
            a: self.a.pp(&p),
            b: self.b.as_ref().map(|b| b.pp(&p)),
            low_rank: self.low_rank.clone(),
            quantized: self.quantized.clone(),
            quantized_b: self.quantized_b.clone(),
            prefix: if self.prefix.is_empty() {
                p
            } else {
                format!("{}.{p}", self.prefix)
            },
        }
    }

    fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn get<S: Into<Shape> + Clone>(&self, shape: S, name: &str) -> Result<Param> {
        let full = self.full_name(name);
        let a = match self.quantized(&full) {
            Some(q) => {
                let want: Shape = shape.clone().into();
                let m = q.matrix();
                if want.dims() != [m.rows(), m.cols()] {
                    candle_core::bail!(
                        "{full}: kept quantized as {}×{}, but the model expects {want:?}",
                        m.rows(),
                        m.cols()
                    );
                }
                Stored::Quantized(q.clone())
            }
            None => Stored::Dense(self.a.get(shape.clone(), name)?),
        };
        let b_quantized = self
            .quantized_b
            .as_ref()
            .and_then(|q| q.get(&full).cloned());
        if self.quantized_b.is_some() && b_quantized.is_some() != matches!(a, Stored::Quantized(_))
        {
            candle_core::bail!("{full}: kept quantized in one endpoint only");
        }
        Ok(Param {
            a,
            b_quantized,
            b: match &self.b {
                Some(b) if b.contains_tensor(name) => Some(b.get(shape, name)?),
                _ => None,
            },
            low_rank: self.low_rank.as_ref().and_then(|m| m.get(&full).cloned()),
        })
    }

    pub fn contains_tensor(&self, name: &str) -> bool {
        self.a.contains_tensor(name) || self.quantized(&self.full_name(name)).is_some()
    }

    pub fn dtype(&self) -> DType {
        self.a.dtype()
    }

    pub fn device(&self) -> &Device {
        self.a.device()
    }
}

/// Rows of `w [vocab, d]` for `ids [b, t]`: `[b, t, d]`.
pub fn embed(w: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (b, t) = ids.dims2()?;
    let d = w.dim(1)?;
    w.index_select(&ids.flatten_all()?, 0)?.reshape((b, t, d))
}

/// An op affine in a (weight, bias) pair jointly: evaluated once per endpoint and mixed, as
/// [`Param::apply`] does for one weight.
pub(super) fn affine2(
    w: &Param,
    b: &Param,
    mix: Option<&Mix>,
    op: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    match (mix, w.endpoint_b(), b.endpoint_b()) {
        (None, ..) | (Some(_), None, None) => op(w.tensor(), b.tensor()),
        // Either has a B version (an adapter may replace just one): the other keeps its one.
        (Some(m), wb, bb) => m.combine(
            &op(w.tensor(), b.tensor())?,
            &op(wb.unwrap_or(w.tensor()), bb.unwrap_or(b.tensor()))?,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantized::{tests::matrix, QType};

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104729) % 1013) as f32 - 506.0) / 700.0)
            .collect()
    }

    fn quantized(rows: usize, cols: usize, low_rank: Option<LowRankPair>) -> Param {
        Param {
            a: Stored::Quantized(Arc::new(QuantizedWeight::new(matrix(
                QType::Q4_1,
                rows,
                cols,
            )))),
            b: None,
            b_quantized: None,
            low_rank: low_rank.map(Arc::new),
        }
    }

    /// Rank 2 for A and 2 for B; on host slices (the factored pass inside the product) or as
    /// tensors only (their terms added after it).
    fn pair(out: usize, inp: usize, seed: usize, on_host: bool) -> LowRankPair {
        let sides = RankSides {
            a: 2,
            b: 2,
            c: 0,
            d: 0,
        };
        let (up, down) = (values(out * 4, seed), values(4 * inp, seed + 1));
        if on_host {
            LowRankPair::on_host(up, down, (out, inp), sides).unwrap()
        } else {
            let up = Tensor::from_vec(up, (out, 4), &Device::Cpu).unwrap();
            let down = Tensor::from_vec(down, (4, inp), &Device::Cpu).unwrap();
            LowRankPair::new(up, down, sides).unwrap()
        }
    }

    /// The blocked low-rank epilogue gives its plain twin's bits: stretches of whole blocks
    /// and ragged ends, at any first column, with ranks whose weight is zero skipped alike
    /// (an infinite factor times zero would otherwise be NaN).
    #[test]
    fn blocked_low_rank_terms_match_the_plain_twin() {
        let (out, rank, rows) = (300, 5, 3);
        let mut up = values(out * rank, 11);
        up[20 * rank] = f32::INFINITY;
        let sides = RankSides {
            a: 2,
            b: 3,
            c: 0,
            d: 0,
        };
        let pair = LowRankPair::on_host(up, values(rank * 4, 2), (out, 4), sides).unwrap();
        let (up_t, _) = pair.host.as_ref().unwrap();
        let mut u = values(rows * rank, 3);
        u[5] = 0.0;
        for (first, len) in [(0, 64), (0, 300), (17, 200), (236, 64), (250, 50), (3, 0)] {
            let base = values(rows * len, 5);
            let mut fast = base.clone();
            let mut plain = base;
            let mut f: Vec<&mut [f32]> = fast.chunks_mut(len.max(1)).collect();
            pair.add_host_stretch(&u, first, &mut f);
            let mut p: Vec<&mut [f32]> = plain.chunks_mut(len.max(1)).collect();
            add_stretch_plain(up_t, rank, &u, first, &mut p);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&plain), "first {first}, len {len}");
        }
    }

    /// Query, key and value (and the like) as one pass give what each gives alone, bit for
    /// bit, with and without a batch of alphas, whatever low-rank terms each weight has.
    #[test]
    fn a_group_of_linears_gives_each_its_own() {
        let cols = 512;
        let params = [
            quantized(576, cols, Some(pair(576, cols, 1, true))),
            quantized(192, cols, Some(pair(192, cols, 3, false))),
            quantized(192, cols, None),
            quantized(64, cols, Some(pair(64, cols, 5, true))),
        ];
        let refs: Vec<&Param> = params.iter().collect();
        let alphas = [0.0, 0.4, 1.3].map(|a| Alpha::new(a).unwrap());
        let mix = Mix::new(&alphas, &Device::Cpu).unwrap();
        for (k, mix) in [(1, None), (3, Some(&mix))] {
            let x = Tensor::from_vec(values(k * cols, 7), (k, 1, cols), &Device::Cpu).unwrap();
            let group = Param::linear_group(&refs, &x, mix)
                .unwrap()
                .expect("all quantized");
            for (p, y) in params.iter().zip(&group) {
                let alone = p.linear(&x, mix, Kernels::Fast).unwrap();
                let bits = |t: &Tensor| {
                    let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    v.into_iter().map(f32::to_bits).collect::<Vec<_>>()
                };
                assert_eq!(y.dims(), alone.dims());
                assert_eq!(bits(y), bits(&alone), "k = {k}");
            }
        }
        // A weight held dense leaves the group to one product at a time.
        let dense = Param {
            a: Stored::Dense(Tensor::zeros((8, cols), DType::F32, &Device::Cpu).unwrap()),
            b: None,
            b_quantized: None,
            low_rank: None,
        };
        let x = Tensor::zeros((1, 1, cols), DType::F32, &Device::Cpu).unwrap();
        assert!(Param::linear_group(&[&params[0], &dense], &x, None)
            .unwrap()
            .is_none());
    }
}
