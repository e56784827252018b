//! `NonSpikingIFNode` and `NonSpikingLIFNode`: membrane potential only, no threshold, no reset,
//! `v` restarting at 0 on every call, and an optional decoding of the voltage sequence.
//!
//! The scan computes the voltage sequence (output `mem`, `[T, N]`); [`Decode`] is a reduction
//! over time applied after the scan, with its own backward that turns the decoded gradient back
//! into an upstream gradient for `mem`.

use flexsn_compiler::BuildError;
use flexsn_compiler::ir::{StateInit, StepGraph};
use flexsn_compiler::num::Real;

use crate::params::{NeuronError, ParamValue, builder, fmt_f32, invalid, parse_f32};
use crate::spiking::V_STATE;

/// The voltage-sequence output of the non-spiking neurons' graphs.
pub const MEM_OUTPUT: &str = "mem";

/// How a non-spiking node turns its voltage sequence `[T, N]` into its output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Decode {
    /// The whole sequence `[T, N]` (SpikingJelly's `decode=None`, a list of `T` tensors).
    #[default]
    Sequence,
    /// `max_t v` (`"max-mem"`); the gradient goes to the first maximal step.
    MaxMem,
    /// `max * (|max| > |min|) + min * (|max| <= |min|)` (`"max-abs-mem"`; ties pick the min).
    MaxAbsMem,
    /// `mean_t v` (`"mean-mem"`).
    MeanMem,
    /// `v[T-1]` (`"last_mem"`).
    LastMem,
}

/// Why a decode could not be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("decode `{decode}` needs at least one time step (T = 0)")]
    /// `T = 0`: nothing to decode.
    EmptyTime {
        /// The decode's name.
        decode: &'static str,
    },
    #[error("decode `{decode}`: `{what}` has {got} elements, expected {expected}")]
    /// A buffer of the wrong length.
    Len {
        /// The decode's name.
        decode: &'static str,
        /// What was checked.
        what: &'static str,
        /// What the call needs.
        expected: usize,
        /// What it got.
        got: usize,
    },
}

impl Decode {
    /// Every decode, in SpikingJelly's naming.
    pub const ALL: &'static [Decode] = &[
        Decode::Sequence,
        Decode::MaxMem,
        Decode::MaxAbsMem,
        Decode::MeanMem,
        Decode::LastMem,
    ];

    /// SpikingJelly's name (`"none"` for the sequence).
    pub fn name(self) -> &'static str {
        match self {
            Decode::Sequence => "none",
            Decode::MaxMem => "max-mem",
            Decode::MaxAbsMem => "max-abs-mem",
            Decode::MeanMem => "mean-mem",
            Decode::LastMem => "last_mem",
        }
    }

    /// Parses [`Decode::name`]; `None`/`null` mean the sequence.
    pub fn from_name(s: &str) -> Option<Decode> {
        match s {
            "none" | "None" | "null" => Some(Decode::Sequence),
            _ => Decode::ALL.iter().copied().find(|d| d.name() == s),
        }
    }

    /// Length of the decoded output for `[T, N]`.
    pub fn output_len(self, t: usize, n: usize) -> usize {
        match self {
            Decode::Sequence => t * n,
            _ => n,
        }
    }

    fn check(self, what: &'static str, got: usize, expected: usize) -> Result<(), DecodeError> {
        if got == expected {
            Ok(())
        } else {
            Err(DecodeError::Len {
                decode: self.name(),
                what,
                expected,
                got,
            })
        }
    }

    /// Decodes `seq` (`[T, N]`, time-major).
    pub fn forward<F: Real>(self, seq: &[F], t: usize, n: usize) -> Result<Vec<F>, DecodeError> {
        self.check("the voltage sequence", seq.len(), t * n)?;
        if self == Decode::Sequence {
            return Ok(seq.to_vec());
        }
        if t == 0 {
            return Err(DecodeError::EmptyTime {
                decode: self.name(),
            });
        }
        Ok((0..n)
            .map(|i| {
                let col = |k: usize| seq[k * n + i];
                match self {
                    Decode::Sequence => unreachable!("handled above"),
                    Decode::MaxMem => col(arg_extreme(t, col, |a, b| a > b)),
                    Decode::MaxAbsMem => {
                        let mx = col(arg_extreme(t, col, |a, b| a > b));
                        let mn = col(arg_extreme(t, col, |a, b| a < b));
                        let (bmx, bmn) = max_abs_masks(mx, mn);
                        mx * bmx + mn * bmn
                    }
                    Decode::MeanMem => {
                        let mut acc = F::zero();
                        for k in 0..t {
                            acc = acc + col(k);
                        }
                        acc / F::from_f64(t as f64)
                    }
                    Decode::LastMem => col(t - 1),
                }
            })
            .collect())
    }

    /// The gradient w.r.t. the sequence, given the sequence and the decoded output's gradient.
    /// `max`/`min` send the gradient to the selected step (the first one on ties, as torch).
    pub fn backward<F: Real>(
        self,
        seq: &[F],
        grad: &[F],
        t: usize,
        n: usize,
    ) -> Result<Vec<F>, DecodeError> {
        self.check("the voltage sequence", seq.len(), t * n)?;
        self.check("the output gradient", grad.len(), self.output_len(t, n))?;
        if self == Decode::Sequence {
            return Ok(grad.to_vec());
        }
        if t == 0 {
            return Err(DecodeError::EmptyTime {
                decode: self.name(),
            });
        }
        let mut g = vec![F::zero(); t * n];
        for i in 0..n {
            let col = |k: usize| seq[k * n + i];
            match self {
                Decode::Sequence => unreachable!("handled above"),
                Decode::MaxMem => {
                    let k = arg_extreme(t, col, |a, b| a > b);
                    g[k * n + i] = grad[i];
                }
                Decode::MaxAbsMem => {
                    let kmx = arg_extreme(t, col, |a, b| a > b);
                    let kmn = arg_extreme(t, col, |a, b| a < b);
                    let (bmx, bmn) = max_abs_masks(col(kmx), col(kmn));
                    g[kmx * n + i] = g[kmx * n + i] + grad[i] * bmx;
                    g[kmn * n + i] = g[kmn * n + i] + grad[i] * bmn;
                }
                Decode::MeanMem => {
                    let d = grad[i] / F::from_f64(t as f64);
                    for k in 0..t {
                        g[k * n + i] = d;
                    }
                }
                Decode::LastMem => g[(t - 1) * n + i] = grad[i],
            }
        }
        Ok(g)
    }
}

/// `(|max| > |min|, |max| <= |min|)` as 0/1.
fn max_abs_masks<F: Real>(mx: F, mn: F) -> (F, F) {
    let b = |c: bool| if c { F::one() } else { F::zero() };
    (b(mx.abs() > mn.abs()), b(mx.abs() <= mn.abs()))
}

/// The first index whose value beats every earlier one under `better` (torch's max/min over a
/// dimension: the first extreme wins ties; a NaN is selected, the first NaN if several).
fn arg_extreme<F: Real>(
    t: usize,
    col: impl Fn(usize) -> F,
    better: impl Fn(F, F) -> bool,
) -> usize {
    let mut best = 0;
    for k in 1..t {
        let (cand, cur) = (col(k), col(best));
        if cur.is_nan() {
            break;
        }
        if cand.is_nan() || better(cand, cur) {
            best = k;
        }
    }
    best
}

/// Non-spiking integrate: `v = v + x`, `v` starting at 0 on every call.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NonSpikingIFNode {
    /// How the voltage sequence is reduced over time.
    pub decode: Decode,
}

impl NonSpikingIFNode {
    /// SpikingJelly's class name.
    pub const CLASS: &'static str = "NonSpikingIFNode";

    /// The default configuration (no decode).
    pub fn new() -> Self {
        Self::default()
    }

    /// How the voltage sequence is decoded (default: the sequence itself).
    pub fn decode(mut self, d: Decode) -> Self {
        self.decode = d;
        self
    }

    /// The step graph: input `x`, state `v` (initially 0), output `mem` (= the new `v`).
    pub fn step_graph(&self) -> Result<StepGraph, BuildError> {
        let b = builder(
            Self::CLASS,
            format!(
                "SpikingJelly NonSpikingIFNode: v = v + x (decode={})",
                self.decode.name()
            ),
        );
        let x = b.input("x");
        let v = b.state(V_STATE, StateInit::Const(0.0));
        let h = v + x;
        b.output(MEM_OUTPUT, h);
        b.set_state(V_STATE, h);
        b.build()
    }

    /// Sets one setting by key (`decode`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), NeuronError> {
        match key {
            "decode" => self.decode = parse_decode(Self::CLASS, value)?,
            _ => {
                return Err(NeuronError::UnknownParam {
                    neuron: Self::CLASS,
                    key: key.to_string(),
                    allowed: "decode".into(),
                });
            }
        }
        Ok(())
    }

    /// The settings with their current values.
    pub fn param_values(&self) -> Vec<ParamValue> {
        vec![decode_value(self.decode)]
    }
}

/// Non-spiking leaky integrate: `v = v + (x - v) / tau`, `v` starting at 0 on every call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NonSpikingLIFNode {
    /// Membrane time constant (default 2.0).
    pub tau: f32,
    /// How the voltage sequence is reduced over time.
    pub decode: Decode,
}

impl Default for NonSpikingLIFNode {
    fn default() -> Self {
        NonSpikingLIFNode {
            tau: 2.0,
            decode: Decode::Sequence,
        }
    }
}

impl NonSpikingLIFNode {
    /// SpikingJelly's class name.
    pub const CLASS: &'static str = "NonSpikingLIFNode";

    /// SpikingJelly's defaults (no decode).
    pub fn new() -> Self {
        Self::default()
    }

    /// Membrane time constant.
    pub fn tau(mut self, tau: f32) -> Self {
        self.tau = tau;
        self
    }

    /// How the voltage sequence is decoded (default: the sequence itself).
    pub fn decode(mut self, d: Decode) -> Self {
        self.decode = d;
        self
    }

    /// The step graph: input `x`, state `v` (initially 0), output `mem` (= the new `v`).
    pub fn step_graph(&self) -> Result<StepGraph, BuildError> {
        let b = builder(
            Self::CLASS,
            format!(
                "SpikingJelly NonSpikingLIFNode: v = v + (x - v) / tau (tau={}, decode={})",
                fmt_f32(self.tau),
                self.decode.name()
            ),
        );
        let x = b.input("x");
        let v = b.state(V_STATE, StateInit::Const(0.0));
        let h = v + (x - v) / self.tau;
        b.output(MEM_OUTPUT, h);
        b.set_state(V_STATE, h);
        b.build()
    }

    /// Sets one setting by key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), NeuronError> {
        match key {
            "decode" => self.decode = parse_decode(Self::CLASS, value)?,
            "tau" => {
                let tau = parse_f32(Self::CLASS, key, value)?;
                if tau == 0.0 {
                    return Err(invalid(Self::CLASS, key, value, "must be non-zero"));
                }
                self.tau = tau;
            }
            _ => {
                return Err(NeuronError::UnknownParam {
                    neuron: Self::CLASS,
                    key: key.to_string(),
                    allowed: "tau, decode".into(),
                });
            }
        }
        Ok(())
    }

    /// The settings with their current values.
    pub fn param_values(&self) -> Vec<ParamValue> {
        vec![
            ParamValue::new("tau", fmt_f32(self.tau), "membrane time constant"),
            decode_value(self.decode),
        ]
    }
}

fn parse_decode(neuron: &'static str, value: &str) -> Result<Decode, NeuronError> {
    Decode::from_name(value).ok_or_else(|| {
        invalid(
            neuron,
            "decode",
            value,
            "expected one of none, max-mem, max-abs-mem, mean-mem, last_mem",
        )
    })
}

fn decode_value(d: Decode) -> ParamValue {
    ParamValue::new(
        "decode",
        d.name(),
        "none (the [T, N] sequence), max-mem, max-abs-mem, mean-mem or last_mem",
    )
}
