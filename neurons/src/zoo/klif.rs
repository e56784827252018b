//! KLIF: SpikingJelly's `KLIFNode`, a LIF whose charged voltage is scaled by a learnable `k`
//! and rectified:
//!
//! ```text
//! h = relu(k * charge(x, v))     charge as LIF's (decay_input or not)
//! s = sg(h - v_threshold)
//! v = reset(h, s, v_threshold)            scale_reset = false
//! v = reset(h / k, s, v_threshold / k)    scale_reset = true
//! ```
//!
//! `k` is one scalar shared by all neurons, initially 1.0.

use flexsn_compiler::BuildError;
use flexsn_compiler::ir::{ParamKind, StepGraph};

use super::{require_tau, v_graph, zoo_neuron};
use crate::params::{FireReset, NeuronError};
use crate::spiking::leaky_charge;

/// The learnable scale of [`KLIFNode`].
pub const KLIF_K: &str = "k";

zoo_neuron! {
    /// KLIF: LIF with a learnable scale `k` and a ReLU on the charged voltage.
    KLIFNode {
        /// Reset `h / k` with threshold `v_threshold / k` (default false).
        scale_reset: bool = false, "reset h / k against v_threshold / k";
        /// Membrane time constant (default 2.0; must be > 1).
        tau: f64 = 2.0, "membrane time constant (> 1)";
        /// Whether the input is divided by `tau` too (default true).
        decay_input: bool = true, "divide the input by tau too";
    }
    fire: FireReset::default(),
    fire_keys: ["v_threshold", "v_reset", "detach_reset", "surrogate"],
}

impl KLIFNode {
    /// `k`'s initial value.
    pub const INITIAL_K: f32 = 1.0;

    fn check(&self) -> Result<(), NeuronError> {
        require_tau(Self::CLASS, "tau", self.tau)
    }

    /// The step graph: input `x`, state `v`, learnable shared param `k`, output `spike`.
    pub fn step_graph(&self) -> Result<StepGraph, BuildError> {
        v_graph(
            Self::CLASS,
            "h = relu(k * charge), charge as LIF's; s = sg(h - v_threshold); \
             reset h (or h / k with threshold v_threshold / k when scale_reset)",
            &self.param_values(),
            self.fire.initial_v(),
            |b, x, v| {
                let k = b.param(KLIF_K, ParamKind::Shared, true);
                let tau = self.tau as f32;
                let charged = leaky_charge(self.decay_input, x, v, self.fire.vr(), |e| e / tau);
                let h = (k * charged).relu();
                let s = self.fire.spike_of(h - self.fire.v_threshold);
                let v_next = if self.scale_reset {
                    self.fire.reset(h / k, s, self.fire.v_threshold / k)
                } else {
                    self.fire.reset(h, s, self.fire.v_threshold)
                };
                (s, v_next)
            },
        )
    }
}
