//! The interpreter: the oracle every backend is tested against.
//!
//! It evaluates a step graph node by node, one neuron and one time step at a time, in `f32` or
//! `f64`, with the op semantics of [`crate::ir::eval`]. It is meant to be obviously right, not
//! fast, and depends on nothing but the IR and the scan's ABI. Forward and backward passes of a
//! whole neuron (autodiff, then backward scans run here) are in [`crate::oracle`].

pub use crate::ir::eval::{eval_op, eval_step};
use crate::ir::num::Real;
use crate::scan::{ScanArgs, ScanKernel, ScanResult, ShapeError, drive};

/// Runs a scan in the interpreter. Arguments are checked first.
pub fn run_scan<F: Real>(
    kernel: &ScanKernel,
    args: &ScanArgs<'_, F>,
) -> Result<ScanResult<F>, ShapeError> {
    drive(kernel, args, |op, a| eval_op(op, a))
}
