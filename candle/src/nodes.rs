//! SpikingJelly's scan neurons as candle layers: [`IFNode`], [`LIFNode`],
//! [`ParametricLIFNode`], [`NonSpikingIFNode`], [`NonSpikingLIFNode`], [`SlidingPSN`], and the
//! wider zoo: [`QIFNode`], [`EIFNode`], [`IzhikevichNode`], [`KLIFNode`], [`CUBALIFNode`],
//! [`ComplementaryLIFNode`], [`ILIFNode`], [`HalfThresholdIFNode`], [`TernaryIFNode`],
//! [`TernaryLIFNode`].
//!
//! Each is built from the `flexsn-neurons` config of the same name (its `Default` is
//! SpikingJelly's defaults) and a `VarBuilder`; learnable params (PLIF's `w`, KLIF's `k`,
//! SlidingPSN's weights and bias) are `Var`s named as in the core, initialised as SpikingJelly
//! does. Multi-state neurons (Izhikevich's `w`, CUBA-LIF's `c`, CLIF's `m`) start from their
//! SpikingJelly initial values; `layer().forward_all` takes and returns every state. Input
//! `[T, *shape]`, multi-step; every call starts from the reset state (use
//! [`ScanLayer::forward_all`] through `layer()` to pass initial states and read the voltages).

use candle_core::Tensor;
use candle_nn::{Init, Module, VarBuilder};
use flexsn_neurons::Builtin;

use crate::decode::decode;
use crate::error::Error;
use crate::layer::{ParamDims, ScanLayer, default_jit, first_output};
pub use crate::sliding::SlidingPSN;

/// The scan layer of a built-in neuron, its params initialised from the neuron's defaults.
fn builtin_layer(b: &Builtin, vb: VarBuilder) -> candle_core::Result<ScanLayer> {
    let g = b.step_graph().map_err(|e| Error::Neuron(e.to_string()))?;
    let inits = b
        .initial_params()
        .into_iter()
        .map(|(name, v)| match v.as_slice() {
            [x] => Ok((name, Init::Const(f64::from(*x)))),
            _ => Err(Error::Neuron(format!(
                "param `{name}` of {} is not a scalar",
                b.class_name()
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let inits: Vec<(&str, Init)> = inits.iter().map(|(k, i)| (k.as_ref(), *i)).collect();
    ScanLayer::new(&default_jit()?, &g, vb, &inits, ParamDims::default())
}

macro_rules! scan_node {
    ($(#[$doc:meta])* $name:ident, $cfg:ty, $variant:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            layer: ScanLayer,
            config: $cfg,
        }

        impl $name {
            /// The layer for `config`; its learnable params (if any) come from `vb`.
            pub fn new(config: $cfg, vb: VarBuilder) -> candle_core::Result<Self> {
                let layer = builtin_layer(&Builtin::$variant(config), vb)?;
                Ok($name { layer, config })
            }

            /// The hyperparameters.
            pub fn config(&self) -> &$cfg {
                &self.config
            }

            /// The underlying scan layer (params, kernel, all outputs and states).
            pub fn layer(&self) -> &ScanLayer {
                &self.layer
            }

            /// The layer keeping only every `K`-th state for backward under
            /// `checkpoint:K` (see [`ScanLayer::with_save_policy`]).
            pub fn with_save_policy(
                mut self,
                policy: flexsn_runtime::SavePolicy,
            ) -> candle_core::Result<Self> {
                self.layer = self.layer.with_save_policy(policy)?;
                Ok(self)
            }
        }
    };
}

macro_rules! spiking_module {
    ($($name:ident),*) => {
        $(
            /// Spikes `[T, *shape]` for input `[T, *shape]`.
            impl Module for $name {
                fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
                    self.layer.forward(x)
                }
            }
        )*
    };
}

macro_rules! nonspiking_module {
    ($($name:ident),*) => {
        $(
            /// The decoded voltage (the sequence `[T, *shape]` or `[*shape]`) for `[T, *shape]`.
            impl Module for $name {
                fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
                    let mem = first_output(self.layer.forward_all(&[x], None)?)?;
                    decode(self.config.decode, &mem)
                }
            }
        )*
    };
}

scan_node!(
    /// SpikingJelly's `IFNode`: `h = v + x`, fire at `v_threshold`, reset.
    IFNode,
    flexsn_neurons::IFNode,
    If
);
scan_node!(
    /// SpikingJelly's `LIFNode`: `h = v + (x - (v - v_reset)) / tau` (with `decay_input`).
    LIFNode,
    flexsn_neurons::LIFNode,
    Lif
);
scan_node!(
    /// SpikingJelly's `ParametricLIFNode`: LIF with `1/tau = sigmoid(w)`, `w` a learnable `Var`
    /// (`w = -ln(init_tau - 1)`).
    ParametricLIFNode,
    flexsn_neurons::ParametricLIFNode,
    Plif
);
scan_node!(
    /// SpikingJelly's `NonSpikingIFNode`: `v = v + x`, then the config's decoding over time.
    NonSpikingIFNode,
    flexsn_neurons::NonSpikingIFNode,
    NonSpikingIf
);
scan_node!(
    /// SpikingJelly's `NonSpikingLIFNode`: leaky integration, then the config's decoding.
    NonSpikingLIFNode,
    flexsn_neurons::NonSpikingLIFNode,
    NonSpikingLif
);

scan_node!(
    /// SpikingJelly's `QIFNode`: `h = v + (x + a0 (v - v_rest)(v - v_c)) / tau`.
    QIFNode,
    flexsn_neurons::QIFNode,
    Qif
);
scan_node!(
    /// SpikingJelly's `EIFNode`:
    /// `h = v + (x - (v - v_rest) + delta_T exp((v - theta_rh) / delta_T)) / tau`.
    EIFNode,
    flexsn_neurons::EIFNode,
    Eif
);
scan_node!(
    /// SpikingJelly's `IzhikevichNode`: QIF with the adaptation state `w`
    /// (`w = w + (a (h - v_rest) - w) / tau_w + b s`, starting at `w_rest`).
    IzhikevichNode,
    flexsn_neurons::IzhikevichNode,
    Izhikevich
);
scan_node!(
    /// SpikingJelly's `KLIFNode`: `h = relu(k * charge)` with LIF's charge; `k` a learnable
    /// `Var` (initially 1).
    KLIFNode,
    flexsn_neurons::KLIFNode,
    Klif
);
scan_node!(
    /// SpikingJelly's `CUBALIFNode`: `c = c c_decay + x`, `h = v v_decay + c` (states `v`, `c`).
    CUBALIFNode,
    flexsn_neurons::CUBALIFNode,
    CubaLif
);
scan_node!(
    /// SpikingJelly's `ComplementaryLIFNode`: states `v` and `m`, soft reset by
    /// `v_threshold + sigmoid(m)`.
    ComplementaryLIFNode,
    flexsn_neurons::ComplementaryLIFNode,
    Clif
);
scan_node!(
    /// SpikingJelly's `ILIFNode`: spike counts `round(clamp(h / v_threshold, 0, max))`,
    /// `h = (1 - 1/tau) v + x`, soft reset by the count.
    ILIFNode,
    flexsn_neurons::ILIFNode,
    Ilif
);
scan_node!(
    /// SpikingJelly's `HalfThresholdIFNode`: IF with soft reset, `v` starting at
    /// `v_threshold / 2`.
    HalfThresholdIFNode,
    flexsn_neurons::HalfThresholdIFNode,
    HalfThresholdIf
);
scan_node!(
    /// SpikingJelly's `TernaryIFNode`: IF with spikes -1/0/1 at `±v_threshold`.
    TernaryIFNode,
    flexsn_neurons::TernaryIFNode,
    TernaryIf
);
scan_node!(
    /// SpikingJelly's `TernaryLIFNode`: LIF with spikes -1/0/1 at `±v_threshold`.
    TernaryLIFNode,
    flexsn_neurons::TernaryLIFNode,
    TernaryLif
);

spiking_module!(
    IFNode,
    LIFNode,
    ParametricLIFNode,
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
nonspiking_module!(NonSpikingIFNode, NonSpikingLIFNode);
