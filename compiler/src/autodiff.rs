//! Reverse-mode automatic differentiation of a step graph.
//!
//! The forward step is `(x_t, s_{t-1}, p) -> (y_t, s_t)`. Its vector-Jacobian product is again a
//! step graph, `(x_t, s_{t-1}, gy_t, gseq_t; carry_t, p) -> (gx_t, gp_t; carry_{t-1})`, run as a
//! reverse scan whose state `carry` is the gradient w.r.t. the state after step `t`. The forward
//! step is recomputed inside it from the saved previous states (the default saving policy:
//! keep the state sequence, recompute the step).
//!
//! Every op's rule lives in one exhaustive `match` in `vjp`, so a new op cannot compile
//! without its rule. Rules follow PyTorch's derivative formulas (e.g. `maximum` splits the
//! gradient on ties, `clamp` passes it where `lo < x < hi`).

use std::collections::HashMap;

use crate::error::BuildError;
use crate::ir::builder::GraphBuilder;
use crate::ir::{Op, ParamKind, StateInit, StepGraph, Surrogate, ValueId};
use crate::scan::{Direction, OutputMode, ScanKernel};

/// Which upstream gradients exist. Absent ones are zero and cost nothing in the backward kernel.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GradSpec {
    /// Per forward output: whether an upstream gradient sequence `[T, N]` is given.
    pub output_grads: Vec<bool>,
    /// Per forward state: whether an upstream gradient for its sequence `[T, N]` is given.
    pub state_seq_grads: Vec<bool>,
}

impl GradSpec {
    /// Upstream gradients for every output and every state sequence.
    pub fn all(g: &StepGraph) -> Self {
        GradSpec {
            output_grads: vec![true; g.outputs().len()],
            state_seq_grads: vec![true; g.states().len()],
        }
    }

    /// Upstream gradients for every output only.
    pub fn outputs_only(g: &StepGraph) -> Self {
        GradSpec {
            output_grads: vec![true; g.outputs().len()],
            state_seq_grads: vec![false; g.states().len()],
        }
    }
}

/// The backward pass of a step graph, scheduled as a reverse scan.
///
/// Layout of `kernel.graph`:
/// - inputs: `x_0..x_{I-1}`, then `sprev_0..sprev_{S-1}` (state `j` before step `t`), then one
///   upstream gradient per output with `spec.output_grads[o]`, then one per state sequence with
///   `spec.state_seq_grads[j]`;
/// - states: one carried gradient per forward state (initial value: the gradient of the final
///   state, or zero); the scan's final states are the gradients of the initial states;
/// - params: the forward params (none learnable in this graph);
/// - outputs: `gx_i` for every forward input (sequences), then one per learnable forward param
///   (summed over time for shared and per-neuron params, a sequence for per-time params).
#[derive(Clone, Debug)]
pub struct BackwardGraph {
    /// The reverse scan.
    pub kernel: ScanKernel,
    /// Which upstream gradients it takes.
    pub spec: GradSpec,
    /// Backward-graph input index of each output's upstream gradient.
    pub grad_output_inputs: Vec<Option<usize>>,
    /// Backward-graph input index of each state sequence's upstream gradient.
    pub grad_state_seq_inputs: Vec<Option<usize>>,
    /// Backward-graph output index of each forward param's gradient (learnable params only).
    pub param_grad_outputs: Vec<Option<usize>>,
}

/// Picks a name not already used in the builder's declarations.
fn fresh(taken: &mut Vec<String>, base: String) -> String {
    let mut name = base.clone();
    let mut k = 1;
    while taken.contains(&name) {
        name = format!("{base}_{k}");
        k += 1;
    }
    taken.push(name.clone());
    name
}

/// Builds the backward step graph of `fwd` for the upstream gradients in `spec`.
pub fn backward(fwd: &StepGraph, spec: &GradSpec) -> Result<BackwardGraph, BuildError> {
    let (ni, ns) = (fwd.inputs().len(), fwd.states().len());
    assert_eq!(
        spec.output_grads.len(),
        fwd.outputs().len(),
        "GradSpec/graph mismatch"
    );
    assert_eq!(spec.state_seq_grads.len(), ns, "GradSpec/graph mismatch");

    let mut b = GraphBuilder::new(format!("{}_grad", fwd.name()));
    b.set_description(format!("backward of `{}`", fwd.name()));
    let mut taken: Vec<String> = fwd
        .inputs()
        .iter()
        .map(|d| d.name.clone())
        .chain(fwd.states().iter().map(|d| d.name.clone()))
        .chain(fwd.params().iter().map(|d| d.name.clone()))
        .chain(fwd.outputs().iter().map(|d| d.name.clone()))
        .collect();

    // Declarations.
    let mut x_leaf = Vec::with_capacity(ni);
    for d in fwd.inputs() {
        x_leaf.push(b.add_input(&d.name)?);
    }
    let mut sprev_leaf = Vec::with_capacity(ns);
    for d in fwd.states() {
        let name = fresh(&mut taken, format!("{}_prev", d.name));
        sprev_leaf.push(b.add_input(&name)?);
    }
    let mut input_count = ni + ns;
    let mut grad_output_inputs = vec![None; fwd.outputs().len()];
    let mut gy_leaf = vec![None; fwd.outputs().len()];
    for (o, d) in fwd.outputs().iter().enumerate() {
        if spec.output_grads[o] {
            let name = fresh(&mut taken, format!("grad_{}", d.name));
            gy_leaf[o] = Some(b.add_input(&name)?);
            grad_output_inputs[o] = Some(input_count);
            input_count += 1;
        }
    }
    let mut grad_state_seq_inputs = vec![None; ns];
    let mut gseq_leaf = vec![None; ns];
    for (j, d) in fwd.states().iter().enumerate() {
        if spec.state_seq_grads[j] {
            let name = fresh(&mut taken, format!("grad_{}_seq", d.name));
            gseq_leaf[j] = Some(b.add_input(&name)?);
            grad_state_seq_inputs[j] = Some(input_count);
            input_count += 1;
        }
    }
    let mut carry_leaf = Vec::with_capacity(ns);
    for d in fwd.states() {
        let name = fresh(&mut taken, format!("grad_{}", d.name));
        carry_leaf.push(b.add_state(&name, StateInit::Runtime)?);
    }
    let mut p_leaf = Vec::with_capacity(fwd.params().len());
    for d in fwd.params() {
        p_leaf.push(b.add_param(&d.name, d.kind, false)?);
    }

    // Recompute the forward step.
    let mut fv: Vec<ValueId> = Vec::with_capacity(fwd.len());
    for (_, node) in fwd.nodes() {
        let v = match node.op {
            Op::Input(i) => x_leaf[i as usize],
            Op::State(j) => sprev_leaf[j as usize],
            Op::Param(k) => p_leaf[k as usize],
            op => {
                let args: Vec<ValueId> = node.args.iter().map(|a| fv[a.index()]).collect();
                b.op(op, &args)?
            }
        };
        fv.push(v);
    }

    // Seed adjoints.
    let mut adj: HashMap<usize, ValueId> = HashMap::new();
    for (o, d) in fwd.outputs().iter().enumerate() {
        if let Some(gy) = gy_leaf[o] {
            acc(&mut b, &mut adj, d.value.index(), gy)?;
        }
    }
    for (j, next) in fwd.next_states().iter().enumerate() {
        let g = match gseq_leaf[j] {
            Some(gs) => b.op(Op::Add, &[carry_leaf[j], gs])?,
            None => carry_leaf[j],
        };
        acc(&mut b, &mut adj, next.index(), g)?;
    }

    // Reverse sweep.
    let mut gx: Vec<Option<ValueId>> = vec![None; ni];
    let mut gs_prev: Vec<Option<ValueId>> = vec![None; ns];
    let mut gp: Vec<Option<ValueId>> = vec![None; fwd.params().len()];
    let nodes: Vec<_> = fwd.nodes().map(|(v, n)| (v, n.clone())).collect();
    for (v, node) in nodes.into_iter().rev() {
        let Some(g) = adj.get(&v.index()).copied() else {
            continue;
        };
        match node.op {
            Op::Input(i) => gx[i as usize] = Some(g),
            Op::State(j) => gs_prev[j as usize] = Some(g),
            Op::Param(k) => gp[k as usize] = Some(g),
            op => {
                let args: Vec<ValueId> = node.args.iter().map(|a| fv[a.index()]).collect();
                let grads = vjp(&mut b, op, &args, fv[v.index()], g)?;
                for (a, ga) in node.args.iter().zip(grads) {
                    if let Some(ga) = ga {
                        acc(&mut b, &mut adj, a.index(), ga)?;
                    }
                }
            }
        }
    }

    // Outputs and next states.
    let zero = b.constant(0.0);
    let mut output_modes = Vec::new();
    for (i, d) in fwd.inputs().iter().enumerate() {
        let name = fresh(&mut taken, format!("grad_{}", d.name));
        b.add_output(&name, gx[i].unwrap_or(zero))?;
        output_modes.push(OutputMode::Sequence);
    }
    let mut param_grad_outputs = vec![None; fwd.params().len()];
    for (k, d) in fwd.params().iter().enumerate() {
        if d.learnable {
            let name = fresh(&mut taken, format!("grad_{}", d.name));
            b.add_output(&name, gp[k].unwrap_or(zero))?;
            param_grad_outputs[k] = Some(output_modes.len());
            output_modes.push(match d.kind {
                ParamKind::Shared | ParamKind::PerNeuron => OutputMode::SumOverTime,
                ParamKind::PerTime => OutputMode::Sequence,
            });
        }
    }
    for (j, g) in gs_prev.iter().enumerate() {
        b.set_next_state(j, g.unwrap_or(zero))?;
    }
    let graph = crate::passes::optimize(&b.finish()?);
    Ok(BackwardGraph {
        kernel: ScanKernel {
            graph,
            direction: Direction::Reverse,
            output_modes,
            state_seqs: false,
        },
        spec: spec.clone(),
        grad_output_inputs,
        grad_state_seq_inputs,
        param_grad_outputs,
    })
}

/// Adds `g` to the adjoint of forward node `at`.
fn acc(
    b: &mut GraphBuilder,
    adj: &mut HashMap<usize, ValueId>,
    at: usize,
    g: ValueId,
) -> Result<(), BuildError> {
    let v = match adj.get(&at) {
        Some(&prev) => b.op(Op::Add, &[prev, g])?,
        None => g,
    };
    adj.insert(at, v);
    Ok(())
}

/// Small expression helper for writing rules.
struct R<'a> {
    b: &'a mut GraphBuilder,
}

impl R<'_> {
    fn c(&mut self, v: f64) -> ValueId {
        self.b.constant(v as f32)
    }
    fn u(&mut self, op: Op, a: ValueId) -> Result<ValueId, BuildError> {
        self.b.op(op, &[a])
    }
    fn bin(&mut self, op: Op, a: ValueId, b: ValueId) -> Result<ValueId, BuildError> {
        self.b.op(op, &[a, b])
    }
    fn mul(&mut self, a: ValueId, b: ValueId) -> Result<ValueId, BuildError> {
        self.bin(Op::Mul, a, b)
    }
    fn mul_c(&mut self, a: ValueId, c: f64) -> Result<ValueId, BuildError> {
        let c = self.c(c);
        self.mul(a, c)
    }
    fn div(&mut self, a: ValueId, b: ValueId) -> Result<ValueId, BuildError> {
        self.bin(Op::Div, a, b)
    }
    fn sel(&mut self, c: ValueId, a: ValueId, b: ValueId) -> Result<ValueId, BuildError> {
        self.b.op(Op::Select, &[c, a, b])
    }
    /// `g` where `mask` holds, else exactly zero (torch's `where`, not a multiply: inf * 0).
    fn pass_if(&mut self, mask: ValueId, g: ValueId) -> Result<ValueId, BuildError> {
        let z = self.c(0.0);
        self.sel(mask, g, z)
    }
}

/// The vector-Jacobian product of one op: the gradient for each operand (`None` = zero),
/// given operand values `a`, result `y` and the result's gradient `g`.
fn vjp(
    b: &mut GraphBuilder,
    op: Op,
    a: &[ValueId],
    y: ValueId,
    g: ValueId,
) -> Result<Vec<Option<ValueId>>, BuildError> {
    let r = &mut R { b };
    Ok(match op {
        Op::Input(_) | Op::State(_) | Op::Param(_) | Op::Const(_) => vec![],
        Op::Neg => vec![Some(r.u(Op::Neg, g)?)],
        Op::Reciprocal => {
            let yy = r.mul(y, y)?;
            let t = r.mul(g, yy)?;
            vec![Some(r.u(Op::Neg, t)?)]
        }
        Op::Exp => vec![Some(r.mul(g, y)?)],
        Op::Log => vec![Some(r.div(g, a[0])?)],
        Op::Log2 => {
            let d = r.mul_c(a[0], std::f64::consts::LN_2)?;
            vec![Some(r.div(g, d)?)]
        }
        Op::Sqrt => {
            let d = r.mul_c(y, 2.0)?;
            vec![Some(r.div(g, d)?)]
        }
        Op::Rsqrt => {
            let y3 = r.mul(y, y)?;
            let y3 = r.mul(y3, y)?;
            let t = r.mul(g, y3)?;
            vec![Some(r.mul_c(t, -0.5)?)]
        }
        Op::Tanh => {
            let yy = r.mul(y, y)?;
            let one = r.c(1.0);
            let d = r.bin(Op::Sub, one, yy)?;
            vec![Some(r.mul(g, d)?)]
        }
        Op::Sin => {
            let d = r.u(Op::Cos, a[0])?;
            vec![Some(r.mul(g, d)?)]
        }
        Op::Cos => {
            let d = r.u(Op::Sin, a[0])?;
            let t = r.mul(g, d)?;
            vec![Some(r.u(Op::Neg, t)?)]
        }
        Op::Erf => {
            let xx = r.mul(a[0], a[0])?;
            let nxx = r.u(Op::Neg, xx)?;
            let e = r.u(Op::Exp, nxx)?;
            let t = r.mul_c(g, std::f64::consts::FRAC_2_SQRT_PI)?;
            vec![Some(r.mul(t, e)?)]
        }
        Op::Atan => {
            let xx = r.mul(a[0], a[0])?;
            let one = r.c(1.0);
            let d = r.bin(Op::Add, one, xx)?;
            vec![Some(r.div(g, d)?)]
        }
        Op::Floor | Op::Ceil | Op::Round | Op::Sign => vec![None],
        Op::Not => vec![None],
        Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::And | Op::Or => {
            vec![None, None]
        }
        Op::Relu => {
            let z = r.c(0.0);
            let m = r.bin(Op::Gt, y, z)?;
            vec![Some(r.pass_if(m, g)?)]
        }
        Op::Sigmoid => {
            let one = r.c(1.0);
            let d = r.bin(Op::Sub, one, y)?;
            let t = r.mul(g, d)?;
            vec![Some(r.mul(t, y)?)]
        }
        Op::Abs => {
            let s = r.u(Op::Sign, a[0])?;
            vec![Some(r.mul(g, s)?)]
        }
        Op::Add => vec![Some(g), Some(g)],
        Op::Sub => vec![Some(g), Some(r.u(Op::Neg, g)?)],
        Op::Mul => vec![Some(r.mul(g, a[1])?), Some(r.mul(g, a[0])?)],
        Op::Div => {
            let ga = r.div(g, a[1])?;
            let ng = r.u(Op::Neg, g)?;
            let t = r.mul(ng, a[0])?;
            let bb = r.mul(a[1], a[1])?;
            vec![Some(ga), Some(r.div(t, bb)?)]
        }
        Op::Pow => {
            // torch pow_backward: exponent == 0 gives 0; self == 0 && exponent >= 0 gives 0.
            let (x, e) = (a[0], a[1]);
            let zero = r.c(0.0);
            let one = r.c(1.0);
            let em1 = r.bin(Op::Sub, e, one)?;
            let p = r.bin(Op::Pow, x, em1)?;
            let t = r.mul(g, e)?;
            let t = r.mul(t, p)?;
            let e_is_0 = r.bin(Op::Eq, e, zero)?;
            let ga = r.sel(e_is_0, zero, t)?;
            let lx = r.u(Op::Log, x)?;
            let t = r.mul(g, y)?;
            let t = r.mul(t, lx)?;
            let x0 = r.bin(Op::Eq, x, zero)?;
            let epos = r.bin(Op::Ge, e, zero)?;
            let m = r.bin(Op::And, x0, epos)?;
            let gb = r.sel(m, zero, t)?;
            vec![Some(ga), Some(gb)]
        }
        Op::Fmod => {
            // d/db fmod(a, b) = -trunc(a / b)
            let q = r.div(a[0], a[1])?;
            let zero = r.c(0.0);
            let nonneg = r.bin(Op::Ge, q, zero)?;
            let fl = r.u(Op::Floor, q)?;
            let ce = r.u(Op::Ceil, q)?;
            let tq = r.sel(nonneg, fl, ce)?;
            let t = r.mul(g, tq)?;
            vec![Some(g), Some(r.u(Op::Neg, t)?)]
        }
        Op::Min | Op::Max => {
            // torch: ties split the gradient in half; the losing operand gets zero.
            let (x, z) = (a[0], a[1]);
            let loses = if op == Op::Min { Op::Gt } else { Op::Lt };
            let half = r.mul_c(g, 0.5)?;
            let tie = r.bin(Op::Eq, x, z)?;
            let share = r.sel(tie, half, g)?;
            let zero = r.c(0.0);
            let x_loses = r.bin(loses, x, z)?;
            let gx = r.sel(x_loses, zero, share)?;
            let z_loses = r.bin(loses, z, x)?;
            let gz = r.sel(z_loses, zero, share)?;
            vec![Some(gx), Some(gz)]
        }
        Op::Clamp => {
            // The gradient passes strictly inside the bounds; on a bound it goes to the bound
            // (PyTorch 2.15 gives `x` zero there, which SpikingJelly's golden data shows).
            let (x, lo, hi) = (a[0], a[1], a[2]);
            let gt_lo = r.bin(Op::Gt, x, lo)?;
            let lt_hi = r.bin(Op::Lt, x, hi)?;
            let inside = r.bin(Op::And, gt_lo, lt_hi)?;
            let gx = r.pass_if(inside, g)?;
            let at_or_below = r.bin(Op::Le, x, lo)?;
            let ordered = r.bin(Op::Lt, lo, hi)?;
            let m_lo = r.bin(Op::And, at_or_below, ordered)?;
            let glo = r.pass_if(m_lo, g)?;
            let at_or_above = r.bin(Op::Ge, x, hi)?;
            let crossed = r.bin(Op::Lt, hi, lo)?;
            let m_hi = r.bin(Op::Or, at_or_above, crossed)?;
            let ghi = r.pass_if(m_hi, g)?;
            vec![Some(gx), Some(glo), Some(ghi)]
        }
        Op::Select => {
            let zero = r.c(0.0);
            let ga = r.sel(a[0], g, zero)?;
            let gb = r.sel(a[0], zero, g)?;
            vec![None, Some(ga), Some(gb)]
        }
        Op::Spike(s) => {
            let d = surrogate_grad(r.b, s, a[0])?;
            vec![Some(r.mul(g, d)?)]
        }
        Op::Detach => vec![None],
    })
}

/// Builds `s.grad(x)` (the surrogate's backward formula) as IR ops, in the same operand order as
/// [`Surrogate::grad`].
pub fn surrogate_grad(
    b: &mut GraphBuilder,
    s: Surrogate,
    x: ValueId,
) -> Result<ValueId, BuildError> {
    use Surrogate::*;
    let r = &mut R { b };
    let f = |v: f32| v as f64;
    match s {
        Sigmoid { alpha } => {
            let xa = r.mul_c(x, f(alpha))?;
            let sg = r.u(Op::Sigmoid, xa)?;
            let one = r.c(1.0);
            let d = r.bin(Op::Sub, one, sg)?;
            let t = r.mul(d, sg)?;
            r.mul_c(t, f(alpha))
        }
        ATan { alpha } => {
            let a = f(alpha) / 2.0;
            let pa = r.c(std::f64::consts::PI * a);
            let ax = r.mul(pa, x)?;
            let ax2 = r.mul(ax, ax)?;
            let one = r.c(1.0);
            let d = r.bin(Op::Add, one, ax2)?;
            let num = r.c(a);
            r.div(num, d)
        }
        PiecewiseQuadratic { alpha } => {
            let a = f(alpha);
            let ax = r.u(Op::Abs, x)?;
            let inv = r.c(1.0 / a);
            let outside = r.bin(Op::Gt, ax, inv)?;
            let t = r.mul_c(ax, -(a * a))?;
            let ac = r.c(a);
            let t = r.bin(Op::Add, t, ac)?;
            let zero = r.c(0.0);
            r.sel(outside, zero, t)
        }
        PiecewiseExp { alpha } => {
            let a = f(alpha);
            let ax = r.u(Op::Abs, x)?;
            let t = r.mul_c(ax, -a)?;
            let e = r.u(Op::Exp, t)?;
            let h = r.c(a / 2.0);
            r.mul(h, e)
        }
        SoftSign { alpha } => {
            let a = f(alpha);
            let ax = r.u(Op::Abs, x)?;
            let inv = r.c(1.0 / a);
            let d = r.bin(Op::Add, inv, ax)?;
            let d2 = r.mul(d, d)?;
            let d2 = r.mul_c(d2, 2.0 * a)?;
            let one = r.c(1.0);
            r.div(one, d2)
        }
        SuperSpike { alpha } => {
            let ax = r.u(Op::Abs, x)?;
            let one = r.c(1.0);
            let d = r.bin(Op::Add, ax, one)?;
            let d2 = r.mul(d, d)?;
            let a = r.c(f(alpha));
            r.div(a, d2)
        }
        NonzeroSignLogAbs { alpha } => {
            let ax = r.u(Op::Abs, x)?;
            let inv = r.c(1.0 / f(alpha));
            let d = r.bin(Op::Add, inv, ax)?;
            let one = r.c(1.0);
            r.div(one, d)
        }
        Erf { alpha } => {
            let a = f(alpha);
            let xa = r.mul_c(x, a)?;
            let sq = r.mul(xa, xa)?;
            let n = r.u(Op::Neg, sq)?;
            let e = r.u(Op::Exp, n)?;
            r.mul_c(e, a / std::f64::consts::PI.sqrt())
        }
        PiecewiseLeakyReLU { w, c } => {
            let ax = r.u(Op::Abs, x)?;
            let wc = r.c(f(w));
            let inside = r.bin(Op::Lt, ax, wc)?;
            let slope = r.c(1.0 / (2.0 * f(w)));
            let leak = r.c(f(c));
            r.sel(inside, slope, leak)
        }
        SquarewaveFourierSeries { n, t_period } => {
            let t = f(t_period);
            let w = 2.0 * std::f64::consts::PI / t;
            let mut acc = r.c(0.0);
            for i in 1..n {
                let arg = r.mul_c(x, (2 * i - 1) as f64 * w)?;
                let cs = r.u(Op::Cos, arg)?;
                acc = r.bin(Op::Add, acc, cs)?;
            }
            r.mul_c(acc, 4.0 / t)
        }
        S2NN { alpha, beta } => {
            let a = f(alpha);
            let xa = r.mul_c(x, a)?;
            let sg = r.u(Op::Sigmoid, xa)?;
            let one = r.c(1.0);
            let d = r.bin(Op::Sub, one, sg)?;
            let left = r.mul_c(sg, a)?;
            let left = r.mul(left, d)?;
            let x1 = r.bin(Op::Add, x, one)?;
            let bc = r.c(f(beta));
            let right = r.div(bc, x1)?;
            let zero = r.c(0.0);
            let neg = r.bin(Op::Lt, x, zero)?;
            r.sel(neg, left, right)
        }
        QPseudoSpike { alpha } => {
            let a = f(alpha);
            let ax = r.u(Op::Abs, x)?;
            let t = r.mul_c(ax, 2.0 / (a - 1.0))?;
            let one = r.c(1.0);
            let base = r.bin(Op::Add, one, t)?;
            let e = r.c(-a);
            r.bin(Op::Pow, base, e)
        }
        LeakyKReLU { leak, k } => {
            let zero = r.c(0.0);
            let m = r.bin(Op::Ge, x, zero)?;
            let kc = r.c(f(k));
            let lc = r.c(f(leak));
            r.sel(m, kc, lc)
        }
        FakeNumericalGradient { alpha } => {
            let zero = r.c(0.0);
            let m = r.bin(Op::Ge, x, zero)?;
            let one = r.c(1.0);
            let neg_one = r.c(-1.0);
            let sgn = r.sel(m, one, neg_one)?;
            let v = r.div(sgn, x)?;
            let a = r.c(f(alpha));
            r.bin(Op::Min, v, a)
        }
        LogTailedReLU { alpha } => {
            let one = r.c(1.0);
            let zero = r.c(0.0);
            let gt1 = r.bin(Op::Gt, x, one)?;
            let le0 = r.bin(Op::Le, x, zero)?;
            let inv = r.div(one, x)?;
            let a = r.c(f(alpha));
            let inner = r.sel(le0, a, one)?;
            r.sel(gt1, inv, inner)
        }
        Rect { alpha } => {
            let a = f(alpha);
            let ax = r.u(Op::Abs, x)?;
            let lim = r.c(0.5 / a);
            let inside = r.bin(Op::Lt, ax, lim)?;
            let ac = r.c(a);
            let zero = r.c(0.0);
            r.sel(inside, ac, zero)
        }
        DeterministicPass => Ok(r.c(1.0)),
        MultiLevelSpikeCount {
            grad_min, grad_max, ..
        } => {
            let lo = r.c(f(grad_min));
            let hi = r.c(f(grad_max));
            let ge = r.bin(Op::Ge, x, lo)?;
            let le = r.bin(Op::Le, x, hi)?;
            r.bin(Op::And, ge, le)
        }
    }
}
