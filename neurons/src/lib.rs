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
//! | `qif` | `QIFNode` | [`QIFNode`] |
//! | `eif` | `EIFNode` | [`EIFNode`] |
//! | `izhikevich` | `IzhikevichNode` | [`IzhikevichNode`] (states `v`, `w`) |
//! | `klif` | `KLIFNode` | [`KLIFNode`] (learnable `k`) |
//! | `cuba-lif` | `CUBALIFNode` | [`CUBALIFNode`] (states `v`, `c`) |
//! | `clif` | `ComplementaryLIFNode` | [`ComplementaryLIFNode`] (states `v`, `m`) |
//! | `ilif` | `ILIFNode` | [`ILIFNode`] (spike counts) |
//! | `half-threshold-if` | `HalfThresholdIFNode` | [`HalfThresholdIFNode`] |
//! | `ternary-if` | `TernaryIFNode` | [`TernaryIFNode`] (spikes −1/0/1) |
//! | `ternary-lif` | `TernaryLIFNode` | [`TernaryLIFNode`] (spikes −1/0/1) |
//!
//! `PSN` and `MaskedPSN` mix the whole sequence with a `[T, T]` weight: they are not scans and
//! have no step graph ([`Builtin::step_graph`] says so); they run on [`flexsn_runtime::Mixing`].
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

pub mod layer;
pub mod node;
mod nonspiking;
mod params;
pub mod psn;
mod spiking;
mod zoo;

pub use nonspiking::{Decode, DecodeError, MEM_OUTPUT, NonSpikingIFNode, NonSpikingLIFNode};
pub use params::{FireReset, NeuronError, ParamValue, split_setting};
pub use spiking::{IFNode, LIFNode, PLIF_W, ParametricLIFNode, SPIKE_OUTPUT, V_STATE};
pub use zoo::{
    CLIF_M, CUBA_C, CUBALIFNode, ComplementaryLIFNode, EIFNode, HalfThresholdIFNode, ILIFNode,
    IZHIKEVICH_W, IzhikevichNode, KLIF_K, KLIFNode, QIFNode, TernaryIFNode, TernaryLIFNode,
};

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
    NeuronInfo {
        cli_name: "qif",
        class_name: QIFNode::CLASS,
        summary: "quadratic IF: h = v + (x + a0 (v - v_rest)(v - v_c)) / tau",
    },
    NeuronInfo {
        cli_name: "eif",
        class_name: EIFNode::CLASS,
        summary: "exponential IF: h = v + (x + v_rest - v + dT exp((v - theta_rh)/dT)) / tau",
    },
    NeuronInfo {
        cli_name: "izhikevich",
        class_name: IzhikevichNode::CLASS,
        summary: "QIF with adaptation w: w += (a (h - v_rest) - w) / tau_w + b s",
    },
    NeuronInfo {
        cli_name: "klif",
        class_name: KLIFNode::CLASS,
        summary: "LIF with h = relu(k * charge), k learnable and shared",
    },
    NeuronInfo {
        cli_name: "cuba-lif",
        class_name: CUBALIFNode::CLASS,
        summary: "current-based LIF: c = c c_decay + x, h = v v_decay + c",
    },
    NeuronInfo {
        cli_name: "clif",
        class_name: ComplementaryLIFNode::CLASS,
        summary: "complementary LIF: memory m, soft reset by v_threshold + sigmoid(m)",
    },
    NeuronInfo {
        cli_name: "ilif",
        class_name: ILIFNode::CLASS,
        summary: "integer LIF: spike counts round(clamp(h / v_threshold, 0, max))",
    },
    NeuronInfo {
        cli_name: "half-threshold-if",
        class_name: HalfThresholdIFNode::CLASS,
        summary: "IF with soft reset, v starting at v_threshold / 2",
    },
    NeuronInfo {
        cli_name: "ternary-if",
        class_name: TernaryIFNode::CLASS,
        summary: "IF with spikes -1/0/1: s = sg(h - thr) - sg(-h - thr)",
    },
    NeuronInfo {
        cli_name: "ternary-lif",
        class_name: TernaryLIFNode::CLASS,
        summary: "LIF with spikes -1/0/1: s = sg(h - thr) - sg(-h - thr)",
    },
];

/// SpikingJelly's simplified neurons (`SimpleBaseNode` subclasses) and the neuron with the same
/// dynamics. They differ in one point: the membrane starts at 0, not at `v_reset`, so the two
/// agree when `v_reset` is 0 or soft reset; [`Builtin::from_settings`] refuses other `v_reset`s.
pub const SIMPLE_CLASSES: &[(&str, &str)] =
    &[("SimpleIFNode", "IFNode"), ("SimpleLIFNode", "LIFNode")];

/// `v_reset` must make the simplified class's initial `v = 0` the full class's `v_reset`.
fn check_simple(class: &'static str, b: &Builtin) -> Result<(), NeuronError> {
    let fire = match b {
        Builtin::If(n) => &n.fire,
        Builtin::Lif(n) => &n.fire,
        _ => return Ok(()),
    };
    match fire.v_reset {
        None | Some(0.0) => Ok(()),
        Some(v) => Err(NeuronError::InvalidValue {
            neuron: class,
            key: "v_reset".into(),
            value: v.to_string(),
            why: format!(
                "{class} starts at v = 0 whatever v_reset is; flexsn runs it with v_reset = 0 or none (soft reset) only. For another v_reset, IFNode/LIFNode start at v_reset"
            ),
        }),
    }
}

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

/// Declares [`Builtin`] with one variant per built-in config, and `From<Config> for Builtin`
/// for each: `Builtin::from(LIFNode::new())`.
macro_rules! builtins {
    ($($variant:ident($t:ty)),* $(,)?) => {
        /// One configured built-in neuron.
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub enum Builtin {
            $(
                #[doc = concat!("A [`", stringify!($t), "`].")]
                $variant($t),
            )*
        }
        $(
            impl From<$t> for Builtin {
                fn from(n: $t) -> Builtin {
                    Builtin::$variant(n)
                }
            }
        )*
    };
}

builtins!(
    If(IFNode),
    Lif(LIFNode),
    Plif(ParametricLIFNode),
    NonSpikingIf(NonSpikingIFNode),
    NonSpikingLif(NonSpikingLIFNode),
    Psn(psn::PSNConfig),
    MaskedPsn(psn::MaskedPSNConfig),
    SlidingPsn(psn::SlidingPSNConfig),
    Qif(QIFNode),
    Eif(EIFNode),
    Izhikevich(IzhikevichNode),
    Klif(KLIFNode),
    CubaLif(CUBALIFNode),
    Clif(ComplementaryLIFNode),
    Ilif(ILIFNode),
    HalfThresholdIf(HalfThresholdIFNode),
    TernaryIf(TernaryIFNode),
    TernaryLif(TernaryLIFNode),
);

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
            Builtin::Qif($n) => $body,
            Builtin::Eif($n) => $body,
            Builtin::Izhikevich($n) => $body,
            Builtin::Klif($n) => $body,
            Builtin::CubaLif($n) => $body,
            Builtin::Clif($n) => $body,
            Builtin::Ilif($n) => $body,
            Builtin::HalfThresholdIf($n) => $body,
            Builtin::TernaryIf($n) => $body,
            Builtin::TernaryLif($n) => $body,
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
            QIFNode::CLASS => Builtin::Qif(QIFNode::new()),
            EIFNode::CLASS => Builtin::Eif(EIFNode::new()),
            IzhikevichNode::CLASS => Builtin::Izhikevich(IzhikevichNode::new()),
            KLIFNode::CLASS => Builtin::Klif(KLIFNode::new()),
            CUBALIFNode::CLASS => Builtin::CubaLif(CUBALIFNode::new()),
            ComplementaryLIFNode::CLASS => Builtin::Clif(ComplementaryLIFNode::new()),
            ILIFNode::CLASS => Builtin::Ilif(ILIFNode::new()),
            HalfThresholdIFNode::CLASS => Builtin::HalfThresholdIf(HalfThresholdIFNode::new()),
            TernaryIFNode::CLASS => Builtin::TernaryIf(TernaryIFNode::new()),
            TernaryLIFNode::CLASS => Builtin::TernaryLif(TernaryLIFNode::new()),
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
        let simple = SIMPLE_CLASSES.iter().find(|(s, _)| *s == name);
        let mut b = Builtin::from_name(simple.map_or(name, |&(_, full)| full))?;
        let pairs = settings
            .into_iter()
            .map(|s| split_setting(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        b.set_all(&pairs)?;
        if let Some(&(class, _)) = simple {
            check_simple(class, &b)?;
        }
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
            Builtin::Qif(_) => QIFNode::CLASS,
            Builtin::Eif(_) => EIFNode::CLASS,
            Builtin::Izhikevich(_) => IzhikevichNode::CLASS,
            Builtin::Klif(_) => KLIFNode::CLASS,
            Builtin::CubaLif(_) => CUBALIFNode::CLASS,
            Builtin::Clif(_) => ComplementaryLIFNode::CLASS,
            Builtin::Ilif(_) => ILIFNode::CLASS,
            Builtin::HalfThresholdIf(_) => HalfThresholdIFNode::CLASS,
            Builtin::TernaryIf(_) => TernaryIFNode::CLASS,
            Builtin::TernaryLif(_) => TernaryLIFNode::CLASS,
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
            Builtin::Qif(n) => n.step_graph()?,
            Builtin::Eif(n) => n.step_graph()?,
            Builtin::Izhikevich(n) => n.step_graph()?,
            Builtin::Klif(n) => n.step_graph()?,
            Builtin::CubaLif(n) => n.step_graph()?,
            Builtin::Clif(n) => n.step_graph()?,
            Builtin::Ilif(n) => n.step_graph()?,
            Builtin::HalfThresholdIf(n) => n.step_graph()?,
            Builtin::TernaryIf(n) => n.step_graph()?,
            Builtin::TernaryLif(n) => n.step_graph()?,
            Builtin::Psn(_) | Builtin::MaskedPsn(_) => {
                return Err(NeuronError::NotAScan {
                    neuron: self.class_name(),
                    why: "every output step mixes every input step through a [T, T] weight \
                          (a matrix product, not a scan); it runs on flexsn_runtime::Mixing",
                });
            }
        })
    }

    /// The step graph of a run of `t` steps from the initial states: [`Builtin::step_graph`],
    /// except that SlidingPSN keeps only the `min(k, t)` newest taps
    /// ([`psn::SlidingPSNConfig::window_graph`]): such a run never reaches the older weights
    /// (their gradient is 0), and its cost no longer grows with `k`.
    pub fn step_graph_for(&self, t: usize) -> Result<StepGraph, NeuronError> {
        match self {
            Builtin::SlidingPsn(n) => Ok(n.window_graph(n.window_for(t))?),
            _ => self.step_graph(),
        }
    }

    /// The current parameter values (the defaults, for a neuron from [`Builtin::from_name`]).
    pub fn param_values(&self) -> Vec<ParamValue> {
        each!(self, n => n.param_values())
    }

    /// Initial values of the graph's params, by name (PLIF: `w`, KLIF: `k`; SlidingPSN:
    /// `weight_0` .. `weight_{k-1}` and `bias`, for any `k`).
    pub fn initial_params(&self) -> Vec<(String, Vec<f32>)> {
        match self {
            Builtin::Plif(p) => vec![(PLIF_W.into(), vec![p.initial_w()])],
            Builtin::Klif(_) => vec![(KLIF_K.into(), vec![KLIFNode::INITIAL_K])],
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
    NonSpikingLIFNode,
    QIFNode,
    EIFNode,
    IzhikevichNode,
    KLIFNode,
    CUBALIFNode,
    ComplementaryLIFNode,
    ILIFNode,
    HalfThresholdIFNode,
    TernaryIFNode,
    TernaryLIFNode
);

#[cfg(test)]
mod tests;
