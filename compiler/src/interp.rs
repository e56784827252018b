//! The interpreter: the oracle every backend is tested against.
//!
//! It evaluates a step graph node by node, one neuron and one time step at a time, in `f32` or
//! `f64`. It is meant to be obviously right, not fast.

use crate::bptt::{ExecError, Gradients, Upstream};
use crate::ir::{Op, ParamKind, StepGraph};
use crate::num::Real;
use crate::scan::{Direction, OutputMode, ScanArgs, ScanKernel, ScanResult, ShapeError};

/// Evaluates one op on already evaluated operands.
pub fn eval_op<F: Real>(op: &Op, a: &[F]) -> F {
    let b01 = |c: bool| if c { F::one() } else { F::zero() };
    let truthy = |x: F| x != F::zero();
    match *op {
        Op::Input(_) | Op::State(_) | Op::Param(_) => {
            unreachable!("leaves are read by the scan, not evaluated")
        }
        Op::Const(c) => F::from_f32(c),
        Op::Neg => -a[0],
        Op::Reciprocal => F::one() / a[0],
        Op::Exp => a[0].exp(),
        Op::Log => a[0].ln(),
        Op::Log2 => a[0].log2(),
        Op::Sqrt => a[0].sqrt(),
        Op::Rsqrt => F::one() / a[0].sqrt(),
        Op::Tanh => a[0].tanh(),
        Op::Sin => a[0].sin(),
        Op::Cos => a[0].cos(),
        Op::Erf => a[0].erf(),
        Op::Atan => a[0].atan(),
        Op::Floor => a[0].floor(),
        Op::Ceil => a[0].ceil(),
        Op::Round => a[0].round_ties_even(),
        // NaN passes through (as `torch.relu`); -0 and negatives give +0.
        Op::Relu => {
            if a[0] > F::zero() || a[0].is_nan() {
                a[0]
            } else {
                F::zero()
            }
        }
        Op::Sigmoid => a[0].sigmoid(),
        Op::Sign => {
            if a[0].is_nan() {
                a[0]
            } else {
                b01(a[0] > F::zero()) - b01(a[0] < F::zero())
            }
        }
        Op::Abs => a[0].abs(),
        Op::Not => b01(!truthy(a[0])),
        Op::Add => a[0] + a[1],
        Op::Sub => a[0] - a[1],
        Op::Mul => a[0] * a[1],
        Op::Div => a[0] / a[1],
        Op::Pow => a[0].powf(a[1]),
        Op::Fmod => a[0].fmod(a[1]),
        Op::Min => a[0].min_nan(a[1]),
        Op::Max => a[0].max_nan(a[1]),
        Op::Eq => b01(a[0] == a[1]),
        Op::Ne => b01(a[0] != a[1]),
        Op::Lt => b01(a[0] < a[1]),
        Op::Le => b01(a[0] <= a[1]),
        Op::Gt => b01(a[0] > a[1]),
        Op::Ge => b01(a[0] >= a[1]),
        Op::And => b01(truthy(a[0]) && truthy(a[1])),
        Op::Or => b01(truthy(a[0]) || truthy(a[1])),
        Op::Clamp => a[0].max_nan(a[1]).min_nan(a[2]),
        Op::Select => {
            if truthy(a[0]) {
                a[1]
            } else {
                a[2]
            }
        }
        Op::Spike(s) => s.forward(a[0]),
        Op::Detach => a[0],
    }
}

/// Evaluates one step for one neuron: `values` receives every node's value (index order).
/// Leaves read `inputs`, `states` and `params` (already indexed for this neuron and step).
pub fn eval_step<F: Real>(
    g: &StepGraph,
    inputs: &[F],
    states: &[F],
    params: &[F],
    values: &mut Vec<F>,
) {
    values.clear();
    let mut args = Vec::with_capacity(3);
    for (_, node) in g.nodes() {
        let v = match node.op {
            Op::Input(i) => inputs[i as usize],
            Op::State(i) => states[i as usize],
            Op::Param(i) => params[i as usize],
            ref op => {
                args.clear();
                args.extend(node.args.iter().map(|a| values[a.index()]));
                eval_op(op, &args)
            }
        };
        values.push(v);
    }
}

/// Runs a scan in the interpreter. Arguments are checked first.
pub fn run_scan<F: Real>(
    kernel: &ScanKernel,
    args: &ScanArgs<'_, F>,
) -> Result<ScanResult<F>, ShapeError> {
    let g = &kernel.graph;
    args.check(g)?;
    let (t_len, n_len) = (args.t, args.n);
    let mut outputs: Vec<Vec<F>> = (0..g.outputs().len())
        .map(|o| vec![F::zero(); kernel.output_len(o, t_len, n_len)])
        .collect();
    let mut state_seqs: Vec<Vec<F>> = if kernel.state_seqs {
        vec![vec![F::zero(); t_len * n_len]; g.states().len()]
    } else {
        vec![]
    };
    let mut final_states = vec![vec![F::zero(); n_len]; g.states().len()];

    let mut values = Vec::with_capacity(g.len());
    let mut x = vec![F::zero(); g.inputs().len()];
    let mut p = vec![F::zero(); g.params().len()];
    let steps: Vec<usize> = match kernel.direction {
        Direction::Forward => (0..t_len).collect(),
        Direction::Reverse => (0..t_len).rev().collect(),
    };
    for n in 0..n_len {
        let mut s: Vec<F> = args.init_states.iter().map(|s0| s0[n]).collect();
        for &t in &steps {
            for (xi, seq) in x.iter_mut().zip(&args.inputs) {
                *xi = seq[t * n_len + n];
            }
            for ((pk, decl), vals) in p.iter_mut().zip(g.params()).zip(&args.params) {
                *pk = match decl.kind {
                    ParamKind::Shared => vals[0],
                    ParamKind::PerNeuron => vals[n],
                    ParamKind::PerTime => vals[t],
                };
            }
            eval_step(g, &x, &s, &p, &mut values);
            for (o, decl) in g.outputs().iter().enumerate() {
                let v = values[decl.value.index()];
                match kernel.output_modes[o] {
                    OutputMode::Sequence => outputs[o][t * n_len + n] = v,
                    OutputMode::SumOverTime => outputs[o][n] = outputs[o][n] + v,
                }
            }
            for (j, next) in g.next_states().iter().enumerate() {
                s[j] = values[next.index()];
                if kernel.state_seqs {
                    state_seqs[j][t * n_len + n] = s[j];
                }
            }
        }
        for (j, sj) in s.into_iter().enumerate() {
            final_states[j][n] = sj;
        }
    }
    Ok(ScanResult {
        outputs,
        state_seqs,
        final_states,
    })
}

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
