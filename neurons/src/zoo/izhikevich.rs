//! Izhikevich: SpikingJelly's `IzhikevichNode`, a quadratic integrate-and-fire neuron with an
//! adaptation current `w`:
//!
//! ```text
//! h      = v + (x + a0 (v - v_rest)(v - v_c) - w) / tau
//! s      = sg(h - v_threshold)
//! w_next = w + (a (h - v_rest) - w) / tau_w + b s
//! ```
//!
//! and the reset of [`crate::FireReset`] for `v`. `w` starts at `w_rest`.

use flexsn_compiler::BuildError;
use flexsn_compiler::ir::{StateInit, StepGraph};

use super::{require, require_tau, zoo_builder, zoo_neuron};
use crate::params::{FireReset, NeuronError};
use crate::spiking::{SPIKE_OUTPUT, V_STATE};

/// The adaptation state of [`IzhikevichNode`].
pub const IZHIKEVICH_W: &str = "w";

zoo_neuron! {
    /// Izhikevich neuron: states `v` and `w` (adaptation).
    IzhikevichNode {
        /// Membrane time constant (default 2.0; must be > 1).
        tau: f64 = 2.0, "membrane time constant (> 1)";
        /// Critical voltage (default 0.8).
        v_c: f64 = 0.8, "critical voltage";
        /// Sharpness of the quadratic term (default 1.0; must be > 0).
        a0: f64 = 1.0, "quadratic coefficient (> 0)";
        /// Resting voltage (default -0.1).
        v_rest: f64 = -0.1, "resting voltage";
        /// Initial adaptation (default 0.0).
        w_rest: f64 = 0.0, "initial value of w";
        /// Adaptation time constant (default 2.0).
        tau_w: f64 = 2.0, "adaptation time constant";
        /// Subthreshold adaptation coupling (default 0.0).
        a: f64 = 0.0, "coupling of w to h - v_rest";
        /// Spike-triggered adaptation (default 0.0).
        b: f64 = 0.0, "increment of w per spike";
    }
    fire: FireReset::default(),
    fire_keys: ["v_threshold", "v_reset", "detach_reset", "surrogate"],
}

impl IzhikevichNode {
    fn check(&self) -> Result<(), NeuronError> {
        require_tau(Self::CLASS, "tau", self.tau)?;
        require(self.a0 > 0.0, Self::CLASS, "a0", self.a0, "must be > 0")
    }

    /// The step graph: input `x`, states `v` and `w`, output `spike`.
    pub fn step_graph(&self) -> Result<StepGraph, BuildError> {
        let b = zoo_builder(
            Self::CLASS,
            "h = v + (x + a0 * (v - v_rest) * (v - v_c) - w) / tau; \
             w = w + (a * (h - v_rest) - w) / tau_w + b * s",
            &self.param_values(),
        );
        let x = b.input("x");
        let v = b.state(V_STATE, StateInit::Const(self.fire.initial_v()));
        let w = b.state(IZHIKEVICH_W, StateInit::Const(self.w_rest as f32));
        let rest = self.v_rest as f32;
        let quad = self.a0 as f32 * (v - rest) * (v - self.v_c as f32);
        let h = v + (x + quad - w) / self.tau as f32;
        let (s, v_next) = self.fire.fire_reset(h);
        let w_next = w + (self.a as f32 * (h - rest) - w) / self.tau_w as f32 + self.b as f32 * s;
        b.output(SPIKE_OUTPUT, s);
        b.set_state(V_STATE, v_next);
        b.set_state(IZHIKEVICH_W, w_next);
        b.build()
    }
}
