//! The scalar types the interpreter evaluates in: `f32` (what kernels compute) and `f64` (for
//! finite-difference checks).

use std::fmt::Debug;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// A real scalar with the math the IR needs. Implemented for `f32` and `f64`.
pub trait Real:
    Copy
    + Debug
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + Send
    + Sync
    + 'static
{
    /// Additive identity, `0`.
    fn zero() -> Self;
    /// Multiplicative identity, `1`.
    fn one() -> Self;
    /// Converts from `f32` (exact for `f64`).
    fn from_f32(v: f32) -> Self;
    /// Converts from `f64`, rounding to nearest for `f32`.
    fn from_f64(v: f64) -> Self;
    /// Converts to `f64` (exact).
    fn to_f64(self) -> f64;
    /// `e^x`.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Base-2 logarithm.
    fn log2(self) -> Self;
    /// Square root (NaN below 0).
    fn sqrt(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// Sine, in radians.
    fn sin(self) -> Self;
    /// Cosine, in radians.
    fn cos(self) -> Self;
    /// Gauss error function (from `libm`, the same on every platform).
    fn erf(self) -> Self;
    /// Arctangent, in radians, in `[-π/2, π/2]`.
    fn atan(self) -> Self;
    /// Largest integer not above `x`.
    fn floor(self) -> Self;
    /// Smallest integer not below `x`.
    fn ceil(self) -> Self;
    /// Nearest integer, halves to even (`torch.round`).
    fn round_ties_even(self) -> Self;
    /// Integer part, rounding toward zero.
    fn trunc(self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// `self` raised to the power `e`.
    fn powf(self, e: Self) -> Self;
    /// Remainder of `self / d` with the sign of `self` (C `fmod`, from `libm`).
    fn fmod(self, d: Self) -> Self;
    /// Whether the value is NaN.
    fn is_nan(self) -> bool;
    /// `1 / (1 + exp(-x))`.
    fn sigmoid(self) -> Self {
        Self::one() / (Self::one() + (-self).exp())
    }
    /// NaN-propagating minimum (`torch.minimum`).
    fn min_nan(self, o: Self) -> Self {
        if self.is_nan() || o.is_nan() {
            Self::from_f64(f64::NAN)
        } else if o < self {
            o
        } else {
            self
        }
    }
    /// NaN-propagating maximum (`torch.maximum`).
    fn max_nan(self, o: Self) -> Self {
        if self.is_nan() || o.is_nan() {
            Self::from_f64(f64::NAN)
        } else if o > self {
            o
        } else {
            self
        }
    }
}

macro_rules! impl_real {
    ($t:ty, $erf:path, $fmod:path) => {
        impl Real for $t {
            fn zero() -> Self {
                0.0
            }
            fn one() -> Self {
                1.0
            }
            fn from_f32(v: f32) -> Self {
                v as $t
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn log2(self) -> Self {
                <$t>::log2(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            fn erf(self) -> Self {
                $erf(self)
            }
            fn atan(self) -> Self {
                <$t>::atan(self)
            }
            fn floor(self) -> Self {
                <$t>::floor(self)
            }
            fn ceil(self) -> Self {
                <$t>::ceil(self)
            }
            fn round_ties_even(self) -> Self {
                <$t>::round_ties_even(self)
            }
            fn trunc(self) -> Self {
                <$t>::trunc(self)
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn powf(self, e: Self) -> Self {
                <$t>::powf(self, e)
            }
            fn fmod(self, d: Self) -> Self {
                $fmod(self, d)
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}

impl_real!(f32, libm::erff, libm::fmodf);
impl_real!(f64, libm::erf, libm::fmod);

/// The one rule for numbers written by a user that become `f32` constants (literals,
/// hyperparameters): a finite number within the range of `f32`. NaN, infinities and numbers
/// that would round to an infinity are refused (with why); infinities are written with the
/// named constants (`f32::INFINITY`).
pub fn user_f32(v: f64) -> Result<f32, String> {
    if v.is_nan() {
        return Err("NaN is not a value".into());
    }
    if v.is_infinite() {
        return Err("an infinity is not a finite number (write `f32::INFINITY` in a core)".into());
    }
    let f = v as f32;
    if f.is_infinite() {
        return Err(format!(
            "{v:e} is out of the range of f32 (largest magnitude {:e})",
            f32::MAX
        ));
    }
    Ok(f)
}
