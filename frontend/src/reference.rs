//! Plain-`f32` evaluation for the reference functions the `#[neuron]` macro generates
//! (`reference_step`): each op computes exactly what the interpreter computes, so a reference
//! step and the interpreter agree bit for bit, and compiled kernels can be compared with either.

use flexsn_ir::Op;
use flexsn_ir::eval::eval_op;

/// `op(args)` with the interpreter's `f32` semantics (for `Spike`, the Heaviside step).
pub fn op(op: Op, args: &[f32]) -> f32 {
    eval_op::<f32>(&op, args)
}

/// The spike of surrogate `name` (parameters by name, others default) at `x`: `Θ(x)` (1 for
/// `x >= 0`, else 0; NaN gives 0), or the count of `MultiLevelSpikeCount`
/// ([`flexsn_ir::Surrogate::forward`]). NaN when the surrogate or its parameters are invalid (building the
/// graph reports why).
pub fn spike(name: &str, params: &[(&str, f32)], x: f32) -> f32 {
    crate::lower::Lowerer::surrogate(name, params).map_or(f32::NAN, |s| s.forward(x))
}

/// The smooth primitive of surrogate `name` (parameters by name, others default) at `x`.
/// NaN when the surrogate or its parameters are invalid (building the graph reports why).
pub fn primitive(name: &str, params: &[(&str, f32)], x: f32) -> f32 {
    crate::lower::Lowerer::surrogate(name, params)
        .and_then(|s| crate::lower::Lowerer::fold_primitive(s, x))
        .unwrap_or(f32::NAN)
}
