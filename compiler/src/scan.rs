//! The scan: what every backend compiles and runs.
//!
//! A [`ScanKernel`] is a step graph run over `T` time steps for `N` independent neurons, forward
//! (`t = 0..T`) or in reverse (`t = T-1..=0`, for backward). Its run-time arguments
//! ([`ScanArgs`]) and results ([`ScanResult`]) fix the kernel ABI shared by the interpreter, the
//! Cranelift backend and the CUDA backend:
//!
//! | buffer | shape | indexed at step `t`, neuron `n` |
//! |---|---|---|
//! | input `i` | `[T, N]` | `t * N + n` |
//! | initial state `j` | `[N]` | `n` |
//! | param `k`: shared / per-neuron / per-time | `[1]` / `[N]` / `[T]` | `0` / `n` / `t` |
//! | output `o`, [`OutputMode::Sequence`] | `[T, N]` | `t * N + n` |
//! | output `o`, [`OutputMode::SumOverTime`] | `[N]` | `n` (summed over `t` in scan order) |
//! | state sequence `j` (if `state_seqs`) | `[T, N]` | `t * N + n` (the state after step `t`) |
//! | final state `j` | `[N]` | `n` |

use crate::ir::num::Real;
use crate::ir::{Op, ParamKind, StepGraph};

/// Which way time runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Steps `0, 1, ..., T-1`.
    Forward,
    /// Steps `T-1, ..., 0` (backward scans).
    Reverse,
}

/// How an output is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputMode {
    /// One value per step: `[T, N]`.
    Sequence,
    /// Summed over time per neuron: `[N]` (parameter-gradient contributions).
    SumOverTime,
}

/// A step graph scheduled as a scan.
#[derive(Clone, Debug)]
pub struct ScanKernel {
    /// The step graph run at each step.
    pub graph: StepGraph,
    /// Which way time runs.
    pub direction: Direction,
    /// One mode per graph output.
    pub output_modes: Vec<OutputMode>,
    /// Whether every step's next states are stored as `[T, N]` sequences.
    pub state_seqs: bool,
}

impl ScanKernel {
    /// A forward scan storing every output as a sequence.
    pub fn forward(graph: StepGraph, state_seqs: bool) -> Self {
        let output_modes = vec![OutputMode::Sequence; graph.outputs().len()];
        ScanKernel {
            graph,
            direction: Direction::Forward,
            output_modes,
            state_seqs,
        }
    }

    /// Length of output `o`'s buffer for a `[T, N]` run.
    pub fn output_len(&self, o: usize, t: usize, n: usize) -> usize {
        match self.output_modes[o] {
            OutputMode::Sequence => t * n,
            OutputMode::SumOverTime => n,
        }
    }

    /// A stable hash identifying this kernel (graph, direction, modes, state sequences).
    pub fn stable_hash_hex(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(&self.graph.stable_hash());
        h.update(
            format!(
                "{:?}{:?}{}",
                self.direction, self.output_modes, self.state_seqs
            )
            .as_bytes(),
        );
        h.finalize().to_hex().to_string()
    }
}

/// A shape or arity mismatch in a call, naming the argument, what was expected and what came.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// The wrong number of arguments of one kind.
    #[error("expected {expected} {what}, got {got}")]
    Count {
        /// The kind of argument (`input sequences`, `params`, ...).
        what: &'static str,
        /// How many the graph asks for.
        expected: usize,
        /// How many came.
        got: usize,
    },
    /// A buffer of the wrong length.
    #[error("`{name}`: expected {expected} elements ({shape}), got {got}")]
    Len {
        /// The buffer.
        name: String,
        /// Its expected shape, for the message (`[T=4, N=8]`).
        shape: String,
        /// The expected length.
        expected: usize,
        /// Its length.
        got: usize,
    },
    /// `N = 0`.
    #[error("N = 0: a scan needs at least one neuron")]
    NoNeurons,
    /// `T * N` does not fit a `usize`.
    #[error("`{name}`: T * N = {t} * {n} overflows")]
    Overflow {
        /// The buffer whose length overflows.
        name: String,
        /// Time steps.
        t: usize,
        /// Neurons.
        n: usize,
    },
}

impl ShapeError {
    /// `Ok` if `got` is the `expected` number of `what`, else [`ShapeError::Count`].
    pub fn check_count(what: &'static str, expected: usize, got: usize) -> Result<(), ShapeError> {
        if expected == got {
            Ok(())
        } else {
            Err(ShapeError::Count {
                what,
                expected,
                got,
            })
        }
    }

    /// `Ok` if buffer `name` has the `expected` length, else [`ShapeError::Len`] (`shape`: the
    /// expected shape, for the message).
    pub fn check_len(
        name: impl Into<String>,
        shape: impl Into<String>,
        expected: usize,
        got: usize,
    ) -> Result<(), ShapeError> {
        if expected == got {
            Ok(())
        } else {
            Err(ShapeError::Len {
                name: name.into(),
                shape: shape.into(),
                expected,
                got,
            })
        }
    }
}

/// Run-time arguments of one scan. All buffers are dense and row-major (time-major).
#[derive(Clone, Debug)]
pub struct ScanArgs<'a, F> {
    /// Time steps.
    pub t: usize,
    /// Neurons.
    pub n: usize,
    /// Per input: `[T, N]`.
    pub inputs: Vec<&'a [F]>,
    /// Per state: `[N]`.
    pub init_states: Vec<&'a [F]>,
    /// Per param: its values (length by its kind).
    pub params: Vec<&'a [F]>,
}

/// What a scan returns (see the [module docs](self) for shapes).
#[derive(Clone, Debug, PartialEq)]
pub struct ScanResult<F> {
    /// Per output: its values (by its output mode).
    pub outputs: Vec<Vec<F>>,
    /// Empty unless the kernel stores state sequences.
    pub state_seqs: Vec<Vec<F>>,
    /// Per state: its value after the last step, `[N]`.
    pub final_states: Vec<Vec<F>>,
}

/// Expected length of a parameter of `kind` for a `[T, N]` run.
pub fn param_len(kind: ParamKind, t: usize, n: usize) -> usize {
    match kind {
        ParamKind::Shared => 1,
        ParamKind::PerNeuron => n,
        ParamKind::PerTime => t,
    }
}

impl<F> ScanArgs<'_, F> {
    /// Checks counts and lengths against the graph. Every backend calls this before running
    /// generated code.
    pub fn check(&self, g: &StepGraph) -> Result<(), ShapeError> {
        let (t, n) = (self.t, self.n);
        if n == 0 {
            return Err(ShapeError::NoNeurons);
        }
        let count = ShapeError::check_count;
        count("input sequences", g.inputs().len(), self.inputs.len())?;
        count("initial states", g.states().len(), self.init_states.len())?;
        count("params", g.params().len(), self.params.len())?;
        let tn = t.checked_mul(n).ok_or_else(|| ShapeError::Overflow {
            name: "inputs".into(),
            t,
            n,
        })?;
        let len = ShapeError::check_len;
        for (d, x) in g.inputs().iter().zip(&self.inputs) {
            len(&d.name, format!("[T={t}, N={n}]"), tn, x.len())?;
        }
        for (d, x) in g.states().iter().zip(&self.init_states) {
            len(&d.name, format!("[N={n}]"), n, x.len())?;
        }
        for (d, x) in g.params().iter().zip(&self.params) {
            let shape = match d.kind {
                ParamKind::Shared => "[] (shared scalar)".to_string(),
                ParamKind::PerNeuron => format!("[N={n}] (per neuron)"),
                ParamKind::PerTime => format!("[T={t}] (per time step)"),
            };
            len(&d.name, shape, param_len(d.kind, t, n), x.len())?;
        }
        Ok(())
    }
}

/// Runs `kernel` one neuron and one time step at a time, evaluating every non-leaf node with
/// `eval(op, operands)`: the scan loop shared by the interpreter (which evaluates with
/// [`crate::ir::eval::eval_op`]) and the model of generated CPU code. Arguments are checked first.
pub fn drive<F: Real>(
    kernel: &ScanKernel,
    args: &ScanArgs<'_, F>,
    mut eval: impl FnMut(&Op, &[F]) -> F,
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
    let mut values = vec![F::zero(); g.len()];
    let mut operands = Vec::with_capacity(3);
    for n in 0..n_len {
        let mut s: Vec<F> = args.init_states.iter().map(|s0| s0[n]).collect();
        for step in 0..t_len {
            let t = match kernel.direction {
                Direction::Forward => step,
                Direction::Reverse => t_len - 1 - step,
            };
            for (v, node) in g.nodes() {
                values[v.index()] = match node.op {
                    Op::Input(i) => args.inputs[i as usize][t * n_len + n],
                    Op::State(j) => s[j as usize],
                    Op::Param(k) => {
                        let p = args.params[k as usize];
                        match g.params()[k as usize].kind {
                            ParamKind::Shared => p[0],
                            ParamKind::PerNeuron => p[n],
                            ParamKind::PerTime => p[t],
                        }
                    }
                    ref op => {
                        operands.clear();
                        operands.extend(node.args.iter().map(|a| values[a.index()]));
                        eval(op, &operands)
                    }
                };
            }
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
