//! [`Core`]: one compiled neuron, run on caller memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use flexsn_compiler::codegen::cuda::{CudaOptions, StorageDtype};
use flexsn_compiler::ir::{StateInit, Surrogate};
use flexsn_compiler::scan::param_len;
use flexsn_neurons::Builtin;
use flexsn_runtime::cuda::backend::{CudaCompiler, emulated_jit};
use flexsn_runtime::cuda::shared_device_on;
use flexsn_runtime::memory::MemoryLimit;
use flexsn_runtime::{
    Backend, CheckpointBuffers, GradBuffers, InferenceBuffers, Jit, Kernel, KernelArgs,
    RuntimeError, SavePolicy, TrainingBuffers, Upstream,
};
use pyo3::prelude::*;

use crate::errors::{self, Kind, raise};
use crate::graph::{self, Node, Trace};
use crate::host::{Call, HostBuf};
use crate::launch;

/// One JIT per backend key for the whole process, so that equal cores compile once. Keys:
/// `cpu`, `interp`, `cuda:<ordinal>:<dtype>` (real CUDA on that device with f32/f16/bf16
/// storage) and `cuda-emulated:<dtype>` (the same generated CUDA source run as host C++).
fn jit(py: Python<'_>, backend: &str) -> PyResult<Jit> {
    static JITS: OnceLock<Mutex<HashMap<String, Jit>>> = OnceLock::new();
    let jits = JITS.get_or_init(Default::default);
    if let Some(j) = jits.lock().unwrap_or_else(|e| e.into_inner()).get(backend) {
        return Ok(j.clone());
    }
    let j = py
        .detach(|| make_jit(backend))
        .map_err(|e| errors::runtime(py, e))?
        .ok_or_else(|| {
            raise(
                py,
                Kind::Value,
                format!(
                    "`backend`: unknown backend `{backend}` (cpu, interp, cuda:<device>:<f32|f16|bf16>, \
                     cuda-emulated:<f32|f16|bf16>)"
                ),
            )
        })?;
    let mut jits = jits.lock().unwrap_or_else(|e| e.into_inner());
    Ok(jits.entry(backend.to_string()).or_insert(j).clone())
}

/// The JIT a backend key names (`None`: not a backend key).
fn make_jit(backend: &str) -> Result<Option<Jit>, RuntimeError> {
    let opts = |dtype: &str| {
        StorageDtype::from_name(dtype).map(|dtype| CudaOptions {
            dtype,
            ..Default::default()
        })
    };
    let parts: Vec<&str> = backend.split(':').collect();
    Ok(match parts.as_slice() {
        ["cpu"] => Some(Jit::new(Backend::Cpu)?),
        ["interp"] => Some(Jit::new(Backend::Interpreter)?),
        ["cuda-emulated", dtype] => match opts(dtype) {
            Some(o) => Some(emulated_jit(o)?),
            None => None,
        },
        ["cuda", ordinal, dtype] => match (ordinal.parse::<usize>(), opts(dtype)) {
            (Ok(ordinal), Some(o)) => {
                let device = shared_device_on(ordinal)?;
                Some(Jit::with_compiler(Arc::new(CudaCompiler::with_device(
                    device, o,
                ))))
            }
            _ => None,
        },
        _ => None,
    })
}

/// A neuron core compiled for one backend (see [`jit`] for the keys).
#[pyclass(frozen, module = "flexsn._flexsn")]
pub struct Core {
    kernel: Kernel,
    backend: String,
    builtin: Option<Builtin>,
}

/// The names of SpikingJelly's surrogate classes that flexsn implements.
#[pyfunction]
pub fn surrogate_names() -> Vec<&'static str> {
    Surrogate::NAMES.to_vec()
}

/// The checkpoint interval `K` of a save policy (`states`: `None`; `checkpoint`: the default
/// interval; `checkpoint:K`: `K`). A bad policy raises `FlexSNValueError` naming `save_policy`.
#[pyfunction]
pub fn save_policy_interval(py: Python<'_>, policy: &str) -> PyResult<Option<usize>> {
    match policy.parse::<SavePolicy>() {
        Ok(SavePolicy::States) => Ok(None),
        Ok(SavePolicy::Checkpoint(k)) => Ok(Some(k)),
        Err(e) => Err(raise(py, Kind::Value, format!("`save_policy`: {e}"))),
    }
}

/// A built-in neuron's states as `(name, initial value)`, in the order its cores take them,
/// without compiling it (the modules of `flexsn.torch` keep one attribute per state and reset
/// them to these values).
#[pyfunction]
pub fn builtin_states(
    py: Python<'_>,
    name: &str,
    settings: Vec<String>,
) -> PyResult<Vec<(String, Option<f32>)>> {
    let b = Builtin::from_settings(name, &settings).map_err(|e| errors::neuron(py, e))?;
    let g = b.step_graph().map_err(|e| errors::neuron(py, e))?;
    Ok(g.states()
        .iter()
        .map(|d| (d.name.clone(), init_value(d.init)))
        .collect())
}

/// A built-in neuron's learnable params and their initial values (KLIF: `k`), by name.
#[pyfunction]
pub fn builtin_initial_params(
    py: Python<'_>,
    name: &str,
    settings: Vec<String>,
) -> PyResult<Vec<(String, Vec<f32>)>> {
    let b = Builtin::from_settings(name, &settings).map_err(|e| errors::neuron(py, e))?;
    Ok(b.initial_params())
}

/// A state's constant initial value (`None`: given at run time).
fn init_value(init: StateInit) -> Option<f32> {
    match init {
        StateInit::Const(c) => Some(c),
        StateInit::Runtime => None,
    }
}

impl Core {
    fn compile(
        py: Python<'_>,
        g: flexsn_compiler::ir::StepGraph,
        backend: &str,
        builtin: Option<Builtin>,
        max_memory: Option<u64>,
    ) -> PyResult<Core> {
        let mut jit = jit(py, backend)?;
        if let Some(bytes) = max_memory {
            jit.set_memory_limit(MemoryLimit(bytes));
        }
        let kernel = py
            .detach(|| jit.compile(&g))
            .map_err(|e| errors::runtime(py, e))?;
        Ok(Core {
            kernel,
            backend: backend.to_string(),
            builtin,
        })
    }

    fn count(py: Python<'_>, what: &str, expected: usize, got: usize) -> PyResult<()> {
        if expected == got {
            Ok(())
        } else {
            Err(raise(
                py,
                Kind::Value,
                format!("expected {expected} {what}, got {got}"),
            ))
        }
    }
}

#[pymethods]
impl Core {
    /// A built-in neuron by CLI or SpikingJelly class name, configured by `key=value` settings.
    /// `max_memory`: the most bytes a call may allocate (default 8 GiB); a call over it raises
    /// `FlexSNMemoryError` before allocating.
    #[staticmethod]
    #[pyo3(signature = (name, settings, backend, max_memory=None))]
    fn builtin(
        py: Python<'_>,
        name: &str,
        settings: Vec<String>,
        backend: &str,
        max_memory: Option<u64>,
    ) -> PyResult<Core> {
        let b = Builtin::from_settings(name, &settings).map_err(|e| errors::neuron(py, e))?;
        let g = b.step_graph().map_err(|e| errors::neuron(py, e))?;
        Core::compile(py, g, backend, Some(b), max_memory)
    }

    /// A traced core (see `graph` for the format); `max_memory` as for `builtin`.
    #[staticmethod]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (name, inputs, states, params, nodes, outputs, next_states, backend, max_memory=None))]
    fn from_trace(
        py: Python<'_>,
        name: String,
        inputs: Vec<String>,
        states: Vec<(String, Option<f32>)>,
        params: Vec<(String, String, bool)>,
        nodes: Vec<Node>,
        outputs: Vec<(String, usize)>,
        next_states: Vec<usize>,
        backend: &str,
        max_memory: Option<u64>,
    ) -> PyResult<Core> {
        let t = Trace {
            name,
            inputs,
            states,
            params,
            nodes,
            outputs,
            next_states,
        };
        let g = graph::build(&t).map_err(|e| raise(py, Kind::Value, e.to_string()))?;
        Core::compile(py, g, backend, None, max_memory)
    }

    /// The backend the core was compiled for.
    #[getter]
    fn backend(&self) -> &str {
        &self.backend
    }

    #[getter]
    fn inputs(&self) -> Vec<String> {
        let g = self.kernel.graph();
        g.inputs().iter().map(|d| d.name.clone()).collect()
    }

    #[getter]
    fn outputs(&self) -> Vec<String> {
        let g = self.kernel.graph();
        g.outputs().iter().map(|d| d.name.clone()).collect()
    }

    /// `(name, initial value or None)` per state.
    #[getter]
    fn states(&self) -> Vec<(String, Option<f32>)> {
        let g = self.kernel.graph();
        g.states()
            .iter()
            .map(|d| (d.name.clone(), init_value(d.init)))
            .collect()
    }

    /// `(name, kind, learnable)` per param.
    #[getter]
    fn params(&self) -> Vec<(String, &'static str, bool)> {
        let g = self.kernel.graph();
        g.params()
            .iter()
            .map(|d| (d.name.clone(), d.kind.name(), d.learnable))
            .collect()
    }

    /// A built-in's initial param values by name (PLIF: `w`); empty for traced cores.
    #[getter]
    fn initial_params(&self) -> Vec<(String, Vec<f32>)> {
        self.builtin.map_or_else(Vec::new, |b| {
            b.initial_params()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        })
    }

    /// The optimised step graph in flexsn's text form.
    fn text(&self) -> String {
        flexsn_compiler::text::print(self.kernel.graph())
    }

    /// The graph's stable hash.
    #[getter]
    fn hash(&self) -> &str {
        self.kernel.hash()
    }

    /// The argument list of a raw [`Core::launch`] of scan `which` (`infer`, `train` or
    /// `backward` for the upstream gradients flagged present) over `[t, n]`:
    /// `(name, element type, length)` per buffer, in order.
    #[pyo3(signature = (which, t, n, grad_outputs=None, grad_state_seqs=None))]
    fn scan_arguments(
        &self,
        py: Python<'_>,
        which: &str,
        t: usize,
        n: usize,
        grad_outputs: Option<Vec<bool>>,
        grad_state_seqs: Option<Vec<bool>>,
    ) -> PyResult<Vec<(String, &'static str, usize)>> {
        let exec = launch::executor(py, &self.kernel, which, grad_outputs, grad_state_seqs)?;
        launch::arguments(exec.as_ref(), t, n).map_err(|e| errors::runtime(py, e))
    }

    /// Runs scan `which` over `[t, n]` on `bufs` (`(address, length, element type)` in the
    /// order of [`Core::scan_arguments`]). CUDA cores queue it on `stream` (torch's current
    /// stream of the tensors' device) and return at once; host cores run it now. `pitches`, one
    /// per buffer, gives the row pitch of `[T, N]` buffers whose rows are not `n` apart (`None`:
    /// dense; a pitched buffer holds `t * pitch` elements).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (which, t, n, stream, bufs, grad_outputs=None, grad_state_seqs=None, pitches=None))]
    fn launch(
        &self,
        py: Python<'_>,
        which: &str,
        t: usize,
        n: usize,
        stream: u64,
        bufs: Vec<launch::RawBuf>,
        grad_outputs: Option<Vec<bool>>,
        grad_state_seqs: Option<Vec<bool>>,
        pitches: Option<Vec<Option<usize>>>,
    ) -> PyResult<()> {
        let exec = launch::executor(py, &self.kernel, which, grad_outputs, grad_state_seqs)?;
        launch::launch(py, exec.as_ref(), t, n, stream, &bufs, pitches)
    }

    /// The row pitch for `[T, N]` buffers of element type `dtype` (`f32`, `f16`, `bf16`) that
    /// the caller allocates and keeps for this core's raw launches (the state buffers between
    /// forward and backward): `n` rounded up to 128 bytes on CUDA, so that every warp's access
    /// is sector-aligned; `n` on host backends.
    fn row_pitch(&self, py: Python<'_>, n: usize, dtype: &str) -> PyResult<usize> {
        let d = StorageDtype::from_name(dtype).ok_or_else(|| {
            raise(
                py,
                Kind::Value,
                format!("unknown element type `{dtype}` (f32, f16, bf16)"),
            )
        })?;
        launch::owned_pitch(self.kernel.training_scan().as_ref(), n, d).ok_or_else(|| {
            raise(
                py,
                Kind::Value,
                format!("N = {n} padded to 128 bytes overflows"),
            )
        })
    }

    /// The argument list of a raw [`Core::launch_checkpoint`] of `which` (`train` or
    /// `backward` for the upstream gradients flagged present) over `[t, n]` with checkpoint
    /// interval `k`: `(name, element type, length)` per buffer, in order. CUDA and emulated
    /// CUDA cores only; an error when `checkpoint:K` does not fit the kernel's shared memory.
    #[pyo3(signature = (which, t, n, k, grad_outputs=None, grad_state_seqs=None))]
    #[allow(clippy::too_many_arguments)]
    fn checkpoint_arguments(
        &self,
        py: Python<'_>,
        which: &str,
        t: usize,
        n: usize,
        k: usize,
        grad_outputs: Option<Vec<bool>>,
        grad_state_seqs: Option<Vec<bool>>,
    ) -> PyResult<Vec<(String, &'static str, usize)>> {
        launch::CheckpointCall::new(py, &self.kernel, which, k, grad_outputs, grad_state_seqs)?
            .arguments(py, &self.kernel, t, n)
    }

    /// Runs the fused `checkpoint:K` kernel `which` over `[t, n]` on `bufs` (`(address,
    /// length, element type)` in the order of [`Core::checkpoint_arguments`]). CUDA cores
    /// queue it on `stream` and return at once; emulated CUDA cores run it now on host memory.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (which, t, n, k, stream, bufs, grad_outputs=None, grad_state_seqs=None))]
    fn launch_checkpoint(
        &self,
        py: Python<'_>,
        which: &str,
        t: usize,
        n: usize,
        k: usize,
        stream: u64,
        bufs: Vec<launch::RawBuf>,
        grad_outputs: Option<Vec<bool>>,
        grad_state_seqs: Option<Vec<bool>>,
    ) -> PyResult<()> {
        launch::CheckpointCall::new(py, &self.kernel, which, k, grad_outputs, grad_state_seqs)?
            .launch(py, &self.kernel, t, n, stream, &bufs)
    }

    /// Forward over `t` steps of `n` neurons: reads `inputs` (`[T, N]`), `params` and the
    /// initial `states` (`[N]`); writes `outputs` (`[T, N]`) and `finals` (`[N]`). With
    /// `state_bufs` (training), also one `[(T+1), N]` buffer per state for
    /// [`Core::backward`]: row 0 the initial state, rows `1..=T` the sequence. With
    /// `checkpoint=K` as well, the state buffers hold only the checkpoints: `⌈T/K⌉` rows of
    /// `N`, the states before steps `0, K, 2K, …` (the save policy `checkpoint:K`).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (t, n, inputs, params, states, outputs, finals, state_bufs=None, checkpoint=None))]
    fn forward(
        &self,
        py: Python<'_>,
        t: usize,
        n: usize,
        inputs: Vec<HostBuf>,
        params: Vec<HostBuf>,
        states: Vec<HostBuf>,
        outputs: Vec<HostBuf>,
        finals: Vec<HostBuf>,
        state_bufs: Option<Vec<HostBuf>>,
        checkpoint: Option<usize>,
    ) -> PyResult<()> {
        let g = self.kernel.graph();
        let (ns, no) = (g.states().len(), g.outputs().len());
        let mut call = Call::new();
        let (tn, param_names) = self.read_args(py, &mut call, t, n, &inputs, &params, &states)?;
        Core::count(py, "outputs", no, outputs.len())?;
        Core::count(py, "final states", ns, finals.len())?;
        for (d, b) in g.outputs().iter().zip(&outputs) {
            call.write(py, &d.name, *b, tn)?;
        }
        for (d, b) in g.states().iter().zip(&finals) {
            call.write(py, &format!("final {}", d.name), *b, n)?;
        }
        if let Some(bufs) = &state_bufs {
            Core::count(py, "state buffers", ns, bufs.len())?;
            let len = saved_len(py, t, n, checkpoint)?;
            for (d, b) in g.states().iter().zip(bufs) {
                call.write(py, &format!("{} buffer", d.name), *b, len)?;
            }
        }
        // SAFETY: the buffers are the data of tensors that flexsn.torch holds for this call.
        let (reads, mut writes) = unsafe { call.slices(py)? };
        let run = || -> Result<(), RuntimeError> {
            let args = kernel_args(t, n, &reads, &param_names, g.inputs().len(), ns);
            let (outs, rest) = writes.split_at_mut(no);
            let (fins, bufs) = rest.split_at_mut(ns);
            let (outputs, final_states) = (reborrow(outs), reborrow(fins));
            if let (Some(_), Some(k)) = (&state_bufs, checkpoint) {
                let mut out = CheckpointBuffers {
                    outputs,
                    checkpoints: reborrow(bufs),
                    final_states,
                };
                self.kernel.forward_checkpointed_host(&args, k, &mut out)
            } else if state_bufs.is_some() {
                let mut out = TrainingBuffers {
                    outputs,
                    state_bufs: reborrow(bufs),
                    final_states,
                };
                self.kernel.forward_host(&args, &mut out)
            } else {
                let mut out = InferenceBuffers {
                    outputs,
                    final_states,
                };
                self.kernel.infer_host(&args, &mut out)
            }
        };
        py.detach(run).map_err(|e| errors::runtime(py, e))
    }

    /// Backpropagation through time for a training [`Core::forward`]: its arguments and state
    /// buffers, and the upstream gradients present (`None`: zero); writes the gradients of the
    /// inputs (`[T, N]`), initial states (`[N]`) and of the learnable params whose buffer is
    /// given. `checkpoint=K`: the state buffers are the checkpoints of a forward with the same
    /// `checkpoint=K`, and the segments between them are recomputed.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (t, n, inputs, params, states, state_bufs, grad_outputs, grad_state_seqs,
        grad_finals, grad_inputs, grad_init_states, grad_params, checkpoint=None))]
    fn backward(
        &self,
        py: Python<'_>,
        t: usize,
        n: usize,
        inputs: Vec<HostBuf>,
        params: Vec<HostBuf>,
        states: Vec<HostBuf>,
        state_bufs: Vec<HostBuf>,
        grad_outputs: Vec<Option<HostBuf>>,
        grad_state_seqs: Vec<Option<HostBuf>>,
        grad_finals: Vec<Option<HostBuf>>,
        grad_inputs: Vec<HostBuf>,
        grad_init_states: Vec<HostBuf>,
        grad_params: Vec<Option<HostBuf>>,
        checkpoint: Option<usize>,
    ) -> PyResult<()> {
        let g = self.kernel.graph();
        let (ni, ns, np, no) = (
            g.inputs().len(),
            g.states().len(),
            g.params().len(),
            g.outputs().len(),
        );
        let mut call = Call::new();
        let (tn, param_names) = self.read_args(py, &mut call, t, n, &inputs, &params, &states)?;
        Core::count(py, "state buffers", ns, state_bufs.len())?;
        Core::count(py, "output gradients", no, grad_outputs.len())?;
        Core::count(py, "state-sequence gradients", ns, grad_state_seqs.len())?;
        Core::count(py, "final-state gradients", ns, grad_finals.len())?;
        Core::count(py, "input-gradient buffers", ni, grad_inputs.len())?;
        Core::count(
            py,
            "initial-state-gradient buffers",
            ns,
            grad_init_states.len(),
        )?;
        Core::count(py, "param-gradient buffers", np, grad_params.len())?;
        let saved = saved_len(py, t, n, checkpoint)?;
        for (d, b) in g.states().iter().zip(&state_bufs) {
            call.read(py, &format!("{} buffer", d.name), *b, saved)?;
        }
        // Upstream gradients, in Upstream order: outputs, state sequences, final states.
        let mut present = vec![];
        let upstream = g
            .outputs()
            .iter()
            .map(|d| (format!("grad of {}", d.name), tn))
            .chain(
                g.states()
                    .iter()
                    .map(|d| (format!("grad of {} sequence", d.name), tn)),
            )
            .chain(
                g.states()
                    .iter()
                    .map(|d| (format!("grad of final {}", d.name), n)),
            );
        let given = grad_outputs
            .iter()
            .chain(&grad_state_seqs)
            .chain(&grad_finals);
        for ((name, len), b) in upstream.zip(given) {
            present.push(b.is_some());
            if let Some(b) = b {
                call.read(py, &name, *b, len)?;
            }
        }
        for (d, b) in g.inputs().iter().zip(&grad_inputs) {
            call.write(py, &format!("grad of {}", d.name), *b, tn)?;
        }
        for (d, b) in g.states().iter().zip(&grad_init_states) {
            call.write(py, &format!("grad of initial {}", d.name), *b, n)?;
        }
        let mut param_grad_slot = vec![];
        for ((d, name), b) in g.params().iter().zip(&param_names).zip(&grad_params) {
            match b {
                Some(_) if !d.learnable => {
                    return Err(raise(
                        py,
                        Kind::Value,
                        format!("param `{name}` is not learnable: it has no gradient"),
                    ));
                }
                Some(b) => {
                    let len = param_len(d.kind, t, n);
                    call.write(py, &format!("grad of {name}"), *b, len)?;
                    param_grad_slot.push(true);
                }
                None => param_grad_slot.push(false),
            }
        }
        // SAFETY: the buffers are the data of tensors that flexsn.torch holds for this call.
        let (reads, mut writes) = unsafe { call.slices(py)? };
        let run = || -> Result<(), RuntimeError> {
            let args = kernel_args(t, n, &reads, &param_names, ni, ns);
            let rest = &reads[ni + np + ns..];
            let (bufs, mut given) = rest.split_at(ns);
            let mut ups = present.iter().map(|p| {
                p.then(|| {
                    let (first, tail) = given.split_at(1);
                    given = tail;
                    first[0]
                })
            });
            let mut take = |k: usize| (0..k).map(|_| ups.next().flatten()).collect::<Vec<_>>();
            let upstream = Upstream {
                outputs: take(no),
                state_seqs: take(ns),
                final_states: take(ns),
            };
            let (gin, rest) = writes.split_at_mut(ni);
            let (ginit, gparams) = rest.split_at_mut(ns);
            let mut grads = GradBuffers {
                inputs: reborrow(gin),
                init_states: reborrow(ginit),
            };
            let pg = match checkpoint {
                Some(k) => self
                    .kernel
                    .backward_checkpointed_host(&args, k, bufs, &upstream, &mut grads)?,
                None => self
                    .kernel
                    .backward_host(&args, bufs, &upstream, &mut grads)?,
            };
            let mut dst = gparams.iter_mut();
            for (v, slot) in pg.iter().zip(&param_grad_slot) {
                if *slot && let Some(d) = dst.next() {
                    match v {
                        Some(v) => d.copy_from_slice(v),
                        None => d.fill(0.0),
                    }
                }
            }
            Ok(())
        };
        py.detach(run).map_err(|e| errors::runtime(py, e))
    }
}

impl Core {
    /// Registers the arguments every call reads (inputs `[T, N]`, params, initial states
    /// `[N]`); returns `T * N` and the param names in graph order.
    #[allow(clippy::too_many_arguments)]
    fn read_args(
        &self,
        py: Python<'_>,
        call: &mut Call,
        t: usize,
        n: usize,
        inputs: &[HostBuf],
        params: &[HostBuf],
        states: &[HostBuf],
    ) -> PyResult<(usize, Vec<String>)> {
        let g = self.kernel.graph();
        Core::count(py, "inputs", g.inputs().len(), inputs.len())?;
        Core::count(py, "params", g.params().len(), params.len())?;
        Core::count(py, "states", g.states().len(), states.len())?;
        let tn = t
            .checked_mul(n)
            .ok_or_else(|| raise(py, Kind::Value, "T * N overflows"))?;
        for (d, b) in g.inputs().iter().zip(inputs) {
            call.read(py, &d.name, *b, tn)?;
        }
        for (d, b) in g.params().iter().zip(params) {
            call.read(py, &d.name, *b, param_len(d.kind, t, n))?;
        }
        for (d, b) in g.states().iter().zip(states) {
            call.read(py, &format!("initial {}", d.name), *b, n)?;
        }
        Ok((tn, g.params().iter().map(|d| d.name.clone()).collect()))
    }
}

/// Floats per state buffer that a training forward keeps: `(T + 1) * N`, or `⌈T/K⌉ * N` under
/// `checkpoint:K` (`K` = 0 is refused).
fn saved_len(py: Python<'_>, t: usize, n: usize, checkpoint: Option<usize>) -> PyResult<usize> {
    let policy = checkpoint
        .map_or(SavePolicy::States, SavePolicy::Checkpoint)
        .check()
        .map_err(|e| raise(py, Kind::Value, format!("`checkpoint`: {e}")))?;
    policy
        .saved_rows(t)
        .checked_mul(n)
        .ok_or_else(|| raise(py, Kind::Value, "the saved state rows * N overflow"))
}

/// [`KernelArgs`] over the first `ni + np + ns` read slices (inputs, params, initial states).
fn kernel_args<'a>(
    t: usize,
    n: usize,
    reads: &[&'a [f32]],
    param_names: &'a [String],
    ni: usize,
    ns: usize,
) -> KernelArgs<'a> {
    let np = param_names.len();
    KernelArgs {
        t,
        n,
        inputs: reads[..ni].to_vec(),
        init_states: Some(reads[ni + np..ni + np + ns].to_vec()),
        params: param_names
            .iter()
            .map(String::as_str)
            .zip(reads[ni..ni + np].iter().copied())
            .collect(),
    }
}

/// Shorter-lived `&mut` slices of `v` (for the runtime's buffer structs).
fn reborrow<'s>(v: &'s mut [&mut [f32]]) -> Vec<&'s mut [f32]> {
    v.iter_mut().map(|s| &mut **s).collect()
}
