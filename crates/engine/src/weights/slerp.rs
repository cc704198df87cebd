//! Spherical interpolation along A→B, per tensor, as mergekit's `slerp` merges: each tensor
//! flattened to one vector, its angle θ to the other endpoint's from the normalised vectors'
//! dot product, and then θ(t) = sin((1 − t)θ)/sin θ · A + sin(tθ)/sin θ · B; nearly parallel
//! tensors (|cos θ| > 0.9995) fall back to the line (1 − t)·A + t·B.
//!
//! The angle is measured once at load, so an α change is two coefficients per tensor and one
//! pass over the buffer, like the line's. Vertices are exact copies.

use crate::error::{bail, Result};
use crate::weights::blend::Element;
use crate::weights::flat::FlatLayout;
use crate::weights::table::{self, SlotMix};
use candle_core::{CpuStorage, Storage, Tensor};
use rayon::prelude::*;

/// mergekit's `dot_threshold`: above it the two directions count as parallel.
pub const DOT_THRESHOLD: f64 = 0.9995;
/// mergekit's `eps`: a vector with a smaller norm is not normalised.
const EPS: f64 = 1e-8;

/// How the working weights move with α.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// θ_A + α·(θ_B − θ_A).
    #[default]
    Linear,
    /// Per tensor, along the great circle from θ_A to θ_B (mergekit's `slerp`, A its base).
    Slerp,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Linear => "linear",
            Method::Slerp => "slerp",
        }
    }

    /// The formula, for an export's recipe.
    pub fn formula(self) -> &'static str {
        match self {
            Method::Linear => "theta(alpha) = theta_a + alpha * (theta_b - theta_a)",
            Method::Slerp => {
                "per tensor: theta(alpha) = sin((1 - alpha) w) / sin w * theta_a + sin(alpha w) / sin w * theta_b, w the angle between the flattened tensors; linear where |cos w| > 0.9995 (mergekit slerp, base theta_a)"
            }
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "linear" => Ok(Method::Linear),
            "slerp" => Ok(Method::Slerp),
            other => Err(format!(
                "--method {other:?}: supported are linear and slerp"
            )),
        }
    }
}

/// One tensor's angle to the other endpoint's, or None where mergekit falls back to the line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Angle {
    pub theta: f64,
}

/// Every slot's angle between `a` and `b` (mergekit's formula, in f64).
pub fn angles<T: Element>(layout: &FlatLayout, a: &[T], b: &[T]) -> Vec<Option<Angle>> {
    layout
        .slots
        .par_iter()
        .map(|s| {
            angle(
                &a[s.offset..s.offset + s.len],
                &b[s.offset..s.offset + s.len],
            )
        })
        .collect()
}

/// The angle between two tensors (mergekit's formula, in f64); None where it falls back to
/// the line.
pub fn angle<T: Element>(a: &[T], b: &[T]) -> Option<Angle> {
    let (mut aa, mut bb, mut ab) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x.to_f32() as f64, y.to_f32() as f64);
        aa += x * x;
        bb += y * y;
        ab += x * y;
    }
    let norm = |n2: f64| {
        let n = n2.sqrt();
        if n > EPS {
            n
        } else {
            1.0
        }
    };
    let cos = (ab / (norm(aa) * norm(bb))).clamp(-1.0, 1.0);
    (cos.abs() <= DOT_THRESHOLD).then(|| Angle { theta: cos.acos() })
}

/// The coefficients (on A, on B) of one tensor at α.
pub fn coefficients(angle: Option<Angle>, alpha: f64) -> (f32, f32) {
    match angle {
        None => ((1.0 - alpha) as f32, alpha as f32),
        Some(Angle { theta }) => {
            let s = theta.sin();
            (
                (((1.0 - alpha) * theta).sin() / s) as f32,
                ((alpha * theta).sin() / s) as f32,
            )
        }
    }
}

/// The table row of one tensor at α: the vertices copied, elsewhere its two coefficients.
pub fn row(angle: Option<Angle>, alpha: f64) -> SlotMix {
    if alpha == 0.0 {
        SlotMix::A
    } else if alpha == 1.0 {
        SlotMix::B
    } else {
        let (ca, cb) = coefficients(angle, alpha);
        SlotMix::Pair(ca, cb)
    }
}

/// Every slot of `w` rewritten as its coefficients' combination of `a` and `b` at α.
pub fn slerp_into<T: Element>(
    layout: &FlatLayout,
    angles: &[Option<Angle>],
    w: &mut [T],
    a: &[T],
    b: &[T],
    alpha: f64,
) {
    let table: Vec<SlotMix> = angles.iter().map(|&an| row(an, alpha)).collect();
    table::apply(layout, &table, w, a, b, [None, None])
}

/// The angles of every slot between two flat CPU buffers of one dtype.
pub fn angles_of(layout: &FlatLayout, a: &Tensor, b: &Tensor) -> Result<Vec<Option<Angle>>> {
    let (sa, la) = a.storage_and_layout();
    let (sb, lb) = b.storage_and_layout();
    let (a0, b0) = (la.start_offset(), lb.start_offset());
    let n = layout.total;
    Ok(match (&*sa, &*sb) {
        (Storage::Cpu(CpuStorage::F32(a)), Storage::Cpu(CpuStorage::F32(b))) => {
            angles(layout, &a[a0..a0 + n], &b[b0..b0 + n])
        }
        (Storage::Cpu(CpuStorage::F16(a)), Storage::Cpu(CpuStorage::F16(b))) => {
            angles(layout, &a[a0..a0 + n], &b[b0..b0 + n])
        }
        (Storage::Cpu(CpuStorage::BF16(a)), Storage::Cpu(CpuStorage::BF16(b))) => {
            angles(layout, &a[a0..a0 + n], &b[b0..b0 + n])
        }
        _ => bail!(
            Unsupported,
            "--method slerp runs on the CPU (f32, f16 or bf16) for now; use --device cpu"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::{bf16, f16};

    fn layout(lens: &[usize]) -> FlatLayout {
        FlatLayout::new(
            lens.iter()
                .enumerate()
                .map(|(i, &n)| (format!("t{i}"), vec![n])),
            candle_core::DType::F32,
        )
    }

    /// A pair whose slot 0 is at 60°, slot 1 parallel (the line), slot 2 all zeros in A.
    fn pair(l: &FlatLayout) -> (Vec<f32>, Vec<f32>) {
        let mut a = vec![0f32; l.total];
        let mut b = vec![0f32; l.total];
        let s = &l.slots;
        for i in 0..s[0].len {
            let t = i as f32 * 0.37;
            a[s[0].offset + i] = t.sin();
            b[s[0].offset + i] = (t + 1.0).sin() * 2.0;
        }
        for i in 0..s[1].len {
            a[s[1].offset + i] = i as f32 + 1.0;
            b[s[1].offset + i] = 3.0 * (i as f32 + 1.0);
        }
        for i in 0..s[2].len {
            b[s[2].offset + i] = i as f32 - 2.5;
        }
        (a, b)
    }

    #[test]
    fn angles_follow_mergekits_rule() {
        let l = layout(&[1000, 7, 5]);
        let (a, b) = pair(&l);
        let got = angles(&l, &a, &b);
        assert!(got[0].is_some());
        assert_eq!(got[1], None, "parallel tensors take the line");
        // A zero vector is not normalised: its dot with anything is 0, a right angle.
        let right = got[2].unwrap().theta;
        assert!(
            (right - std::f64::consts::FRAC_PI_2).abs() < 1e-12,
            "{right}"
        );
    }

    /// The fast pass writes its twin's bits in every dtype, at vertices, inside and beyond.
    #[test]
    fn the_pass_writes_the_references_bits() {
        let l = layout(&[70_001, 13, 9, 130_000]);
        let (a32, b32) = pair(&l);
        fn check<T: Element + PartialEq + std::fmt::Debug>(l: &FlatLayout, a: &[T], b: &[T]) {
            let an = angles(l, a, b);
            for alpha in [0.0, 1.0, 0.3, 0.7, -0.5, 1.5] {
                let mut fast = vec![T::from_f32(9.0); l.total];
                let mut slow = fast.clone();
                slerp_into(l, &an, &mut fast, a, b, alpha);
                if alpha == 0.0 || alpha == 1.0 {
                    slow.copy_from_slice(if alpha == 0.0 { a } else { b });
                } else {
                    for (s, &angle) in l.slots.iter().zip(&an) {
                        let (ca, cb) = coefficients(angle, alpha);
                        let r = s.offset..s.offset + s.len;
                        table::combine_reference(
                            &mut slow[r.clone()],
                            &a[r.clone()],
                            &b[r],
                            ca,
                            cb,
                        );
                    }
                }
                for s in &l.slots {
                    let r = s.offset..s.offset + s.len;
                    assert_eq!(fast[r.clone()], slow[r], "α {alpha} slot {}", s.name);
                }
            }
        }
        check(&l, &a32, &b32);
        let half = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
        check(&l, &half(&a32), &half(&b32));
        let bf = |v: &[f32]| v.iter().map(|&x| bf16::from_f32(x)).collect::<Vec<_>>();
        check(&l, &bf(&a32), &bf(&b32));
    }

    /// Against slerp computed in f64 from scratch (normalise, angle, the two sines): within
    /// f32 rounding; and the result keeps the interpolated norm of a rotation.
    #[test]
    fn slerp_equals_its_f64_definition() {
        let l = layout(&[4096, 7, 5]);
        let (a, b) = pair(&l);
        let an = angles(&l, &a, &b);
        for alpha in [0.3, 0.7, 1.25] {
            let mut w = vec![0f32; l.total];
            slerp_into(&l, &an, &mut w, &a, &b, alpha);
            let (w, a, b) = (&w[..4096], &a[..4096], &b[..4096]);
            let n = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
            let (na, nb) = (n(a), n(b));
            let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
            let th = (dot / (na * nb)).acos();
            for i in 0..4096 {
                let want = ((1.0 - alpha) * th).sin() / th.sin() * a[i] as f64
                    + (alpha * th).sin() / th.sin() * b[i] as f64;
                assert!(
                    (w[i] as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "α {alpha} at {i}: {} vs {want}",
                    w[i]
                );
            }
        }
    }
}
