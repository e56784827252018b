//! [`Core`]: one compiled neuron, run on caller memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use flexsn_compiler::autodiff::{self, BackwardGraph, GradSpec};
use flexsn_compiler::bptt;
use flexsn_compiler::ir::{StateInit, Surrogate};
use flexsn_compiler::scan::{ScanArgs, ScanKernel, ScanResult, param_len};
use flexsn_neurons::Builtin;
use flexsn_runtime::{Backend, Jit, Kernel, RuntimeError, ScanExecutor, ScanOutputs};
use pyo3::prelude::*;

use crate::errors::{self, Kind, raise};
use crate::graph::{self, Node, Trace};
use crate::host::{Call, HostBuf};

/// One JIT per backend for the whole process, so that equal cores compile once.
fn jit(py: Python<'_>, backend: &str) -> PyResult<Jit> {
    static CPU: OnceLock<Jit> = OnceLock::new();
    static INTERP: OnceLock<Jit> = OnceLock::new();
    let (cell, b) = match backend {
        "cpu" => (&CPU, Backend::Cpu),
        "interp" => (&INTERP, Backend::Interpreter),
        other => {
            return Err(raise(
                py,
                Kind::Value,
                format!("`backend`: unknown or unavailable host backend `{other}` (cpu, interp)"),
            ));
        }
    };
    if let Some(j) = cell.get() {
        return Ok(j.clone());
    }
    let j = Jit::new(b).map_err(|e| errors::runtime(py, e))?;
    Ok(cell.get_or_init(|| j).clone())
}

/// A backward scan for one combination of present upstream gradients.
struct Backward {
    graph: BackwardGraph,
    kernel: ScanKernel,
    exec: Arc<dyn ScanExecutor>,
}

/// A neuron core compiled for a host backend (`cpu` or `interp`).
#[pyclass(frozen, module = "flexsn._flexsn")]
pub struct Core {
    kernel: Kernel,
    backend: String,
    builtin: Option<Builtin>,
    backward: Mutex<HashMap<GradSpec, Arc<Backward>>>,
}

/// The names of SpikingJelly's surrogate classes that flexsn implements.
#[pyfunction]
pub fn surrogate_names() -> Vec<&'static str> {
    Surrogate::NAMES.to_vec()
}

impl Core {
    fn compile(
        py: Python<'_>,
        g: flexsn_compiler::ir::StepGraph,
        backend: &str,
        builtin: Option<Builtin>,
    ) -> PyResult<Core> {
        let jit = jit(py, backend)?;
        let kernel = py
            .detach(|| jit.compile(&g))
            .map_err(|e| errors::runtime(py, e))?;
        Ok(Core {
            kernel,
            backend: backend.to_string(),
            builtin,
            backward: Mutex::default(),
        })
    }

    fn backward_for(&self, spec: &GradSpec) -> Result<Arc<Backward>, RuntimeError> {
        let mut map = self.backward.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get(spec) {
            return Ok(b.clone());
        }
        // The same derivation as the kernel's own, for the param-gradient output slots.
        let graph = autodiff::backward(self.kernel.graph(), spec)?;
        let b = Arc::new(Backward {
            graph,
            kernel: self.kernel.backward_scan_kernel(spec)?,
            exec: self.kernel.prepare_backward(spec)?,
        });
        map.insert(spec.clone(), b.clone());
        Ok(b)
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

    fn param_lens(&self, t: usize, n: usize) -> Vec<(String, usize)> {
        self.kernel
            .graph()
            .params()
            .iter()
            .map(|d| (d.name.clone(), param_len(d.kind, t, n)))
            .collect()
    }
}

#[pymethods]
impl Core {
    /// A built-in neuron by CLI or SpikingJelly class name, configured by `key=value` settings.
    #[staticmethod]
    fn builtin(py: Python<'_>, name: &str, settings: Vec<String>, backend: &str) -> PyResult<Core> {
        let b = Builtin::from_settings(name, &settings).map_err(|e| errors::neuron(py, e))?;
        let g = b.step_graph().map_err(|e| errors::neuron(py, e))?;
        Core::compile(py, g, backend, Some(b))
    }

    /// A traced core (see `graph` for the format).
    #[staticmethod]
    #[allow(clippy::too_many_arguments)]
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
        Core::compile(py, g, backend, None)
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
            .map(|d| {
                let init = match d.init {
                    StateInit::Const(c) => Some(c),
                    StateInit::Runtime => None,
                };
                (d.name.clone(), init)
            })
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

    /// Forward over `t` steps of `n` neurons. `inputs` `[T, N]` and `params` are read. With
    /// `training`, each of `states` is a `[(T+1), N]` buffer whose row 0 holds the initial state
    /// and whose rows `1..=T` receive the state sequence; otherwise each is the `[N]` initial
    /// state. `outputs` (`[T, N]`) and `finals` (`[N]`) are written.
    #[allow(clippy::too_many_arguments)]
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
        training: bool,
    ) -> PyResult<()> {
        let g = self.kernel.graph();
        let (ni, ns, np, no) = (
            g.inputs().len(),
            g.states().len(),
            g.params().len(),
            g.outputs().len(),
        );
        Core::count(py, "inputs", ni, inputs.len())?;
        Core::count(py, "params", np, params.len())?;
        Core::count(py, "states", ns, states.len())?;
        Core::count(py, "outputs", no, outputs.len())?;
        Core::count(py, "final states", ns, finals.len())?;
        let tn = t
            .checked_mul(n)
            .ok_or_else(|| raise(py, Kind::Value, "T * N overflows"))?;
        let seq_len = tn
            .checked_add(n)
            .ok_or_else(|| raise(py, Kind::Value, "(T + 1) * N overflows"))?;
        let mut call = Call::new();
        for (d, b) in g.inputs().iter().zip(&inputs) {
            call.read(py, &d.name, *b, tn)?;
        }
        for ((name, len), b) in self.param_lens(t, n).iter().zip(&params) {
            call.read(py, name, *b, *len)?;
        }
        for (d, b) in g.states().iter().zip(&states) {
            if training {
                call.write(py, &format!("{} buffer", d.name), *b, seq_len)?;
            } else {
                call.read(py, &format!("initial {}", d.name), *b, n)?;
            }
        }
        for (d, b) in g.outputs().iter().zip(&outputs) {
            call.write(py, &d.name, *b, tn)?;
        }
        for (d, b) in g.states().iter().zip(&finals) {
            call.write(py, &format!("final {}", d.name), *b, n)?;
        }
        // SAFETY: the buffers are the data of tensors that flexsn.torch holds for this call.
        let (reads, mut writes) = unsafe { call.slices(py)? };
        let run = || -> Result<(), RuntimeError> {
            let (ins, rest) = reads.split_at(ni);
            let (ps, s0) = rest.split_at(np);
            let (state_bufs, outs) = if training {
                writes.split_at_mut(ns)
            } else {
                writes.split_at_mut(0)
            };
            let (outs, fins) = outs.split_at_mut(no);
            let mut init: Vec<&[f32]> = s0.to_vec();
            let mut seqs: Vec<&mut [f32]> = vec![];
            for b in state_bufs.iter_mut() {
                let (row0, rest) = b.split_at_mut(n);
                init.push(row0);
                seqs.push(rest);
            }
            let args = ScanArgs {
                t,
                n,
                inputs: ins.to_vec(),
                init_states: init,
                params: ps.to_vec(),
            };
            args.check(g)?;
            let mut out = ScanOutputs {
                outputs: outs.iter_mut().map(|s| &mut **s).collect(),
                state_seqs: seqs,
                final_states: fins.iter_mut().map(|s| &mut **s).collect(),
            };
            let exec = if training {
                self.kernel.training_scan()
            } else {
                self.kernel.inference_scan()
            };
            exec.run_into(&args, &mut out)
        };
        py.detach(run).map_err(|e| errors::runtime(py, e))
    }

    /// Backpropagation through time for a [`Core::forward`] with `training`: reads its inputs,
    /// params and `[(T+1), N]` state buffers and the upstream gradients present (`None`: zero);
    /// writes the gradients of the inputs (`[T, N]`), initial states (`[N]`) and of the
    /// learnable params whose buffer is given.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        py: Python<'_>,
        t: usize,
        n: usize,
        inputs: Vec<HostBuf>,
        params: Vec<HostBuf>,
        states: Vec<HostBuf>,
        grad_outputs: Vec<Option<HostBuf>>,
        grad_state_seqs: Vec<Option<HostBuf>>,
        grad_finals: Vec<Option<HostBuf>>,
        grad_inputs: Vec<HostBuf>,
        grad_init_states: Vec<HostBuf>,
        grad_params: Vec<Option<HostBuf>>,
    ) -> PyResult<()> {
        let g = self.kernel.graph();
        let (ni, ns, np, no) = (
            g.inputs().len(),
            g.states().len(),
            g.params().len(),
            g.outputs().len(),
        );
        Core::count(py, "inputs", ni, inputs.len())?;
        Core::count(py, "params", np, params.len())?;
        Core::count(py, "state buffers", ns, states.len())?;
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
        let tn = t
            .checked_mul(n)
            .ok_or_else(|| raise(py, Kind::Value, "T * N overflows"))?;
        let param_lens = self.param_lens(t, n);
        let mut call = Call::new();
        for (d, b) in g.inputs().iter().zip(&inputs) {
            call.read(py, &d.name, *b, tn)?;
        }
        for ((name, len), b) in param_lens.iter().zip(&params) {
            call.read(py, name, *b, *len)?;
        }
        for (d, b) in g.states().iter().zip(&states) {
            call.read(py, &format!("{} buffer", d.name), *b, tn + n)?;
        }
        // Present upstream gradients, in Upstream order; `slot` maps each back.
        let mut present = |name: String, b: &Option<HostBuf>, len: usize| -> PyResult<bool> {
            match b {
                Some(b) => call.read(py, &name, *b, len).map(|_| true),
                None => Ok(false),
            }
        };
        let mut spec = GradSpec {
            output_grads: vec![],
            state_seq_grads: vec![],
        };
        for (d, b) in g.outputs().iter().zip(&grad_outputs) {
            spec.output_grads
                .push(present(format!("grad of {}", d.name), b, tn)?);
        }
        for (d, b) in g.states().iter().zip(&grad_state_seqs) {
            spec.state_seq_grads
                .push(present(format!("grad of {} sequence", d.name), b, tn)?);
        }
        let mut has_final = vec![];
        for (d, b) in g.states().iter().zip(&grad_finals) {
            has_final.push(present(format!("grad of final {}", d.name), b, n)?);
        }
        for (d, b) in g.inputs().iter().zip(&grad_inputs) {
            call.write(py, &format!("grad of {}", d.name), *b, tn)?;
        }
        for (d, b) in g.states().iter().zip(&grad_init_states) {
            call.write(py, &format!("grad of initial {}", d.name), *b, n)?;
        }
        let mut has_param_grad = vec![];
        for ((d, (name, len)), b) in g.params().iter().zip(&param_lens).zip(&grad_params) {
            match b {
                Some(b) if d.learnable => {
                    call.write(py, &format!("grad of {name}"), *b, *len)?;
                    has_param_grad.push(true);
                }
                Some(_) => {
                    return Err(raise(
                        py,
                        Kind::Value,
                        format!("param `{name}` is not learnable: it has no gradient"),
                    ));
                }
                None => has_param_grad.push(false),
            }
        }
        let bk = self
            .backward_for(&spec)
            .map_err(|e| errors::runtime(py, e))?;
        // SAFETY: the buffers are the data of tensors that flexsn.torch holds for this call.
        let (reads, mut writes) = unsafe { call.slices(py)? };
        let run = || -> Result<(), RuntimeError> {
            let (ins, rest) = reads.split_at(ni);
            let (ps, rest) = rest.split_at(np);
            let (bufs, mut ups) = rest.split_at(ns);
            let mut take = |k: usize| {
                let (a, b) = ups.split_at(k);
                ups = b;
                a.to_vec()
            };
            let up_outs = take(spec.output_grads.iter().filter(|x| **x).count());
            let up_seqs = take(spec.state_seq_grads.iter().filter(|x| **x).count());
            let up_finals = take(has_final.iter().filter(|x| **x).count());
            let zeros = vec![0.0f32; n];
            let mut finals = up_finals.into_iter();
            let carries: Vec<&[f32]> = has_final
                .iter()
                .map(|h| {
                    if *h {
                        finals.next().unwrap_or(&zeros)
                    } else {
                        &zeros[..]
                    }
                })
                .collect();
            let mut bin: Vec<&[f32]> = ins.to_vec();
            bin.extend(bufs.iter().map(|b| &b[..tn]));
            bin.extend(up_outs);
            bin.extend(up_seqs);
            let bargs = ScanArgs {
                t,
                n,
                inputs: bin,
                init_states: carries,
                params: ps.to_vec(),
            };
            bargs.check(&bk.kernel.graph)?;
            let (gin, rest) = writes.split_at_mut(ni);
            let (ginit, gparams) = rest.split_at_mut(ns);
            // Param-gradient contributions come back per neuron (or per step); reduced below in
            // the fixed order of `bptt::collect_gradients`.
            let nout = bk.kernel.graph.outputs().len();
            let mut contrib: Vec<Vec<f32>> = (ni..nout)
                .map(|o| vec![0.0; bk.kernel.output_len(o, t, n)])
                .collect();
            let mut out = ScanOutputs {
                outputs: gin
                    .iter_mut()
                    .map(|s| &mut **s)
                    .chain(contrib.iter_mut().map(Vec::as_mut_slice))
                    .collect(),
                state_seqs: vec![],
                final_states: ginit.iter_mut().map(|s| &mut **s).collect(),
            };
            bk.exec.run_into(&bargs, &mut out)?;
            let mut outputs: Vec<Vec<f32>> = vec![vec![]; ni];
            outputs.append(&mut contrib);
            let r = ScanResult {
                outputs,
                state_seqs: vec![],
                final_states: vec![],
            };
            let grads = bptt::collect_gradients(g, &bk.graph, r, t, n);
            let mut dst = gparams.iter_mut();
            for (gp, has) in grads.params.iter().zip(&has_param_grad) {
                if *has && let Some(d) = dst.next() {
                    match gp {
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
