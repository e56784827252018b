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
    /// Wrong argument counts or lengths.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// The graph is invalid.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A `runtime` state without a given initial value.
    #[error("state `{0}` has no default initial value (declared `runtime`): supply it")]
    MissingInitialState(String),
    /// Backward without the forward's state sequences.
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
        let count = ShapeError::check_count;
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
        // An absent gradient is zero: nothing to check.
        let len = |name: String, shape: String, expected: usize, got: Option<&[F]>| match got {
            Some(x) => ShapeError::check_len(name, shape, expected, x.len()),
            None => Ok(()),
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
///
/// It copies each state's initial value and sequence into one previous-state sequence; a caller
/// that already stores them that way calls [`backward_from_prev`] instead.
pub fn backward<F: Real, E: From<ExecError>>(
    fwd: &StepGraph,
    bwd: &BackwardGraph,
    args: &ScanArgs<'_, F>,
    state_seqs: &[&[F]],
    upstream: &Upstream<'_, F>,
    run: impl FnOnce(&ScanKernel, &ScanArgs<'_, F>) -> Result<ScanResult<F>, E>,
) -> Result<Gradients<F>, E> {
    let (t, n) = (args.t, args.n);
    if state_seqs.len() != fwd.states().len() || state_seqs.iter().any(|s| s.len() != t * n) {
        // Not sliceable: `backward_from_prev` reports it, after any error in the arguments.
        return backward_from_prev(fwd, bwd, args, state_seqs, upstream, run);
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
    let prev: Vec<&[F]> = prev.iter().map(Vec::as_slice).collect();
    backward_from_prev(fwd, bwd, args, &prev, upstream, run)
}

/// [`backward`] without copying the state sequences: `prev_states[j]` is state `j` before each
/// step, `[T, N]`: the initial state, then the state after steps `0..T-1`. A backend that keeps
/// each state in a `[(T+1), N]` buffer whose first row is the initial state passes rows `0..T`.
/// `run` may fill buffers of its own (its result is taken apart, not copied).
///
/// The backward scan's inputs are the forward inputs, the previous states and the present
/// upstream gradients; its carried gradients start at the final-state gradients (zero when
/// absent); its params are the forward params.
pub fn backward_from_prev<F: Real, E: From<ExecError>>(
    fwd: &StepGraph,
    bwd: &BackwardGraph,
    args: &ScanArgs<'_, F>,
    prev_states: &[&[F]],
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
    if prev_states.len() != fwd.states().len() || prev_states.iter().any(|s| s.len() != t * n) {
        return Err(ExecError::MissingStateSeqs.into());
    }
    let zeros_n = vec![F::zero(); n];
    let mut inputs: Vec<&[F]> = args.inputs.clone();
    inputs.extend_from_slice(prev_states);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autodiff;
    use crate::dsl::CoreBuilder;
    use crate::interp::run_scan;
    use crate::random::{
        RandomGraphConfig, random_graph, random_inputs, random_upstream, scan_args,
    };

    fn interp(k: &ScanKernel, a: &ScanArgs<'_, f32>) -> Result<ScanResult<f32>, ExecError> {
        Ok(run_scan(k, a)?)
    }

    /// Per state, a `[(T+1), N]` buffer: the initial state, then the sequence (as the runtime
    /// keeps them).
    fn state_buffers(init: &[Vec<f32>], seqs: &[Vec<f32>]) -> Vec<Vec<f32>> {
        init.iter()
            .zip(seqs)
            .map(|(s0, seq)| s0.iter().chain(seq).copied().collect())
            .collect()
    }

    #[test]
    fn leaky_integrator_by_hand() {
        // v' = a * v + x, y = v'; T = 3, N = 1, a = 0.5, v0 = 1, x = 1, 2, 3, dL/dy = 1.
        // v = 1.5, 2.75, 4.375; dL/dv3 = 1, dL/dv2 = 1.5, dL/dv1 = 1.75, dL/dv0 = 0.875;
        // dL/da = 1.75 * 1 + 1.5 * 1.5 + 1 * 2.75 = 6.75.
        let b = CoreBuilder::new("leaky");
        let x = b.input("x");
        let v = b.state("v", StateInit::Runtime);
        let a = b.param("a", ParamKind::Shared, true);
        let next = a * v + x;
        b.output("y", next);
        b.set_state("v", next);
        let g = b.build().unwrap();
        let (xs, v0, pa) = ([1.0f32, 2.0, 3.0], [1.0f32], [0.5f32]);
        let args = ScanArgs {
            t: 3,
            n: 1,
            inputs: vec![&xs],
            init_states: vec![&v0],
            params: vec![&pa],
        };
        let f = run_scan(&ScanKernel::forward(g.clone(), true), &args).unwrap();
        assert_eq!(f.state_seqs[0], [1.5, 2.75, 4.375]);
        let gy = [1.0f32; 3];
        let mut up = Upstream::none(&g);
        up.outputs[0] = Some(&gy);
        let bwd = autodiff::backward(&g, &up.spec()).unwrap();
        let seqs: Vec<&[f32]> = f.state_seqs.iter().map(Vec::as_slice).collect();
        let want = Gradients {
            inputs: vec![vec![1.75, 1.5, 1.0]],
            init_states: vec![vec![0.875]],
            params: vec![Some(vec![6.75])],
        };
        assert_eq!(backward(&g, &bwd, &args, &seqs, &up, interp).unwrap(), want);
        let prev = [1.0f32, 1.5, 2.75];
        let got = backward_from_prev(&g, &bwd, &args, &[&prev], &up, |k, a| {
            // The backward scan sees: x, then v before each step, then dL/dy.
            assert_eq!(a.inputs, [&xs[..], &prev[..], &gy[..]]);
            assert_eq!(a.init_states, [&[0.0f32][..]]);
            interp(k, a)
        });
        assert_eq!(got.unwrap(), want);
    }

    #[test]
    fn from_prev_matches_the_copying_driver() {
        let cfg = RandomGraphConfig::smooth();
        let (t, n) = (6, 3);
        for seed in 0..40 {
            let g = random_graph(seed, &cfg);
            let data = random_inputs(seed, &g, t, n);
            let args = scan_args(t, n, &data);
            let f = run_scan(&ScanKernel::forward(g.clone(), true), &args).unwrap();
            // Upstream gradients for some outputs, state sequences and final states.
            let drawn = random_upstream(seed, &g, t, n);
            let up = drawn.upstream();
            let bwd = autodiff::backward(&g, &up.spec()).unwrap();
            let seqs: Vec<&[f32]> = f.state_seqs.iter().map(Vec::as_slice).collect();
            let want = backward(&g, &bwd, &args, &seqs, &up, interp).unwrap();
            let bufs = state_buffers(&data.1, &f.state_seqs);
            let prev: Vec<&[f32]> = bufs.iter().map(|b| &b[..t * n]).collect();
            let got = backward_from_prev(&g, &bwd, &args, &prev, &up, interp).unwrap();
            assert_eq!(got, want, "seed {seed}");
        }
    }

    #[test]
    fn missing_or_short_state_sequences_are_errors() {
        let g = random_graph(3, &RandomGraphConfig::smooth());
        assert!(!g.inputs().is_empty() && !g.states().is_empty());
        let (t, n) = (4, 2);
        let data = random_inputs(3, &g, t, n);
        let args = scan_args(t, n, &data);
        let up = Upstream::none(&g);
        let bwd = autodiff::backward(&g, &up.spec()).unwrap();
        let short = vec![0.0f32; t * n - 1];
        let bad: Vec<&[f32]> = g.states().iter().map(|_| &short[..]).collect();
        for seqs in [&[][..], &bad[..]] {
            assert_eq!(
                backward(&g, &bwd, &args, seqs, &up, interp),
                Err(ExecError::MissingStateSeqs)
            );
            assert_eq!(
                backward_from_prev(&g, &bwd, &args, seqs, &up, interp),
                Err(ExecError::MissingStateSeqs)
            );
            // A wrong argument is reported first, by both drivers.
            let mut wrong = args.clone();
            wrong.inputs[0] = &short;
            assert!(matches!(
                backward(&g, &bwd, &wrong, seqs, &up, interp),
                Err(ExecError::Shape(_))
            ));
            assert!(matches!(
                backward_from_prev(&g, &bwd, &wrong, seqs, &up, interp),
                Err(ExecError::Shape(_))
            ));
        }
    }
}
