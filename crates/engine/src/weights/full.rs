//! The blended working set: three flat buffers of one dtype on one device — endpoint A,
//! endpoint B, and the working weights the model reads. Every model tensor is a view at a
//! 16-byte-aligned offset into the working buffer, so one in-place pass re-blends them all.

use crate::error::{bail, Context, Result};
use crate::formats::checkpoint::Checkpoint;
use crate::weights::blend::{self, Element};
pub use crate::weights::flat::{FlatLayout, Slot};
use crate::weights::layers::LayerAlphas;
use crate::weights::slerp;
use crate::weights::table::{SlotMix, TableOp};
use crate::Alpha;
use candle_core::{DType, Device, Tensor};
use half::{bf16, f16};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Which of the three buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffer {
    A,
    B,
    Working,
}

pub struct BlendedWeights {
    pub layout: FlatLayout,
    pub dtype: DType,
    a: Tensor,
    b: Tensor,
    working: Tensor,
    alpha: Alpha,
    last_blend: Option<Duration>,
    /// With `--method slerp`: each slot's angle between A and B (measured at load).
    slerp: Option<Vec<Option<slerp::Angle>>>,
    /// With α per layer: each slot's factor on α.
    factors: Option<Vec<f64>>,
    /// Endpoints beyond B, in order C, D: the plane A + α·(B − A) + β·(C − A), and with D
    /// one more delta, + γ·(D − A).
    extras: Vec<Extra>,
}

/// An endpoint beyond B (C or D) and how far the working weights move towards it.
struct Extra {
    t: Tensor,
    /// Its weight (β for C, γ for D), fixed; None: it scales with α as B's does (a recipe's
    /// direction).
    weight: Option<f64>,
    /// Each slot's factor on the weight (or α).
    factors: Vec<f64>,
}

/// The flags of the endpoints beyond B, for messages.
const EXTRA_FLAGS: [&str; 2] = ["--c", "--d"];

impl BlendedWeights {
    /// Read both endpoints' `names` into flat buffers of `dtype` on `device`. The working
    /// buffer starts as a copy of A (α = 0).
    pub fn load(
        a: &Checkpoint,
        b: &Checkpoint,
        names: &[String],
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let layout = FlatLayout::new(
            names
                .iter()
                .map(|n| (n.clone(), a.weights.tensors[n].shape.clone())),
            dtype,
        );
        let ta = build_flat(&layout, dtype, device, &a.weights)?;
        let tb = build_flat(&layout, dtype, device, &b.weights)?;
        let working = ta.copy()?;
        Ok(Self {
            layout,
            dtype,
            a: ta,
            b: tb,
            working,
            alpha: Alpha::A,
            last_blend: None,
            slerp: None,
            factors: None,
            extras: Vec::new(),
        })
    }

    /// Move along the great circle from A to B instead of the line (angles measured now).
    pub fn use_method(&mut self, method: slerp::Method) -> Result<()> {
        self.slerp = match method {
            slerp::Method::Linear => None,
            slerp::Method::Slerp => Some(slerp::angles_of(&self.layout, &self.a, &self.b)?),
        };
        let alpha = self.alpha;
        self.set_alpha(alpha)?;
        Ok(())
    }

    /// Move each tensor by α times its factor from `layers` (on a model of `n_layers`).
    pub fn use_layers(&mut self, layers: &LayerAlphas, n_layers: usize) -> Result<()> {
        if !self.working.device().is_cpu() {
            bail!(
                Unsupported,
                "{}: α per layer runs on the CPU for now; use --device cpu",
                layers.source()
            );
        }
        self.factors = Some(layers.factors(&self.layout, n_layers)?);
        let alpha = self.alpha;
        self.set_alpha(alpha)?;
        Ok(())
    }

    /// α per layer off: every tensor on the line again, re-blended at the current α.
    pub fn clear_layers(&mut self) -> Result<()> {
        self.factors = None;
        self.set_alpha(self.alpha)?;
        Ok(())
    }

    /// Add the next endpoint beyond B (C, then D; of this layout, read from `x`): the working
    /// weights gain + w·(X − A), each term times its factor from `factors` (`weight` None: X's
    /// weight is α too, a recipe's direction through its own point at α = 1).
    pub fn add_endpoint(
        &mut self,
        x: &Checkpoint,
        weight: Option<f64>,
        factors: Option<&LayerAlphas>,
        n_layers: usize,
    ) -> Result<()> {
        let Some(flag) = EXTRA_FLAGS.get(self.extras.len()) else {
            bail!(Unsupported, "{}: at most four endpoints", x.label());
        };
        if !self.working.device().is_cpu() {
            bail!(
                Unsupported,
                "{flag}: blends of more than two endpoints run on the CPU for now; use --device cpu"
            );
        }
        if self.slerp.is_some() {
            bail!(
                Unsupported,
                "{flag}: more endpoints build on the line; --method slerp takes two endpoints"
            );
        }
        let t = build_flat(&self.layout, self.dtype, self.working.device(), &x.weights)?;
        let factors = match factors {
            Some(l) => l.factors(&self.layout, n_layers)?,
            None => vec![1.0; self.layout.slots.len()],
        };
        self.extras.push(Extra { t, weight, factors });
        let alpha = self.alpha;
        self.set_alpha(alpha)?;
        Ok(())
    }

    /// Set β (a plane loaded with a fixed one) and re-blend at the current α.
    pub fn set_beta(&mut self, beta: f64) -> Result<Duration> {
        self.set_point(self.alpha, beta)
    }

    /// Move to (α, β) on a plane loaded with a fixed β: one blend.
    pub fn set_point(&mut self, alpha: Alpha, beta: f64) -> Result<Duration> {
        match self.extras.first_mut() {
            Some(t) if t.weight.is_some() => t.weight = Some(beta),
            Some(_) => bail!(
                Unsupported,
                "β: this plane is a recipe's direction, its β moving with α"
            ),
            None => bail!(
                Unsupported,
                "β: the pair has no third endpoint (--c C --beta B)"
            ),
        }
        self.set_alpha(alpha)
    }

    /// Move D's fixed γ and re-blend at the current α: one blend.
    pub fn set_gamma(&mut self, gamma: f64) -> Result<Duration> {
        match self.extras.get_mut(1) {
            Some(d) if d.weight.is_some() => d.weight = Some(gamma),
            Some(_) => bail!(Unsupported, "γ: D's weight moves with α on this recipe"),
            None => bail!(
                Unsupported,
                "γ: the pair has no fourth endpoint (--d D --gamma G)"
            ),
        }
        self.set_alpha(self.alpha)
    }

    /// β, when a third endpoint is loaded with a fixed one.
    pub fn beta(&self) -> Option<f64> {
        self.extras.first().and_then(|t| t.weight)
    }

    /// γ, when a fourth endpoint is loaded with a fixed one.
    pub fn gamma(&self) -> Option<f64> {
        self.extras.get(1).and_then(|t| t.weight)
    }

    /// Whether every tensor moves along the line by the same α (the batched paths' premise).
    pub fn on_line(&self) -> bool {
        self.slerp.is_none() && self.factors.is_none() && self.extras.is_empty()
    }

    /// Each tensor's row at α, unless every tensor takes the line at α itself.
    pub fn table(&self, alpha: f64) -> Option<Vec<SlotMix>> {
        if self.on_line() {
            return None;
        }
        Some(
            (0..self.layout.slots.len())
                .map(|i| {
                    let at = alpha * self.factors.as_ref().map_or(1.0, |f| f[i]);
                    let k = |x: Option<&Extra>| {
                        x.map_or(0.0, |x| x.weight.unwrap_or(alpha) * x.factors[i])
                    };
                    match (&self.slerp, self.extras.is_empty()) {
                        (Some(angles), _) => slerp::row(angles[i], at),
                        (None, true) => SlotMix::line(at),
                        (None, false) => {
                            let (kc, kd) = (k(self.extras.first()), k(self.extras.get(1)));
                            match (at, kc, kd) {
                                (0.0, 0.0, 0.0) => SlotMix::A,
                                (1.0, 0.0, 0.0) => SlotMix::B,
                                (_, _, 0.0) => SlotMix::Plane(at as f32, kc as f32),
                                _ => SlotMix::Space(at as f32, kc as f32, kd as f32),
                            }
                        }
                    }
                })
                .collect(),
        )
    }

    pub fn method(&self) -> slerp::Method {
        match self.slerp {
            Some(_) => slerp::Method::Slerp,
            None => slerp::Method::Linear,
        }
    }

    /// Views of one buffer by tensor name.
    pub fn views(&self, which: Buffer) -> Result<HashMap<String, Tensor>> {
        self.layout.views(self.buffer(which))
    }

    pub fn buffer(&self, which: Buffer) -> &Tensor {
        match which {
            Buffer::A => &self.a,
            Buffer::B => &self.b,
            Buffer::Working => &self.working,
        }
    }

    pub fn alpha(&self) -> Alpha {
        self.alpha
    }

    /// Rewrite the working weights as A + α·(B − A) (along the great circle with slerp, each
    /// tensor at its own multiple of α with α per layer) in one fused pass.
    pub fn set_alpha(&mut self, alpha: Alpha) -> Result<Duration> {
        let t = Instant::now();
        match self.table(alpha.value()) {
            None => blend::blend_tensor(&self.working, &self.a, &self.b, alpha.as_f32()),
            Some(table) => self.working.inplace_op3(
                &self.a,
                &self.b,
                &TableOp {
                    layout: &self.layout,
                    table: &table,
                    extra: [0, 1].map(|i| self.extras.get(i).map(|x| &x.t)),
                },
            ),
        }
        .context("blend failed")?;
        self.working.device().synchronize()?;
        self.alpha = alpha;
        let took = t.elapsed();
        self.last_blend = Some(took);
        Ok(took)
    }

    /// How long the latest `set_alpha` took.
    pub fn last_blend(&self) -> Option<Duration> {
        self.last_blend
    }

    /// Bytes of one buffer.
    pub fn bytes(&self) -> usize {
        self.layout.total * self.dtype.size_in_bytes()
    }
}

/// Where the values of a flat buffer's slots come from.
pub(crate) trait SlotSource {
    fn fill<T: Element>(&self, slot: &Slot, out: &mut [T]) -> Result<()>;
}

/// Tensors read from their files, by slot name.
impl SlotSource for crate::formats::checkpoint::TensorFiles {
    fn fill<T: Element>(&self, slot: &Slot, out: &mut [T]) -> Result<()> {
        self.read_into(&slot.name, out)
    }
}

/// Values already in memory, by slot name.
impl SlotSource for std::collections::BTreeMap<String, Vec<f32>> {
    fn fill<T: Element>(&self, slot: &Slot, out: &mut [T]) -> Result<()> {
        for (o, &x) in out.iter_mut().zip(&self[&slot.name]) {
            *o = T::from_f32(x);
        }
        Ok(())
    }
}

/// A flat buffer of `dtype` on `device` laid out by `layout`, every slot filled from `src`
/// (the gaps left for alignment are zero).
pub(crate) fn build_flat(
    layout: &FlatLayout,
    dtype: DType,
    device: &Device,
    src: &impl SlotSource,
) -> Result<Tensor> {
    fn typed<T: Element + candle_core::WithDType>(
        layout: &FlatLayout,
        device: &Device,
        src: &impl SlotSource,
    ) -> Result<Tensor> {
        let mut host = vec![T::from_f32(0.0); layout.total.max(1)];
        for s in &layout.slots {
            src.fill(s, &mut host[s.offset..s.offset + s.len])?;
        }
        let n = host.len();
        // On the CPU this takes the vector as the tensor's storage; on a GPU it is one upload.
        Ok(Tensor::from_vec(host, n, device)?)
    }
    match dtype {
        DType::F32 => typed::<f32>(layout, device, src),
        DType::F16 => typed::<f16>(layout, device, src),
        DType::BF16 => typed::<bf16>(layout, device, src),
        other => bail!(
            Unsupported,
            "--dtype {other:?} is not supported (use f32, f16 or bf16)"
        ),
    }
}
