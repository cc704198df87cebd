//! A pair's weights, whatever the endpoints are: two full models (three flat buffers), or
//! adapters on one base (the base, a working copy of what they change, their factors).

pub mod adapters;
pub mod blend;
pub mod few_rows;
pub mod flat;
pub mod full;
pub mod layers;
pub mod lowrank;
pub mod quantized_base;
pub mod quantized_pair;
pub mod slerp;
pub mod table;

use crate::error::Result;
use crate::weights::adapters::AdapterWeights;
use crate::weights::full::{BlendedWeights, Buffer};
use crate::weights::quantized_base::QuantizedAdapters;
use crate::weights::quantized_pair::QuantizedPair;
use crate::Alpha;
use candle_core::{DType, Tensor};
use std::time::Duration;

pub enum Weights {
    Full(BlendedWeights),
    Adapters(AdapterWeights),
    /// Adapters on a base kept quantized: nothing is merged, α is a coefficient of the
    /// factored forward pass.
    Quantized(QuantizedAdapters),
    /// Two quantized full endpoints: nothing is blended, each row mixes both products.
    QuantizedPair(QuantizedPair),
}

impl Weights {
    pub fn alpha(&self) -> Alpha {
        match self {
            Weights::Full(w) => w.alpha(),
            Weights::Adapters(w) => w.alpha(),
            Weights::Quantized(w) => w.alpha(),
            Weights::QuantizedPair(w) => w.alpha(),
        }
    }

    /// Re-blend (full pairs) or re-merge (adapters) the working weights in place at α.
    pub fn set_alpha(&mut self, alpha: Alpha) -> Result<Duration> {
        match self {
            Weights::Full(w) => w.set_alpha(alpha),
            Weights::Adapters(w) => w.set_alpha(alpha),
            Weights::Quantized(w) => {
                w.set_alpha(alpha);
                Ok(Duration::ZERO)
            }
            Weights::QuantizedPair(w) => {
                w.set_alpha(alpha);
                Ok(Duration::ZERO)
            }
        }
    }

    /// Whether an adapter pair's merge on a GPU runs in one launch (see
    /// [`crate::Engine::set_fused`]); a full pair's blend is one launch already.
    pub fn set_fused(&mut self, on: bool) {
        if let Weights::Adapters(w) = self {
            w.set_one_launch(on)
        }
    }

    pub fn last_blend(&self) -> Option<Duration> {
        match self {
            Weights::Full(w) => w.last_blend(),
            Weights::Adapters(w) => w.last_blend(),
            Weights::Quantized(_) | Weights::QuantizedPair(_) => Some(Duration::ZERO),
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Weights::Full(w) => w.dtype,
            Weights::Adapters(w) => w.dtype,
            Weights::Quantized(_) | Weights::QuantizedPair(_) => DType::F32,
        }
    }

    /// The buffer an α change rewrites (on a base kept quantized, none is: its dense tensors).
    pub fn working(&self) -> &Tensor {
        match self {
            Weights::Full(w) => w.buffer(Buffer::Working),
            Weights::Adapters(w) => w.working(),
            Weights::Quantized(w) => w.base.dense(),
            Weights::QuantizedPair(w) => w.dense(),
        }
    }

    /// Every weight of the model at the current α, by name (views, no copies).
    pub fn merged_views(&self) -> Result<std::collections::HashMap<String, Tensor>> {
        match self {
            Weights::Full(w) => w.views(Buffer::Working),
            Weights::Adapters(w) => w.merged_views(),
            Weights::Quantized(w) => w.merged(),
            Weights::QuantizedPair(w) => w.merged(),
        }
    }

    /// The full pair's three buffers, when the pair is two full models.
    /// How the weights move with α.
    pub fn method(&self) -> slerp::Method {
        match self {
            Weights::Full(w) => w.method(),
            Weights::Adapters(w) if !w.on_line() => slerp::Method::Slerp,
            _ => slerp::Method::Linear,
        }
    }

    /// Whether every tensor moves along the line by the same α (the batched paths' premise).
    pub fn on_line(&self) -> bool {
        match self {
            Weights::Full(w) => w.on_line(),
            Weights::Adapters(w) => w.on_line(),
            Weights::Quantized(_) | Weights::QuantizedPair(_) => true,
        }
    }

    pub fn full(&self) -> Option<&BlendedWeights> {
        match self {
            Weights::Full(w) => Some(w),
            Weights::Adapters(_) | Weights::Quantized(_) | Weights::QuantizedPair(_) => None,
        }
    }

    /// Parameters of the model (of one endpoint, or of the base).
    pub fn params(&self) -> usize {
        match self {
            Weights::Full(w) => w.layout.params(),
            Weights::Adapters(w) => w.base_layout.params(),
            Weights::Quantized(w) => w.base.params(),
            Weights::QuantizedPair(w) => w.params(),
        }
    }

    /// Bytes of one model's weights (one endpoint, or the base).
    pub fn model_bytes(&self) -> usize {
        match self {
            Weights::Full(w) => w.bytes(),
            Weights::Adapters(w) => w.base_layout.total * w.dtype.size_in_bytes(),
            Weights::Quantized(w) => w.base.bytes(),
            Weights::QuantizedPair(w) => w.bytes(),
        }
    }

    /// Bytes of weights a decode step reads at an α between the endpoints: one model's,
    /// but both endpoints' where each row multiplies by both (two quantized endpoints).
    pub fn step_bytes(&self) -> usize {
        match self {
            Weights::QuantizedPair(w) => w.bytes_both(),
            _ => self.model_bytes(),
        }
    }
}
