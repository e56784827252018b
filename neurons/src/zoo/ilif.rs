//! Integer LIF: SpikingJelly's `ILIFNode`, a LIF without input decay that emits multi-level
//! spike counts through the `MultiLevelSpikeCount` surrogate:
//!
//! ```text
//! h = (1 - 1/tau) * v + x
//! s = round(clamp(h / v_threshold, 0, max_spike_count))   gradient 1 in [grad_min, grad_max]
//! v = h - s * v_threshold
//! ```
//!
//! `v` starts at 0 (soft reset); `1 - 1/tau` is computed in double precision, as in Python.

use flexsn_compiler::BuildError;
use flexsn_compiler::ir::{StepGraph, Surrogate};

use super::{require_tau, v_graph, zoo_neuron};
use crate::params::{FireReset, NeuronError, invalid};

zoo_neuron! {
    /// Integer LIF: spike counts `0..=max_spike_count` per step.
    ILIFNode {
        /// Membrane time constant (default 4/3; must be > 1).
        tau: f64 = 4.0 / 3.0, "membrane time constant (> 1); decay 1 - 1/tau";
    }
    fire: FireReset {
        v_reset: None,
        surrogate: Surrogate::MultiLevelSpikeCount {
            max_spike_count: 4,
            grad_min: 0.0,
            grad_max: 4.0,
        },
        ..FireReset::default()
    },
    fire_keys: ["v_threshold", "detach_reset", "surrogate"],
}

impl ILIFNode {
    fn check(&self) -> Result<(), NeuronError> {
        require_tau(Self::CLASS, "tau", self.tau)?;
        if !matches!(self.fire.surrogate, Surrogate::MultiLevelSpikeCount { .. })
            || !self.fire.spiking
        {
            return Err(invalid(
                Self::CLASS,
                "surrogate",
                self.fire.surrogate.name(),
                "ILIFNode needs a spiking MultiLevelSpikeCount surrogate",
            ));
        }
        Ok(())
    }

    /// The step graph: input `x`, state `v`, output `spike` (the count).
    pub fn step_graph(&self) -> Result<StepGraph, BuildError> {
        v_graph(
            Self::CLASS,
            "h = (1 - 1/tau) * v + x; s = round(clamp(h / v_threshold, 0, max_spike_count)); \
             v = h - s * v_threshold",
            &self.param_values(),
            0.0,
            |_, x, v| {
                let decay = (1.0 - 1.0 / self.tau) as f32;
                let thr = self.fire.v_threshold;
                let h = decay * v + x;
                let s = (h / thr).spike(self.fire.surrogate);
                (s, self.fire.reset(h, s, thr))
            },
        )
    }
}
