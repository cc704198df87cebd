//! The working set of an adapter pair on a shared base: the base's tensors once, a working copy
//! of only the tensors the adapters change, the tensors an adapter replaces whole
//! (`modules_to_save`), and the adapters' factors.
//!
//! Merged path: an α change rewrites each changed tensor of the working copy in one pass,
//! W0 + (1 − α)·ΔA + α·ΔB (a replaced tensor: the blend of both sides' versions, plus the
//! updates). Untouched tensors are read from the base and never written.
//! Factored path: the factors themselves, laid out for `y = W0·x + (1 − α)·ΔA·x + α·ΔB·x`
//! per batch row (see `model::param::LowRankPair`).
//!
//! A plane adds a third adapter C: W0 + (1 − α − β)·ΔA + α·ΔB + β·ΔC, its ranks after B's; a
//! fourth, D, adds γ·ΔD (and takes γ from A's weight), its ranks last.
//! (Whole replaced tensors are refused there: their blend is the line's.)

use crate::error::{bail, Result};
use crate::formats::adapter::{Adapter, LowRank, ModuleKind};
use crate::formats::checkpoint::Checkpoint;
use crate::weights::blend::{self, Element};
use crate::weights::flat::FlatLayout;
use crate::weights::full::build_flat;
use crate::weights::lowrank::{self, RankSides, StoredUpdate};
use crate::weights::slerp;
use crate::Alpha;
use candle_core::{CpuStorage, DType, Device, Layout, Tensor};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One changed tensor: where it lives in each buffer, and what changes it.
#[derive(Debug)]
struct MergeItem {
    /// (offset, len) in the working buffer.
    work: (usize, usize),
    /// Offset in the base buffer.
    base: usize,
    /// Offsets of A's and B's replacements in the replacements buffer.
    replaced: [Option<usize>; 2],
    update: Option<StoredUpdate>,
    /// The update's factors on the device, for the CUDA pass.
    #[allow(dead_code)]
    on_device: Option<(Tensor, Tensor)>,
}

/// The adapters' update of one tensor in the forward's orientation (`[out, in]`), A's ranks
/// first, then B's (then C's): what the factored path multiplies by.
#[derive(Debug, Clone)]
pub struct ForwardUpdate {
    pub kind: ModuleKind,
    /// `[out, rank]`, the scales folded in.
    pub up: Vec<f32>,
    /// `[rank, in]`.
    pub down: Vec<f32>,
    pub out: usize,
    pub inp: usize,
    pub rank: usize,
    pub sides: RankSides,
}

pub struct AdapterWeights {
    pub dtype: DType,
    pub base_layout: FlatLayout,
    base: Tensor,
    pub work_layout: FlatLayout,
    working: Tensor,
    repl_layout: FlatLayout,
    replacements: Tensor,
    plan: Arc<Vec<MergeItem>>,
    /// The plan as blend.cu's table, made at the first merge on a GPU in one launch.
    #[cfg(feature = "cuda")]
    gpu_plan: Arc<std::sync::OnceLock<cuda::Table>>,
    /// Merge on a GPU in one launch (`merge_tiles`) rather than a launch or two per tensor.
    one_launch: bool,
    /// Tensor name → both sides' update, for the factored path.
    pub forward: BTreeMap<String, ForwardUpdate>,
    alpha: Alpha,
    /// C's weight on a plane (0 on the line).
    beta: f64,
    /// D's weight, with a fourth endpoint (0 otherwise).
    gamma: f64,
    /// With α per layer: each changed tensor's factor on α, in the plan's order.
    factors: Option<Arc<Vec<f64>>>,
    /// With `--method slerp`: each changed tensor's angle between W0 + ΔA and W0 + ΔB, in the
    /// plan's order (None: it falls back to the line).
    slerp: Option<Arc<Vec<Option<slerp::Angle>>>>,
    last_blend: Option<Duration>,
}

/// Concatenate the endpoints' updates of one tensor (A, B and, on a plane, C, with a fourth
/// endpoint D; any may be absent), in that order.
pub(crate) fn concat_forward(sides: [Option<&LowRank>; 4]) -> Option<ForwardUpdate> {
    let any = sides.iter().flatten().next()?;
    let (out, inp, kind) = (any.out, any.inp, any.kind);
    let ranks = sides.map(|s| s.map_or(0, |x| x.rank));
    let rank: usize = ranks.iter().sum();
    let mut up = Vec::with_capacity(out * rank);
    for o in 0..out {
        for (s, r) in sides.iter().zip(ranks) {
            up.extend(s.iter().flat_map(|s| &s.up[o * r..(o + 1) * r]));
        }
    }
    let down = sides
        .iter()
        .flatten()
        .flat_map(|s| s.down.iter().copied())
        .collect();
    Some(ForwardUpdate {
        kind,
        up,
        down,
        out,
        inp,
        rank,
        sides: RankSides {
            a: ranks[0],
            b: ranks[1],
            c: ranks[2],
            d: ranks[3],
        },
    })
}

/// Refuse adapters that replace a tensor whole (`modules_to_save`) where only low-rank updates
/// can move (a plane, α per layer, a base kept quantized); `why` ends the line.
pub(crate) fn refuse_replacements(sides: [Option<&Adapter>; 4], why: &str) -> Result<()> {
    for (flag, side) in ["--a", "--b", "--c", "--d"].iter().zip(sides) {
        if let Some((s, n)) = side.and_then(|s| Some((s, s.replacements.keys().next()?))) {
            bail!(
                Unsupported,
                "{flag} {}: replaces {n} whole (modules_to_save); {why}",
                s.files.label
            );
        }
    }
    Ok(())
}

/// Why a plane refuses [`refuse_replacements`]' adapters.
pub(crate) const PLANE_MOVES_UPDATES: &str = "a plane over adapters blends low-rank updates only";

/// The update in the tensor's stored orientation: `[out, in]` for linear layers and
/// embeddings, `[in, out]` (transposed) for Conv1D.
pub(crate) fn stored(f: &ForwardUpdate) -> StoredUpdate {
    match f.kind {
        ModuleKind::Linear | ModuleKind::Embedding => StoredUpdate {
            u: f.up.clone(),
            d: f.down.clone(),
            rows: f.out,
            cols: f.inp,
            rank: f.rank,
            sides: f.sides,
        },
        // ΔWᵀ = downᵀ·upᵀ.
        ModuleKind::Conv1D => StoredUpdate {
            u: crate::formats::layout::transpose(&f.down, f.rank, f.inp),
            d: crate::formats::layout::transpose(&f.up, f.out, f.rank),
            rows: f.inp,
            cols: f.out,
            rank: f.rank,
            sides: f.sides,
        },
    }
}

/// α per layer's factor of a tensor, by name.
pub type Factor<'a> = &'a dyn Fn(&str) -> f64;

impl AdapterWeights {
    /// The base's `names` in one buffer, and a working copy of the tensors the adapters (A,
    /// B and, for a plane, C, with a fourth endpoint D; `None` is the base itself) change,
    /// merged once at α = 0 and C's and D's weights `[β, γ]`, with α per layer's `factor` by
    /// tensor name where there is one.
    pub fn load(
        base: &Checkpoint,
        names: &[String],
        [a, b, c, d]: [Option<&Adapter>; 4],
        (dtype, device): (DType, &Device),
        ([beta, gamma], factor): ([f64; 2], Option<Factor<'_>>),
    ) -> Result<Self> {
        let shape_of = |n: &String| base.weights.tensors[n].shape.clone();
        let base_layout = FlatLayout::new(names.iter().map(|n| (n.clone(), shape_of(n))), dtype);
        let sides = [a, b];
        let mut touched: BTreeSet<String> = BTreeSet::new();
        if c.is_some() || d.is_some() {
            refuse_replacements([a, b, c, d], PLANE_MOVES_UPDATES)?;
        }
        for x in [c, d].into_iter().flatten() {
            touched.extend(x.updates.keys().cloned());
        }
        for side in sides.iter().flatten() {
            touched.extend(side.updates.keys().cloned());
            touched.extend(side.replacements.keys().cloned());
        }
        if let Some(n) = touched.iter().find(|n| !names.contains(n)) {
            bail!(
                Mismatch,
                "the adapters change {n}, which is not a weight of the base"
            );
        }
        let work_layout = FlatLayout::new(touched.iter().map(|n| (n.clone(), shape_of(n))), dtype);
        // Replacements are named "a/<tensor>" and "b/<tensor>".
        let mut repl_values: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        for (tag, side) in ["a", "b"].iter().zip(sides) {
            for (n, v) in side.iter().flat_map(|s| &s.replacements) {
                repl_values.insert(format!("{tag}/{n}"), v.clone());
            }
        }
        let repl_layout = FlatLayout::new(
            repl_values
                .keys()
                .map(|k| (k.clone(), shape_of(&k[2..].to_string()))),
            dtype,
        );
        let base_t = build_flat(&base_layout, dtype, device, &base.weights)?;
        let working = build_flat(&work_layout, dtype, device, &base.weights)?;
        let replacements = build_flat(&repl_layout, dtype, device, &repl_values)?;
        let base_offset: HashMap<&str, usize> = base_layout
            .slots
            .iter()
            .map(|s| (s.name.as_str(), s.offset))
            .collect();
        let repl_offset: HashMap<&str, usize> = repl_layout
            .slots
            .iter()
            .map(|s| (s.name.as_str(), s.offset))
            .collect();
        let mut forward = BTreeMap::new();
        let mut plan = Vec::new();
        for slot in &work_layout.slots {
            let n = &slot.name;
            let fwd = concat_forward([a, b, c, d].map(|s| s.and_then(|s| s.updates.get(n))));
            let update = fwd.as_ref().map(stored);
            let on_device = match (&update, device) {
                (Some(u), Device::Cuda(_)) => Some((
                    Tensor::from_slice(&u.u, u.u.len(), device)?,
                    Tensor::from_slice(&u.d, u.d.len(), device)?,
                )),
                _ => None,
            };
            if let Some(f) = fwd {
                forward.insert(n.clone(), f);
            }
            plan.push(MergeItem {
                work: (slot.offset, slot.len),
                base: base_offset[n.as_str()],
                replaced: [
                    repl_offset.get(format!("a/{n}").as_str()).copied(),
                    repl_offset.get(format!("b/{n}").as_str()).copied(),
                ],
                update,
                on_device,
            });
        }
        let mut w = Self {
            dtype,
            base_layout,
            base: base_t,
            work_layout,
            working,
            repl_layout,
            replacements,
            plan: Arc::new(plan),
            #[cfg(feature = "cuda")]
            gpu_plan: Default::default(),
            one_launch: crate::model::fused_requested(),
            forward,
            alpha: Alpha::B,
            beta,
            gamma,
            factors: None,
            slerp: None,
            last_blend: None,
        };
        if beta != 0.0 || gamma != 0.0 {
            w.cpu_only("a plane over adapters")?;
        }
        if let Some(factor) = factor {
            w.cpu_only("α per layer over adapters")?;
            w.factors = Some(Arc::new(w.factors_by(factor)));
        }
        w.set_alpha(Alpha::A)?;
        Ok(w)
    }

    pub fn alpha(&self) -> Alpha {
        self.alpha
    }

    /// Whether a merge on a GPU runs in one launch over every changed tensor.
    pub fn set_one_launch(&mut self, on: bool) {
        self.one_launch = on;
    }

    pub fn last_blend(&self) -> Option<Duration> {
        self.last_blend
    }

    /// C's weight on a plane (0 on the line).
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// D's weight (0 without a fourth endpoint).
    pub fn gamma(&self) -> f64 {
        self.gamma
    }

    /// The GPU merge is built for the line (one α, two sides): refuse `what` there.
    fn cpu_only(&self, what: &str) -> Result<()> {
        if !self.working.device().is_cpu() {
            bail!(
                Unsupported,
                "{what} runs on the CPU for now; use --device cpu"
            );
        }
        Ok(())
    }

    /// α per layer: each changed tensor moves by α times its factor (`factor` by tensor name;
    /// 1 where it has none), re-merged at the current α.
    pub fn use_factors(&mut self, factor: &dyn Fn(&str) -> f64) -> Result<Duration> {
        self.cpu_only("α per layer over adapters")?;
        self.factors = Some(Arc::new(self.factors_by(factor)));
        self.set_alpha(self.alpha)
    }

    /// Each changed tensor's factor, in the plan's order.
    fn factors_by(&self, factor: &dyn Fn(&str) -> f64) -> Vec<f64> {
        self.work_layout
            .slots
            .iter()
            .map(|s| factor(&s.name))
            .collect()
    }

    /// Whether an adapter replaces tensors whole (modules_to_save).
    pub fn has_replacements(&self) -> bool {
        !self.repl_layout.slots.is_empty()
    }

    /// `--method slerp` along A→B: each changed tensor's angle between the two models the
    /// adapters make, W0 + ΔA and W0 + ΔB, measured once (mergekit's formula, its fall-back to
    /// the line included), then re-merged at the current α. The coefficients on A and B then
    /// no longer sum to 1, so the base takes their sum.
    pub fn use_slerp(&mut self) -> Result<Duration> {
        const WHAT: &str = "--method slerp over adapters";
        self.cpu_only(WHAT)?;
        if self.has_replacements() {
            bail!(
                Unsupported,
                "{WHAT}: an adapter replaces tensors whole (modules_to_save); slerp over adapters moves low-rank updates only"
            );
        }
        if self.beta != 0.0 || self.gamma != 0.0 {
            bail!(
                Unsupported,
                "{WHAT} runs along A→B; a plane (--c, --d) is refused with it"
            );
        }
        let mut angles = Vec::with_capacity(self.plan.len());
        for item in self.plan.iter() {
            let Some(u) = &item.update else {
                angles.push(None);
                continue;
            };
            let w0 = self
                .base
                .narrow(0, item.base, item.work.1)?
                .to_dtype(DType::F32)?
                .to_vec1::<f32>()?;
            let at = |weights: [f32; 4]| {
                let mut w = w0.clone();
                lowrank::merge(&mut w, None, u, &u.coefficients(weights));
                w
            };
            angles.push(slerp::angle(
                &at([1.0, 0.0, 0.0, 0.0]),
                &at([0.0, 1.0, 0.0, 0.0]),
            ));
        }
        self.slerp = Some(Arc::new(angles));
        self.set_alpha(self.alpha)
    }

    /// Whether every tensor moves along the line (batched rows assume it; slerp does not).
    pub fn on_line(&self) -> bool {
        self.slerp.is_none()
    }

    /// Move the plane's β and re-merge at the current α; β is kept only if that succeeds.
    pub fn set_beta(&mut self, beta: f64) -> Result<Duration> {
        self.set_point(self.alpha, beta)
    }

    /// Move D's weight γ and re-merge at the current α; γ is kept only if that succeeds.
    pub fn set_gamma(&mut self, gamma: f64) -> Result<Duration> {
        self.cpu_only("a plane over adapters")?;
        let old = std::mem::replace(&mut self.gamma, gamma);
        let merged = self.set_alpha(self.alpha);
        if merged.is_err() {
            self.gamma = old;
        }
        merged
    }

    /// Move to (α, β) on the plane: one merge; β is kept only if it succeeds.
    pub fn set_point(&mut self, alpha: Alpha, beta: f64) -> Result<Duration> {
        self.cpu_only("a plane over adapters")?;
        let old = std::mem::replace(&mut self.beta, beta);
        let merged = self.set_alpha(alpha);
        if merged.is_err() {
            self.beta = old;
        }
        merged
    }

    /// Rewrite the changed tensors of the working copy at α (and β), one pass each.
    pub fn set_alpha(&mut self, alpha: Alpha) -> Result<Duration> {
        let t = Instant::now();
        self.working.inplace_op3(
            &self.base,
            &self.replacements,
            &MergeOp {
                alpha,
                beyond: [self.beta, self.gamma],
                factors: self.factors.clone(),
                slerp: self.slerp.clone(),
                plan: self.plan.clone(),
                #[cfg(feature = "cuda")]
                gpu_plan: self.gpu_plan.clone(),
                one_launch: self.one_launch,
            },
        )?;
        self.working.device().synchronize()?;
        self.alpha = alpha;
        let took = t.elapsed();
        self.last_blend = Some(took);
        Ok(took)
    }

    /// Views for the merged model: every base tensor, the changed ones from the working copy.
    pub fn merged_views(&self) -> Result<HashMap<String, Tensor>> {
        let mut v = self.base_layout.views(&self.base)?;
        v.extend(self.work_layout.views(&self.working)?);
        Ok(v)
    }

    /// Views for the factored model: endpoint A's version of every tensor (the base, or A's
    /// replacement), and B's version of the tensors either side replaces.
    pub fn factored_views(&self) -> Result<(HashMap<String, Tensor>, HashMap<String, Tensor>)> {
        let base = self.base_layout.views(&self.base)?;
        let repl = self.repl_layout.views(&self.replacements)?;
        let mut a = base.clone();
        let mut b = HashMap::new();
        for (key, t) in &repl {
            let name = &key[2..];
            if key.starts_with("a/") {
                a.insert(name.to_string(), t.clone());
            }
            let b_version = repl
                .get(&format!("b/{name}"))
                .unwrap_or(&base[name])
                .clone();
            b.insert(name.to_string(), b_version);
        }
        Ok((a, b))
    }

    /// The working copy (the tensors the adapters change).
    pub fn working(&self) -> &Tensor {
        &self.working
    }

    /// Bytes held: base, working copy, replacements and factors.
    pub fn bytes(&self) -> usize {
        let size = self.dtype.size_in_bytes();
        let factors: usize = self
            .forward
            .values()
            .map(|f| 4 * (f.up.len() + f.down.len()))
            .sum();
        (self.base_layout.total + self.work_layout.total + self.repl_layout.total) * size
            + 2 * factors
    }
}

/// The merged pass as one in-place op over the working buffer, reading the base and the
/// replacements: `working.inplace_op3(&base, &replacements, &MergeOp { .. })`.
struct MergeOp {
    alpha: Alpha,
    /// C's and D's weights (0 on the line).
    beyond: [f64; 2],
    /// With α per layer: each item's factor on α.
    factors: Option<Arc<Vec<f64>>>,
    /// With slerp: each item's angle (None: on the line).
    slerp: Option<Arc<Vec<Option<slerp::Angle>>>>,
    plan: Arc<Vec<MergeItem>>,
    #[cfg(feature = "cuda")]
    gpu_plan: Arc<std::sync::OnceLock<cuda::Table>>,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    one_launch: bool,
}

fn range(l: &Layout) -> candle_core::Result<usize> {
    match l.contiguous_offsets() {
        Some((start, _)) => Ok(start),
        None => candle_core::bail!("adapter merge: buffers must be contiguous"),
    }
}

impl MergeOp {
    /// Item i's α: α itself, or α times its factor.
    fn alpha_of(&self, i: usize) -> f64 {
        let a = self.alpha.value();
        self.factors.as_ref().map_or(a, |f| a * f[i])
    }

    /// Item i's weights on A, B, C and D, and (slerp off the line) the base's own
    /// coefficient: the sum of A's and B's, which is not 1 on an arc.
    fn weights_of(&self, i: usize) -> ([f32; 4], Option<f32>) {
        let t = self.alpha_of(i);
        match self.slerp.as_ref().and_then(|s| s[i]) {
            Some(angle) => {
                let (ca, cb) = slerp::coefficients(Some(angle), t);
                let scale = ca + cb;
                ([ca, cb, 0.0, 0.0], (scale != 1.0).then_some(scale))
            }
            None => {
                let [beta, gamma] = self.beyond;
                (crate::alpha::point_weights_f32(t, beta, gamma), None)
            }
        }
    }
}

fn merge_all<T: Element>(op: &MergeOp, w: &mut [T], base: &[T], repl: &[T]) {
    let coefs: Vec<(Option<Vec<f32>>, Option<f32>)> = op
        .plan
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let (weights, scale) = op.weights_of(i);
            (item.update.as_ref().map(|u| u.coefficients(weights)), scale)
        })
        .collect();
    for (i, (item, (c, scale))) in op.plan.iter().zip(&coefs).enumerate() {
        let (off, len) = item.work;
        let out = &mut w[off..off + len];
        let base = &base[item.base..item.base + len];
        let side = |r: Option<usize>| r.map_or(base, |o| &repl[o..o + len]);
        match (item.replaced, &item.update, c) {
            // On slerp's arc: the base at its own coefficient, then the updates onto it.
            ([None, None], Some(u), Some(c)) if scale.is_some() => {
                let s = scale.expect("checked");
                for (o, &b) in out.iter_mut().zip(base) {
                    *o = T::from_f32(s * b.to_f32());
                }
                lowrank::merge(out, None, u, c)
            }
            ([None, None], Some(u), Some(c)) => lowrank::merge(out, Some(base), u, c),
            (replaced, update, c) => {
                blend::blend(
                    out,
                    side(replaced[0]),
                    side(replaced[1]),
                    op.alpha_of(i) as f32,
                );
                if let (Some(u), Some(c)) = (update, c) {
                    lowrank::merge(out, None, u, c);
                }
            }
        }
    }
}

impl candle_core::InplaceOp3 for MergeOp {
    fn name(&self) -> &'static str {
        "lerpscope-adapter-merge"
    }

    fn cpu_fwd(
        &self,
        w: &mut CpuStorage,
        lw: &Layout,
        b: &CpuStorage,
        lb: &Layout,
        r: &CpuStorage,
        lr: &Layout,
    ) -> candle_core::Result<()> {
        let (w0, b0, r0) = (range(lw)?, range(lb)?, range(lr)?);
        match (w, b, r) {
            (CpuStorage::F32(w), CpuStorage::F32(b), CpuStorage::F32(r)) => {
                merge_all(self, &mut w[w0..], &b[b0..], &r[r0..])
            }
            (CpuStorage::F16(w), CpuStorage::F16(b), CpuStorage::F16(r)) => {
                merge_all(self, &mut w[w0..], &b[b0..], &r[r0..])
            }
            (CpuStorage::BF16(w), CpuStorage::BF16(b), CpuStorage::BF16(r)) => {
                merge_all(self, &mut w[w0..], &b[b0..], &r[r0..])
            }
            _ => candle_core::bail!("adapter merge: buffers must share one of f32, f16, bf16"),
        }
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        w: &mut candle_core::CudaStorage,
        lw: &Layout,
        b: &candle_core::CudaStorage,
        lb: &Layout,
        r: &candle_core::CudaStorage,
        lr: &Layout,
    ) -> candle_core::Result<()> {
        let merge = if self.one_launch {
            cuda::merge_all
        } else {
            cuda::merge_per_tensor
        };
        merge(self, w, range(lw)?, b, range(lb)?, r, range(lr)?)
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::{MergeItem, MergeOp};
    use candle_core::cuda_backend::cudarc::driver::{
        CudaSlice, DevicePtr, LaunchConfig, PushKernelArg,
    };
    use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
    use candle_core::{CudaStorage, Result, Storage, Tensor};

    /// blend.cu's `MergeItem`: one changed tensor, as device addresses.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Item {
        out: u64,
        src: u64,
        a_src: u64,
        b_src: u64,
        u: u64,
        d: u64,
        rows: i64,
        cols: i64,
        tile0: i64,
        rank: i32,
        split: i32,
        col_blocks: i32,
        pad: i32,
    }
    const _: () = assert!(std::mem::size_of::<Item>() == 88);

    /// blend.cu's MERGE_ROWS and the block width: a tile is this many rows × columns.
    const TILE_ROWS: usize = 32;
    const THREADS: usize = 256;

    /// The plan on the device: the items (their addresses fixed, as the buffers are) and the
    /// tiles they cut into.
    pub struct Table {
        items: CudaSlice<u8>,
        count: usize,
        tiles: usize,
    }

    fn f32_slice(t: &Tensor) -> Result<CudaSlice<f32>> {
        let (s, _) = t.storage_and_layout();
        match &*s {
            Storage::Cuda(c) => Ok(c.as_cuda_slice::<f32>()?.clone()),
            _ => candle_core::bail!("adapter merge: factors are not on the GPU"),
        }
    }

    fn f32_address(t: &Tensor) -> Result<u64> {
        let (s, l) = t.storage_and_layout();
        match &*s {
            Storage::Cuda(c) => {
                let slice = c.as_cuda_slice::<f32>()?;
                let base = slice.device_ptr(&c.device.cuda_stream()).0;
                Ok(base + (l.start_offset() * 4) as u64)
            }
            _ => candle_core::bail!("adapter merge: factors are not on the GPU"),
        }
    }

    fn table(
        op: &MergeOp,
        (wp, bp, rp): (u64, u64, u64),
        elem: usize,
        dev: &candle_core::CudaDevice,
    ) -> Result<Table> {
        let at = |base: u64, offset: usize| base + (offset * elem) as u64;
        let mut items = Vec::with_capacity(op.plan.len());
        let mut tiles = 0usize;
        for item in op.plan.iter() {
            let MergeItem {
                work: (off, len),
                base,
                replaced,
                update,
                on_device,
            } = item;
            let side = |r: Option<usize>| r.map_or(at(bp, *base), |o| at(rp, o));
            let blended = replaced.iter().any(Option::is_some);
            let (rows, cols, rank, split, u, d) = match (update, on_device) {
                (Some(up), Some((ud, dd))) => (
                    up.rows,
                    up.cols,
                    up.rank,
                    up.sides.a,
                    f32_address(ud)?,
                    f32_address(dd)?,
                ),
                // No update: the tensor as one row.
                _ => (1, *len, 0, 0, 0, 0),
            };
            let col_blocks = cols.div_ceil(THREADS).max(1);
            items.push(Item {
                out: at(wp, *off),
                src: at(bp, *base),
                a_src: if blended { side(replaced[0]) } else { 0 },
                b_src: if blended { side(replaced[1]) } else { 0 },
                u,
                d,
                rows: rows as i64,
                cols: cols as i64,
                tile0: tiles as i64,
                rank: rank as i32,
                split: split as i32,
                col_blocks: col_blocks as i32,
                pad: 0,
            });
            tiles += col_blocks * rows.div_ceil(TILE_ROWS);
        }
        // SAFETY: Item is plain integers; its bytes are what blend.cu reads.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                items.as_ptr().cast::<u8>(),
                items.len() * std::mem::size_of::<Item>(),
            )
        };
        Ok(Table {
            items: dev.clone_htod(bytes)?,
            count: items.len(),
            tiles,
        })
    }

    /// Every changed tensor in one launch of `merge_tiles` (blend.cu), from a table made at the
    /// first call (the buffers never move).
    pub fn merge_all(
        op: &MergeOp,
        w: &mut CudaStorage,
        w0: usize,
        b: &CudaStorage,
        b0: usize,
        r: &CudaStorage,
        r0: usize,
    ) -> Result<()> {
        let dev = w.device.clone();
        let (suffix, elem) = match (&w.slice, &b.slice, &r.slice) {
            (CudaStorageSlice::F32(_), CudaStorageSlice::F32(_), CudaStorageSlice::F32(_)) => {
                ("f32", 4)
            }
            (CudaStorageSlice::F16(_), CudaStorageSlice::F16(_), CudaStorageSlice::F16(_)) => {
                ("f16", 2)
            }
            (CudaStorageSlice::BF16(_), CudaStorageSlice::BF16(_), CudaStorageSlice::BF16(_)) => {
                ("bf16", 2)
            }
            _ => candle_core::bail!("adapter merge: buffers must share one of f32, f16, bf16"),
        };
        if op.plan.is_empty() {
            return Ok(());
        }
        // Raw device addresses of the three buffers at their layouts' offsets.
        let addresses = (
            ptr(&w.slice, &dev)? + (w0 * elem) as u64,
            ptr(&b.slice, &dev)? + (b0 * elem) as u64,
            ptr(&r.slice, &dev)? + (r0 * elem) as u64,
        );
        let table = match op.gpu_plan.get() {
            Some(t) => t,
            None => {
                let t = table(op, addresses, elem, &dev)?;
                op.gpu_plan.get_or_init(|| t)
            }
        };
        let (keep, take) = op.alpha.endpoint_weights_f32();
        let alpha = op.alpha.as_f32();
        let func = dev.get_or_load_custom_func(
            &format!("merge_tiles_{suffix}"),
            "lerpscope_blend",
            crate::weights::blend::PTX,
        )?;
        let items = table.items.device_ptr(&dev.cuda_stream()).0;
        let (count, tiles) = (table.count as i32, table.tiles as i64);
        let mut builder = func.builder();
        builder.arg(&items);
        builder.arg(&count);
        builder.arg(&tiles);
        builder.arg(&alpha);
        builder.arg(&keep);
        builder.arg(&take);
        let cfg = LaunchConfig {
            grid_dim: (table.tiles.clamp(1, 1 << 20) as u32, 1, 1),
            block_dim: (THREADS as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: every item addresses a tensor inside the three buffers (offsets from the
        // plan and the layouts) and factors sized rows × rank and rank × cols.
        unsafe { builder.launch(cfg) }.w()?;
        Ok(())
    }

    /// Per changed tensor: the blend kernel over the replaced sides when there are any, then
    /// the low-rank kernel (in place after a blend, from the base otherwise).
    pub fn merge_per_tensor(
        op: &MergeOp,
        w: &mut CudaStorage,
        w0: usize,
        b: &CudaStorage,
        b0: usize,
        r: &CudaStorage,
        r0: usize,
    ) -> Result<()> {
        let dev = w.device.clone();
        let (suffix, lanes) = match (&w.slice, &b.slice, &r.slice) {
            (CudaStorageSlice::F32(_), CudaStorageSlice::F32(_), CudaStorageSlice::F32(_)) => {
                ("f32", 4)
            }
            (CudaStorageSlice::F16(_), CudaStorageSlice::F16(_), CudaStorageSlice::F16(_)) => {
                ("f16", 8)
            }
            (CudaStorageSlice::BF16(_), CudaStorageSlice::BF16(_), CudaStorageSlice::BF16(_)) => {
                ("bf16", 8)
            }
            _ => candle_core::bail!("adapter merge: buffers must share one of f32, f16, bf16"),
        };
        let (keep, take) = op.alpha.endpoint_weights_f32();
        let alpha = op.alpha.as_f32();
        let elem = match suffix {
            "f32" => 4,
            _ => 2,
        };
        // Raw device addresses of the three buffers (their element offsets applied below).
        let (wp, bp, rp) = (
            ptr(&w.slice, &dev)?,
            ptr(&b.slice, &dev)?,
            ptr(&r.slice, &dev)?,
        );
        for item in op.plan.iter() {
            let MergeItem {
                work: (off, len),
                base,
                replaced,
                update,
                on_device,
            } = item;
            let out = wp + ((w0 + off) * elem) as u64;
            let base = bp + ((b0 + base) * elem) as u64;
            let side = |x: Option<usize>| x.map_or(base, |o| rp + ((r0 + o) * elem) as u64);
            let n = *len;
            let mut src = base;
            if replaced.iter().any(Option::is_some) {
                let func = dev.get_or_load_custom_func(
                    &format!("blend_{suffix}"),
                    "lerpscope_blend",
                    crate::weights::blend::PTX,
                )?;
                let (a_src, b_src) = (side(replaced[0]), side(replaced[1]));
                let mut builder = func.builder();
                builder.arg(&out);
                builder.arg(&a_src);
                builder.arg(&b_src);
                builder.arg(&alpha);
                builder.arg(&n);
                let blocks = n.div_ceil(lanes).div_ceil(256).clamp(1, 1 << 16) as u32;
                let cfg = LaunchConfig {
                    grid_dim: (blocks, 1, 1),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                };
                // SAFETY: the kernel reads n elements at a_src and b_src and writes n at out,
                // all inside their buffers (offsets from the layouts).
                unsafe { builder.launch(cfg) }.w()?;
                src = out;
            }
            if let (Some(u), Some((ud, dd))) = (update, on_device) {
                let func = dev.get_or_load_custom_func(
                    &format!("lowrank_merge_{suffix}"),
                    "lerpscope_blend",
                    crate::weights::blend::PTX,
                )?;
                let (ud, dd) = (f32_slice(ud)?, f32_slice(dd)?);
                let (rows, cols, rank, split) = (u.rows, u.cols, u.rank, u.sides.a);
                let mut builder = func.builder();
                builder.arg(&out);
                builder.arg(&src);
                builder.arg(&ud);
                builder.arg(&dd);
                builder.arg(&rows);
                builder.arg(&cols);
                builder.arg(&rank);
                builder.arg(&split);
                builder.arg(&keep);
                builder.arg(&take);
                let cfg = LaunchConfig {
                    grid_dim: (cols.div_ceil(256) as u32, rows.min(65535) as u32, 1),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                };
                // SAFETY: the kernel reads rows × cols at src, rows × rank of u, rank × cols
                // of d, and writes rows × cols at out, all in bounds.
                unsafe { builder.launch(cfg) }.w()?;
            }
        }
        Ok(())
    }

    fn ptr(s: &CudaStorageSlice, dev: &candle_core::CudaDevice) -> Result<u64> {
        let stream = dev.cuda_stream();
        Ok(match s {
            CudaStorageSlice::F32(x) => x.device_ptr(&stream).0,
            CudaStorageSlice::F16(x) => x.device_ptr(&stream).0,
            CudaStorageSlice::BF16(x) => x.device_ptr(&stream).0,
            _ => candle_core::bail!("adapter merge: unsupported dtype"),
        })
    }
}
