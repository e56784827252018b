//! Host-memory entry points of [`Kernel`] for frameworks: one argument struct ([`KernelArgs`])
//! and caller-owned result buffers, so a bridge can hand the kernel its own tensors' memory
//! (zero copy, nothing of size `T * N` allocated per forward call).
//!
//! Layout (all time-major, `t * N + n`):
//!
//! | buffer | shape |
//! |---|---|
//! | inputs, outputs, input gradients | `[T, N]` (an output summed over time: `[N]`) |
//! | initial and final states, their gradients | `[N]` |
//! | state buffer (training) | `[T + 1, N]`: row 0 the initial state, rows `1..=T` the sequence |
//! | params | shared `[1]`, per neuron `[N]`, per time step `[T]` |
//!
//! A training forward fills the state buffers; backward reads them back (rows `0..T` are "the
//! state before step t"), so a caller keeps them between the two calls, e.g. as tensors saved
//! for backward. Every count and length is checked before generated code runs; a mismatch is a
//! [`RuntimeError`] naming the argument. After an error the result buffers' contents are
//! unspecified.

use std::borrow::Cow;

use flexsn_compiler::bptt::{self, Upstream};
use flexsn_compiler::checkpoint::SavePolicy;
use flexsn_compiler::ir::{StateInit, StepGraph};
use flexsn_compiler::scan::{ScanArgs, ScanResult, ShapeError};

use crate::executor::ScanOutputs;
use crate::memory::Estimate;
use crate::{Kernel, RuntimeError};

/// The arguments of one call: `T`, `N`, inputs in graph order, initial states in graph order
/// (`None`: the graph's declared constants) and every param by name.
///
/// ```
/// # use flexsn_runtime::KernelArgs;
/// let (x, w) = (vec![0.5f32; 6], [0.0f32]);
/// let args = KernelArgs::new(3, 2).input(&x).param("w", &w);
/// assert_eq!((args.t, args.n, args.inputs.len()), (3, 2, 1));
/// ```
#[derive(Clone, Debug, Default)]
pub struct KernelArgs<'a> {
    /// Time steps.
    pub t: usize,
    /// Neurons (batch times features).
    pub n: usize,
    /// Per input: `[T, N]`, in graph order.
    pub inputs: Vec<&'a [f32]>,
    /// Per state: `[N]`, in graph order; `None` takes the graph's constant initial values.
    pub init_states: Option<Vec<&'a [f32]>>,
    /// Every param of the kernel, by name, in any order.
    pub params: Vec<(&'a str, &'a [f32])>,
}

impl<'a> KernelArgs<'a> {
    /// No inputs, states or params yet.
    pub fn new(t: usize, n: usize) -> Self {
        KernelArgs {
            t,
            n,
            ..Default::default()
        }
    }

    /// Appends the next input (graph order).
    pub fn input(mut self, x: &'a [f32]) -> Self {
        self.inputs.push(x);
        self
    }

    /// Appends the next initial state (graph order).
    pub fn init_state(mut self, s: &'a [f32]) -> Self {
        self.init_states.get_or_insert_with(Vec::new).push(s);
        self
    }

    /// Adds a param by name.
    pub fn param(mut self, name: &'a str, v: &'a [f32]) -> Self {
        self.params.push((name, v));
        self
    }
}

/// Where a training forward writes: per output its sequence, per state its `[T + 1, N]` buffer
/// (row 0 the initial state, rows `1..=T` the state after each step) and its final value.
#[derive(Debug, Default)]
pub struct TrainingBuffers<'b> {
    /// Per output: `[T, N]` (`[N]` when summed over time).
    pub outputs: Vec<&'b mut [f32]>,
    /// Per state: `[T + 1, N]`.
    pub state_bufs: Vec<&'b mut [f32]>,
    /// Per state: `[N]`.
    pub final_states: Vec<&'b mut [f32]>,
}

/// Where an inference forward writes: outputs and final states.
#[derive(Debug, Default)]
pub struct InferenceBuffers<'b> {
    /// Per output: `[T, N]` (`[N]` when summed over time).
    pub outputs: Vec<&'b mut [f32]>,
    /// Per state: `[N]`.
    pub final_states: Vec<&'b mut [f32]>,
}

/// Where a training forward under `checkpoint:K` writes (see [`Kernel::forward_checkpointed_host`]).
#[derive(Debug, Default)]
pub struct CheckpointBuffers<'b> {
    /// Per output: `[T, N]` (`[N]` when summed over time).
    pub outputs: Vec<&'b mut [f32]>,
    /// Per state: `⌈T/K⌉` rows of `N`, the state before steps `0, K, 2K, …`.
    pub checkpoints: Vec<&'b mut [f32]>,
    /// Per state: `[N]`.
    pub final_states: Vec<&'b mut [f32]>,
}

/// Where backward writes the gradients of a call's inputs and initial states.
#[derive(Debug, Default)]
pub struct GradBuffers<'b> {
    /// Per input: `[T, N]`.
    pub inputs: Vec<&'b mut [f32]>,
    /// Per state: `[N]`.
    pub init_states: Vec<&'b mut [f32]>,
}

/// Per param, in graph order: its gradient (the param's shape), `None` if it is not learnable.
pub type ParamGrads = Vec<Option<Vec<f32>>>;

/// A call's arguments with params in graph order; initial states as given.
pub(crate) struct Resolved<'a> {
    pub t: usize,
    pub n: usize,
    pub inputs: Vec<&'a [f32]>,
    pub init_states: Option<Vec<&'a [f32]>>,
    pub params: Vec<&'a [f32]>,
}

/// `(T + 1) * N`, the length of a state buffer.
fn state_buf_len(t: usize, n: usize) -> Result<usize, ShapeError> {
    t.checked_add(1)
        .and_then(|t1| t1.checked_mul(n))
        .ok_or_else(|| ShapeError::Overflow {
            name: "state buffers".into(),
            t,
            n,
        })
}

/// Checks that `bufs` hold one `[T + 1, N]` buffer per state of `g`.
fn check_state_bufs(g: &StepGraph, t: usize, n: usize, lens: &[usize]) -> Result<(), ShapeError> {
    ShapeError::check_count("state buffers", g.states().len(), lens.len())?;
    let expected = state_buf_len(t, n)?;
    for (d, &l) in g.states().iter().zip(lens) {
        ShapeError::check_len(
            format!("state buffer {}", d.name),
            format!("[T+1={}, N={n}]", t + 1),
            expected,
            l,
        )?;
    }
    Ok(())
}

/// Checks that `grads` hold one `[T, N]` buffer per input and one `[N]` per state of `g`.
fn check_grad_bufs(
    g: &StepGraph,
    t: usize,
    n: usize,
    grads: &GradBuffers<'_>,
) -> Result<(), ShapeError> {
    ShapeError::check_count(
        "input-gradient buffers",
        g.inputs().len(),
        grads.inputs.len(),
    )?;
    for (d, b) in g.inputs().iter().zip(&grads.inputs) {
        ShapeError::check_len(
            format!("input-gradient buffer {}", d.name),
            format!("[T={t}, N={n}]"),
            t * n,
            b.len(),
        )?;
    }
    ShapeError::check_count(
        "initial-state-gradient buffers",
        g.states().len(),
        grads.init_states.len(),
    )?;
    for (d, b) in g.states().iter().zip(&grads.init_states) {
        ShapeError::check_len(
            format!("initial-state-gradient buffer {}", d.name),
            format!("[N={n}]"),
            n,
            b.len(),
        )?;
    }
    Ok(())
}

/// Checks given initial states (count, `[N]` each); without them, that every state has a
/// constant initial value.
fn check_init_states(g: &StepGraph, n: usize, s0: Option<&[&[f32]]>) -> Result<(), RuntimeError> {
    match s0 {
        Some(s) => {
            ShapeError::check_count("initial states", g.states().len(), s.len())?;
            for (d, x) in g.states().iter().zip(s) {
                ShapeError::check_len(d.name.clone(), format!("[N={n}]"), n, x.len())?;
            }
        }
        None => {
            if let Some(d) = g.states().iter().find(|d| d.init == StateInit::Runtime) {
                return Err(RuntimeError::Exec(bptt::ExecError::MissingInitialState(
                    d.name.clone(),
                )));
            }
        }
    }
    Ok(())
}

/// Writes state `j`'s initial value into `row0`: given, or the graph's constant (a
/// runtime-initialised state without a value is excluded by [`check_init_states`]).
fn fill_init(row0: &mut [f32], g: &StepGraph, s0: Option<&[&[f32]]>, j: usize) {
    match (s0, &g.states()[j].init) {
        (Some(s), _) => row0.copy_from_slice(s[j]),
        (None, StateInit::Const(c)) => row0.fill(*c),
        (None, StateInit::Runtime) => {}
    }
}

impl Kernel {
    /// Orders `params` by the graph's params: each known, none twice, none missing.
    pub(crate) fn order_params<'a>(
        &self,
        params: &[(&str, &'a [f32])],
    ) -> Result<Vec<&'a [f32]>, RuntimeError> {
        let g = self.graph();
        let mut ordered: Vec<Option<&'a [f32]>> = vec![None; g.params().len()];
        for (name, v) in params {
            let k = g
                .param_index(name)
                .ok_or_else(|| RuntimeError::UnknownParam {
                    name: name.to_string(),
                    known: if g.params().is_empty() {
                        "(none)".into()
                    } else {
                        g.params()
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                })?;
            if ordered[k].replace(v).is_some() {
                return Err(RuntimeError::DuplicateParam(name.to_string()));
            }
        }
        ordered
            .into_iter()
            .zip(g.params())
            .map(|(v, d)| v.ok_or_else(|| RuntimeError::MissingParam(d.name.clone())))
            .collect()
    }

    fn resolve_args<'a>(&self, a: &KernelArgs<'a>) -> Result<Resolved<'a>, RuntimeError> {
        Ok(Resolved {
            t: a.t,
            n: a.n,
            inputs: a.inputs.clone(),
            init_states: a.init_states.clone(),
            params: self.order_params(&a.params)?,
        })
    }

    /// Training forward into caller-owned buffers: outputs, one `[T + 1, N]` buffer per state
    /// (row 0 gets the initial state, rows `1..=T` the sequence) and final states. Pass the
    /// state buffers to [`Kernel::backward_host`] with the same `args`.
    pub fn forward_host(
        &self,
        args: &KernelArgs<'_>,
        out: &mut TrainingBuffers<'_>,
    ) -> Result<(), RuntimeError> {
        self.forward_resolved(&self.resolve_args(args)?, out)
    }

    /// Inference forward into caller-owned buffers: outputs and final states only.
    pub fn infer_host(
        &self,
        args: &KernelArgs<'_>,
        out: &mut InferenceBuffers<'_>,
    ) -> Result<(), RuntimeError> {
        self.infer_resolved(&self.resolve_args(args)?, out)
    }

    /// Backpropagation through time for a [`Kernel::forward_host`] call: the same `args`, the
    /// state buffers that call filled, and upstream gradients of its outputs, state sequences
    /// and final states (absent: zero). Writes the input and initial-state gradients into
    /// `grads` and returns the param gradients (reduced in a fixed order: bit-identical for
    /// every thread count).
    pub fn backward_host(
        &self,
        args: &KernelArgs<'_>,
        state_bufs: &[&[f32]],
        upstream: &Upstream<'_, f32>,
        grads: &mut GradBuffers<'_>,
    ) -> Result<ParamGrads, RuntimeError> {
        self.backward_resolved(&self.resolve_args(args)?, state_bufs, upstream, grads)
    }

    pub(crate) fn forward_resolved(
        &self,
        r: &Resolved<'_>,
        out: &mut TrainingBuffers<'_>,
    ) -> Result<(), RuntimeError> {
        let g = self.graph();
        let (t, n) = (r.t, r.n);
        let lens: Vec<usize> = out.state_bufs.iter().map(|b| b.len()).collect();
        check_state_bufs(g, t, n, &lens)?;
        let s0 = r.init_states.as_deref();
        check_init_states(g, n, s0)?;
        let mut row0s = vec![];
        let mut seqs = vec![];
        for (j, b) in out.state_bufs.iter_mut().enumerate() {
            let (row0, seq) = b.split_at_mut(n);
            fill_init(row0, g, s0, j);
            row0s.push(&*row0);
            seqs.push(seq);
        }
        let args = ScanArgs {
            t,
            n,
            inputs: r.inputs.clone(),
            init_states: row0s,
            params: r.params.clone(),
        };
        args.check(g)?;
        let mut o = ScanOutputs {
            outputs: out.outputs.iter_mut().map(|b| &mut **b).collect(),
            state_seqs: seqs,
            final_states: out.final_states.iter_mut().map(|b| &mut **b).collect(),
        };
        o.check(self.training_scan().kernel(), t, n)?;
        self.training_scan().run_into(&args, &mut o)
    }

    pub(crate) fn infer_resolved(
        &self,
        r: &Resolved<'_>,
        out: &mut InferenceBuffers<'_>,
    ) -> Result<(), RuntimeError> {
        let g = self.graph();
        let (t, n) = (r.t, r.n);
        let s0 = r.init_states.as_deref();
        check_init_states(g, n, s0)?;
        if s0.is_none() {
            let e = Estimate::new().add(g.states().len(), &[n], 4);
            self.check_memory(e, "the initial states")?;
        }
        let init: Vec<Cow<'_, [f32]>> = match s0 {
            Some(s) => s.iter().map(|x| Cow::Borrowed(*x)).collect(),
            None => (0..g.states().len())
                .map(|j| {
                    let mut v = vec![0.0; n];
                    fill_init(&mut v, g, s0, j);
                    Cow::Owned(v)
                })
                .collect(),
        };
        let args = ScanArgs {
            t,
            n,
            inputs: r.inputs.clone(),
            init_states: init.iter().map(|c| c.as_ref()).collect(),
            params: r.params.clone(),
        };
        args.check(g)?;
        let mut o = ScanOutputs {
            outputs: out.outputs.iter_mut().map(|b| &mut **b).collect(),
            state_seqs: vec![],
            final_states: out.final_states.iter_mut().map(|b| &mut **b).collect(),
        };
        o.check(self.inference_scan().kernel(), t, n)?;
        self.inference_scan().run_into(&args, &mut o)
    }

    pub(crate) fn backward_resolved(
        &self,
        r: &Resolved<'_>,
        state_bufs: &[&[f32]],
        upstream: &Upstream<'_, f32>,
        grads: &mut GradBuffers<'_>,
    ) -> Result<ParamGrads, RuntimeError> {
        let g = self.graph();
        let (t, n) = (r.t, r.n);
        let lens: Vec<usize> = state_bufs.iter().map(|b| b.len()).collect();
        check_state_bufs(g, t, n, &lens)?;
        let s0 = r.init_states.as_deref();
        if s0.is_some() {
            check_init_states(g, n, s0)?;
        }
        // The initial states are row 0 of the state buffers unless given.
        let init_states = s0.map_or_else(
            || state_bufs.iter().map(|b| &b[..n]).collect(),
            <[_]>::to_vec,
        );
        let args = ScanArgs {
            t,
            n,
            inputs: r.inputs.clone(),
            init_states,
            params: r.params.clone(),
        };
        args.check(g)?;
        upstream.check(g, t, n)?;
        let tn = t * n;
        check_grad_bufs(g, t, n, grads)?;
        // The param contributions (at most `[T, N]` each) and the zero final-state gradient.
        let learnable = g.params().iter().filter(|d| d.learnable).count();
        let e = Estimate::new().add(learnable, &[t, n], 4).add(1, &[n], 4);
        self.check_memory(e, "the parameter gradients")?;
        // Compiled (or taken from the cache) only after every shape is known to be right.
        let bk = self.backward_kernel(&upstream.spec())?;
        let prev: Vec<&[f32]> = state_bufs.iter().map(|b| &b[..tn]).collect();
        let ni = g.inputs().len();
        let r = bptt::backward_from_prev(g, &bk.graph, &args, &prev, upstream, |k, a| {
            // The input and initial-state gradients go straight into the caller's buffers;
            // only the param contributions (outputs past the inputs) are allocated here.
            let mut contribs: Vec<Vec<f32>> = (ni..k.graph.outputs().len())
                .map(|o| vec![0.0; k.output_len(o, t, n)])
                .collect();
            let mut out = ScanOutputs {
                outputs: grads
                    .inputs
                    .iter_mut()
                    .map(|b| &mut **b)
                    .chain(contribs.iter_mut().map(Vec::as_mut_slice))
                    .collect(),
                state_seqs: vec![],
                final_states: grads.init_states.iter_mut().map(|b| &mut **b).collect(),
            };
            bk.exec.run_into(a, &mut out)?;
            let mut outputs = vec![vec![]; ni];
            outputs.extend(contribs);
            Ok::<_, RuntimeError>(ScanResult {
                outputs,
                state_seqs: vec![],
                final_states: vec![],
            })
        })?;
        Ok(r.params)
    }

    /// Training forward under `checkpoint:K` into caller-owned buffers: outputs, the
    /// checkpoints (`⌈T/K⌉` rows of `N` per state: far less than the `[T + 1, N]` state
    /// buffers of [`Kernel::forward_host`]) and final states. Pass the checkpoints to
    /// [`Kernel::backward_checkpointed_host`] with the same `args` and `k`.
    pub fn forward_checkpointed_host(
        &self,
        args: &KernelArgs<'_>,
        k: usize,
        out: &mut CheckpointBuffers<'_>,
    ) -> Result<(), RuntimeError> {
        check_interval(k)?;
        let r = self.resolve_args(args)?;
        let (g, t, n) = (self.graph(), r.t, r.n);
        check_init_states(g, n, r.init_states.as_deref())?;
        let lens: Vec<usize> = out.checkpoints.iter().map(|b| b.len()).collect();
        crate::checkpoint::check_checkpoints(g, t, n, k, &lens)?;
        ScanOutputs {
            outputs: out.outputs.iter_mut().map(|b| &mut **b).collect(),
            state_seqs: vec![],
            final_states: out.final_states.iter_mut().map(|b| &mut **b).collect(),
        }
        .check(self.inference_scan().kernel(), t, n)?;
        let saved = crate::checkpoint::Saved {
            outputs: &mut out.outputs,
            checkpoints: &mut out.checkpoints,
            final_states: &mut out.final_states,
        };
        self.forward_checkpointed_resolved(&r, k, saved)
    }

    /// Backpropagation through time for a [`Kernel::forward_checkpointed_host`] call: the same
    /// `args` and `k`, the checkpoints it filled, and upstream gradients (absent: zero).
    /// Bit-identical to [`Kernel::backward_host`] after [`Kernel::forward_host`].
    pub fn backward_checkpointed_host(
        &self,
        args: &KernelArgs<'_>,
        k: usize,
        checkpoints: &[&[f32]],
        upstream: &Upstream<'_, f32>,
        grads: &mut GradBuffers<'_>,
    ) -> Result<ParamGrads, RuntimeError> {
        check_interval(k)?;
        let r = self.resolve_args(args)?;
        let (g, t, n) = (self.graph(), r.t, r.n);
        if r.init_states.is_some() {
            check_init_states(g, n, r.init_states.as_deref())?;
        }
        let lens: Vec<usize> = checkpoints.iter().map(|b| b.len()).collect();
        crate::checkpoint::check_checkpoints(g, t, n, k, &lens)?;
        check_grad_bufs(g, t, n, grads)?;
        // The input gradients are written in place; the initial-state ones are the carried
        // gradients after the first segment (`[N]` each).
        let got =
            self.backward_checkpointed_resolved(&r, k, checkpoints, upstream, &mut grads.inputs)?;
        for (dst, src) in grads.init_states.iter_mut().zip(&got.init_states) {
            dst.copy_from_slice(src);
        }
        Ok(got.params)
    }
}

/// `Ok` for a checkpoint interval of at least 1.
pub(crate) fn check_interval(k: usize) -> Result<(), RuntimeError> {
    SavePolicy::Checkpoint(k)
        .check()
        .map(drop)
        .map_err(|e| RuntimeError::Unsupported(e.to_string()))
}
