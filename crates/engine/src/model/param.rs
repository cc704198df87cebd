//! Weights that are either one tensor (the blended working set) or both endpoints, for the
//! batched-columns mode.
//!
//! Every op a model applies to a weight is affine in that weight (matmuls, norm gains, biases,
//! embedding lookups), so `op(x; (1−α)·A + α·B) = (1−α)·op(x; A) + α·op(x; B)`. With both
//! endpoints at hand, K rows of one batch can each run at their own α while every weight is
//! read once per step for all of them — no re-blend between columns.

use super::Kernels;
use crate::Alpha;
use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::VarBuilder;

/// One weight: the working tensor, or endpoints A and B.
#[derive(Clone)]
pub struct Param {
    a: Tensor,
    b: Option<Tensor>,
}

impl Param {
    /// The tensor the single-α path reads (A in the batched mode).
    pub fn tensor(&self) -> &Tensor {
        &self.a
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
            (Some(m), Some(b)) => m.combine(&op(&self.a)?, &op(b)?),
            _ => op(&self.a),
        }
    }

    /// `x · wᵀ` (nn.Linear layout); in the batched mode one fused pass over both endpoints
    /// where the CPU kernel applies.
    pub fn linear(&self, x: &Tensor, mix: Option<&Mix>, kernels: Kernels) -> Result<Tensor> {
        if let (Some(m), Some(b), Kernels::Fast) = (mix, &self.b, kernels) {
            if let Some(y) = super::linear_t_mixed(x, &self.a, b, m)? {
                return Ok(y);
            }
        }
        self.apply(mix, |w| kernels.linear_t(x, w))
    }

    /// Endpoint B, in the batched mode.
    pub fn endpoint_b(&self) -> Option<&Tensor> {
        self.b.as_ref()
    }
}

/// Per-row interpolation weights for a batch of K rows: `keep = 1 − α` and `take = α`. They
/// stay f32 whatever the model's dtype (rounded to bf16, α = 0.3 would run at 0.30078).
pub struct Mix {
    alphas: Vec<Alpha>,
    keep: Vec<f32>,
    take: Vec<f32>,
    /// `keep` and `take` as `[K, 1, 1]` f32 tensors on the model's device.
    keep_t: Tensor,
    take_t: Tensor,
}

impl Mix {
    pub fn new(alphas: &[Alpha], device: &Device) -> Result<Self> {
        let k = alphas.len();
        let (keep, take): (Vec<f32>, Vec<f32>) =
            alphas.iter().map(|a| a.endpoint_weights_f32()).unzip();
        Ok(Self {
            keep_t: Tensor::from_slice(&keep, (k, 1, 1), device)?,
            take_t: Tensor::from_slice(&take, (k, 1, 1), device)?,
            alphas: alphas.to_vec(),
            keep,
            take,
        })
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

    /// `(1−α)·at_a + α·at_b` row by row, for outputs `[K, ..]` of rank 3, computed in f32.
    pub fn combine(&self, at_a: &Tensor, at_b: &Tensor) -> Result<Tensor> {
        let dtype = at_a.dtype();
        let f32_of = |t: &Tensor| t.to_dtype(DType::F32);
        f32_of(at_a)?
            .broadcast_mul(&self.keep_t)?
            .add(&f32_of(at_b)?.broadcast_mul(&self.take_t)?)?
            .to_dtype(dtype)
    }
}

/// Reads [`Param`]s from one VarBuilder, or from two (A and B) sharing names and shapes.
#[derive(Clone)]
pub struct Loader<'a> {
    a: VarBuilder<'a>,
    b: Option<VarBuilder<'a>>,
}

impl<'a> Loader<'a> {
    pub fn single(vb: VarBuilder<'a>) -> Self {
        Self { a: vb, b: None }
    }

    pub fn pair(a: VarBuilder<'a>, b: VarBuilder<'a>) -> Self {
        Self { a, b: Some(b) }
    }

    pub fn pp(&self, prefix: impl ToString) -> Self {
        let p = prefix.to_string();
        Self {
            a: self.a.pp(&p),
            b: self.b.as_ref().map(|b| b.pp(&p)),
        }
    }

    pub fn get<S: Into<Shape> + Clone>(&self, shape: S, name: &str) -> Result<Param> {
        Ok(Param {
            a: self.a.get(shape.clone(), name)?,
            b: match &self.b {
                Some(b) => Some(b.get(shape, name)?),
                None => None,
            },
        })
    }

    pub fn contains_tensor(&self, name: &str) -> bool {
        self.a.contains_tensor(name)
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
