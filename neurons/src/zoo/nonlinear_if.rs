//! QIF and EIF: SpikingJelly's `QIFNode` and `EIFNode`, integrate-and-fire neurons with a
//! quadratic and an exponential term in the charge.
//!
//! | neuron | charge |
//! |---|---|
//! | QIF | `h = v + (x + a0 * (v - v_rest) * (v - v_c)) / tau` |
//! | EIF | `h = v + (x + v_rest - v + delta_T * exp((v - theta_rh) / delta_T)) / tau` |
//!
//! then `s = sg(h - v_threshold)` and the reset of [`FireReset`] (default `v_reset = -0.1`).

use flexsn_compiler::BuildError;
use flexsn_compiler::ir::StepGraph;

use super::{require, require_reset_below, require_tau, v_graph, zoo_neuron};
use crate::params::{FireReset, NeuronError};

/// SpikingJelly's default for QIF and EIF: hard reset to -0.1.
fn fire_default() -> FireReset {
    FireReset {
        v_reset: Some(-0.1),
        ..FireReset::default()
    }
}

zoo_neuron! {
    /// Quadratic integrate-and-fire: `h = v + (x + a0 (v - v_rest)(v - v_c)) / tau`.
    QIFNode {
        /// Membrane time constant (default 2.0; must be > 1).
        tau: f64 = 2.0, "membrane time constant (> 1)";
        /// Critical voltage (default 0.8).
        v_c: f64 = 0.8, "critical voltage";
        /// Sharpness of the quadratic term (default 1.0; must be > 0).
        a0: f64 = 1.0, "quadratic coefficient (> 0)";
        /// Resting voltage (default 0.0).
        v_rest: f64 = 0.0, "resting voltage";
    }
    fire: fire_default(),
    fire_keys: ["v_threshold", "v_reset", "detach_reset", "surrogate"],
}

impl QIFNode {
    fn check(&self) -> Result<(), NeuronError> {
        require_tau(Self::CLASS, "tau", self.tau)?;
        require(self.a0 > 0.0, Self::CLASS, "a0", self.a0, "must be > 0")?;
        require_reset_below(Self::CLASS, &self.fire, self.v_rest)
    }

    /// The step graph: input `x`, state `v`, output `spike`.
    pub fn step_graph(&self) -> Result<StepGraph, BuildError> {
        v_graph(
            Self::CLASS,
            "h = v + (x + a0 * (v - v_rest) * (v - v_c)) / tau",
            &self.param_values(),
            self.fire.initial_v(),
            |_, x, v| {
                let quad = self.a0 as f32 * (v - self.v_rest as f32) * (v - self.v_c as f32);
                self.fire.fire_reset(v + (x + quad) / self.tau as f32)
            },
        )
    }
}

zoo_neuron! {
    /// Exponential integrate-and-fire:
    /// `h = v + (x + v_rest - v + delta_T exp((v - theta_rh) / delta_T)) / tau`.
    EIFNode {
        /// Membrane time constant (default 2.0; must be > 1).
        tau: f64 = 2.0, "membrane time constant (> 1)";
        /// Sharpness of the exponential term (default 1.0; must be > 0).
        delta_T: f64 = 1.0, "sharpness of the exponential term (> 0)";
        /// Rheobase threshold (default 0.8).
        theta_rh: f64 = 0.8, "rheobase threshold";
        /// Resting voltage (default 0.0).
        v_rest: f64 = 0.0, "resting voltage";
    }
    fire: fire_default(),
    fire_keys: ["v_threshold", "v_reset", "detach_reset", "surrogate"],
}

impl EIFNode {
    fn check(&self) -> Result<(), NeuronError> {
        require_tau(Self::CLASS, "tau", self.tau)?;
        require(
            self.delta_T > 0.0,
            Self::CLASS,
            "delta_T",
            self.delta_T,
            "must be > 0",
        )?;
        require_reset_below(Self::CLASS, &self.fire, self.v_rest)
    }

    /// The step graph: input `x`, state `v`, output `spike`.
    pub fn step_graph(&self) -> Result<StepGraph, BuildError> {
        v_graph(
            Self::CLASS,
            "h = v + (x + v_rest - v + delta_T * exp((v - theta_rh) / delta_T)) / tau",
            &self.param_values(),
            self.fire.initial_v(),
            |_, x, v| {
                let delta = self.delta_T as f32;
                let expo = delta * ((v - self.theta_rh as f32) / delta).exp();
                self.fire
                    .fire_reset(v + (x + self.v_rest as f32 - v + expo) / self.tau as f32)
            },
        )
    }
}
