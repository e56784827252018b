//! Ternary IF and LIF: SpikingJelly's `TernaryIFNode` and `TernaryLIFNode`, which fire
//! spikes −1, 0 or 1:
//!
//! ```text
//! h = v + x                      (IF; LIF charges as LIFNode)
//! p = sg(h - v_threshold), n = sg(-h - v_threshold), s = p - n
//! v = h - s * v_threshold                      soft reset
//! v = e * v_reset + (1 - e) * h, e = p + n     hard reset
//! ```

use flexsn_compiler::BuildError;
use flexsn_compiler::dsl::Expr;
use flexsn_compiler::ir::StepGraph;

use super::{require, require_tau, v_graph, zoo_neuron};
use crate::params::{FireReset, NeuronError};
use crate::spiking::leaky_charge;

/// SpikingJelly's checks: `v_threshold > 0` and `-v_threshold < v_reset < v_threshold`.
fn check_ternary(neuron: &'static str, fire: &FireReset) -> Result<(), NeuronError> {
    let thr = fire.v_threshold;
    require(thr > 0.0, neuron, "v_threshold", thr, "must be > 0")?;
    if let Some(vr) = fire.v_reset {
        require(
            -thr < vr && vr < thr,
            neuron,
            "v_reset",
            vr,
            "must lie strictly between -v_threshold and v_threshold",
        )?;
    }
    Ok(())
}

/// Fires the signed spike of `h` and resets: `(spike, next v)`.
fn ternary_fire<'b>(fire: &FireReset, h: Expr<'b>) -> (Expr<'b>, Expr<'b>) {
    let thr = fire.v_threshold;
    let p = fire.spike_of(h - thr);
    let n = fire.spike_of(-h - thr);
    let s = p - n;
    // A hard reset follows either spike; its event keeps both branches' gradients.
    let event = if fire.v_reset.is_some() { p + n } else { s };
    (s, fire.reset(h, event, thr))
}

zoo_neuron! {
    /// Ternary IF: `h = v + x`, spikes −1/0/1.
    TernaryIFNode {}
    fire: FireReset::default(),
    fire_keys: ["v_threshold", "v_reset", "detach_reset", "surrogate"],
}

impl TernaryIFNode {
    fn check(&self) -> Result<(), NeuronError> {
        check_ternary(Self::CLASS, &self.fire)
    }

    /// The step graph: input `x`, state `v`, output `spike` (−1, 0 or 1).
    pub fn step_graph(&self) -> Result<StepGraph, BuildError> {
        v_graph(
            Self::CLASS,
            "h = v + x; s = sg(h - v_threshold) - sg(-h - v_threshold)",
            &self.param_values(),
            self.fire.initial_v(),
            |_, x, v| ternary_fire(&self.fire, v + x),
        )
    }
}

zoo_neuron! {
    /// Ternary LIF: LIF's charge, spikes −1/0/1.
    TernaryLIFNode {
        /// Membrane time constant (default 2.0; must be > 1).
        tau: f64 = 2.0, "membrane time constant (> 1)";
        /// Whether the input is divided by `tau` too (default true).
        decay_input: bool = true, "divide the input by tau too";
    }
    fire: FireReset::default(),
    fire_keys: ["v_threshold", "v_reset", "detach_reset", "surrogate"],
}

impl TernaryLIFNode {
    fn check(&self) -> Result<(), NeuronError> {
        require_tau(Self::CLASS, "tau", self.tau)?;
        check_ternary(Self::CLASS, &self.fire)
    }

    /// The step graph: input `x`, state `v`, output `spike` (−1, 0 or 1).
    pub fn step_graph(&self) -> Result<StepGraph, BuildError> {
        v_graph(
            Self::CLASS,
            "h = LIF charge; s = sg(h - v_threshold) - sg(-h - v_threshold)",
            &self.param_values(),
            self.fire.initial_v(),
            |_, x, v| {
                let tau = self.tau as f32;
                let h = leaky_charge(self.decay_input, x, v, self.fire.vr(), |e| e / tau);
                ternary_fire(&self.fire, h)
            },
        )
    }
}
