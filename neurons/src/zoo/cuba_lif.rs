//! Current-based LIF: SpikingJelly's `CUBALIFNode`, a synaptic current `c` feeding the
//! membrane:
//!
//! ```text
//! c = c * c_decay + x
//! h = v * v_decay + c
//! s = sg(h - v_threshold)
//! ```
//!
//! and the reset of [`crate::FireReset`] for `v`. Both states start at SpikingJelly's values
//! (`c` at 0, `v` at `v_reset`, or 0 for soft reset).

use flexsn_compiler::BuildError;
use flexsn_compiler::ir::{StateInit, StepGraph, Surrogate};

use super::{zoo_builder, zoo_neuron};
use crate::params::{FireReset, NeuronError};
use crate::spiking::{SPIKE_OUTPUT, V_STATE};

/// The synaptic-current state of [`CUBALIFNode`].
pub const CUBA_C: &str = "c";

zoo_neuron! {
    /// Current-based LIF: states `v` and `c` (synaptic current).
    CUBALIFNode {
        /// Decay of the current per step (default 0.5).
        c_decay: f64 = 0.5, "decay factor of the current c";
        /// Decay of the voltage per step (default 0.75).
        v_decay: f64 = 0.75, "decay factor of the voltage v";
    }
    fire: FireReset {
        v_threshold: 0.5,
        surrogate: Surrogate::Rect { alpha: 1.0 },
        ..FireReset::default()
    },
    fire_keys: ["v_threshold", "v_reset", "detach_reset", "surrogate"],
}

impl CUBALIFNode {
    fn check(&self) -> Result<(), NeuronError> {
        Ok(())
    }

    /// The step graph: input `x`, states `v` and `c`, output `spike`.
    pub fn step_graph(&self) -> Result<StepGraph, BuildError> {
        let b = zoo_builder(
            Self::CLASS,
            "c = c * c_decay + x; h = v * v_decay + c",
            &self.param_values(),
        );
        let x = b.input("x");
        let v = b.state(V_STATE, StateInit::Const(self.fire.initial_v()));
        let c = b.state(CUBA_C, StateInit::Const(0.0));
        let c_next = c * self.c_decay as f32 + x;
        let h = v * self.v_decay as f32 + c_next;
        let (s, v_next) = self.fire.fire_reset(h);
        b.output(SPIKE_OUTPUT, s);
        b.set_state(V_STATE, v_next);
        b.set_state(CUBA_C, c_next);
        b.build()
    }
}
