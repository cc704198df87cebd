//! α, the position on the line θ(α) = θ_A + α·(θ_B − θ_A): validated once, here, and narrowed
//! to the kernels' f32 in one place.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The largest |α| accepted: far beyond any useful extrapolation, small enough that a typo
/// (1e9 for 1e-9) is caught instead of silently producing a model of noise.
pub const MAX_ABS_ALPHA: f64 = 1000.0;

/// Every α lies on a grid of 1/GRID_PER_UNIT, so that stepping (0.1 + 0.2 …) and ranges
/// (`0:1:0.1`) give the values a person typed rather than binary neighbours of them, and the
/// same α always has the same bits (a sweep's records are keyed by them). Dividing the
/// rounded integer by an exact power of ten gives the double nearest the decimal, the same one
/// parsing "0.05" gives.
const GRID_PER_UNIT: f64 = 1e6;

/// A finite α with |α| ≤ [`MAX_ABS_ALPHA`], on a 10⁻⁶ grid.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Alpha(f64);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AlphaError {
    #[error("{0:?} is not a number")]
    NotANumber(String),
    #[error("α must be a finite number, got {0}")]
    NotFinite(f64),
    #[error("α = {} is absurd (|α| must be at most {MAX_ABS_ALPHA}); 0 is A, 1 is B", shown(*.0))]
    OutOfRange(f64),
    #[error("expected LOW:HIGH with LOW below HIGH, got {0:?}")]
    Range(String),
}

/// A number as a message shows it: plainly, or in exponent form where plainly would take
/// more than a dozen digits (1e300 is 301 of them).
pub fn shown(x: f64) -> String {
    if x != 0.0 && !(1e-6..1e12).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// A figure such as a perplexity with `prec` decimals, or in exponent form with three
/// significant digits from 1e9 up (an extrapolated model's perplexity can have fifty digits).
pub fn fixed(x: f64, prec: usize) -> String {
    if x.is_finite() && x.abs() >= 1e9 {
        format!("{x:.2e}")
    } else {
        format!("{x:.prec$}")
    }
}

/// Alphas from LOW up to HIGH, LOW < HIGH: the slider's visible range (`--range`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlphaRange {
    lo: Alpha,
    hi: Alpha,
}

impl AlphaRange {
    pub fn new(lo: Alpha, hi: Alpha) -> Result<Self, AlphaError> {
        if lo >= hi {
            return Err(AlphaError::Range(format!("{lo}:{hi}")));
        }
        Ok(Self { lo, hi })
    }

    pub fn lo(self) -> Alpha {
        self.lo
    }

    pub fn hi(self) -> Alpha {
        self.hi
    }

    /// Both ends as plain numbers, for drawing.
    pub fn bounds(self) -> (f64, f64) {
        (self.lo.value(), self.hi.value())
    }
}

impl std::str::FromStr for AlphaRange {
    type Err = AlphaError;
    fn from_str(s: &str) -> Result<Self, AlphaError> {
        let (lo, hi) = s
            .split_once(':')
            .ok_or_else(|| AlphaError::Range(s.to_string()))?;
        Self::new(lo.parse()?, hi.parse()?).map_err(|_| AlphaError::Range(s.to_string()))
    }
}

impl Alpha {
    /// Endpoint A.
    pub const A: Alpha = Alpha(0.0);
    /// Endpoint B.
    pub const B: Alpha = Alpha(1.0);

    /// The grid's spacing: the smallest difference between two alphas.
    pub const PRECISION: f64 = 1.0 / GRID_PER_UNIT;

    pub fn new(x: f64) -> Result<Self, AlphaError> {
        if !x.is_finite() {
            return Err(AlphaError::NotFinite(x));
        }
        if x.abs() > MAX_ABS_ALPHA {
            return Err(AlphaError::OutOfRange(x));
        }
        Ok(Self::on_grid(x))
    }

    /// The nearest valid α: clamped into range (a slider pushed past the end stops there).
    /// NaN, which has no nearest value, is A.
    pub fn saturating(x: f64) -> Self {
        if x.is_nan() {
            return Self::A;
        }
        Self::on_grid(x.clamp(-MAX_ABS_ALPHA, MAX_ABS_ALPHA))
    }

    fn on_grid(x: f64) -> Self {
        // + 0.0 turns −0 into 0, so both endpoints have one representation.
        Alpha((x * GRID_PER_UNIT).round() / GRID_PER_UNIT + 0.0)
    }

    pub fn value(self) -> f64 {
        self.0
    }

    /// α as the kernels take it. The only narrowing of α in the program.
    pub fn as_f32(self) -> f32 {
        self.0 as f32
    }

    /// The weights of A and B in θ(α) = (1 − α)·θ_A + α·θ_B, as the batched kernels take
    /// them: (1 − α) is formed in f64 and narrowed once, like α.
    pub fn endpoint_weights_f32(self) -> (f32, f32) {
        ((1.0 - self.0) as f32, self.0 as f32)
    }

    /// The weights of A, B, C and D at θ = θ_A + α·(θ_B − θ_A) + β·(θ_C − θ_A) + γ·(θ_D − θ_A),
    /// that is `[1 − α − β − γ, α, β, γ]`, each formed in f64 and narrowed once. At β = γ = 0
    /// these are the line's ([`Alpha::endpoint_weights_f32`]), and at γ = 0 the plane's.
    pub fn point_weights_f32(self, beta: f64, gamma: f64) -> [f32; 4] {
        point_weights_f32(self.0, beta, gamma)
    }

    /// Exactly one of the endpoints (the blend then copies it bit for bit).
    pub fn is_endpoint(self) -> bool {
        self == Self::A || self == Self::B
    }
}

/// [`Alpha::point_weights_f32`] at any α (a tensor's own α·factor with α per layer).
pub fn point_weights_f32(alpha: f64, beta: f64, gamma: f64) -> [f32; 4] {
    [
        (1.0 - alpha - beta - gamma) as f32,
        alpha as f32,
        beta as f32,
        gamma as f32,
    ]
}

/// What the engine's α arguments take: an [`Alpha`], or a plain number validated on the way in.
pub trait IntoAlpha: Copy {
    fn into_alpha(self) -> Result<Alpha, AlphaError>;
}

impl IntoAlpha for Alpha {
    fn into_alpha(self) -> Result<Alpha, AlphaError> {
        Ok(self)
    }
}

impl IntoAlpha for f64 {
    fn into_alpha(self) -> Result<Alpha, AlphaError> {
        Alpha::new(self)
    }
}

/// Every α of a list, or the first error.
pub fn alphas_of(xs: &[impl IntoAlpha]) -> Result<Vec<Alpha>, AlphaError> {
    xs.iter().map(|x| x.into_alpha()).collect()
}

impl TryFrom<f64> for Alpha {
    type Error = AlphaError;
    fn try_from(x: f64) -> Result<Self, AlphaError> {
        Alpha::new(x)
    }
}

impl From<Alpha> for f64 {
    fn from(a: Alpha) -> f64 {
        a.0
    }
}

impl std::str::FromStr for Alpha {
    type Err = AlphaError;
    fn from_str(s: &str) -> Result<Self, AlphaError> {
        let x: f64 = s
            .trim()
            .parse()
            .map_err(|_| AlphaError::NotANumber(s.to_string()))?;
        Alpha::new(x)
    }
}

/// The shortest decimal that reads back as this α (0.3, not 0.30000000000000004).
impl fmt::Display for Alpha {
    /// As the number, honouring width and precision (`{:>8}` pads a table's column).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_figures_read_in_exponent_form() {
        assert_eq!(fixed(79.6512, 1), "79.7");
        assert_eq!(fixed(999_999_999.0, 1), "999999999.0");
        assert_eq!(fixed(3.97e50, 1), "3.97e50");
        assert_eq!(fixed(f64::INFINITY, 3), "inf");
    }

    #[test]
    fn formats_as_its_number_with_width_and_precision() {
        let a = Alpha::new(-0.5).unwrap();
        assert_eq!(
            format!("{a}|{a:>6}|{a:<6}|{a:.2}"),
            "-0.5|  -0.5|-0.5  |-0.50"
        );
    }

    #[test]
    fn validates_once_with_one_message_each() {
        assert_eq!(Alpha::new(0.5).unwrap().value(), 0.5);
        assert!(matches!(
            Alpha::new(f64::NAN),
            Err(AlphaError::NotFinite(_))
        ));
        assert!(matches!(
            Alpha::new(f64::INFINITY),
            Err(AlphaError::NotFinite(_))
        ));
        assert!(matches!(Alpha::new(1000.5), Err(AlphaError::OutOfRange(_))));
        // A huge α is shown in exponent form, not as its 301 digits.
        let e = Alpha::new(-1e300).unwrap_err().to_string();
        assert!(e.starts_with("α = -1e300 is absurd"), "{e}");
        assert_eq!(shown(0.5), "0.5");
        assert_eq!(shown(1e-9), "1e-9");
        assert_eq!(shown(0.0), "0");
        assert!(Alpha::new(-1000.0).is_ok());
        assert!(matches!(
            "x".parse::<Alpha>(),
            Err(AlphaError::NotANumber(_))
        ));
        assert!("1e9"
            .parse::<Alpha>()
            .unwrap_err()
            .to_string()
            .contains("absurd"));
    }

    #[test]
    fn lies_on_one_grid() {
        assert_eq!(Alpha::new(0.1 + 0.2).unwrap(), Alpha::new(0.3).unwrap());
        assert_eq!(Alpha::new(0.1 + 0.2).unwrap().to_string(), "0.3");
        assert_eq!(Alpha::new(0.5 + 0.05).unwrap().value(), 0.55);
        assert_eq!(Alpha::new(0.0 + 0.05).unwrap().value(), 0.05);
        assert_eq!(Alpha::new(-0.0).unwrap().value().to_bits(), 0f64.to_bits());
        assert_eq!(Alpha::saturating(5e3), Alpha::new(1000.0).unwrap());
        assert_eq!(Alpha::saturating(f64::NAN), Alpha::A);
    }

    #[test]
    fn serialises_as_a_number_and_refuses_bad_ones() {
        let a = Alpha::new(0.25).unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), "0.25");
        assert_eq!(serde_json::from_str::<Alpha>("0.25").unwrap(), a);
        assert!(serde_json::from_str::<Alpha>("1e6").is_err());
    }
}
