//! Two quantized full endpoints (two GGUFs of one model): no working copy. Each endpoint's
//! matrices stay GGUF blocks in its mapped file, its other tensors sit in a small f32 buffer,
//! and every forward pass mixes rows, (1 − α)·A_q·x + α·B_q·x, which is the product with the
//! blend of the dequantised endpoints. An α change only changes those coefficients. Exports
//! dequantise both sides exactly and blend them with the line's own kernel.

use crate::error::Result;
use crate::formats::checkpoint::Checkpoint;
use crate::model::param::QuantizedWeight;
use crate::weights::blend;
use crate::weights::quantized_base::HeldModel;
use crate::Alpha;
use candle_core::{Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Tensor `name` of `m` in f32 (dequantised where it is kept quantized).
fn values(m: &HeldModel, name: &str, dense: &HashMap<String, Tensor>) -> Result<Vec<f32>> {
    Ok(match m.quantized.get(name) {
        Some(q) => q.matrix().dequantize(),
        None => dense[name].flatten_all()?.to_vec1::<f32>()?,
    })
}

pub struct QuantizedPair {
    pub a: HeldModel,
    pub b: HeldModel,
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
        Ok(Self {
            a: HeldModel::new(a, qa, dense.clone())?,
            b: HeldModel::new(b, qb, dense)?,
            shapes: names
                .iter()
                .map(|n| (n.clone(), a.weights.tensors[n].shape.clone()))
                .collect(),
            alpha: Alpha::A,
        })
    }

    /// What each side was kept in: "Q4_1 + Q6_K ↔ Q4_K + Q6_K" (one side's where they agree).
    pub fn types(&self) -> String {
        let (a, b) = (self.a.types(), self.b.types());
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
        self.a.dense()
    }

    /// Every weight at the current α in f32: both sides dequantised (exactly) and blended by
    /// the line's kernel, as the dequantised path blends them. This holds the model in f32.
    pub fn merged(&self) -> Result<HashMap<String, Tensor>> {
        let (da, db) = (self.a.dense_views()?, self.b.dense_views()?);
        let mut out = HashMap::new();
        for (name, shape) in &self.shapes {
            let (va, vb) = (values(&self.a, name, &da)?, values(&self.b, name, &db)?);
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

    /// Bytes of both endpoints as held: what a row off the endpoints reads.
    pub fn bytes_both(&self) -> usize {
        self.a.bytes() + self.b.bytes()
    }
}
