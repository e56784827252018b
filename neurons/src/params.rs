//! Parameters of the built-in neurons: parsing `key=value` settings (the CLI's `--set`, and the
//! `params` of SpikingJelly golden cases), errors that name what is wrong, and the fire/reset
//! configuration shared by the spiking neurons.

use flexsn_compiler::BuildError;
use flexsn_compiler::dsl::{CoreBuilder, Expr, IntoExpr};
use flexsn_compiler::ir::suggest::did_you_mean;
use flexsn_compiler::ir::{Surrogate, SurrogateError};

/// Why a built-in neuron could not be named, configured or built.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NeuronError {
    #[error("unknown neuron `{name}`{hint}; built-in neurons: {known}", hint = did_you_mean(.name, .known.split(", ").flat_map(|k| k.split(" (")).map(|k| k.trim_end_matches(')'))))]
    /// A neuron name no built-in has.
    UnknownNeuron {
        /// The name given.
        name: String,
        /// The neurons known.
        known: String,
    },
    #[error("{neuron} has no parameter `{key}`{hint}; its parameters: {allowed}", hint = did_you_mean(.key, .allowed.split(", ")))]
    /// A key the neuron does not have.
    UnknownParam {
        /// The neuron's class.
        neuron: &'static str,
        /// The setting's key.
        key: String,
        /// The keys it takes.
        allowed: String,
    },
    #[error("{neuron}: `{key}={value}` is invalid: {why}")]
    /// A value the setting does not take.
    InvalidValue {
        /// The neuron's class.
        neuron: &'static str,
        /// The setting's key.
        key: String,
        /// The value given.
        value: String,
        /// What is wrong.
        why: String,
    },
    #[error("`{0}` is not a setting: write key=value (for example tau=3.5)")]
    /// A setting that is not `key=value`.
    MalformedSetting(String),
    #[error("{neuron}: {source}")]
    /// The surrogate is invalid.
    Surrogate {
        /// The neuron's class.
        neuron: &'static str,
        #[source]
        /// The surrogate's error.
        source: SurrogateError,
    },
    #[error(transparent)]
    /// The step graph could not be built.
    Build(#[from] BuildError),
    #[error("{neuron} has no step graph: {why}")]
    /// The neuron is not a scan (no step graph).
    NotAScan {
        /// The neuron's class.
        neuron: &'static str,
        /// What is wrong.
        why: &'static str,
    },
}

/// Splits `key=value` (whitespace around either side is trimmed).
pub fn split_setting(s: &str) -> Result<(String, String), NeuronError> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
            Ok((k.trim().to_string(), v.trim().to_string()))
        }
        _ => Err(NeuronError::MalformedSetting(s.to_string())),
    }
}

pub(crate) fn invalid(neuron: &'static str, key: &str, value: &str, why: &str) -> NeuronError {
    NeuronError::InvalidValue {
        neuron,
        key: key.to_string(),
        value: value.to_string(),
        why: why.to_string(),
    }
}

/// Parses a finite number (as Python would read a float literal; `f64`).
pub(crate) fn parse_f64(neuron: &'static str, key: &str, value: &str) -> Result<f64, NeuronError> {
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(invalid(neuron, key, value, "must be finite")),
        Err(_) => Err(invalid(neuron, key, value, "expected a number")),
    }
}

/// Parses a finite number that is used as an `f32` tensor scalar.
pub(crate) fn parse_f32(neuron: &'static str, key: &str, value: &str) -> Result<f32, NeuronError> {
    let v = parse_f64(neuron, key, value)? as f32;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(invalid(neuron, key, value, "overflows f32"))
    }
}

pub(crate) fn parse_bool(
    neuron: &'static str,
    key: &str,
    value: &str,
) -> Result<bool, NeuronError> {
    match value {
        "true" | "True" | "1" | "yes" => Ok(true),
        "false" | "False" | "0" | "no" => Ok(false),
        _ => Err(invalid(neuron, key, value, "expected true or false")),
    }
}

/// `none`/`None`/`null` (soft reset) or a number.
pub(crate) fn parse_opt_f32(
    neuron: &'static str,
    key: &str,
    value: &str,
) -> Result<Option<f32>, NeuronError> {
    match value {
        "none" | "None" | "null" | "soft" => Ok(None),
        _ => parse_f32(neuron, key, value).map(Some).map_err(|_| {
            invalid(
                neuron,
                key,
                value,
                "expected a number, or none (soft reset)",
            )
        }),
    }
}

/// Formats an `f32` for display the way Python prints the float (`2.0`, `0.7`).
pub(crate) fn fmt_f32(v: f32) -> String {
    format!("{v:?}")
}

/// One parameter of a neuron with its current value, for `flexsn list` and diagnostics.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamValue {
    /// The setting's key.
    pub key: &'static str,
    /// Its current value as text.
    pub value: String,
    /// What it does.
    pub help: &'static str,
}

impl ParamValue {
    pub(crate) fn new(key: &'static str, value: impl Into<String>, help: &'static str) -> Self {
        ParamValue {
            key,
            value: value.into(),
            help,
        }
    }
}

/// Threshold, reset and surrogate: what IF, LIF and PLIF share (SpikingJelly's `BaseNode`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FireReset {
    /// `v_threshold` (default 1.0).
    pub v_threshold: f32,
    /// `v_reset`: `Some(v)` = hard reset to `v` (default `Some(0.0)`), `None` = soft reset.
    pub v_reset: Option<f32>,
    /// Cut the gradient through the reset's dependence on the spike (default false).
    pub detach_reset: bool,
    /// The surrogate function (default `Sigmoid { alpha: 4.0 }`).
    pub surrogate: Surrogate,
    /// `true`: the spike is `Θ(h - v_threshold)` with the surrogate's gradient; `false`: the
    /// surrogate's smooth primitive is the (real-valued) spike (SpikingJelly's `spiking=False`).
    pub spiking: bool,
}

impl Default for FireReset {
    fn default() -> Self {
        FireReset {
            v_threshold: 1.0,
            v_reset: Some(0.0),
            detach_reset: false,
            surrogate: Surrogate::Sigmoid { alpha: 4.0 },
            spiking: true,
        }
    }
}

impl FireReset {
    /// The initial membrane potential: `v_reset` for hard reset, 0.0 for soft reset.
    pub fn initial_v(&self) -> f32 {
        self.v_reset.unwrap_or(0.0)
    }

    /// `vr` in the charge formulas: `v_reset`, or 0.0 for soft reset.
    pub(crate) fn vr(&self) -> f32 {
        self.v_reset.unwrap_or(0.0)
    }

    pub(crate) const KEYS: &'static [&'static str] = &[
        "v_threshold",
        "v_reset",
        "detach_reset",
        "surrogate",
        "surrogate.<param>",
        "surrogate.spiking",
    ];

    /// Applies one shared setting. Returns `Ok(false)` when `key` is not a shared key.
    pub(crate) fn set(
        &mut self,
        neuron: &'static str,
        key: &str,
        value: &str,
    ) -> Result<bool, NeuronError> {
        match key {
            "v_threshold" => self.v_threshold = parse_f32(neuron, key, value)?,
            "v_reset" => self.v_reset = parse_opt_f32(neuron, key, value)?,
            "detach_reset" => self.detach_reset = parse_bool(neuron, key, value)?,
            "surrogate" => {
                self.surrogate = Surrogate::default_for(value).ok_or_else(|| {
                    invalid(
                        neuron,
                        key,
                        value,
                        &format!(
                            "unknown surrogate{}; known: {}",
                            did_you_mean(value, Surrogate::NAMES.iter().copied()),
                            Surrogate::NAMES.join(", ")
                        ),
                    )
                })?;
            }
            "spiking" | "surrogate.spiking" => self.spiking = parse_bool(neuron, key, value)?,
            _ => match key.strip_prefix("surrogate.") {
                Some(p) => {
                    let v = parse_f64(neuron, key, value)?;
                    let mut s = self.surrogate;
                    s.set_param(p, v)
                        .and_then(|_| s.validate())
                        .map_err(|source| NeuronError::Surrogate { neuron, source })?;
                    self.surrogate = s;
                }
                None => return Ok(false),
            },
        }
        Ok(true)
    }

    pub(crate) fn param_values(&self) -> Vec<ParamValue> {
        let mut v = vec![
            ParamValue::new("v_threshold", fmt_f32(self.v_threshold), "firing threshold"),
            ParamValue::new(
                "v_reset",
                self.v_reset.map_or("none".to_string(), fmt_f32),
                "hard reset to this value; none = soft reset (subtract v_threshold)",
            ),
            ParamValue::new(
                "detach_reset",
                self.detach_reset.to_string(),
                "no gradient through the reset's dependence on the spike",
            ),
            ParamValue::new(
                "surrogate",
                self.surrogate.name(),
                "surrogate gradient (any SpikingJelly surrogate class name)",
            ),
        ];
        for (p, value) in self.surrogate.params() {
            let value = if p == "n" || p == "max_spike_count" {
                format!("{}", value as u32)
            } else {
                fmt_f32(value as f32)
            };
            v.push(ParamValue::new(
                surrogate_key(p),
                value,
                "parameter of the surrogate",
            ));
        }
        v.push(ParamValue::new(
            "surrogate.spiking",
            self.spiking.to_string(),
            "false = the surrogate's smooth primitive is the spike",
        ));
        v
    }

    pub(crate) fn validate(&self, neuron: &'static str) -> Result<(), NeuronError> {
        if !self.v_threshold.is_finite() {
            return Err(invalid(
                neuron,
                "v_threshold",
                &fmt_f32(self.v_threshold),
                "must be finite",
            ));
        }
        if let Some(vr) = self.v_reset
            && !vr.is_finite()
        {
            return Err(invalid(neuron, "v_reset", &fmt_f32(vr), "must be finite"));
        }
        if !self.spiking && !self.surrogate.has_primitive() {
            return Err(invalid(
                neuron,
                "surrogate.spiking",
                "false",
                &format!(
                    "{} has no smooth primitive in SpikingJelly",
                    self.surrogate.name()
                ),
            ));
        }
        self.surrogate
            .validate()
            .map_err(|source| NeuronError::Surrogate { neuron, source })
    }

    /// Fire and reset, in SpikingJelly's literal order: `s = sg(h - v_threshold)`;
    /// soft `v = h - s_d * v_threshold`; hard `v = s_d * v_reset + (1 - s_d) * h`, where
    /// `s_d = detach(s)` if `detach_reset`. Returns `(spike, next v)`.
    pub(crate) fn fire_reset<'b>(&self, h: Expr<'b>) -> (Expr<'b>, Expr<'b>) {
        let s = self.spike_of(h - self.v_threshold);
        (s, self.reset(h, s, self.v_threshold))
    }

    /// `sg(z)`: the surrogate spike, or its smooth primitive when `spiking` is false.
    pub(crate) fn spike_of<'b>(&self, z: Expr<'b>) -> Expr<'b> {
        if self.spiking {
            z.spike(self.surrogate)
        } else {
            z.surrogate_primitive(self.surrogate)
        }
    }

    /// SpikingJelly's voltage reset of `h` by the reset event `e` (the spike, for most
    /// neurons): soft `h - e_d * threshold`, hard `e_d * v_reset + (1 - e_d) * h`, where
    /// `e_d = detach(e)` if `detach_reset`.
    pub(crate) fn reset<'b>(
        &self,
        h: Expr<'b>,
        e: Expr<'b>,
        threshold: impl IntoExpr<'b>,
    ) -> Expr<'b> {
        let e_d = if self.detach_reset { e.detach() } else { e };
        match self.v_reset {
            None => h - e_d * threshold,
            Some(vr) => e_d * vr + (1.0f32 - e_d) * h,
        }
    }

    /// The description fragment shared by IF/LIF/PLIF.
    pub(crate) fn describe(&self) -> String {
        format!(
            "v_threshold={}, v_reset={}, detach_reset={}, surrogate={}{}",
            fmt_f32(self.v_threshold),
            self.v_reset.map_or("None".to_string(), fmt_f32),
            if self.detach_reset { "True" } else { "False" },
            self.surrogate,
            if self.spiking { "" } else { " (spiking=False)" }
        )
    }
}

fn surrogate_key(p: &'static str) -> &'static str {
    match p {
        "alpha" => "surrogate.alpha",
        "beta" => "surrogate.beta",
        "w" => "surrogate.w",
        "c" => "surrogate.c",
        "n" => "surrogate.n",
        "T" => "surrogate.T",
        "leak" => "surrogate.leak",
        "k" => "surrogate.k",
        "max_spike_count" => "surrogate.max_spike_count",
        "grad_min" => "surrogate.grad_min",
        "grad_max" => "surrogate.grad_max",
        _ => "surrogate.<param>",
    }
}

/// A builder kept alive together with the expressions made from it.
pub(crate) fn builder(name: &str, description: String) -> CoreBuilder {
    let b = CoreBuilder::new(name);
    b.describe(description);
    b
}
