//! # flexsn-neurons
//!
//! SpikingJelly's built-in scan neurons as step graphs built with the DSL, with SpikingJelly's
//! defaults, initial-v rule and exact float operation order:
//!
//! | CLI name | class | struct |
//! |---|---|---|
//! | `if` | `IFNode` | [`IFNode`] |
//! | `lif` | `LIFNode` | [`LIFNode`] |
//! | `plif` | `ParametricLIFNode` | [`ParametricLIFNode`] |
//! | `nonspiking-if` | `NonSpikingIFNode` | [`NonSpikingIFNode`] |
//! | `nonspiking-lif` | `NonSpikingLIFNode` | [`NonSpikingLIFNode`] |
//! | `psn` | `PSN` | [`psn::PSN`] (config [`psn::PSNConfig`]) |
//! | `masked-psn` | `MaskedPSN` | [`psn::MaskedPSN`] (config [`psn::MaskedPSNConfig`]) |
//! | `sliding-psn` | `SlidingPSN` | [`psn::SlidingPSN`] (config [`psn::SlidingPSNConfig`]) |
//!
//! `PSN` and `MaskedPSN` mix the whole sequence with a `[T, T]` weight: they are not scans and
//! have no step graph ([`Builtin::step_graph`] says so); they run on [`psn::mixing`].
//! [`node::Node`] wraps any of the scan neurons as a stateful SpikingJelly-style layer.
//!
//! ```
//! use flexsn_neurons::{LIFNode, Builtin};
//! use flexsn_compiler::ir::Surrogate;
//!
//! let lif = LIFNode::new().tau(3.5).v_reset(None).surrogate(Surrogate::ATan { alpha: 2.0 });
//! let g = lif.step_graph()?;
//! assert_eq!(g.outputs()[0].name, "spike");
//!
//! // The same neuron by name, as the CLI builds it.
//! let b = Builtin::from_settings("lif", ["tau=3.5", "v_reset=none", "surrogate=ATan"])?;
//! assert_eq!(b, Builtin::Lif(lif));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod node;
mod nonspiking;
mod params;
pub mod psn;
mod spiking;

pub use nonspiking::{Decode, DecodeError, MEM_OUTPUT, NonSpikingIFNode, NonSpikingLIFNode};
pub use params::{FireReset, NeuronError, ParamValue, split_setting};
pub use spiking::{IFNode, LIFNode, PLIF_W, ParametricLIFNode, SPIKE_OUTPUT, V_STATE};

use flexsn_compiler::ir::StepGraph;

/// A built-in neuron's names and summary, for the registry and `flexsn list`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeuronInfo {
    /// The name on the command line (`lif`).
    pub cli_name: &'static str,
    /// SpikingJelly's class name (`LIFNode`), accepted on the command line too.
    pub class_name: &'static str,
    /// One line: what it computes.
    pub summary: &'static str,
}

/// Every built-in neuron, in the order `flexsn list` prints them.
pub const BUILTINS: &[NeuronInfo] = &[
    NeuronInfo {
        cli_name: "if",
        class_name: IFNode::CLASS,
        summary: "integrate-and-fire: h = v + x",
    },
    NeuronInfo {
        cli_name: "lif",
        class_name: LIFNode::CLASS,
        summary: "leaky integrate-and-fire: h = v + (x - (v - v_reset)) / tau",
    },
    NeuronInfo {
        cli_name: "plif",
        class_name: ParametricLIFNode::CLASS,
        summary: "parametric LIF: 1/tau = sigmoid(w), w learnable and shared",
    },
    NeuronInfo {
        cli_name: "nonspiking-if",
        class_name: NonSpikingIFNode::CLASS,
        summary: "non-spiking integrator: v = v + x, optional decoding over time",
    },
    NeuronInfo {
        cli_name: "nonspiking-lif",
        class_name: NonSpikingLIFNode::CLASS,
        summary: "non-spiking leaky integrator: v = v + (x - v) / tau, optional decoding",
    },
    NeuronInfo {
        cli_name: "psn",
        class_name: psn::PSNConfig::CLASS,
        summary: "parallel spiking neuron: S = Θ(W·X + b), W [T, T] mixes the whole sequence (GEMM)",
    },
    NeuronInfo {
        cli_name: "masked-psn",
        class_name: psn::MaskedPSNConfig::CLASS,
        summary: "PSN with W blended toward a band mask of width k by lambda (GEMM)",
    },
    NeuronInfo {
        cli_name: "sliding-psn",
        class_name: psn::SlidingPSNConfig::CLASS,
        summary: "S[t] = Θ(Σ_i w_i x[t-k+1+i] + b): the last k inputs (a scan)",
    },
];

/// Looks up a built-in neuron by CLI name or SpikingJelly class name.
pub fn lookup(name: &str) -> Result<&'static NeuronInfo, NeuronError> {
    BUILTINS
        .iter()
        .find(|i| i.cli_name == name || i.class_name == name)
        .ok_or_else(|| NeuronError::UnknownNeuron {
            name: name.to_string(),
            known: BUILTINS
                .iter()
                .map(|i| format!("{} ({})", i.cli_name, i.class_name))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// One configured built-in neuron.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Builtin {
    If(IFNode),
    Lif(LIFNode),
    Plif(ParametricLIFNode),
    NonSpikingIf(NonSpikingIFNode),
    NonSpikingLif(NonSpikingLIFNode),
    Psn(psn::PSNConfig),
    MaskedPsn(psn::MaskedPSNConfig),
    SlidingPsn(psn::SlidingPSNConfig),
}

/// Runs `$body` with `$n` bound to the neuron inside whichever variant `$self` is.
macro_rules! each {
    ($self:expr, $n:ident => $body:expr) => {
        match $self {
            Builtin::If($n) => $body,
            Builtin::Lif($n) => $body,
            Builtin::Plif($n) => $body,
            Builtin::NonSpikingIf($n) => $body,
            Builtin::NonSpikingLif($n) => $body,
            Builtin::Psn($n) => $body,
            Builtin::MaskedPsn($n) => $body,
            Builtin::SlidingPsn($n) => $body,
        }
    };
}

impl Builtin {
    /// The neuron called `name` (CLI or class name) with SpikingJelly's defaults.
    pub fn from_name(name: &str) -> Result<Builtin, NeuronError> {
        let info = lookup(name)?;
        Ok(match info.class_name {
            IFNode::CLASS => Builtin::If(IFNode::new()),
            LIFNode::CLASS => Builtin::Lif(LIFNode::new()),
            ParametricLIFNode::CLASS => Builtin::Plif(ParametricLIFNode::new()),
            NonSpikingIFNode::CLASS => Builtin::NonSpikingIf(NonSpikingIFNode::new()),
            NonSpikingLIFNode::CLASS => Builtin::NonSpikingLif(NonSpikingLIFNode::new()),
            psn::PSNConfig::CLASS => Builtin::Psn(psn::PSNConfig::default()),
            psn::MaskedPSNConfig::CLASS => Builtin::MaskedPsn(psn::MaskedPSNConfig::default()),
            psn::SlidingPSNConfig::CLASS => Builtin::SlidingPsn(psn::SlidingPSNConfig::default()),
            other => unreachable!("BUILTINS lists {other} but from_name does not build it"),
        })
    }

    /// The neuron called `name`, configured by `key=value` settings. Settings of the surrogate
    /// class (`surrogate=ATan`) are applied before the others, so `surrogate.alpha=3` refines
    /// the chosen class whatever the order.
    pub fn from_settings<S: AsRef<str>>(
        name: &str,
        settings: impl IntoIterator<Item = S>,
    ) -> Result<Builtin, NeuronError> {
        let mut b = Builtin::from_name(name)?;
        let pairs = settings
            .into_iter()
            .map(|s| split_setting(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        b.set_all(&pairs)?;
        Ok(b)
    }

    /// Applies settings, the surrogate class first (see [`Builtin::from_settings`]).
    pub fn set_all(&mut self, pairs: &[(String, String)]) -> Result<(), NeuronError> {
        let (first, rest): (Vec<_>, Vec<_>) = pairs.iter().partition(|(k, _)| k == "surrogate");
        for (k, v) in first.into_iter().chain(rest) {
            self.set(k, v)?;
        }
        Ok(())
    }

    /// Applies one setting.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), NeuronError> {
        each!(self, n => n.set(key, value))
    }

    /// The registry entry.
    pub fn info(&self) -> &'static NeuronInfo {
        let class = self.class_name();
        BUILTINS
            .iter()
            .find(|i| i.class_name == class)
            .expect("every Builtin variant is listed in BUILTINS")
    }

    /// SpikingJelly's class name.
    pub fn class_name(&self) -> &'static str {
        match self {
            Builtin::If(_) => IFNode::CLASS,
            Builtin::Lif(_) => LIFNode::CLASS,
            Builtin::Plif(_) => ParametricLIFNode::CLASS,
            Builtin::NonSpikingIf(_) => NonSpikingIFNode::CLASS,
            Builtin::NonSpikingLif(_) => NonSpikingLIFNode::CLASS,
            Builtin::Psn(_) => psn::PSNConfig::CLASS,
            Builtin::MaskedPsn(_) => psn::MaskedPSNConfig::CLASS,
            Builtin::SlidingPsn(_) => psn::SlidingPSNConfig::CLASS,
        }
    }

    /// The single-step graph the scan runs. `PSN` and `MaskedPSN` mix the whole sequence at
    /// once and have none ([`NeuronError::NotAScan`]).
    pub fn step_graph(&self) -> Result<StepGraph, NeuronError> {
        Ok(match self {
            Builtin::If(n) => n.step_graph()?,
            Builtin::Lif(n) => n.step_graph()?,
            Builtin::Plif(n) => n.step_graph()?,
            Builtin::NonSpikingIf(n) => n.step_graph()?,
            Builtin::NonSpikingLif(n) => n.step_graph()?,
            Builtin::SlidingPsn(n) => n.step_graph()?,
            Builtin::Psn(_) | Builtin::MaskedPsn(_) => {
                return Err(NeuronError::NotAScan {
                    neuron: self.class_name(),
                    why: "every output step mixes every input step through a [T, T] weight \
                          (a matrix product, not a scan); it runs on flexsn_neurons::psn::mixing",
                });
            }
        })
    }

    /// The current parameter values (the defaults, for a neuron from [`Builtin::from_name`]).
    pub fn param_values(&self) -> Vec<ParamValue> {
        each!(self, n => n.param_values())
    }

    /// Initial values of the graph's params, by name (PLIF: `w`; SlidingPSN: `weight_0` ..
    /// `weight_{k-1}` and `bias`, for any `k`).
    pub fn initial_params(&self) -> Vec<(String, Vec<f32>)> {
        match self {
            Builtin::Plif(p) => vec![(PLIF_W.into(), vec![p.initial_w()])],
            Builtin::SlidingPsn(p) => {
                let (w, b) = p.init_params();
                let mut v: Vec<(String, Vec<f32>)> = w
                    .into_iter()
                    .enumerate()
                    .map(|(i, wi)| (psn::sliding_weight_name(i), vec![wi]))
                    .collect();
                v.push((psn::SLIDING_BIAS.into(), vec![b]));
                v
            }
            _ => vec![],
        }
    }

    /// The decoding applied to the scan's output after the scan (non-spiking neurons).
    pub fn decode(&self) -> Option<Decode> {
        match self {
            Builtin::NonSpikingIf(n) => Some(n.decode),
            Builtin::NonSpikingLif(n) => Some(n.decode),
            _ => None,
        }
    }

    /// Whether the neuron emits spikes (output [`SPIKE_OUTPUT`]); otherwise it emits
    /// [`MEM_OUTPUT`].
    pub fn is_spiking(&self) -> bool {
        !matches!(self, Builtin::NonSpikingIf(_) | Builtin::NonSpikingLif(_))
    }
}

/// The scan neurons are [`flexsn_runtime::Neuron`]s: `jit.compile(&LIFNode::new())` works.
macro_rules! impl_runtime_neuron {
    ($($t:ty),*) => {
        $(
            impl flexsn_runtime::Neuron for $t {
                fn step_graph(&self) -> Result<StepGraph, flexsn_compiler::BuildError> {
                    <$t>::step_graph(self)
                }
            }
        )*
    };
}

impl_runtime_neuron!(
    IFNode,
    LIFNode,
    ParametricLIFNode,
    NonSpikingIFNode,
    NonSpikingLIFNode
);

#[cfg(test)]
mod tests;
