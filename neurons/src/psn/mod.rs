//! The parallel spiking neuron (PSN) family: SpikingJelly's `PSN`, `MaskedPSN` and `SlidingPSN`.
//!
//! All three fire `S = Θ(H)` with `H = W·X + b`, a learnable mixing of the input over time plus
//! a learnable bias (initialised to -1, i.e. a threshold of 1), and use the surrogate's derivative
//! backward (default `ATan { alpha: 2 }`).
//!
//! | module | weight | time mixing | step modes | how it runs |
//! |---|---|---|---|---|
//! | [`PSN`] | `[T, T]` | every step sees every step | multi only | GEMM ([`Mixing`]) |
//! | [`MaskedPSN`] | `[T, T]` · band mask blended by λ | band of width `k` when λ ≥ 1 | multi; single when λ ≥ 1 | GEMM |
//! | [`SlidingPSN`] | `[k]` | the last `k` inputs | multi and single | a scan ([`Node`](crate::node::Node)) |
//!
//! `PSN` and `MaskedPSN` mix whole sequences at once, which is a matrix product, not a scan:
//! they run on the runtime's [`Mixing`] (on the CPU a blocked GEMM fused with the spike), on the
//! backend of the [`Jit`](flexsn_runtime::Jit) they are built with. `SlidingPSN` only looks back a
//! fixed window, so it is a scan whose states are a shift register of the last `k - 1` inputs;
//! it runs as a step graph on every backend, and autodiff gives its gradients.
//!
//! Initialisation follows SpikingJelly (`kaiming_uniform_(a=√5)`, i.e. `U(-1/√fan_in, 1/√fan_in)`,
//! bias -1), drawn from a seedable generator ([`rng::SplitMix64`]); it does not reproduce
//! torch's random numbers, so to compare with SpikingJelly, copy its parameters in.

mod dense;
pub mod rng;
mod sliding;

pub use dense::{MaskedPSN, MaskedPSNConfig, PSN, PSNConfig};
pub use flexsn_runtime::{MixError, MixGrads, Mixing};
pub use sliding::{SLIDING_BIAS, SlidingPSN, SlidingPSNConfig, sliding_weight_name};

use flexsn_compiler::ir::Surrogate;
use flexsn_runtime::memory::Estimate;

use crate::node::{NodeError, StepMode};
use crate::params::{NeuronError, ParamValue, fmt_f32, invalid, parse_f64};

/// Why a PSN-family module could not be built or run. Each variant names what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum PsnError {
    #[error("{module}: T = 0; it needs at least one time step")]
    /// `T = 0`.
    ZeroT {
        /// The module (`PSN`, `MaskedPSN`, `SlidingPSN`).
        module: &'static str,
    },
    #[error("{module}: k = 0; the window needs at least one step")]
    /// `k = 0`.
    ZeroK {
        /// The module (`PSN`, `MaskedPSN`, `SlidingPSN`).
        module: &'static str,
    },
    #[error("`{what}`: expected {expected} elements, got {got}")]
    /// A buffer of the wrong length.
    Len {
        /// What was checked.
        what: &'static str,
        /// What the call needs.
        expected: usize,
        /// What it got.
        got: usize,
    },
    #[error("N = 0: a call needs at least one neuron")]
    /// `N = 0`.
    NoNeurons,
    #[error("T * N overflows")]
    /// `T * N` overflows.
    Overflow,
    #[error(
        "{module}: the input has {len} elements, which is not T = {t} steps of N = {n} neurons"
    )]
    /// An input that is not `T` steps of `N` neurons.
    SeqShape {
        /// The module (`PSN`, `MaskedPSN`, `SlidingPSN`).
        module: &'static str,
        /// Its number of values.
        len: usize,
        /// Time steps.
        t: usize,
        /// Neurons.
        n: usize,
    },
    #[error("{module} is multi-step only (step_mode \"m\"), as in SpikingJelly")]
    /// Called single-step; the module is multi-step only.
    MultiStepOnly {
        /// The module (`PSN`, `MaskedPSN`, `SlidingPSN`).
        module: &'static str,
    },
    #[error(
        "MaskedPSN: single-step mode needs lambda >= 1 (the band mask fully applied); lambda = {lambda}"
    )]
    /// MaskedPSN single-step with λ < 1.
    SingleStepLambda {
        /// The λ given.
        lambda: f32,
    },
    #[error("MaskedPSN: step {step} is past T = {t}; call reset() to start a new sequence")]
    /// MaskedPSN single-step past `T`.
    PastT {
        /// The step reached.
        step: usize,
        /// Time steps.
        t: usize,
    },
    #[error(
        "{module}: N changed from {expected} to {got} without reset() (flexsn does not re-initialise silently)"
    )]
    /// `N` changed without `reset()`.
    ShapeChanged {
        /// The module (`PSN`, `MaskedPSN`, `SlidingPSN`).
        module: &'static str,
        /// What the call needs.
        expected: usize,
        /// What it got.
        got: usize,
    },
    #[error("{module}: backward without a recorded forward (call forward in training mode first)")]
    /// Backward without a recorded forward.
    NothingRecorded {
        /// The module (`PSN`, `MaskedPSN`, `SlidingPSN`).
        module: &'static str,
    },
    #[error("{module}: `{param}` must be finite")]
    /// A non-finite parameter value.
    NonFinite {
        /// The module (`PSN`, `MaskedPSN`, `SlidingPSN`).
        module: &'static str,
        /// The parameter.
        param: &'static str,
    },
    #[error("{module}: invalid surrogate: {why}")]
    /// A surrogate the module cannot use.
    Surrogate {
        /// The module (`PSN`, `MaskedPSN`, `SlidingPSN`).
        module: &'static str,
        /// What is wrong.
        why: String,
    },
    #[error("the PSN time mixing could not run on backend `{backend}`: {why}")]
    /// The time mixing failed on its backend.
    Mixing {
        /// The backend's name.
        backend: &'static str,
        /// What is wrong.
        why: String,
    },
    #[error(transparent)]
    /// The runtime could not set up the module's backend.
    Runtime(Box<flexsn_runtime::RuntimeError>),
    #[error(transparent)]
    /// The SlidingPSN's node failed.
    Node(#[from] Box<NodeError>),
}

impl From<flexsn_runtime::RuntimeError> for PsnError {
    fn from(e: flexsn_runtime::RuntimeError) -> Self {
        PsnError::Runtime(Box::new(e))
    }
}

/// The mixing's shape errors are the module's own.
impl From<MixError> for PsnError {
    fn from(e: MixError) -> Self {
        match e {
            MixError::Len {
                what,
                expected,
                got,
            } => PsnError::Len {
                what,
                expected,
                got,
            },
            MixError::NoNeurons => PsnError::NoNeurons,
            MixError::Overflow => PsnError::Overflow,
            MixError::Backend { backend, why } => PsnError::Mixing { backend, why },
            MixError::Memory(e) => flexsn_runtime::RuntimeError::Memory(e).into(),
        }
    }
}

impl From<NodeError> for PsnError {
    fn from(e: NodeError) -> Self {
        PsnError::Node(Box::new(e))
    }
}

/// Checks a module's surrogate parameters at construction.
pub(crate) fn check_surrogate(module: &'static str, s: &Surrogate) -> Result<(), PsnError> {
    if let Some(why) = unsupported(s) {
        return Err(PsnError::Surrogate {
            module,
            why: why.into(),
        });
    }
    s.validate().map_err(|e| PsnError::Surrogate {
        module,
        why: e.to_string(),
    })
}

/// Why the PSN family cannot use `s`: its mixing kernels fire 0/1 spikes, not counts.
fn unsupported(s: &Surrogate) -> Option<&'static str> {
    matches!(s, Surrogate::MultiLevelSpikeCount { .. })
        .then_some("MultiLevelSpikeCount emits spike counts (ILIFNode's); the PSN family fires 0/1")
}

/// `Ok` when a buffer has the length a module needs.
pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), PsnError> {
    if expected == got {
        Ok(())
    } else {
        Err(PsnError::Len {
            what,
            expected,
            got,
        })
    }
}

/// Checks what a call is about to allocate, `[count, dims...]` groups of f32 values, against
/// `jit`'s memory limit ([`flexsn_runtime::Jit::set_memory_limit`]): over it, a
/// [`RuntimeError::Memory`](flexsn_runtime::RuntimeError::Memory) that says how much is needed.
pub(crate) fn check_floats(
    jit: &flexsn_runtime::Jit,
    floats: &[&[usize]],
    what: &str,
) -> Result<(), PsnError> {
    let e = floats.iter().fold(Estimate::new(), |e, group| match group {
        [count, dims @ ..] => e.add(*count, dims, std::mem::size_of::<f32>()),
        [] => e,
    });
    e.check(jit.memory_limit(), what)
        .map_err(flexsn_runtime::RuntimeError::Memory)?;
    Ok(())
}

/// SpikingJelly's default surrogate for the PSN family.
pub const DEFAULT_SURROGATE: Surrogate = Surrogate::ATan { alpha: 2.0 };

/// Applies `surrogate=Name` or `surrogate.<param>=v`; `Ok(false)` when `key` is not one of them.
pub(crate) fn set_surrogate(
    neuron: &'static str,
    s: &mut Surrogate,
    key: &str,
    value: &str,
) -> Result<bool, NeuronError> {
    if key == "surrogate" {
        let t = Surrogate::default_for(value).ok_or_else(|| {
            invalid(
                neuron,
                key,
                value,
                &format!("unknown surrogate; known: {}", Surrogate::NAMES.join(", ")),
            )
        })?;
        if let Some(why) = unsupported(&t) {
            return Err(invalid(neuron, key, value, why));
        }
        *s = t;
        return Ok(true);
    }
    if key == "surrogate.spiking" || key == "spiking" {
        return match value {
            "true" | "True" | "1" => Ok(true),
            _ => Err(invalid(
                neuron,
                key,
                value,
                "the PSN family is implemented with spiking surrogates only",
            )),
        };
    }
    let Some(p) = key.strip_prefix("surrogate.") else {
        return Ok(false);
    };
    let v = parse_f64(neuron, key, value)?;
    let mut t = *s;
    t.set_param(p, v)
        .and_then(|_| t.validate())
        .map_err(|source| NeuronError::Surrogate { neuron, source })?;
    *s = t;
    Ok(true)
}

pub(crate) fn surrogate_values(s: &Surrogate) -> Vec<ParamValue> {
    let mut v = vec![ParamValue::new(
        "surrogate",
        s.name(),
        "surrogate gradient (any SpikingJelly surrogate class name; default ATan)",
    )];
    for (p, value) in s.params() {
        let value = if p == "n" {
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
    v
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
        _ => "surrogate.<param>",
    }
}

pub(crate) fn parse_usize(
    neuron: &'static str,
    key: &str,
    value: &str,
    min: usize,
) -> Result<usize, NeuronError> {
    match value.parse::<usize>() {
        Ok(v) if v >= min => Ok(v),
        Ok(_) => Err(invalid(
            neuron,
            key,
            value,
            &format!("must be at least {min}"),
        )),
        Err(_) => Err(invalid(neuron, key, value, "expected a whole number")),
    }
}

pub(crate) fn parse_u64(neuron: &'static str, key: &str, value: &str) -> Result<u64, NeuronError> {
    value
        .parse::<u64>()
        .map_err(|_| invalid(neuron, key, value, "expected a whole number"))
}

/// `T = len / n` for a `[T, N]` input, checking that it divides.
pub(crate) fn steps_of(module: &'static str, len: usize, n: usize) -> Result<usize, PsnError> {
    if n == 0 {
        return Err(PsnError::NoNeurons);
    }
    if !len.is_multiple_of(n) {
        return Err(PsnError::SeqShape {
            module,
            len,
            t: len.div_ceil(n),
            n,
        });
    }
    Ok(len / n)
}

/// The step mode a PSN-family module runs in; re-exported from [`crate::node`].
pub(crate) type Mode = StepMode;
