//! Surrogate gradients: SpikingJelly's catalogue, with its defaults and exact backward formulas.
//!
//! Forward, every spiking surrogate is the Heaviside step `Θ(x)` with `Θ(0) = 1`, except
//! `MultiLevelSpikeCount` (ILIF's), whose forward is the spike count `round(clamp(x, 0, max))`
//! (see [`Surrogate::forward`]). Backward, each uses its own derivative, written here in the same operand order as SpikingJelly's torch code.
//! The smooth `primitive` forms (SpikingJelly's `spiking=False`) are expanded into ordinary IR ops
//! by [`crate::builder::GraphBuilder::surrogate_primitive`], so autodiff differentiates them like any
//! other expression.

use crate::num::Real;

/// A surrogate function and its parameters. Field names follow SpikingJelly's constructors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Surrogate {
    /// Backward `α·σ(αx)·(1 - σ(αx))`.
    Sigmoid {
        /// Steepness (default 4).
        alpha: f32,
    },
    /// Backward `(α/2) / (1 + (παx/2)²)`.
    ATan {
        /// Steepness (default 2).
        alpha: f32,
    },
    /// Backward `α - α²·|x|` for `|x| <= 1/α`, else 0.
    PiecewiseQuadratic {
        /// Peak height; the window's half-width is `1/α`. Non-zero (default 1).
        alpha: f32,
    },
    /// Backward `(α/2)·e^(-α|x|)`.
    PiecewiseExp {
        /// Steepness (default 1).
        alpha: f32,
    },
    /// Backward `1 / (2α·(1/α + |x|)²)`.
    SoftSign {
        /// Steepness, `> 0` (default 2).
        alpha: f32,
    },
    /// Backward `α / (|x| + 1)²`; no smooth primitive.
    SuperSpike {
        /// Scale (default 1).
        alpha: f32,
    },
    /// Backward `1 / (1/α + |x|)`.
    NonzeroSignLogAbs {
        /// Steepness (default 1).
        alpha: f32,
    },
    /// Backward `(α/√π)·e^(-(αx)²)`.
    Erf {
        /// Steepness (default 2).
        alpha: f32,
    },
    /// Backward `1/(2w)` for `|x| < w`, else `c`.
    PiecewiseLeakyReLU {
        /// Half-width of the window, `> 0` (default 1).
        w: f32,
        /// Slope outside the window (default 0.01).
        c: f32,
    },
    /// Backward `(4/T)·Σ_{i=1}^{n-1} cos((2i - 1)·2πx/T)`.
    SquarewaveFourierSeries {
        /// Series order: the sum has `n - 1` terms; an integer in `1..=1024` (default 2).
        n: u32,
        /// Period `T`, `> 0`; SpikingJelly's `T` (default 8).
        t_period: f32,
    },
    /// Backward `α·σ(αx)·(1 - σ(αx))` for `x < 0`, `β / (x + 1)` otherwise.
    S2NN {
        /// Steepness of the negative (sigmoid) side (default 4).
        alpha: f32,
        /// Scale of the positive side (default 1).
        beta: f32,
    },
    /// Backward `(1 + 2|x|/(α - 1))^(-α)`.
    QPseudoSpike {
        /// Tail exponent, `> 1` (default 2).
        alpha: f32,
    },
    /// Backward `k` for `x >= 0`, `leak` below.
    LeakyKReLU {
        /// Slope for `x < 0` (default 0).
        leak: f32,
        /// Slope for `x >= 0` (default 1).
        k: f32,
    },
    /// Backward `min(1/|x|, α)`; no smooth primitive.
    FakeNumericalGradient {
        /// Upper bound of the gradient (default 0.3).
        alpha: f32,
    },
    /// Backward `α` for `x <= 0`, 1 on `(0, 1]`, `1/x` above.
    LogTailedReLU {
        /// Slope for `x <= 0` (default 0).
        alpha: f32,
    },
    /// Backward `α` for `|x| < 1/(2α)`, else 0.
    Rect {
        /// Height; the window's width is `1/α`. Non-zero (default 1).
        alpha: f32,
    },
    /// Straight-through: backward 1 everywhere.
    DeterministicPass,
    /// Integer spike counts: forward `round(clamp(x, 0, max_spike_count))` (ties to even),
    /// backward 1 inside `[grad_min, grad_max]`, else 0 (SpikingJelly's default window is
    /// `[0, max_spike_count]`).
    MultiLevelSpikeCount {
        /// Largest count a step can emit, an integer `>= 1` (default 4).
        max_spike_count: u32,
        /// Lower end of the pass-through window (default 0).
        grad_min: f32,
        /// Upper end of the window, `>= grad_min` (default `max_spike_count`).
        grad_max: f32,
    },
}

/// Why a surrogate could not be made from a name and parameters.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SurrogateError {
    /// No surrogate has this class name (given here).
    #[error("unknown surrogate `{0}`{hint}; known: {known}", hint = crate::suggest::did_you_mean(.0, Surrogate::NAMES.iter().copied()), known = Surrogate::NAMES.join(", "))]
    Unknown(String),
    /// The surrogate has no parameter of this name.
    #[error("surrogate `{surrogate}` has no parameter `{param}`{hint}; it takes: {allowed}", hint = crate::suggest::did_you_mean(.param, .allowed.split(", ")))]
    UnknownParam {
        /// The surrogate's class name.
        surrogate: &'static str,
        /// The parameter name given.
        param: String,
        /// Its parameters, joined with `, ` (or `no parameters`).
        allowed: String,
    },
    /// A parameter value breaks SpikingJelly's constraints or is not finite.
    #[error("surrogate `{surrogate}`: parameter `{param}` = {value} is invalid: {why}")]
    Invalid {
        /// The surrogate's class name.
        surrogate: &'static str,
        /// The parameter's name.
        param: &'static str,
        /// The value given.
        value: f64,
        /// The constraint it breaks.
        why: &'static str,
    },
}

impl Surrogate {
    /// SpikingJelly's class names, in catalogue order.
    pub const NAMES: &'static [&'static str] = &[
        "Sigmoid",
        "ATan",
        "PiecewiseQuadratic",
        "PiecewiseExp",
        "SoftSign",
        "SuperSpike",
        "NonzeroSignLogAbs",
        "Erf",
        "PiecewiseLeakyReLU",
        "SquarewaveFourierSeries",
        "S2NN",
        "QPseudoSpike",
        "LeakyKReLU",
        "FakeNumericalGradient",
        "LogTailedReLU",
        "Rect",
        "DeterministicPass",
        "MultiLevelSpikeCount",
    ];

    /// The surrogate with SpikingJelly's default parameters.
    pub fn default_for(name: &str) -> Option<Surrogate> {
        use Surrogate::*;
        Some(match name {
            "Sigmoid" => Sigmoid { alpha: 4.0 },
            "ATan" => ATan { alpha: 2.0 },
            "PiecewiseQuadratic" => PiecewiseQuadratic { alpha: 1.0 },
            "PiecewiseExp" => PiecewiseExp { alpha: 1.0 },
            "SoftSign" => SoftSign { alpha: 2.0 },
            "SuperSpike" => SuperSpike { alpha: 1.0 },
            "NonzeroSignLogAbs" => NonzeroSignLogAbs { alpha: 1.0 },
            "Erf" => Erf { alpha: 2.0 },
            "PiecewiseLeakyReLU" => PiecewiseLeakyReLU { w: 1.0, c: 0.01 },
            "SquarewaveFourierSeries" => SquarewaveFourierSeries {
                n: 2,
                t_period: 8.0,
            },
            "S2NN" => S2NN {
                alpha: 4.0,
                beta: 1.0,
            },
            "QPseudoSpike" => QPseudoSpike { alpha: 2.0 },
            "LeakyKReLU" => LeakyKReLU { leak: 0.0, k: 1.0 },
            "FakeNumericalGradient" => FakeNumericalGradient { alpha: 0.3 },
            "LogTailedReLU" => LogTailedReLU { alpha: 0.0 },
            "Rect" => Rect { alpha: 1.0 },
            "DeterministicPass" => DeterministicPass,
            // SpikingJelly requires the count; 4 is ILIFNode's default.
            "MultiLevelSpikeCount" => MultiLevelSpikeCount {
                max_spike_count: 4,
                grad_min: 0.0,
                grad_max: 4.0,
            },
            _ => return None,
        })
    }

    /// Builds a surrogate from its class name and named parameters; omitted parameters take
    /// SpikingJelly's defaults. `T` is accepted as the name of `SquarewaveFourierSeries`'s period.
    pub fn from_name_and_params(
        name: &str,
        params: &[(&str, f64)],
    ) -> Result<Surrogate, SurrogateError> {
        let mut s =
            Surrogate::default_for(name).ok_or_else(|| SurrogateError::Unknown(name.into()))?;
        for &(param, value) in params {
            s.set_param(param, value)?;
        }
        s.validate()?;
        Ok(s)
    }

    /// Sets one parameter by name.
    pub fn set_param(&mut self, param: &str, value: f64) -> Result<(), SurrogateError> {
        use Surrogate::*;
        let surrogate = self.name();
        let v = value as f32;
        let slot: &mut f32 = match (self, param) {
            (
                Sigmoid { alpha }
                | ATan { alpha }
                | PiecewiseQuadratic { alpha }
                | PiecewiseExp { alpha }
                | SoftSign { alpha }
                | SuperSpike { alpha }
                | NonzeroSignLogAbs { alpha }
                | Erf { alpha }
                | S2NN { alpha, .. }
                | QPseudoSpike { alpha }
                | FakeNumericalGradient { alpha }
                | LogTailedReLU { alpha }
                | Rect { alpha },
                "alpha",
            ) => alpha,
            (PiecewiseLeakyReLU { w, .. }, "w") => w,
            (PiecewiseLeakyReLU { c, .. }, "c") => c,
            (S2NN { beta, .. }, "beta") => beta,
            (LeakyKReLU { leak, .. }, "leak") => leak,
            (LeakyKReLU { k, .. }, "k") => k,
            (SquarewaveFourierSeries { t_period, .. }, "T" | "t_period") => t_period,
            (SquarewaveFourierSeries { n, .. }, "n") => {
                *n = whole(
                    surrogate,
                    "n",
                    value,
                    1024.0,
                    "must be an integer in 1..=1024",
                )?;
                return Ok(());
            }
            (
                MultiLevelSpikeCount {
                    max_spike_count,
                    grad_min,
                    grad_max,
                },
                "max_spike_count",
            ) => {
                let count = whole(
                    surrogate,
                    "max_spike_count",
                    value,
                    16_777_216.0,
                    "must be an integer >= 1 (and exact in f32)",
                )?;
                // The default window [0, max_spike_count] follows the count.
                if *grad_min == 0.0 && *grad_max == *max_spike_count as f32 {
                    *grad_max = count as f32;
                }
                *max_spike_count = count;
                return Ok(());
            }
            (MultiLevelSpikeCount { grad_min, .. }, "grad_min") => grad_min,
            (MultiLevelSpikeCount { grad_max, .. }, "grad_max") => grad_max,
            (this, _) => {
                let allowed = this
                    .params()
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(SurrogateError::UnknownParam {
                    surrogate,
                    param: param.into(),
                    allowed: if allowed.is_empty() {
                        "no parameters".into()
                    } else {
                        allowed
                    },
                });
            }
        };
        *slot = v;
        Ok(())
    }

    /// Checks the constraints SpikingJelly asserts (and finiteness).
    pub fn validate(&self) -> Result<(), SurrogateError> {
        let name = self.name();
        for (param, value) in self.params() {
            if !value.is_finite() {
                return Err(SurrogateError::Invalid {
                    surrogate: name,
                    param,
                    value,
                    why: "must be finite",
                });
            }
        }
        let bad = |param, value: f32, why| {
            Err(SurrogateError::Invalid {
                surrogate: name,
                param,
                value: value as f64,
                why,
            })
        };
        match *self {
            Surrogate::SoftSign { alpha } if alpha <= 0.0 => bad("alpha", alpha, "must be > 0"),
            Surrogate::PiecewiseLeakyReLU { w, .. } if w <= 0.0 => bad("w", w, "must be > 0"),
            Surrogate::QPseudoSpike { alpha } if alpha <= 1.0 => bad("alpha", alpha, "must be > 1"),
            Surrogate::SquarewaveFourierSeries { t_period, .. } if t_period <= 0.0 => {
                bad("T", t_period, "must be > 0")
            }
            Surrogate::PiecewiseQuadratic { alpha } | Surrogate::Rect { alpha } if alpha == 0.0 => {
                bad("alpha", alpha, "must be non-zero")
            }
            Surrogate::MultiLevelSpikeCount {
                grad_min, grad_max, ..
            } if grad_min > grad_max => bad("grad_min", grad_min, "must be <= grad_max"),
            _ => Ok(()),
        }
    }

    /// SpikingJelly's class name.
    pub fn name(&self) -> &'static str {
        use Surrogate::*;
        match self {
            Sigmoid { .. } => "Sigmoid",
            ATan { .. } => "ATan",
            PiecewiseQuadratic { .. } => "PiecewiseQuadratic",
            PiecewiseExp { .. } => "PiecewiseExp",
            SoftSign { .. } => "SoftSign",
            SuperSpike { .. } => "SuperSpike",
            NonzeroSignLogAbs { .. } => "NonzeroSignLogAbs",
            Erf { .. } => "Erf",
            PiecewiseLeakyReLU { .. } => "PiecewiseLeakyReLU",
            SquarewaveFourierSeries { .. } => "SquarewaveFourierSeries",
            S2NN { .. } => "S2NN",
            QPseudoSpike { .. } => "QPseudoSpike",
            LeakyKReLU { .. } => "LeakyKReLU",
            FakeNumericalGradient { .. } => "FakeNumericalGradient",
            LogTailedReLU { .. } => "LogTailedReLU",
            Rect { .. } => "Rect",
            DeterministicPass => "DeterministicPass",
            MultiLevelSpikeCount { .. } => "MultiLevelSpikeCount",
        }
    }

    /// Parameters by SpikingJelly name, in constructor order.
    pub fn params(&self) -> Vec<(&'static str, f64)> {
        use Surrogate::*;
        match *self {
            Sigmoid { alpha }
            | ATan { alpha }
            | PiecewiseQuadratic { alpha }
            | PiecewiseExp { alpha }
            | SoftSign { alpha }
            | SuperSpike { alpha }
            | NonzeroSignLogAbs { alpha }
            | Erf { alpha }
            | QPseudoSpike { alpha }
            | FakeNumericalGradient { alpha }
            | LogTailedReLU { alpha }
            | Rect { alpha } => vec![("alpha", alpha as f64)],
            PiecewiseLeakyReLU { w, c } => vec![("w", w as f64), ("c", c as f64)],
            SquarewaveFourierSeries { n, t_period } => {
                vec![("n", n as f64), ("T", t_period as f64)]
            }
            S2NN { alpha, beta } => vec![("alpha", alpha as f64), ("beta", beta as f64)],
            LeakyKReLU { leak, k } => vec![("leak", leak as f64), ("k", k as f64)],
            DeterministicPass => vec![],
            MultiLevelSpikeCount {
                max_spike_count,
                grad_min,
                grad_max,
            } => vec![
                ("max_spike_count", max_spike_count as f64),
                ("grad_min", grad_min as f64),
                ("grad_max", grad_max as f64),
            ],
        }
    }

    /// Whether SpikingJelly defines a smooth primitive (`spiking=False`) for this surrogate.
    pub fn has_primitive(&self) -> bool {
        !matches!(
            self,
            Surrogate::SuperSpike { .. } | Surrogate::FakeNumericalGradient { .. }
        )
    }

    /// Hashable identity (class and parameter bits).
    pub(crate) fn key(&self) -> [u32; 4] {
        let d = Surrogate::NAMES
            .iter()
            .position(|n| *n == self.name())
            .unwrap_or(usize::MAX) as u32;
        let p = self.params();
        let bits = |i: usize| p.get(i).map(|(_, v)| (*v as f32).to_bits()).unwrap_or(0);
        [d, bits(0), bits(1), bits(2)]
    }

    /// The forward value `Θ(x)`: 1 for `x >= 0`, else 0 (NaN gives 0).
    pub fn heaviside<F: Real>(x: F) -> F {
        if x >= F::zero() { F::one() } else { F::zero() }
    }

    /// The forward value of a spike with this surrogate: [`Surrogate::heaviside`], or for
    /// `MultiLevelSpikeCount` the count `round(clamp(x, 0, max_spike_count))` (ties to even,
    /// NaN stays NaN, as `torch.round(torch.clamp(..))`).
    pub fn forward<F: Real>(&self, x: F) -> F {
        match *self {
            Surrogate::MultiLevelSpikeCount {
                max_spike_count, ..
            } => x
                .max_nan(F::zero())
                .min_nan(F::from_f64(max_spike_count as f64))
                .round_ties_even(),
            _ => Surrogate::heaviside(x),
        }
    }

    /// `d spike / dx` at `x`: the surrogate's backward formula, in SpikingJelly's operand order.
    pub fn grad<F: Real>(&self, x: F) -> F {
        use Surrogate::*;
        let c = F::from_f64;
        let one = F::one();
        let zero = F::zero();
        match *self {
            Sigmoid { alpha } => {
                let a = F::from_f32(alpha);
                let s = (x * a).sigmoid();
                (one - s) * s * a
            }
            ATan { alpha } => {
                let a = F::from_f32(alpha) / c(2.0);
                let ax = c(std::f64::consts::PI) * a * x;
                a / (one + ax * ax)
            }
            PiecewiseQuadratic { alpha } => {
                let a = F::from_f32(alpha);
                if x.abs() > one / a {
                    zero
                } else {
                    -(a * a) * x.abs() + a
                }
            }
            PiecewiseExp { alpha } => {
                let a = F::from_f32(alpha);
                a / c(2.0) * (-a * x.abs()).exp()
            }
            SoftSign { alpha } => {
                let a = F::from_f32(alpha);
                let d = one / a + x.abs();
                one / (c(2.0) * a * (d * d))
            }
            SuperSpike { alpha } => {
                let d = x.abs() + one;
                F::from_f32(alpha) / (d * d)
            }
            NonzeroSignLogAbs { alpha } => one / (one / F::from_f32(alpha) + x.abs()),
            Erf { alpha } => {
                let a = F::from_f32(alpha);
                let xa = x * a;
                (-(xa * xa)).exp() * (a / c(std::f64::consts::PI).sqrt())
            }
            PiecewiseLeakyReLU { w, c: leak } => {
                let w = F::from_f32(w);
                if x.abs() < w {
                    one / (c(2.0) * w)
                } else {
                    F::from_f32(leak)
                }
            }
            SquarewaveFourierSeries { n, t_period } => {
                let t = F::from_f32(t_period);
                let w = c(2.0 * std::f64::consts::PI) / t;
                let mut acc = zero;
                for i in 1..n {
                    acc = acc + (c((2 * i - 1) as f64) * w * x).cos();
                }
                acc * c(4.0) / t
            }
            S2NN { alpha, beta } => {
                let a = F::from_f32(alpha);
                if x < zero {
                    let s = (a * x).sigmoid();
                    a * s * (one - s)
                } else {
                    F::from_f32(beta) / (x + one)
                }
            }
            QPseudoSpike { alpha } => {
                let a = F::from_f32(alpha);
                (one + c(2.0) / (a - one) * x.abs()).powf(-a)
            }
            LeakyKReLU { leak, k } => {
                if x >= zero {
                    F::from_f32(k)
                } else {
                    F::from_f32(leak)
                }
            }
            FakeNumericalGradient { alpha } => {
                let sign = if x >= zero { one } else { -one };
                let v = sign / x;
                let a = F::from_f32(alpha);
                // clamp_max: NaN stays NaN, otherwise min(v, alpha).
                if v > a { a } else { v }
            }
            LogTailedReLU { alpha } => {
                if x > one {
                    one / x
                } else if x <= zero {
                    F::from_f32(alpha)
                } else {
                    one
                }
            }
            Rect { alpha } => {
                let a = F::from_f32(alpha);
                if x.abs() < c(0.5) / a { a } else { zero }
            }
            DeterministicPass => one,
            MultiLevelSpikeCount {
                grad_min, grad_max, ..
            } => {
                if x >= F::from_f32(grad_min) && x <= F::from_f32(grad_max) {
                    one
                } else {
                    zero
                }
            }
        }
    }
}

impl std::fmt::Display for Surrogate {
    /// Rust-expression form: `ATan { alpha: 2.0 }`; used by the text form and the frontends.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let params = self.params();
        if params.is_empty() {
            return write!(f, "{}", self.name());
        }
        write!(f, "{} {{ ", self.name())?;
        for (i, (name, value)) in params.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            if *name == "n" || *name == "max_spike_count" {
                write!(f, "{name}: {}", *value as u32)?;
            } else {
                write!(f, "{name}: {:?}", *value as f32)?;
            }
        }
        write!(f, " }}")
    }
}

/// `value` as a whole number in `1..=max` for the integer parameter `param`, else
/// [`SurrogateError::Invalid`] saying `why`.
fn whole(
    surrogate: &'static str,
    param: &'static str,
    value: f64,
    max: f64,
    why: &'static str,
) -> Result<u32, SurrogateError> {
    if value.fract() == 0.0 && (1.0..=max).contains(&value) {
        Ok(value as u32)
    } else {
        Err(SurrogateError::Invalid {
            surrogate,
            param,
            value,
            why,
        })
    }
}
