//! Adapters on a base kept quantized: the base's matrices stay GGUF blocks where they lie in the
//! mapped file, its other tensors (norms, and any matrix of a type without a kernel) sit in one
//! small f32 buffer, and both adapters' factors apply per batch row on the factored path:
//!
//!   y = W_q·x + (1 − α)·ΔA·x + α·ΔB·x   (on a plane, + β·ΔC with 1 − α − β on ΔA; with a
//!   fourth endpoint, + γ·ΔD with 1 − α − β − γ on ΔA).
//!
//! Merging into quantized blocks is not exact, so nothing is merged: an α change only changes
//! the coefficients the next forward pass uses. Exports dequantize and merge in f32.
//!
//! A tensor an adapter replaces whole (modules_to_save) is held dense in f32 twice, A's version
//! and B's (each the adapter's own, or the base's dequantised), and each row mixes the two
//! products at its α, as the dense factored path does.

use crate::error::{bail, Result};
use crate::formats::adapter::Adapter;
use crate::formats::checkpoint::Checkpoint;
use crate::model::param::QuantizedWeight;
use crate::weights::adapters::{concat_forward, stored, ForwardUpdate};
use crate::weights::flat::FlatLayout;
use crate::weights::full::{build_flat, SlotSource};
use crate::weights::lowrank;
use crate::Alpha;
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One model as held on the quantized paths: its matrices kept quantized (by tensor name) and
/// its other tensors in one f32 buffer.
pub struct HeldModel {
    pub dense_layout: FlatLayout,
    dense: Tensor,
    pub quantized: BTreeMap<String, Arc<QuantizedWeight>>,
}

impl HeldModel {
    /// `quantized` as they are, and the tensors `dense` (name, shape) read from `c` in f32.
    pub fn new(
        c: &Checkpoint,
        quantized: BTreeMap<String, Arc<QuantizedWeight>>,
        dense: Vec<(String, Vec<usize>)>,
    ) -> Result<Self> {
        Self::from_source(&c.weights, quantized, dense)
    }

    /// As [`HeldModel::new`], the dense tensors read from `src`.
    fn from_source(
        src: &impl SlotSource,
        quantized: BTreeMap<String, Arc<QuantizedWeight>>,
        dense: Vec<(String, Vec<usize>)>,
    ) -> Result<Self> {
        let dense_layout = FlatLayout::new(dense, DType::F32);
        Ok(Self {
            dense: build_flat(&dense_layout, DType::F32, &Device::Cpu, src)?,
            dense_layout,
            quantized,
        })
    }

    /// The dense tensors, flat.
    pub fn dense(&self) -> &Tensor {
        &self.dense
    }

    /// The dense tensors by name.
    pub fn dense_views(&self) -> Result<HashMap<String, Tensor>> {
        self.dense_layout.views(&self.dense)
    }

    /// The quantized matrices, as the model loader takes them.
    pub fn quantized_map(&self) -> HashMap<String, Arc<QuantizedWeight>> {
        self.quantized
            .iter()
            .map(|(n, q)| (n.clone(), q.clone()))
            .collect()
    }

    /// The types kept, largest share first: "Q4_1 + Q8_0".
    pub fn types(&self) -> String {
        crate::quantized::by_share(self.quantized.values().map(|q| {
            let m = q.matrix();
            (m.qtype().name().to_string(), m.bytes())
        }))
    }

    /// Parameters of the model.
    pub fn params(&self) -> usize {
        self.dense_layout.params()
            + self
                .quantized
                .values()
                .map(|q| q.matrix().rows() * q.matrix().cols())
                .sum::<usize>()
    }

    /// Bytes as held: the quantized blocks and the dense tensors.
    pub fn bytes(&self) -> usize {
        self.dense_layout.total * 4
            + self
                .quantized
                .values()
                .map(|q| q.matrix().bytes())
                .sum::<usize>()
    }
}

/// A tensor's factor on α from α per layer's factors by name (1 where there are none).
pub fn factor_of(factors: Option<&HashMap<String, f64>>, name: &str) -> f64 {
    factors.and_then(|f| f.get(name)).copied().unwrap_or(1.0)
}

/// One side's version of each tensor: the adapter's replacement where it has one, else the
/// base's (dequantised where the base holds it quantized).
struct SideVersions<'a> {
    base: &'a crate::formats::checkpoint::TensorFiles,
    replacements: Option<&'a BTreeMap<String, Vec<f32>>>,
}

impl SlotSource for SideVersions<'_> {
    fn fill<T: crate::weights::blend::Element>(
        &self,
        slot: &crate::weights::flat::Slot,
        out: &mut [T],
    ) -> Result<()> {
        match self.replacements.and_then(|r| r.get(&slot.name)) {
            Some(v) => {
                for (o, &x) in out.iter_mut().zip(v) {
                    *o = T::from_f32(x);
                }
                Ok(())
            }
            None => self.base.fill(slot, out),
        }
    }
}

pub struct QuantizedAdapters {
    /// The base, with A's version of the tensors an adapter replaces among its dense ones.
    pub base: HeldModel,
    /// B's version of those tensors (f32), where an adapter replaces any.
    replaced_b: Option<(FlatLayout, Tensor)>,
    /// Tensor name → both adapters' update, for the factored path.
    pub forward: BTreeMap<String, ForwardUpdate>,
    alpha: Alpha,
    /// C's weight on a plane (0 on the line).
    beta: f64,
    /// D's weight, with a fourth endpoint (0 otherwise).
    gamma: f64,
    /// With α per layer: each tensor's factor on α, by name (1 where absent).
    pub factors: Option<HashMap<String, f64>>,
}

impl QuantizedAdapters {
    /// The base's `names`, its quantized matrices kept as they are, and the adapters' factors
    /// (A, B and, for a plane, C, with a fourth endpoint D; `None` is the base itself).
    pub fn load(base: &Checkpoint, names: &[String], sides: [Option<&Adapter>; 4]) -> Result<Self> {
        let [a, b, c, d] = sides;
        // C and D come only with a plane, which the engine refuses replacements on first.
        crate::weights::adapters::refuse_replacements(
            [None, None, c, d],
            crate::weights::adapters::PLANE_MOVES_UPDATES,
        )?;
        for side in sides.into_iter().flatten() {
            let changed = side.updates.keys().chain(side.replacements.keys());
            if let Some(n) = changed.into_iter().find(|n| !names.contains(n)) {
                bail!(
                    Mismatch,
                    "the adapters change {n}, which is not a weight of the base"
                );
            }
        }
        let replaced: std::collections::BTreeSet<&String> = [a, b]
            .into_iter()
            .flatten()
            .flat_map(|s| s.replacements.keys())
            .collect();
        let shape = |n: &String| base.weights.tensors[n].shape.clone();
        let mut quantized = BTreeMap::new();
        let mut dense = Vec::new();
        for n in names {
            match base.weights.quantized(n)? {
                Some(m) if !replaced.contains(n) => {
                    quantized.insert(n.clone(), Arc::new(QuantizedWeight::new(m)));
                }
                _ => dense.push((n.clone(), shape(n))),
            }
        }
        fn version<'a>(base: &'a Checkpoint, side: Option<&'a Adapter>) -> SideVersions<'a> {
            SideVersions {
                base: &base.weights,
                replacements: side.map(|s| &s.replacements),
            }
        }
        let replaced_b = match replaced.is_empty() {
            true => None,
            false => {
                let layout = FlatLayout::new(
                    replaced.iter().map(|n| ((*n).clone(), shape(n))),
                    DType::F32,
                );
                let t = build_flat(&layout, DType::F32, &Device::Cpu, &version(base, b))?;
                Some((layout, t))
            }
        };
        let forward = names
            .iter()
            .filter_map(|n| {
                let f = concat_forward(sides.map(|s| s.and_then(|s| s.updates.get(n))))?;
                Some((n.clone(), f))
            })
            .collect();
        Ok(Self {
            base: HeldModel::from_source(&version(base, a), quantized, dense)?,
            replaced_b,
            forward,
            alpha: Alpha::A,
            beta: 0.0,
            gamma: 0.0,
            factors: None,
        })
    }

    pub fn alpha(&self) -> Alpha {
        self.alpha
    }

    /// Nothing to merge: the next forward pass takes α's coefficients.
    pub fn set_alpha(&mut self, alpha: Alpha) {
        self.alpha = alpha;
    }

    /// C's weight on a plane (0 on the line).
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// Nothing to merge here either.
    pub fn set_beta(&mut self, beta: f64) {
        self.beta = beta;
    }

    /// D's weight (0 without a fourth endpoint).
    pub fn gamma(&self) -> f64 {
        self.gamma
    }

    /// Nothing to merge here either.
    pub fn set_gamma(&mut self, gamma: f64) {
        self.gamma = gamma;
    }

    /// Tensor `name`'s factor on α (1 without α per layer).
    pub fn factor(&self, name: &str) -> f64 {
        factor_of(self.factors.as_ref(), name)
    }

    /// The endpoints' weights for tensor `name` at the current α, β and γ.
    fn weights_of(&self, name: &str) -> [f32; 4] {
        let alpha = self.alpha.value() * self.factor(name);
        crate::alpha::point_weights_f32(alpha, self.beta, self.gamma)
    }

    /// B's version of the tensors an adapter replaces whole, by name (none without any).
    pub fn replaced_b_views(&self) -> Result<Option<HashMap<String, Tensor>>> {
        self.replaced_b
            .as_ref()
            .map(|(layout, t)| layout.views(t))
            .transpose()
    }

    /// Every weight at the current α (and β) in f32: the quantized ones dequantized (exactly) and the
    /// updates merged in. For exports; this holds the whole model in f32.
    pub fn merged(&self) -> Result<HashMap<String, Tensor>> {
        let mut v = self.base.dense_views()?;
        // Replaced tensors: A's and B's versions blended at α (the blend's own element).
        for (name, tb) in self.replaced_b_views()?.into_iter().flatten() {
            let ta = &v[&name];
            let (xa, xb) = (
                ta.flatten_all()?.to_vec1::<f32>()?,
                tb.flatten_all()?.to_vec1::<f32>()?,
            );
            let alpha = self.alpha.as_f32();
            let w: Vec<f32> = xa
                .iter()
                .zip(&xb)
                .map(|(&a, &b)| crate::weights::blend::lerp_scalar(a, b, alpha))
                .collect();
            let shape = ta.shape().clone();
            v.insert(name, Tensor::from_vec(w, shape, &Device::Cpu)?);
        }
        for (name, q) in &self.base.quantized {
            let m = q.matrix();
            let mut w = m.dequantize();
            if let Some(f) = self.forward.get(name) {
                let upd = stored(f);
                lowrank::merge(&mut w, None, &upd, &upd.coefficients(self.weights_of(name)));
            }
            v.insert(
                name.clone(),
                Tensor::from_vec(w, (m.rows(), m.cols()), &Device::Cpu)?,
            );
        }
        // Dense tensors the adapters change (not kept quantized): merged the same way.
        for (name, f) in &self.forward {
            if self.base.quantized.contains_key(name) {
                continue;
            }
            let t = &v[name];
            let mut w = t.flatten_all()?.to_vec1::<f32>()?;
            let upd = stored(f);
            lowrank::merge(&mut w, None, &upd, &upd.coefficients(self.weights_of(name)));
            let shape = t.shape().clone();
            v.insert(name.clone(), Tensor::from_vec(w, shape, &Device::Cpu)?);
        }
        Ok(v)
    }
}
