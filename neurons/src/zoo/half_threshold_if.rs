//! Half-threshold IF: SpikingJelly's `HalfThresholdIFNode`, an IF neuron with soft reset whose
//! voltage starts at `v_threshold / 2` (`h = v + x`, `s = sg(h - v_threshold)`,
//! `v = h - s * v_threshold`).

use flexsn_compiler::BuildError;
use flexsn_compiler::ir::StepGraph;

use super::{require, v_graph, zoo_neuron};
use crate::params::{FireReset, NeuronError};

zoo_neuron! {
    /// IF with soft reset, starting at half the threshold.
    HalfThresholdIFNode {}
    fire: FireReset {
        v_reset: None,
        ..FireReset::default()
    },
    fire_keys: ["v_threshold", "detach_reset", "surrogate"],
}

impl HalfThresholdIFNode {
    fn check(&self) -> Result<(), NeuronError> {
        let thr = self.fire.v_threshold;
        require(thr > 0.0, Self::CLASS, "v_threshold", thr, "must be > 0")
    }

    /// The initial voltage, `v_threshold / 2`.
    pub fn initial_v(&self) -> f32 {
        self.fire.v_threshold / 2.0
    }

    /// The step graph: input `x`, state `v`, output `spike`.
    pub fn step_graph(&self) -> Result<StepGraph, BuildError> {
        v_graph(
            Self::CLASS,
            "h = v + x, v starts at v_threshold / 2",
            &self.param_values(),
            self.initial_v(),
            |_, x, v| self.fire.fire_reset(v + x),
        )
    }
}
