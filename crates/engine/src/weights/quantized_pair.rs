//! Two quantized full endpoints (two GGUFs of one model): no working copy. Each endpoint's
//! matrices stay GGUF blocks in its mapped file, its other tensors sit in a small f32 buffer,
//! and every forward pass mixes rows, (1 − α)·A_q·x + α·B_q·x, which is the product with the
//! blend of the dequantised endpoints. An α change only changes those coefficients. Exports
//! dequantise both sides exactly and blend them with the line's own kernel.

use crate::error::Result;
use crate::formats::checkpoint::Checkpoint;
use crate::model::param::QuantizedWeight;
use crate::weights::blend;
use crate::weights::flat::FlatLayout;
use crate::weights::full::build_flat;
use crate::Alpha;
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One endpoint as held: its quantized matrices and its dense tensors.
pub struct Side {
    pub dense_layout: FlatLayout,
    dense: Tensor,
    pub quantized: BTreeMap<String, Arc<QuantizedWeight>>,
}

impl Side {
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

    /// Tensor `name` in f32 (dequantised where it is kept quantized).
    fn values(&self, name: &str, dense: &HashMap<String, Tensor>) -> Result<Vec<f32>> {
        Ok(match self.quantized.get(name) {
            Some(q) => q.matrix().dequantize(),
            None => dense[name].flatten_all()?.to_vec1::<f32>()?,
        })
    }

    fn bytes(&self) -> usize {
        self.dense_layout.total * 4
            + self
                .quantized
                .values()
                .map(|q| q.matrix().bytes())
                .sum::<usize>()
    }
}

pub struct QuantizedPair {
    pub a: Side,
    pub b: Side,
    shapes: BTreeMap<String, Vec<usize>>,
    alpha: Alpha,
}

impl QuantizedPair {
    /// `names` of both endpoints: a matrix quantized (with a kernel) in both is kept so in
    /// both; any other tensor is read into each side's dense buffer.
    pub fn load(a: &Checkpoint, b: &Checkpoint, names: &[String]) -> Result<Self> {
        let (mut qa, mut qb) = (BTreeMap::new(), BTreeMap::new());
        let mut dense = Vec::new();
        for n in names {
            match (a.weights.quantized(n)?, b.weights.quantized(n)?) {
                (Some(x), Some(y)) => {
                    qa.insert(n.clone(), Arc::new(QuantizedWeight::new(x)));
                    qb.insert(n.clone(), Arc::new(QuantizedWeight::new(y)));
                }
                _ => dense.push((n.clone(), a.weights.tensors[n].shape.clone())),
            }
        }
        let side = |c: &Checkpoint, quantized| -> Result<Side> {
            let dense_layout = FlatLayout::new(dense.iter().cloned(), DType::F32);
            Ok(Side {
                dense: build_flat(&dense_layout, DType::F32, &Device::Cpu, &c.weights)?,
                dense_layout,
                quantized,
            })
        };
        Ok(Self {
            a: side(a, qa)?,
            b: side(b, qb)?,
            shapes: names
                .iter()
                .map(|n| (n.clone(), a.weights.tensors[n].shape.clone()))
                .collect(),
            alpha: Alpha::A,
        })
    }

    /// What each side was kept in: "Q4_1 + Q6_K ↔ Q4_K + Q6_K" (one side's where they agree).
    pub fn types(&self) -> String {
        let (a, b) = (types_of(&self.a), types_of(&self.b));
        if a == b {
            a
        } else {
            format!("{a} ↔ {b}")
        }
    }

    pub fn alpha(&self) -> Alpha {
        self.alpha
    }

    /// Nothing to blend: the next forward pass takes α's coefficients.
    pub fn set_alpha(&mut self, alpha: Alpha) {
        self.alpha = alpha;
    }

    /// Endpoint A's dense tensors, flat.
    pub fn dense(&self) -> &Tensor {
        &self.a.dense
    }

    /// Every weight at the current α in f32: both sides dequantised (exactly) and blended by
    /// the line's kernel, as the dequantised path blends them. This holds the model in f32.
    pub fn merged(&self) -> Result<HashMap<String, Tensor>> {
        let (da, db) = (self.a.dense_views()?, self.b.dense_views()?);
        let mut out = HashMap::new();
        for (name, shape) in &self.shapes {
            let (va, vb) = (self.a.values(name, &da)?, self.b.values(name, &db)?);
            let mut w = vec![0f32; va.len()];
            blend::blend(&mut w, &va, &vb, self.alpha.as_f32());
            out.insert(
                name.clone(),
                Tensor::from_vec(w, shape.as_slice(), &Device::Cpu)?,
            );
        }
        Ok(out)
    }

    /// Parameters of one model.
    pub fn params(&self) -> usize {
        self.shapes
            .values()
            .map(|s| s.iter().product::<usize>())
            .sum()
    }

    /// Bytes of one endpoint as held.
    pub fn bytes(&self) -> usize {
        self.a.bytes()
    }
}

fn types_of(side: &Side) -> String {
    let mut bytes: BTreeMap<&str, usize> = BTreeMap::new();
    for q in side.quantized.values() {
        *bytes.entry(q.matrix().qtype().name()).or_default() += q.matrix().bytes();
    }
    let mut v: Vec<_> = bytes.into_iter().collect();
    v.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    v.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(" + ")
}
