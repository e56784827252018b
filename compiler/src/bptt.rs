//! Forward and backward drivers shared by the interpreter and every backend.
//!
//! A backend only runs [`ScanKernel`]s. These drivers turn "forward, then backward with these
//! upstream gradients" into scans: they build the backward kernel's inputs (the previous-state
//! sequences, the upstream gradients), start its carried gradients from the final-state
//! gradients, and reduce per-neuron parameter-gradient contributions in a fixed order, so the
//! result does not depend on how a backend splits the work.

use crate::autodiff::{BackwardGraph, GradSpec};
use crate::error::BuildError;
use crate::ir::{ParamKind, StateInit, StepGraph};
use crate::num::Real;
use crate::scan::{ScanArgs, ScanKernel, ScanResult, ShapeError};

/// Errors of running a forward or backward pass.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("state `{0}` has no default initial value (declared `runtime`): supply it")]
    MissingInitialState(String),
    #[error(
        "backward needs the state sequences of the forward pass; run forward with state sequences"
    )]
    MissingStateSeqs,
}

/// Upstream gradients of a loss w.r.t. what forward returned; `None` means zero.
#[derive(Clone, Debug)]
pub struct Upstream<'a, F> {
    /// Per output: `[T, N]`.
    pub outputs: Vec<Option<&'a [F]>>,
    /// Per state: gradient w.r.t. its sequence, `[T, N]`.
    pub state_seqs: Vec<Option<&'a [F]>>,
    /// Per state: gradient w.r.t. its final value, `[N]`.
    pub final_states: Vec<Option<&'a [F]>>,
}

impl<'a, F> Upstream<'a, F> {
    /// No upstream gradients at all (every gradient will be zero).
    pub fn none(g: &StepGraph) -> Self {
        Upstream {
            outputs: vec![None; g.outputs().len()],
            state_seqs: vec![None; g.states().len()],
            final_states: vec![None; g.states().len()],
        }
    }

    /// Which gradients are present, i.e. which backward graph is needed.
    pub fn spec(&self) -> GradSpec {
        GradSpec {
            output_grads: self.outputs.iter().map(Option::is_some).collect(),
            state_seq_grads: self.state_seqs.iter().map(Option::is_some).collect(),
        }
    }

    /// Checks counts and lengths for a `[T, N]` run of `g`.
    pub fn check(&self, g: &StepGraph, t: usize, n: usize) -> Result<(), ShapeError> {
        let count = |what, expected: usize, got: usize| {
            if expected == got {
                Ok(())
            } else {
                Err(ShapeError::Count {
                    what,
                    expected,
                    got,
                })
            }
        };
        count("output gradients", g.outputs().len(), self.outputs.len())?;
        count(
            "state-sequence gradients",
            g.states().len(),
            self.state_seqs.len(),
        )?;
        count(
            "final-state gradients",
            g.states().len(),
            self.final_states.len(),
        )?;
        let len = |name: String, shape: String, expected: usize, got: Option<&[F]>| match got {
            Some(x) if x.len() != expected => Err(ShapeError::Len {
                name,
                shape,
                expected,
                got: x.len(),
            }),
            _ => Ok(()),
        };
        for (d, x) in g.outputs().iter().zip(&self.outputs) {
            len(
                format!("grad of {}", d.name),
                format!("[T={t}, N={n}]"),
                t * n,
                *x,
            )?;
        }
        for (d, x) in g.states().iter().zip(&self.state_seqs) {
            len(
                format!("grad of {} sequence", d.name),
                format!("[T={t}, N={n}]"),
                t * n,
                *x,
            )?;
        }
        for (d, x) in g.states().iter().zip(&self.final_states) {
            len(
                format!("grad of final {}", d.name),
                format!("[N={n}]"),
                n,
                *x,
            )?;
        }
        Ok(())
    }
}

/// Gradients of the loss w.r.t. everything forward took.
#[derive(Clone, Debug, PartialEq)]
pub struct Gradients<F> {
    /// Per input sequence: `[T, N]`.
    pub inputs: Vec<Vec<F>>,
    /// Per state: gradient w.r.t. its initial value, `[N]`.
    pub init_states: Vec<Vec<F>>,
    /// Per param: `Some` (shaped like the param) for learnable params, `None` otherwise.
    pub params: Vec<Option<Vec<F>>>,
}

/// The initial states a graph declares, for `n` neurons. Errors for `runtime` states.
pub fn default_init_states<F: Real>(g: &StepGraph, n: usize) -> Result<Vec<Vec<F>>, ExecError> {
    g.states()
        .iter()
        .map(|d| match d.init {
            StateInit::Const(c) => Ok(vec![F::from_f32(c); n]),
            StateInit::Runtime => Err(ExecError::MissingInitialState(d.name.clone())),
        })
        .collect()
}

/// Runs backward: `bwd` must be `autodiff::backward(fwd, &upstream.spec())`; `args` are the
/// forward call's arguments and `state_seqs` the forward state sequences (`[T, N]` each).
/// `run` executes one scan (interpreter, CPU, CUDA...).
pub fn backward<F: Real, E: From<ExecError>>(
    fwd: &StepGraph,
    bwd: &BackwardGraph,
    args: &ScanArgs<'_, F>,
    state_seqs: &[&[F]],
    upstream: &Upstream<'_, F>,
    run: impl FnOnce(&ScanKernel, &ScanArgs<'_, F>) -> Result<ScanResult<F>, E>,
) -> Result<Gradients<F>, E> {
    let (t, n) = (args.t, args.n);
    args.check(fwd).map_err(ExecError::from)?;
    upstream.check(fwd, t, n).map_err(ExecError::from)?;
    assert_eq!(
        bwd.spec,
        upstream.spec(),
        "backward graph built for other upstream gradients"
    );
    if state_seqs.len() != fwd.states().len() || state_seqs.iter().any(|s| s.len() != t * n) {
        return Err(ExecError::MissingStateSeqs.into());
    }

    // sprev_j at step t: the initial state at t = 0, else the state after step t - 1.
    let prev: Vec<Vec<F>> = args
        .init_states
        .iter()
        .zip(state_seqs)
        .map(|(s0, seq)| {
            let mut p = Vec::with_capacity(t * n);
            if t > 0 {
                p.extend_from_slice(s0);
                p.extend_from_slice(&seq[..(t - 1) * n]);
            }
            p
        })
        .collect();
    let zeros_n = vec![F::zero(); n];
    let mut inputs: Vec<&[F]> = args.inputs.clone();
    inputs.extend(prev.iter().map(Vec::as_slice));
    inputs.extend(upstream.outputs.iter().flatten().copied());
    inputs.extend(upstream.state_seqs.iter().flatten().copied());
    let carries: Vec<&[F]> = upstream
        .final_states
        .iter()
        .map(|g| g.unwrap_or(&zeros_n))
        .collect();
    let bargs = ScanArgs {
        t,
        n,
        inputs,
        init_states: carries,
        params: args.params.clone(),
    };
    let r = run(&bwd.kernel, &bargs)?;
    Ok(collect_gradients(fwd, bwd, r, t, n))
}

/// Splits a backward scan's results into [`Gradients`], reducing parameter contributions:
/// shared params over neurons, per-time params over neurons per step, both in index order with
/// an `f64` accumulator (deterministic and independent of how the scan was split).
pub fn collect_gradients<F: Real>(
    fwd: &StepGraph,
    bwd: &BackwardGraph,
    mut r: ScanResult<F>,
    t: usize,
    n: usize,
) -> Gradients<F> {
    let ni = fwd.inputs().len();
    let params = fwd
        .params()
        .iter()
        .zip(&bwd.param_grad_outputs)
        .map(|(d, slot)| {
            slot.map(|o| {
                let contrib = std::mem::take(&mut r.outputs[o]);
                match d.kind {
                    ParamKind::PerNeuron => contrib,
                    ParamKind::Shared => vec![sum(&contrib)],
                    ParamKind::PerTime => (0..t)
                        .map(|ti| sum(&contrib[ti * n..(ti + 1) * n]))
                        .collect(),
                }
            })
        })
        .collect();
    r.outputs.truncate(ni);
    Gradients {
        inputs: r.outputs,
        init_states: r.final_states,
        params,
    }
}

fn sum<F: Real>(xs: &[F]) -> F {
    F::from_f64(xs.iter().map(|x| x.to_f64()).sum())
}
