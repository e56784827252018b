//! The [`Harness`]: runs golden cases on a backend through the runtime's [`Jit`] and
//! [`Kernel`](flexsn_runtime::Kernel), the one way every backend runs a scan.

use std::path::Path;

use flexsn_compiler::bptt::Upstream;
use flexsn_compiler::ir::StepGraph;
use flexsn_neurons::Decode;
use flexsn_runtime::memory::Estimate;
use flexsn_runtime::{Backend, Jit, RuntimeError};

use super::case::{Case, load_cases};
use super::compare::{Checker, CompareSink, Expect, Tolerance};
use super::cores::Cores;
use super::error::{CaseError, LoadError};
use super::report::CaseReport;
use super::{builtin, flexsn, psn, zoo};

/// Runs golden cases on one backend.
pub struct Harness<'a> {
    jit: Jit,
    /// The FlexSN cores the `FlexSN:<core>` cases run with.
    pub cores: &'a Cores,
    /// The tolerance for non-spike values.
    pub tol: Tolerance,
}

impl<'a> Harness<'a> {
    /// A harness on `backend` with its default options and the default tolerance. Fails when
    /// the backend cannot run on this machine (no GPU, no C++ compiler, ...).
    pub fn new(backend: Backend, cores: &'a Cores) -> Result<Self, RuntimeError> {
        Ok(Harness::with_jit(Jit::new(backend)?, cores))
    }

    /// A harness whose scans run on `jit` (any backend and options; clones share its kernel
    /// cache), the PSN time mixing too.
    pub fn with_jit(jit: Jit, cores: &'a Cores) -> Self {
        Harness {
            jit,
            cores,
            tol: Tolerance::default(),
        }
    }

    /// The JIT the scans run on.
    pub fn jit(&self) -> &Jit {
        &self.jit
    }

    /// Runs every case of a golden file.
    pub fn run_file(&mut self, path: impl AsRef<Path>) -> Result<Vec<CaseReport>, LoadError> {
        Ok(load_cases(path)?.iter().map(|c| self.run_case(c)).collect())
    }

    /// Runs one case, dispatching on its neuron kind. Never panics on bad case data: every
    /// problem is a failed report with the reason.
    pub fn run_case(&mut self, case: &Case) -> CaseReport {
        let mut checker = Checker::new(self.tol);
        let result = self.run(case, &mut checker);
        CaseReport {
            name: case.name.clone(),
            neuron: case.neuron.clone(),
            failure: result.err(),
            tensors: checker.stats,
        }
    }

    fn run(&self, case: &Case, checker: &mut Checker) -> Result<(), CaseError> {
        // Every case holds at least one `[T, N]` sequence and one `[N]` state (or final value):
        // checked against the JIT's memory limit before anything of that size is allocated.
        if let Ok((t, n)) = case.t_n() {
            Estimate::new()
                .add(1, &[t, n], 4)
                .add(1, &[n], 4)
                .check(self.jit.memory_limit(), "this case")?;
        }
        let kind = case.neuron.as_str();
        let sc = match kind {
            "IFNode" | "LIFNode" | "ParametricLIFNode" => builtin::spiking_case(case)?,
            "NonSpikingIFNode" | "NonSpikingLIFNode" => builtin::nonspiking_case(case)?,
            "SlidingPSN" => psn::sliding_psn_case(case)?,
            "PSN" | "MaskedPSN" => return psn::mixing_psn_case(case, &self.jit, checker),
            k if zoo::CLASSES.contains(&k) => zoo::zoo_case(case)?,
            _ => match kind.strip_prefix("FlexSN:") {
                Some(core) => flexsn::flexsn_case(case, core, self.cores)?,
                None => {
                    return Err(CaseError::UnknownKind {
                        kind: kind.to_string(),
                        known: format!(
                            "IFNode, LIFNode, ParametricLIFNode, NonSpikingIFNode, \
                             NonSpikingLIFNode, PSN, MaskedPSN, SlidingPSN, {}, FlexSN:<core>",
                            zoo::CLASSES.join(", ")
                        ),
                    });
                }
            },
        };
        run_scan_case(&sc, &self.jit, checker)
    }
}

/// A case mapped onto one scan of a step graph: arguments, expected values and upstream
/// gradients, each indexed like the graph's inputs, states, params and outputs.
#[derive(Clone, Debug)]
pub struct ScanCase {
    /// The neuron's step graph.
    pub graph: StepGraph,
    /// Time steps.
    pub t: usize,
    /// Neurons.
    pub n: usize,
    /// Per input: `[T, N]`.
    pub inputs: Vec<Vec<f32>>,
    /// Per state: `[N]`.
    pub init_states: Vec<Vec<f32>>,
    /// Per param: its values (length by its kind).
    pub params: Vec<Vec<f32>>,
    /// Checks made before running (e.g. an initialisation rule), as `(expected, got)`.
    pub prechecks: Vec<(Expect, Vec<f32>)>,
    /// Expected output sequences.
    pub outputs: Vec<Option<Expect>>,
    /// Expected state sequences.
    pub state_seqs: Vec<Option<Expect>>,
    /// Expected final states.
    pub final_states: Vec<Option<Expect>>,
    /// Upstream gradients of the outputs.
    pub up_outputs: Vec<Option<Vec<f32>>>,
    /// Upstream gradients of the state sequences.
    pub up_state_seqs: Vec<Option<Vec<f32>>>,
    /// Upstream gradients of the final states.
    pub up_final_states: Vec<Option<Vec<f32>>>,
    /// Expected input gradients.
    pub grad_inputs: Vec<Option<Expect>>,
    /// Expected initial-state gradients.
    pub grad_init_states: Vec<Option<Expect>>,
    /// Expected param gradients.
    pub grad_params: Vec<Option<Expect>>,
    /// A reduction over time of one output, applied after the scan (non-spiking decodes).
    pub decode: Option<DecodeCheck>,
}

/// A decode of output `output` compared with `want`; `upstream` is the decoded output's
/// gradient, turned into that output's upstream gradient by [`Decode::backward`].
#[derive(Clone, Debug)]
pub struct DecodeCheck {
    /// The decoded output.
    pub output: usize,
    /// The reduction over time.
    pub decode: Decode,
    /// The expected decoded values.
    pub want: Option<Expect>,
    /// The decoded output's upstream gradient.
    pub upstream: Option<Vec<f32>>,
}

impl ScanCase {
    /// An empty mapping for `graph` (everything absent).
    pub fn new(graph: StepGraph, t: usize, n: usize) -> Self {
        let (ni, ns, np, no) = (
            graph.inputs().len(),
            graph.states().len(),
            graph.params().len(),
            graph.outputs().len(),
        );
        ScanCase {
            graph,
            t,
            n,
            inputs: vec![vec![]; ni],
            init_states: vec![vec![]; ns],
            params: vec![vec![]; np],
            prechecks: vec![],
            outputs: vec![None; no],
            state_seqs: vec![None; ns],
            final_states: vec![None; ns],
            up_outputs: vec![None; no],
            up_state_seqs: vec![None; ns],
            up_final_states: vec![None; ns],
            grad_inputs: vec![None; ni],
            grad_init_states: vec![None; ns],
            grad_params: vec![None; np],
            decode: None,
        }
    }

    /// `[T, N]`, the shape of a sequence.
    pub fn seq_dims(&self) -> Vec<usize> {
        vec![self.t, self.n]
    }

    fn wants_backward(&self) -> bool {
        self.grad_inputs
            .iter()
            .chain(&self.grad_init_states)
            .chain(&self.grad_params)
            .any(Option::is_some)
    }
}

/// Compares each present expectation with its computed tensor.
fn compare_all<'x>(
    checker: &mut impl CompareSink,
    pairs: impl IntoIterator<Item = (&'x Option<Expect>, &'x [f32])>,
) -> Result<(), CaseError> {
    for (e, got) in pairs {
        if let Some(e) = e {
            checker.compare(e, got)?;
        }
    }
    Ok(())
}

/// Runs a [`ScanCase`] on `jit`: compiles its graph into a kernel, runs forward, compares, and
/// runs backward when gradients are expected.
pub fn run_scan_case(
    sc: &ScanCase,
    jit: &Jit,
    checker: &mut impl CompareSink,
) -> Result<(), CaseError> {
    for (e, got) in &sc.prechecks {
        checker.compare(e, got)?;
    }
    let run = |phase| {
        move |source| CaseError::Run {
            phase,
            backend: jit.backend_name(),
            source: Box::new(source),
        }
    };
    let g = &sc.graph;
    let kernel = jit.compile(g).map_err(run("compile"))?;
    let inputs: Vec<&[f32]> = sc.inputs.iter().map(Vec::as_slice).collect();
    let init: Vec<&[f32]> = sc.init_states.iter().map(Vec::as_slice).collect();
    let params: Vec<(&str, &[f32])> = g
        .params()
        .iter()
        .zip(&sc.params)
        .map(|(d, v)| (d.name.as_str(), v.as_slice()))
        .collect();
    let fwd = kernel
        .forward(sc.t, sc.n, &inputs, Some(&init), &params)
        .map_err(run("forward"))?;
    compare_all(
        checker,
        sc.outputs.iter().zip(fwd.outputs.iter().map(Vec::as_slice)),
    )?;
    // The kernel keeps every state's sequence (the default save policy).
    compare_all(checker, sc.state_seqs.iter().zip(fwd.state_seqs()))?;
    compare_all(
        checker,
        sc.final_states
            .iter()
            .zip(fwd.final_states.iter().map(Vec::as_slice)),
    )?;
    let mut up_outputs = sc.up_outputs.clone();
    if let Some(d) = &sc.decode {
        let seq = fwd.output(d.output);
        let decoded = d.decode.forward(seq, sc.t, sc.n)?;
        if let Some(want) = &d.want {
            checker.compare(want, &decoded)?;
        }
        if let Some(gd) = &d.upstream {
            up_outputs[d.output] = Some(d.decode.backward(seq, gd, sc.t, sc.n)?);
        }
    }
    if !sc.wants_backward() {
        return Ok(());
    }

    let upstream = Upstream {
        outputs: up_outputs.iter().map(Option::as_deref).collect(),
        state_seqs: sc.up_state_seqs.iter().map(Option::as_deref).collect(),
        final_states: sc.up_final_states.iter().map(Option::as_deref).collect(),
    };
    let grads = kernel.backward(&fwd, &upstream).map_err(run("backward"))?;
    compare_all(
        checker,
        sc.grad_inputs
            .iter()
            .zip(grads.inputs.iter().map(Vec::as_slice)),
    )?;
    compare_all(
        checker,
        sc.grad_init_states
            .iter()
            .zip(grads.init_states.iter().map(Vec::as_slice)),
    )?;
    for (e, got) in sc.grad_params.iter().zip(&grads.params) {
        if let Some(e) = e {
            let got = got
                .as_ref()
                .ok_or_else(|| CaseError::NoGradient(e.label.clone()))?;
            checker.compare(e, got)?;
        }
    }
    Ok(())
}
