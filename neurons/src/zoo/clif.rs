//! Complementary LIF: SpikingJelly's `ComplementaryLIFNode`, a LIF with a complementary
//! memory `m` that raises the reset after recent spikes:
//!
//! ```text
//! h = v - v / tau + x
//! s = sg(h - v_threshold)
//! m = m * sigmoid(h / tau) + s
//! v = h - s * (v_threshold + sigmoid(m))
//! ```
//!
//! Both states start at 0. SpikingJelly keeps no voltage sequence for it; the graph's state
//! sequences are there all the same.

use flexsn_compiler::BuildError;
use flexsn_compiler::ir::{StateInit, StepGraph, Surrogate};

use super::{require_tau, zoo_builder, zoo_neuron};
use crate::params::{FireReset, NeuronError};
use crate::spiking::{SPIKE_OUTPUT, V_STATE};

/// The complementary memory of [`ComplementaryLIFNode`].
pub const CLIF_M: &str = "m";

zoo_neuron! {
    /// Complementary LIF: states `v` and `m`; soft reset by `v_threshold + sigmoid(m)`.
    ComplementaryLIFNode {
        /// Membrane time constant (default 2.0; must be > 1).
        tau: f64 = 2.0, "membrane time constant (> 1)";
    }
    fire: FireReset {
        v_reset: None,
        surrogate: Surrogate::Rect { alpha: 1.0 },
        ..FireReset::default()
    },
    fire_keys: ["v_threshold", "surrogate"],
}

impl ComplementaryLIFNode {
    fn check(&self) -> Result<(), NeuronError> {
        require_tau(Self::CLASS, "tau", self.tau)
    }

    /// The step graph: input `x`, states `v` and `m`, output `spike`.
    pub fn step_graph(&self) -> Result<StepGraph, BuildError> {
        let b = zoo_builder(
            Self::CLASS,
            "h = v - v / tau + x; s = sg(h - v_threshold); m = m * sigmoid(h / tau) + s; \
             v = h - s * (v_threshold + sigmoid(m))",
            &self.param_values(),
        );
        let x = b.input("x");
        let v = b.state(V_STATE, StateInit::Const(0.0));
        let m = b.state(CLIF_M, StateInit::Const(0.0));
        let tau = self.tau as f32;
        let thr = self.fire.v_threshold;
        let h = v - (v - 0.0f32) / tau + x;
        let decayed_m = m * (h / tau).sigmoid();
        let s = self.fire.spike_of(h - thr);
        let m_next = decayed_m + s;
        let v_next = h - s * (thr + m_next.sigmoid());
        b.output(SPIKE_OUTPUT, s);
        b.set_state(V_STATE, v_next);
        b.set_state(CLIF_M, m_next);
        b.build()
    }
}
