//! Forward and backward passes of a step graph on the interpreter: the reference results for
//! training (autodiff's backward graph run as reverse scans by [`crate::bptt`]).

use crate::bptt::{ExecError, Gradients, Upstream};
use crate::interp::run_scan;
use crate::ir::StepGraph;
use crate::ir::num::Real;
use crate::scan::{ScanArgs, ScanKernel, ScanResult};

/// Runs the forward pass of `g` in the interpreter (every output as a `[T, N]` sequence; state
/// sequences if asked — backward needs them).
pub fn forward<F: Real>(
    g: &StepGraph,
    args: &ScanArgs<'_, F>,
    state_seqs: bool,
) -> Result<ScanResult<F>, ExecError> {
    Ok(run_scan(&ScanKernel::forward(g.clone(), state_seqs), args)?)
}

/// Runs the backward pass of `g` in the interpreter: the gradients of a loss whose upstream
/// gradients are `upstream`, given the forward arguments and the forward state sequences.
pub fn backward<F: Real>(
    g: &StepGraph,
    args: &ScanArgs<'_, F>,
    state_seqs: &[&[F]],
    upstream: &Upstream<'_, F>,
) -> Result<Gradients<F>, ExecError> {
    upstream.check(g, args.t, args.n)?;
    let bwd = crate::autodiff::backward(g, &upstream.spec())?;
    crate::bptt::backward(g, &bwd, args, state_seqs, upstream, |k, a| {
        run_scan(k, a).map_err(ExecError::from)
    })
}
