//! [`scan`]: one fused flexsn scan as a candle operation with backward.
//!
//! The op's arguments are candle tensors packed into at most three: the inputs (one input as it
//! is; several stacked as `[inputs, T, N]`), the params concatenated in graph order, and the
//! initial states stacked as `[states, N]` (absent: the core's declared initial values). Its one
//! result is a flat buffer holding every output `[T, N]` and then, per state, the
//! `(T+1) * N` buffer whose row 0 is the initial state and rows `1..=T` the state after each
//! step. [`scan`] hands out views of it (outputs, state sequences, final states = row `T`).
//! Under `checkpoint:K` ([`scan_with`]) each state's part is its `⌈T/K⌉` checkpoint rows
//! followed by its final value: the result keeps `S·(⌈T/K⌉ + 1)·N` floats of states instead of
//! `S·(T+1)·N`, backward recomputes the rest, and there are no state-sequence views.
//!
//! Why the states live in the result: candle's `bwd` receives the forward's arguments and its
//! result, so the state sequences that backpropagation through time needs come back with the
//! result itself — no side buffer, no recomputation of the forward scan, and the memory is
//! freed with the graph. Upstream gradients of the views arrive in the same layout, so the
//! gradients of state sequences and final states flow into the kernel's backward too.

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Storage, Tensor};
use flexsn_compiler::bptt::Upstream;
use flexsn_compiler::ir::{StateInit, StepGraph};
use flexsn_compiler::scan::param_len;
use flexsn_runtime::{Kernel, KernelArgs, SavePolicy};

use crate::error::{Error, check_f32};

/// What [`scan`] returns: views of the op's result, each differentiable.
#[derive(Clone, Debug)]
pub struct ScanOutput {
    /// Per graph output: `[T, *shape]`.
    pub outputs: Vec<Tensor>,
    /// Per graph state: the state after each step, `[T, *shape]` (empty under
    /// `checkpoint:K`).
    pub state_seqs: Vec<Tensor>,
    /// Per graph state: the state after the last step, `[*shape]`.
    pub final_states: Vec<Tensor>,
}

/// Runs `kernel`'s training scan on candle tensors, recording it for `backward()`.
///
/// `inputs` are `[T, *shape]` in graph order (all the same shape; `N` = the product of `shape`),
/// `init_states` `[*shape]` in graph order (`None`: the core's declared initial values), `params`
/// in graph order with `[1]`, `[N]` or `[T]` elements by kind. Every tensor must be float32 and
/// on one device; non-contiguous tensors are made contiguous. Gradients reach every tensor that
/// tracks them (a `Var`), for learnable params only (a `Var` for another param is an error).
pub fn scan(
    kernel: &Arc<Kernel>,
    inputs: &[&Tensor],
    init_states: Option<&[&Tensor]>,
    params: &[&Tensor],
) -> candle_core::Result<ScanOutput> {
    scan_with(kernel, inputs, init_states, params, kernel.save_policy())
}

/// [`scan`] under the save policy `policy`: `checkpoint:K` keeps only every `K`-th state for
/// backward (bit-identical gradients) and returns no state sequences.
pub fn scan_with(
    kernel: &Arc<Kernel>,
    inputs: &[&Tensor],
    init_states: Option<&[&Tensor]>,
    params: &[&Tensor],
    policy: SavePolicy,
) -> candle_core::Result<ScanOutput> {
    policy.check().map_err(|e| Error::Neuron(e.to_string()))?;
    let g = kernel.graph();
    let (ni, ns, np) = (g.inputs().len(), g.states().len(), g.params().len());
    count("inputs", ni, inputs.len())?;
    count("params", np, params.len())?;
    let first = inputs.first().ok_or(Error::Count {
        what: "inputs (the scan takes T and N from its inputs)",
        expected: 1,
        got: 0,
    })?;
    let dims = first.dims().to_vec();
    let (t, shape) = match dims.split_first() {
        Some((&t, shape)) if t > 0 => (t, shape.to_vec()),
        _ => {
            return Err(Error::Shape {
                what: g.inputs()[0].name.clone(),
                expected: "[T, ...] with T >= 1".into(),
                got: dims,
            }
            .into());
        }
    };
    let n: usize = shape.iter().product();
    if n == 0 {
        return Err(Error::Shape {
            what: g.inputs()[0].name.clone(),
            expected: "at least one neuron (no zero-sized trailing dimension)".into(),
            got: dims,
        }
        .into());
    }
    let device = first.device().clone();
    let same_device = |what: &str, x: &Tensor| -> Result<(), Error> {
        if x.device().same_device(&device) {
            Ok(())
        } else {
            Err(Error::Device(format!(
                "`{what}` is on {:?}, the first input on {:?}",
                x.device(),
                device
            )))
        }
    };
    for (x, d) in inputs.iter().zip(g.inputs()) {
        check_f32(&d.name, x)?;
        same_device(&d.name, x)?;
        if x.dims() != dims {
            return Err(Error::Shape {
                what: d.name.clone(),
                expected: format!("{dims:?} (the shape of the first input)"),
                got: x.dims().to_vec(),
            }
            .into());
        }
    }
    for (p, d) in params.iter().zip(g.params()) {
        check_f32(&d.name, p)?;
        same_device(&d.name, p)?;
        let len = param_len(d.kind, t, n);
        if p.elem_count() != len {
            return Err(Error::Shape {
                what: d.name.clone(),
                expected: format!("{len} elements ({} param, T = {t}, N = {n})", d.kind.name()),
                got: p.dims().to_vec(),
            }
            .into());
        }
        if p.is_variable() && !d.learnable {
            return Err(Error::NotLearnable(d.name.clone()).into());
        }
    }
    if let Some(s) = init_states {
        count("initial states", ns, s.len())?;
        for (x, d) in s.iter().zip(g.states()) {
            check_f32(&d.name, x)?;
            same_device(&d.name, x)?;
            if x.elem_count() != n {
                return Err(Error::Shape {
                    what: format!("initial {}", d.name),
                    expected: format!("{shape:?} (an input's shape without T)"),
                    got: x.dims().to_vec(),
                }
                .into());
            }
        }
    } else if let Some(d) = g.states().iter().find(|d| d.init == StateInit::Runtime) {
        return Err(Error::Neuron(format!(
            "state `{}` has no declared initial value: pass initial states",
            d.name
        ))
        .into());
    }

    let x = if ni == 1 {
        first.contiguous()?
    } else {
        Tensor::stack(inputs, 0)?.contiguous()?
    };
    let p = if np == 0 {
        None
    } else {
        let flat = params
            .iter()
            .map(|p| p.flatten_all())
            .collect::<candle_core::Result<Vec<_>>>()?;
        Some(Tensor::cat(&flat, 0)?.contiguous()?)
    };
    let s = match init_states {
        Some(s) => {
            let flat = s
                .iter()
                .map(|x| x.flatten_all())
                .collect::<candle_core::Result<Vec<_>>>()?;
            Some(Tensor::stack(&flat, 0)?.contiguous()?)
        }
        None => None,
    };
    // Without states there is nothing to save either way.
    let policy = if ns == 0 { SavePolicy::States } else { policy };
    let op = ScanOp {
        kernel: kernel.clone(),
        t,
        n,
        has_params: p.is_some(),
        has_init: s.is_some(),
        policy,
    };
    let packed = match (p, s) {
        (None, None) => x.apply_op1(op)?,
        (Some(p), None) => x.apply_op2(&p, op)?,
        (None, Some(s)) => x.apply_op2(&s, op)?,
        (Some(p), Some(s)) => x.apply_op3(&p, &s, op)?,
    };
    let seq_dims: Vec<usize> = dims.clone();
    let lay = Packing::new(g, t, n, policy);
    let outputs = (0..g.outputs().len())
        .map(|o| {
            packed
                .narrow(0, lay.output(o), t * n)?
                .reshape(seq_dims.clone())
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let seqs = if policy == SavePolicy::States { ns } else { 0 };
    let state_seqs = (0..seqs)
        .map(|j| {
            packed
                .narrow(0, lay.state(j) + n, t * n)?
                .reshape(seq_dims.clone())
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let final_states = (0..ns)
        .map(|j| {
            packed
                .narrow(0, lay.final_state(j), n)?
                .reshape(shape.clone())
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(ScanOutput {
        outputs,
        state_seqs,
        final_states,
    })
}

fn count(what: &'static str, expected: usize, got: usize) -> Result<(), Error> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::Count {
            what,
            expected,
            got,
        })
    }
}

/// Offsets in the op's flat result: outputs `[T, N]`, then per state `(T+1) * N` (under
/// `checkpoint:K`: `⌈T/K⌉` checkpoint rows, then the final state).
#[derive(Clone, Copy, Debug)]
struct Packing {
    t: usize,
    n: usize,
    outputs: usize,
    states: usize,
    /// Rows of `N` kept per state before its final value (`T` under `states`: row `T` is the
    /// final state itself).
    rows: usize,
}

impl Packing {
    fn new(g: &StepGraph, t: usize, n: usize, policy: SavePolicy) -> Self {
        Packing {
            t,
            n,
            outputs: g.outputs().len(),
            states: g.states().len(),
            rows: match policy {
                SavePolicy::States => t,
                SavePolicy::Checkpoint(_) => policy.saved_rows(t),
            },
        }
    }

    fn output(&self, o: usize) -> usize {
        o * self.t * self.n
    }

    fn state(&self, j: usize) -> usize {
        self.outputs * self.t * self.n + j * (self.rows + 1) * self.n
    }

    /// Where state `j`'s final value is.
    fn final_state(&self, j: usize) -> usize {
        self.state(j) + self.rows * self.n
    }

    fn len(&self) -> usize {
        self.state(self.states)
    }
}

/// The custom op: one kernel, one `(T, N)`, and which of the optional arguments are present.
struct ScanOp {
    kernel: Arc<Kernel>,
    t: usize,
    n: usize,
    has_params: bool,
    has_init: bool,
    policy: SavePolicy,
}

/// Gradients of the op's arguments, flat, in the packed layouts.
struct ArgGrads {
    inputs: Vec<f32>,
    params: Option<Vec<f32>>,
    init_states: Option<Vec<f32>>,
}

/// An f32 slice of a contiguous CPU storage (every op argument is made contiguous first).
fn cpu_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32], Error> {
    let CpuStorage::F32(v) = s else {
        return Err(Error::DType {
            what: what.into(),
            got: s.dtype(),
        });
    };
    let (a, b) = l.contiguous_offsets().ok_or_else(|| Error::Shape {
        what: what.into(),
        expected: "a contiguous tensor".into(),
        got: l.dims().to_vec(),
    })?;
    Ok(&v[a..b])
}

/// [`cpu_slice`] of a tensor's storage; fails for tensors that are not on the CPU.
fn tensor_slice<'a>(
    st: &'a Storage,
    l: &Layout,
    what: &str,
) -> Result<&'a [f32], candle_core::Error> {
    match st {
        Storage::Cpu(c) => Ok(cpu_slice(c, l, what)?),
        _ => Err(Error::Device(format!(
            "flexsn backward for `{what}` runs on the CPU only; the tensor is on {:?}",
            st.device()
        ))
        .into()),
    }
}

impl ScanOp {
    fn graph(&self) -> &StepGraph {
        self.kernel.graph()
    }

    /// The kernel's arguments over the packed argument slices (no initial states: the
    /// core's declared values).
    fn args<'a>(
        &'a self,
        x: &'a [f32],
        p: Option<&'a [f32]>,
        s: Option<&'a [f32]>,
    ) -> KernelArgs<'a> {
        let (t, n, g) = (self.t, self.n, self.graph());
        let mut params = Vec::with_capacity(g.params().len());
        if let Some(mut rest) = p {
            for d in g.params() {
                let (head, tail) = rest.split_at(param_len(d.kind, t, n));
                params.push((d.name.as_str(), head));
                rest = tail;
            }
        }
        KernelArgs {
            t,
            n,
            inputs: x.chunks(t * n).collect(),
            init_states: s.map(|s| s.chunks(n).collect()),
            params,
        }
    }

    fn forward(
        &self,
        x: &[f32],
        p: Option<&[f32]>,
        s: Option<&[f32]>,
    ) -> Result<(CpuStorage, Shape), Error> {
        let args = self.args(x, p, s);
        let lay = Packing::new(self.graph(), self.t, self.n, self.policy);
        let mut packed = vec![0f32; lay.len()];
        crate::engine::forward_packed(&self.kernel, &args, self.policy, &mut packed)?;
        Ok((CpuStorage::F32(packed), Shape::from(lay.len())))
    }

    fn backward(
        &self,
        x: &[f32],
        p: Option<&[f32]>,
        s: Option<&[f32]>,
        res: &[f32],
        grad: &[f32],
    ) -> Result<ArgGrads, Error> {
        let (t, n, g) = (self.t, self.n, self.graph());
        let args = self.args(x, p, s);
        let lay = Packing::new(g, t, n, self.policy);
        let states = self.policy == SavePolicy::States;
        let present = |b: &'_ [f32]| b.iter().any(|v| *v != 0.0);
        let block = |at: usize, len: usize| {
            let b = &grad[at..at + len];
            present(b).then_some(b)
        };
        let upstream = Upstream {
            outputs: (0..lay.outputs)
                .map(|o| block(lay.output(o), t * n))
                .collect(),
            // Under `states` the final state is row T of the sequence, its gradient part of
            // the sequence's.
            state_seqs: (0..lay.states)
                .map(|j| {
                    if states {
                        block(lay.state(j) + n, t * n)
                    } else {
                        None
                    }
                })
                .collect(),
            final_states: (0..lay.states)
                .map(|j| {
                    if states {
                        None
                    } else {
                        block(lay.final_state(j), n)
                    }
                })
                .collect(),
        };
        let kept = if states { (t + 1) * n } else { lay.rows * n };
        let state_bufs: Vec<&[f32]> = (0..lay.states)
            .map(|j| &res[lay.state(j)..lay.state(j) + kept])
            .collect();
        let grads =
            crate::engine::backward(&self.kernel, &args, self.policy, &state_bufs, &upstream)?;
        let inputs = grads.inputs.concat();
        let params = self.has_params.then(|| {
            g.params()
                .iter()
                .zip(&grads.params)
                .flat_map(|(d, gp)| match gp {
                    Some(v) => v.clone(),
                    None => vec![0.0; param_len(d.kind, t, n)],
                })
                .collect()
        });
        let init_states = self.has_init.then(|| {
            let mut out = grads.init_states.concat();
            // Row 0 of each state buffer is the initial state itself (under `states`, a view).
            for j in (0..lay.states).filter(|_| states) {
                if let Some(g0) = block(lay.state(j), n) {
                    for (o, v) in out[j * n..(j + 1) * n].iter_mut().zip(g0) {
                        *o += v;
                    }
                }
            }
            out
        });
        Ok(ArgGrads {
            inputs,
            params,
            init_states,
        })
    }

    /// Runs [`ScanOp::backward`] on tensors; `p`/`s` are the optional arguments in order.
    fn bwd_tensors(
        &self,
        x: &Tensor,
        extra: &[&Tensor],
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Tensor, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let (rs, rl) = res.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let x_sl = tensor_slice(&xs, xl, "inputs")?;
        let r_sl = tensor_slice(&rs, rl, "scan result")?;
        let g_sl = tensor_slice(&gs, gl, "scan result gradient")?;
        let mut k = 0;
        let mut next = |want: bool| {
            let t = want.then(|| extra[k]);
            k += usize::from(want);
            t
        };
        let (pt, st) = (next(self.has_params), next(self.has_init));
        let pg = pt.map(|t| t.storage_and_layout());
        let sg = st.map(|t| t.storage_and_layout());
        let p_sl = pg
            .as_ref()
            .map(|(s, l)| tensor_slice(s, l, "params"))
            .transpose()?;
        let s_sl = sg
            .as_ref()
            .map(|(s, l)| tensor_slice(s, l, "initial states"))
            .transpose()?;
        let grads = self.backward(x_sl, p_sl, s_sl, r_sl, g_sl)?;
        let dev = x.device();
        let gx = Tensor::from_vec(grads.inputs, x.shape(), dev)?;
        let gp = match (grads.params, pt) {
            (Some(v), Some(p)) => Some(Tensor::from_vec(v, p.shape(), dev)?),
            _ => None,
        };
        let gs = match (grads.init_states, st) {
            (Some(v), Some(s)) => Some(Tensor::from_vec(v, s.shape(), dev)?),
            _ => None,
        };
        Ok((gx, gp, gs))
    }
}

const OP_NAME: &str = "flexsn-scan";

impl CustomOp1 for ScanOp {
    fn name(&self) -> &'static str {
        OP_NAME
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok(self.forward(cpu_slice(s, l, "inputs")?, None, None)?)
    }

    fn bwd(&self, x: &Tensor, res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(self.bwd_tensors(x, &[], res, grad)?.0))
    }
}

impl CustomOp2 for ScanOp {
    fn name(&self) -> &'static str {
        OP_NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        // The second argument is the params when there are any, else the initial states.
        let a = cpu_slice(s2, l2, "second argument")?;
        let (p, s) = if self.has_params {
            (Some(a), None)
        } else {
            (None, Some(a))
        };
        Ok(self.forward(cpu_slice(s1, l1, "inputs")?, p, s)?)
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (gx, gp, gs) = self.bwd_tensors(x, &[a], res, grad)?;
        Ok((Some(gx), gp.or(gs)))
    }
}

impl CustomOp3 for ScanOp {
    fn name(&self) -> &'static str {
        OP_NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = cpu_slice(s2, l2, "params")?;
        let s = cpu_slice(s3, l3, "initial states")?;
        Ok(self.forward(cpu_slice(s1, l1, "inputs")?, Some(p), Some(s))?)
    }

    fn bwd(
        &self,
        x: &Tensor,
        p: &Tensor,
        s: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (gx, gp, gs) = self.bwd_tensors(x, &[p, s], res, grad)?;
        Ok((Some(gx), gp, gs))
    }
}
