//! Conformance against SpikingJelly golden data (`tests/golden/*.json`, format in
//! `tests/golden/FORMAT.md`), on any scan backend.
//!
//! A [`Harness`] loads cases, builds each case's neuron (a built-in from `neuron` + `params`, or
//! a FlexSN core bound by name in [`Cores`]), runs forward and — when the case has upstream
//! gradients — backward through a [`ScanBackend`], and compares every output and gradient:
//! spikes exactly, everything else within [`Tolerance`] (default rtol 1e-5, atol 1e-6, in f32).
//! Each case gives a [`CaseReport`] with its worst absolute and relative errors and where they
//! occurred.
//!
//! Cases are dispatched on their `neuron` kind in [`Harness::run_case`]; each family has its own
//! function that maps the case onto a scan ([`ScanCase`]) or compares by itself.
//!
//! ```no_run
//! use flexsn::conformance::{Cores, Harness, Interpreter};
//!
//! let mut backend = Interpreter;
//! let cores = Cores::default();
//! let mut h = Harness::new(&mut backend, &cores);
//! let reports = h.run_file("tests/golden/lifnode.json")?;
//! assert!(reports.iter().all(|r| r.passed()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

use flexsn_compiler::autodiff;
use flexsn_compiler::bptt::{self, ExecError, Upstream};
use flexsn_compiler::interp;
use flexsn_compiler::ir::{Op, StateInit, StepGraph};
use flexsn_compiler::scan::{ScanArgs, ScanKernel, ScanResult, param_len};
use flexsn_neurons::{Builtin, Decode};
use flexsn_runtime::{Backend as RuntimeBackend, Jit};

mod psn;
mod zoo;
pub use psn::{mix_backend_for, mixing_psn_case, sliding_psn_case};
pub use zoo::zoo_case;

// ---------------------------------------------------------------------------------------------
// Backends

/// An error from a backend, boxed so that every backend can report its own typed errors.
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Something that runs scans: the interpreter, the CPU JIT, CUDA (emulated or real). The harness
/// runs forward kernels and, through [`bptt::backward`], the backward kernels of `autodiff`.
pub trait ScanBackend {
    /// The name shown in reports (`interp`, `cpu`, ...).
    fn name(&self) -> &str;
    /// Runs one scan kernel (forward or reverse) in `f32`.
    fn run_scan(
        &mut self,
        kernel: &ScanKernel,
        args: &ScanArgs<'_, f32>,
    ) -> Result<ScanResult<f32>, BackendError>;
    /// Why the backend cannot run on this machine (no GPU, no C++ compiler, ...), if so.
    fn unavailable(&self) -> Option<String> {
        None
    }
}

/// The interpreter, the oracle.
#[derive(Clone, Copy, Debug, Default)]
pub struct Interpreter;

impl ScanBackend for Interpreter {
    fn name(&self) -> &str {
        "interp"
    }
    fn run_scan(
        &mut self,
        kernel: &ScanKernel,
        args: &ScanArgs<'_, f32>,
    ) -> Result<ScanResult<f32>, BackendError> {
        Ok(interp::run_scan(kernel, args)?)
    }
}

/// The CPU backend: each scan kernel compiled once by Cranelift (cached by its hash), then run
/// on all cores.
pub struct Cpu {
    jit: Jit,
}

impl Cpu {
    /// A CPU backend; fails only if Cranelift cannot target this machine.
    pub fn new() -> Result<Self, BackendError> {
        Ok(Cpu {
            jit: Jit::new(RuntimeBackend::Cpu)?,
        })
    }
}

impl ScanBackend for Cpu {
    fn name(&self) -> &str {
        "cpu"
    }
    fn run_scan(
        &mut self,
        kernel: &ScanKernel,
        args: &ScanArgs<'_, f32>,
    ) -> Result<ScanResult<f32>, BackendError> {
        Ok(self.jit.compile_scan(kernel)?.run(args)?)
    }
}

/// A backend that could not be set up: every run reports why.
#[derive(Debug)]
struct Unavailable {
    name: &'static str,
    why: String,
}

impl ScanBackend for Unavailable {
    fn name(&self) -> &str {
        self.name
    }
    fn unavailable(&self) -> Option<String> {
        Some(self.why.clone())
    }
    fn run_scan(
        &mut self,
        _: &ScanKernel,
        _: &ScanArgs<'_, f32>,
    ) -> Result<ScanResult<f32>, BackendError> {
        Err(self.why.clone().into())
    }
}

/// A backend that may be missing on this machine (no GPU, no C++ compiler, ...): the backend, or
/// why it is missing, which [`ScanBackend::unavailable`] and every run then report. Construction
/// never fails.
#[derive(Debug)]
pub struct MaybeAvailable<B>(Result<B, Unavailable>);

impl<B> MaybeAvailable<B> {
    /// `setup`'s backend, or its error as the reason the backend `name` is missing.
    pub fn from_setup<E: std::fmt::Display>(name: &'static str, setup: Result<B, E>) -> Self {
        MaybeAvailable(setup.map_err(|e| Unavailable {
            name,
            why: e.to_string(),
        }))
    }
}

impl<B: ScanBackend> ScanBackend for MaybeAvailable<B> {
    fn name(&self) -> &str {
        match &self.0 {
            Ok(b) => b.name(),
            Err(u) => u.name(),
        }
    }
    fn unavailable(&self) -> Option<String> {
        match &self.0 {
            Ok(b) => b.unavailable(),
            Err(u) => u.unavailable(),
        }
    }
    fn run_scan(
        &mut self,
        kernel: &ScanKernel,
        args: &ScanArgs<'_, f32>,
    ) -> Result<ScanResult<f32>, BackendError> {
        match &mut self.0 {
            Ok(b) => b.run_scan(kernel, args),
            Err(u) => u.run_scan(kernel, args),
        }
    }
}

/// The backend names [`backend_by_name`] knows, one per backend.
pub const BACKENDS: &[&str] = &["interp", "cpu", "cuda-emulated", "cuda"];

pub use flexsn_runtime::UnknownBackend;

/// The backend called `name` (any name [`RuntimeBackend::from_name`] reads).
pub fn backend_by_name(name: &str) -> Result<Box<dyn ScanBackend>, UnknownBackend> {
    Ok(match RuntimeBackend::from_name(name)? {
        RuntimeBackend::Interpreter => Box::new(Interpreter),
        RuntimeBackend::Cpu => Box::new(MaybeAvailable::from_setup("cpu", Cpu::new())),
        RuntimeBackend::CudaEmulated => Box::new(crate::cuda::CudaEmulatedBackend::default()),
        RuntimeBackend::Cuda => Box::new(crate::cuda::CudaBackend::default()),
    })
}

// ---------------------------------------------------------------------------------------------
// Cases

/// Why a golden file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: expected a JSON list of cases")]
    NotAList { path: String },
    /// The golden set's `manifest.json` (an object with `files`), not a list of cases.
    #[error("{path}: a manifest of golden files, not a list of cases")]
    Manifest { path: String },
    #[error("{path}: case {index}: {why}")]
    BadCase {
        path: String,
        index: usize,
        why: String,
    },
}

/// One golden case: its name, its neuron kind and the raw JSON object.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    /// `IFNode`, `LIFNode`, ..., `FlexSN:<core>`.
    pub neuron: String,
    raw: Map<String, Value>,
}

/// Reads every case of a golden file.
pub fn load_cases(path: impl AsRef<Path>) -> Result<Vec<Case>, LoadError> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: shown.clone(),
        source,
    })?;
    parse_cases(&text, &shown)
}

/// Parses the text of a golden file (`origin` names it in errors).
pub fn parse_cases(text: &str, origin: &str) -> Result<Vec<Case>, LoadError> {
    let v: Value = serde_json::from_str(text).map_err(|source| LoadError::Json {
        path: origin.to_string(),
        source,
    })?;
    let items = match v {
        Value::Array(items) => items,
        Value::Object(m) if m.contains_key("files") => {
            return Err(LoadError::Manifest {
                path: origin.to_string(),
            });
        }
        _ => {
            return Err(LoadError::NotAList {
                path: origin.to_string(),
            });
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let bad = |why: &str| LoadError::BadCase {
                path: origin.to_string(),
                index,
                why: why.to_string(),
            };
            let Value::Object(raw) = item else {
                return Err(bad("not a JSON object"));
            };
            let name = raw
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("no string `name`"))?
                .to_string();
            let neuron = raw
                .get("neuron")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("no string `neuron`"))?
                .to_string();
            Ok(Case { name, neuron, raw })
        })
        .collect()
}

impl Case {
    /// The raw JSON object.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }

    /// The value at `path` (object keys); `None` if absent or null.
    pub fn get(&self, path: &[&str]) -> Option<&Value> {
        let mut v = self.raw.get(*path.first()?)?;
        for k in &path[1..] {
            v = v.as_object()?.get(*k)?;
        }
        (!v.is_null()).then_some(v)
    }

    /// `T` and `N` (the product of the non-time dimensions) from `shape`.
    pub fn t_n(&self) -> Result<(usize, usize), String> {
        let dims = self
            .get(&["shape"])
            .and_then(Value::as_array)
            .ok_or("no `shape` list")?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<Vec<_>>>()
            .ok_or("`shape` must hold non-negative integers")?;
        match dims.split_first() {
            Some((&t, rest)) if !rest.is_empty() => {
                // Checked: a shape whose size wraps around would pass the length checks.
                let too_large = || format!("`shape` {dims:?} is too large (its size overflows)");
                let n = rest
                    .iter()
                    .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                    .ok_or_else(too_large)?;
                t.checked_mul(n).ok_or_else(too_large)?;
                Ok((t, n))
            }
            _ => Err(format!(
                "`shape` {dims:?} must be [T, N, ...] with at least two dimensions"
            )),
        }
    }

    /// The tensor at `path` as `f32` (each JSON number parsed as `f64`, then cast: the golden
    /// files hold exact float32 values), or `None` when absent or null. Checks the length.
    pub fn tensor(&self, path: &[&str], len: usize) -> Result<Option<Vec<f32>>, String> {
        let Some(v) = self.get(path) else {
            return Ok(None);
        };
        let name = path.join(".");
        let values = match v {
            Value::Number(x) => vec![number(x, &name)?],
            Value::Array(xs) => xs
                .iter()
                .map(|x| match x {
                    Value::Number(x) => number(x, &name),
                    _ => Err(format!("`{name}` holds a non-number: {x}")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            other => return Err(format!("`{name}` is not a tensor: {other}")),
        };
        if values.len() != len {
            return Err(format!(
                "`{name}` has {} values, expected {len}",
                values.len()
            ));
        }
        Ok(Some(values))
    }

    /// Like [`Case::tensor`], but absent is an error.
    pub fn required(&self, path: &[&str], len: usize) -> Result<Vec<f32>, String> {
        self.tensor(path, len)?
            .ok_or_else(|| format!("`{}` is missing", path.join(".")))
    }

    /// Names listed at `path` (e.g. `meta.input_names`).
    fn names(&self, path: &[&str]) -> Result<Vec<String>, String> {
        match self.get(path) {
            None => Ok(vec![]),
            Some(Value::Array(xs)) => xs
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("`{}` must list strings", path.join(".")))
                })
                .collect(),
            Some(_) => Err(format!("`{}` must be a list of names", path.join("."))),
        }
    }
}

fn number(x: &serde_json::Number, name: &str) -> Result<f32, String> {
    x.as_f64()
        .map(|v| v as f32)
        .ok_or_else(|| format!("`{name}`: {x} is not a number"))
}

// ---------------------------------------------------------------------------------------------
// FlexSN cores

/// What a FlexSN case tells its core's factory.
#[derive(Clone, Debug, PartialEq)]
pub struct CoreArgs {
    /// Hyperparameters (`params.core_kwargs`), by name.
    pub hyper: Vec<(String, f64)>,
    /// Shapes of the static inputs (`parameters`, from `tensor_shapes`), by name: a core whose
    /// param kind depends on the bound value (`Param<Dynamic>`) takes it from these.
    pub param_shapes: Vec<(String, Vec<usize>)>,
    pub t: usize,
    pub n: usize,
}

impl CoreArgs {
    /// The hyperparameter `name`.
    pub fn hyper(&self, name: &str) -> Result<f64, String> {
        self.hyper
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("hyperparameter `{name}` is not given (core_kwargs)"))
    }
}

/// Builds a FlexSN core's step graph from a case's [`CoreArgs`].
pub type CoreFactory = Box<dyn Fn(&CoreArgs) -> Result<StepGraph, String> + Send + Sync>;

/// FlexSN cores bound by name: the cases `FlexSN:<name>` run with them.
#[derive(Default)]
pub struct Cores {
    map: BTreeMap<String, CoreFactory>,
}

impl fmt::Debug for Cores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.map.keys()).finish()
    }
}

impl Cores {
    /// Binds `name` to a factory (replacing an earlier binding).
    pub fn bind(
        &mut self,
        name: impl Into<String>,
        factory: impl Fn(&CoreArgs) -> Result<StepGraph, String> + Send + Sync + 'static,
    ) {
        self.map.insert(name.into(), Box::new(factory));
    }

    /// The factory bound to `name`.
    pub fn get(&self, name: &str) -> Option<&CoreFactory> {
        self.map.get(name)
    }

    /// The bound names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }
}

// ---------------------------------------------------------------------------------------------
// Comparison

/// Tolerances for non-spike values: `|got - want| <= atol + rtol * |want|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            rtol: 1e-5,
            atol: 1e-6,
        }
    }
}

/// An error value and where it occurred.
#[derive(Clone, Debug, PartialEq)]
pub struct Worst {
    pub value: f64,
    /// `tensor[index]`, e.g. `grads.x_seq[3,5]`.
    pub at: String,
    pub got: f32,
    pub want: f32,
}

/// How one tensor compared.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorStat {
    /// The tensor, named by its JSON path (`outputs.spike_seq`, `grads.x_seq`).
    pub label: String,
    pub len: usize,
    /// Compared for exact equality (spikes) rather than within tolerance.
    pub exact: bool,
    pub max_abs: Option<Worst>,
    pub max_rel: Option<Worst>,
    /// How many values are out of tolerance (or unequal, for exact tensors).
    pub mismatches: usize,
    /// The first mismatch.
    pub first_mismatch: Option<Worst>,
}

/// A tensor to compare: its label, shape (for readable indices) and expected values.
#[derive(Clone, Debug)]
pub struct Expect {
    pub label: String,
    pub dims: Vec<usize>,
    pub values: Vec<f32>,
    pub exact: bool,
}

impl Expect {
    fn new(label: impl Into<String>, dims: Vec<usize>, values: Vec<f32>, exact: bool) -> Self {
        Expect {
            label: label.into(),
            dims,
            values,
            exact,
        }
    }
}

fn fmt_index(dims: &[usize], mut i: usize) -> String {
    if dims.len() <= 1 {
        return if dims.first() == Some(&1) && i == 0 {
            String::new()
        } else {
            format!("[{i}]")
        };
    }
    let mut idx = vec![0; dims.len()];
    for (k, &d) in dims.iter().enumerate().rev() {
        let d = d.max(1);
        idx[k] = i % d;
        i /= d;
    }
    format!(
        "[{}]",
        idx.iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// Collects tensor comparisons for one case.
#[derive(Debug)]
struct Checker {
    tol: Tolerance,
    stats: Vec<TensorStat>,
}

impl Checker {
    fn compare(&mut self, e: &Expect, got: &[f32]) -> Result<(), String> {
        if got.len() != e.values.len() {
            return Err(format!(
                "{}: got {} values, expected {}",
                e.label,
                got.len(),
                e.values.len()
            ));
        }
        let mut st = TensorStat {
            label: e.label.clone(),
            len: got.len(),
            exact: e.exact,
            max_abs: None,
            max_rel: None,
            mismatches: 0,
            first_mismatch: None,
        };
        let at = |i: usize| format!("{}{}", e.label, fmt_index(&e.dims, i));
        for (i, (&g, &w)) in got.iter().zip(&e.values).enumerate() {
            let both_nan = g.is_nan() && w.is_nan();
            let abs = if both_nan {
                0.0
            } else {
                (g as f64 - w as f64).abs()
            };
            let abs = if abs.is_nan() { f64::INFINITY } else { abs };
            let ok = if e.exact {
                both_nan || g == w
            } else {
                both_nan || abs <= self.tol.atol + self.tol.rtol * (w as f64).abs()
            };
            let worst = |value| Worst {
                value,
                at: at(i),
                got: g,
                want: w,
            };
            if st.max_abs.as_ref().is_none_or(|m| abs > m.value) {
                st.max_abs = Some(worst(abs));
            }
            if w != 0.0 && !w.is_nan() {
                let rel = abs / (w as f64).abs();
                if st.max_rel.as_ref().is_none_or(|m| rel > m.value) {
                    st.max_rel = Some(worst(rel));
                }
            }
            if !ok {
                st.mismatches += 1;
                if st.first_mismatch.is_none() {
                    st.first_mismatch = Some(worst(abs));
                }
            }
        }
        let verdict = match &st.first_mismatch {
            None => Ok(()),
            Some(m) => Err(format!(
                "{}: {} of {} values {}, first at {}: got {:?}, want {:?} (abs err {:.3e})",
                e.label,
                st.mismatches,
                st.len,
                if e.exact {
                    "differ (exact comparison)".to_string()
                } else {
                    format!(
                        "outside rtol {:e} / atol {:e}",
                        self.tol.rtol, self.tol.atol
                    )
                },
                m.at,
                m.got,
                m.want,
                m.value
            )),
        };
        self.stats.push(st);
        verdict
    }
}

// ---------------------------------------------------------------------------------------------
// Reports

/// The result of one case.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseReport {
    pub name: String,
    pub neuron: String,
    /// `None` when the case passed; otherwise why it failed.
    pub failure: Option<String>,
    /// Every tensor compared (also for a failed case, up to the failure).
    pub tensors: Vec<TensorStat>,
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// The largest absolute error over every compared tensor.
    pub fn worst_abs(&self) -> Option<&Worst> {
        worst_of(self.tensors.iter().filter_map(|t| t.max_abs.as_ref()))
    }

    /// The largest relative error over every compared tensor (where the reference is non-zero).
    pub fn worst_rel(&self) -> Option<&Worst> {
        worst_of(self.tensors.iter().filter_map(|t| t.max_rel.as_ref()))
    }
}

fn worst_of<'a>(it: impl Iterator<Item = &'a Worst>) -> Option<&'a Worst> {
    it.fold(None, |best: Option<&Worst>, w| match best {
        Some(b) if b.value >= w.value => Some(b),
        _ => Some(w),
    })
}

impl fmt::Display for CaseReport {
    /// One line: `PASS name  max abs 1.2e-7 at grads.x_seq[3,5]  max rel ... at ...`, or
    /// `FAIL name  <reason>  max abs ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            if self.passed() { "PASS" } else { "FAIL" },
            self.name
        )?;
        if let Some(why) = &self.failure {
            write!(f, "  {why}")?;
        }
        match self.worst_abs() {
            Some(w) if w.value == 0.0 => {
                return write!(f, "  exact ({} tensors equal)", self.tensors.len());
            }
            Some(w) => write!(f, "  max abs {:.2e} at {}", w.value, w.at)?,
            None if self.passed() => write!(f, "  (nothing compared)")?,
            None => {}
        }
        if let Some(w) = self.worst_rel() {
            write!(f, "  max rel {:.2e} at {}", w.value, w.at)?;
        }
        Ok(())
    }
}

/// Counts of passed and failed cases; prints as `N passed, M failed`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
}

impl Summary {
    pub fn add(&mut self, r: &CaseReport) {
        if r.passed() {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

// ---------------------------------------------------------------------------------------------
// The harness

/// Runs golden cases on a backend.
pub struct Harness<'a> {
    pub backend: &'a mut dyn ScanBackend,
    pub cores: &'a Cores,
    pub tol: Tolerance,
}

/// Why a run failed inside a backend or a driver.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("backend: {0}")]
    Backend(BackendError),
}

impl<'a> Harness<'a> {
    /// A harness with the default tolerance.
    pub fn new(backend: &'a mut dyn ScanBackend, cores: &'a Cores) -> Self {
        Harness {
            backend,
            cores,
            tol: Tolerance::default(),
        }
    }

    /// Runs every case of a golden file.
    pub fn run_file(&mut self, path: impl AsRef<Path>) -> Result<Vec<CaseReport>, LoadError> {
        Ok(load_cases(path)?.iter().map(|c| self.run_case(c)).collect())
    }

    /// Runs one case, dispatching on its neuron kind. Never panics on bad case data: every
    /// problem is a failed report with the reason.
    pub fn run_case(&mut self, case: &Case) -> CaseReport {
        let mut checker = Checker {
            tol: self.tol,
            stats: vec![],
        };
        let kind = case.neuron.as_str();
        let result = match kind {
            "IFNode" | "LIFNode" | "ParametricLIFNode" => spiking_case(case)
                .and_then(|sc| run_scan_case(&sc, &mut *self.backend, &mut checker)),
            "NonSpikingIFNode" | "NonSpikingLIFNode" => nonspiking_case(case)
                .and_then(|sc| run_scan_case(&sc, &mut *self.backend, &mut checker)),
            "SlidingPSN" => psn::sliding_psn_case(case)
                .and_then(|sc| run_scan_case(&sc, &mut *self.backend, &mut checker)),
            "PSN" | "MaskedPSN" => psn::mixing_psn_case(case, self.backend.name(), &mut checker),
            k if zoo::CLASSES.contains(&k) => zoo::zoo_case(case)
                .and_then(|sc| run_scan_case(&sc, &mut *self.backend, &mut checker)),
            _ => match kind.strip_prefix("FlexSN:") {
                Some(core) => flexsn_case(case, core, self.cores)
                    .and_then(|sc| run_scan_case(&sc, &mut *self.backend, &mut checker)),
                None => Err(format!(
                    "unknown neuron kind `{kind}` (known: IFNode, LIFNode, ParametricLIFNode, \
                     NonSpikingIFNode, NonSpikingLIFNode, PSN, MaskedPSN, SlidingPSN, {}, \
                     FlexSN:<core>)",
                    zoo::CLASSES.join(", ")
                )),
            },
        };
        CaseReport {
            name: case.name.clone(),
            neuron: case.neuron.clone(),
            failure: result.err(),
            tensors: checker.stats,
        }
    }
}

/// A case mapped onto one scan of a step graph: arguments, expected values and upstream
/// gradients, each indexed like the graph's inputs, states, params and outputs.
#[derive(Clone, Debug)]
pub struct ScanCase {
    pub graph: StepGraph,
    pub t: usize,
    pub n: usize,
    pub inputs: Vec<Vec<f32>>,
    pub init_states: Vec<Vec<f32>>,
    pub params: Vec<Vec<f32>>,
    /// Checks made before running (e.g. an initialisation rule), as `(expected, got)`.
    pub prechecks: Vec<(Expect, Vec<f32>)>,
    pub outputs: Vec<Option<Expect>>,
    pub state_seqs: Vec<Option<Expect>>,
    pub final_states: Vec<Option<Expect>>,
    pub up_outputs: Vec<Option<Vec<f32>>>,
    pub up_state_seqs: Vec<Option<Vec<f32>>>,
    pub up_final_states: Vec<Option<Vec<f32>>>,
    pub grad_inputs: Vec<Option<Expect>>,
    pub grad_init_states: Vec<Option<Expect>>,
    pub grad_params: Vec<Option<Expect>>,
    /// A reduction over time of one output, applied after the scan (non-spiking decodes).
    pub decode: Option<DecodeCheck>,
}

/// A decode of output `output` compared with `want`; `upstream` is the decoded output's
/// gradient, turned into that output's upstream gradient by [`Decode::backward`].
#[derive(Clone, Debug)]
pub struct DecodeCheck {
    pub output: usize,
    pub decode: Decode,
    pub want: Option<Expect>,
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

    fn seq_dims(&self) -> Vec<usize> {
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

/// Runs a [`ScanCase`] on `backend`: forward, comparisons, and backward when gradients are
/// expected.
pub fn run_scan_case(
    sc: &ScanCase,
    backend: &mut dyn ScanBackend,
    checker: &mut impl CompareSink,
) -> Result<(), String> {
    for (e, got) in &sc.prechecks {
        checker.compare(e, got)?;
    }
    let g = &sc.graph;
    let args = ScanArgs {
        t: sc.t,
        n: sc.n,
        inputs: sc.inputs.iter().map(Vec::as_slice).collect(),
        init_states: sc.init_states.iter().map(Vec::as_slice).collect(),
        params: sc.params.iter().map(Vec::as_slice).collect(),
    };
    args.check(g).map_err(|e| format!("arguments: {e}"))?;
    let fwd = backend
        .run_scan(&ScanKernel::forward(g.clone(), true), &args)
        .map_err(|e| format!("forward on {}: {e}", backend.name()))?;
    for (e, got) in sc.outputs.iter().zip(&fwd.outputs) {
        if let Some(e) = e {
            checker.compare(e, got)?;
        }
    }
    for (e, got) in sc.state_seqs.iter().zip(&fwd.state_seqs) {
        if let Some(e) = e {
            checker.compare(e, got)?;
        }
    }
    for (e, got) in sc.final_states.iter().zip(&fwd.final_states) {
        if let Some(e) = e {
            checker.compare(e, got)?;
        }
    }
    let mut up_outputs = sc.up_outputs.clone();
    if let Some(d) = &sc.decode {
        let seq = &fwd.outputs[d.output];
        let decoded = d
            .decode
            .forward(seq, sc.t, sc.n)
            .map_err(|e| e.to_string())?;
        if let Some(want) = &d.want {
            checker.compare(want, &decoded)?;
        }
        if let Some(gd) = &d.upstream {
            let gseq = d
                .decode
                .backward(seq, gd, sc.t, sc.n)
                .map_err(|e| e.to_string())?;
            up_outputs[d.output] = Some(gseq);
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
    let bwd = autodiff::backward(g, &upstream.spec()).map_err(|e| format!("autodiff: {e}"))?;
    let seqs: Vec<&[f32]> = fwd.state_seqs.iter().map(Vec::as_slice).collect();
    let name = backend.name().to_string();
    let grads = bptt::backward(g, &bwd, &args, &seqs, &upstream, |k, a| {
        backend.run_scan(k, a).map_err(RunError::Backend)
    })
    .map_err(|e| format!("backward on {name}: {e}"))?;
    for (e, got) in sc.grad_inputs.iter().zip(&grads.inputs) {
        if let Some(e) = e {
            checker.compare(e, got)?;
        }
    }
    for (e, got) in sc.grad_init_states.iter().zip(&grads.init_states) {
        if let Some(e) = e {
            checker.compare(e, got)?;
        }
    }
    for (e, got) in sc.grad_params.iter().zip(&grads.params) {
        if let Some(e) = e {
            let got = got.as_ref().ok_or_else(|| {
                format!(
                    "{}: the graph computes no gradient for it (param not learnable)",
                    e.label
                )
            })?;
            checker.compare(e, got)?;
        }
    }
    Ok(())
}

/// Where per-family code sends comparisons (the harness's checker).
pub trait CompareSink {
    /// Compares `got` with `e`; an error describes the first mismatch.
    fn compare(&mut self, e: &Expect, got: &[f32]) -> Result<(), String>;
}

impl CompareSink for Checker {
    fn compare(&mut self, e: &Expect, got: &[f32]) -> Result<(), String> {
        Checker::compare(self, e, got)
    }
}

// ---------------------------------------------------------------------------------------------
// Families

/// The built-in of a case: its `neuron` configured by its `params` as `key=value` settings
/// (skipping keys that do not change the numbers: `store_v_seq`, `step_mode`).
pub fn builtin_from_case(case: &Case) -> Result<Builtin, String> {
    let mut settings: Vec<(String, String)> = vec![];
    if let Some(params) = case.get(&["params"]) {
        let params = params.as_object().ok_or("`params` is not an object")?;
        for (k, v) in params {
            match (k.as_str(), v) {
                ("store_v_seq" | "step_mode", _) => {}
                ("surrogate", Value::Object(s)) => {
                    let name = s
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or("`params.surrogate` has no `name`")?;
                    settings.push(("surrogate".into(), name.into()));
                    for (sk, sv) in s {
                        match sk.as_str() {
                            "name" => {}
                            "spiking" => {
                                settings.push(("surrogate.spiking".into(), scalar(sk, sv)?))
                            }
                            _ => settings.push((format!("surrogate.{sk}"), scalar(sk, sv)?)),
                        }
                    }
                }
                _ => settings.push((k.clone(), scalar(k, v)?)),
            }
        }
    }
    let mut b = Builtin::from_name(&case.neuron).map_err(|e| e.to_string())?;
    b.set_all(&settings).map_err(|e| e.to_string())?;
    Ok(b)
}

fn scalar(key: &str, v: &Value) -> Result<String, String> {
    Ok(match v {
        Value::Null => "none".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(x) => x
            .as_f64()
            .map(|x| format!("{x}"))
            .ok_or_else(|| format!("`{key}`: {x} is not a number"))?,
        Value::String(s) => s.clone(),
        other => return Err(format!("`{key}`: unsupported value {other}")),
    })
}

fn default_init(g: &StepGraph, j: usize, n: usize) -> Result<Vec<f32>, String> {
    match g.states()[j].init {
        StateInit::Const(c) => Ok(vec![c; n]),
        StateInit::Runtime => Err(format!(
            "state `{}` needs an initial value and the case gives none",
            g.states()[j].name
        )),
    }
}

/// IF, LIF, PLIF: `x_seq`, optional `v_init`, PLIF `w`; outputs `spike_seq` (exact), `v_seq`,
/// `v_final`; gradients `x_seq`, `v_init`, `w`.
pub fn spiking_case(case: &Case) -> Result<ScanCase, String> {
    let b = builtin_from_case(case)?;
    let g = b.step_graph().map_err(|e| e.to_string())?;
    let (t, n) = case.t_n()?;
    let mut sc = ScanCase::new(g, t, n);
    let seq = sc.seq_dims();
    let vec_n = vec![n];
    sc.inputs[0] = case.required(&["inputs", "x_seq"], t * n)?;
    let v_init = case.tensor(&["v_init"], n)?;
    let has_v_init = v_init.is_some();
    sc.init_states[0] = match v_init {
        Some(v) => v,
        None => default_init(&sc.graph, 0, n)?,
    };
    // The initial-v rule, checked against what the library reports.
    if let Some(rule) = case.tensor(&["meta", "initial_v_when_v_init_null"], 1)? {
        let ours = default_init(&sc.graph, 0, 1)?;
        sc.prechecks.push((
            Expect::new("meta.initial_v_when_v_init_null", vec![], rule, true),
            ours,
        ));
    }
    bind_params(case, &b, &mut sc)?;
    let exp = |key: &str, dims: &Vec<usize>, len, exact| -> Result<Option<Expect>, String> {
        Ok(case
            .tensor(&["outputs", key], len)?
            .map(|v| Expect::new(format!("outputs.{key}"), dims.clone(), v, exact)))
    };
    sc.outputs[0] = exp("spike_seq", &seq, t * n, true)?;
    sc.state_seqs[0] = exp("v_seq", &seq, t * n, false)?;
    sc.final_states[0] = exp("v_final", &vec_n, n, false)?;
    sc.up_outputs[0] = case.tensor(&["grad_outputs", "spike_seq"], t * n)?;
    sc.up_state_seqs[0] = case.tensor(&["grad_outputs", "v_seq"], t * n)?;
    sc.up_final_states[0] = case.tensor(&["grad_outputs", "v_final"], n)?;
    sc.grad_inputs[0] = case
        .tensor(&["grads", "x_seq"], t * n)?
        .map(|v| Expect::new("grads.x_seq", seq.clone(), v, false));
    if has_v_init {
        sc.grad_init_states[0] = case
            .tensor(&["grads", "v_init"], n)?
            .map(|v| Expect::new("grads.v_init", vec_n.clone(), v, false));
    }
    Ok(sc)
}

/// The built-in's params from `parameters.<name>` (checked against the built-in's own initial
/// values) and their expected gradients `grads.<name>`.
fn bind_params(case: &Case, b: &Builtin, sc: &mut ScanCase) -> Result<(), String> {
    for (name, init) in b.initial_params() {
        let k = sc
            .graph
            .param_index(&name)
            .ok_or_else(|| format!("graph has no param `{name}`"))?;
        let len = param_len(sc.graph.params()[k].kind, sc.t, sc.n);
        let given = case.required(&["parameters", &name], len)?;
        sc.prechecks.push((
            Expect::new(format!("parameters.{name}"), vec![], given.clone(), false),
            init,
        ));
        sc.params[k] = given;
        if case.get(&["grads", &name]).is_some() {
            sc.grad_params[k] = Some(Expect::new(
                format!("grads.{name}"),
                vec![],
                case.required(&["grads", &name], len)?,
                false,
            ));
        }
    }
    Ok(())
}

/// NonSpikingIF/LIF: `x_seq`, v from 0; `output` = the decoded voltage sequence; gradient
/// `x_seq` from `grad_outputs.output` through the decode's backward.
pub fn nonspiking_case(case: &Case) -> Result<ScanCase, String> {
    let b = builtin_from_case(case)?;
    let decode = b.decode().ok_or("not a non-spiking neuron")?;
    let g = b.step_graph().map_err(|e| e.to_string())?;
    let (t, n) = case.t_n()?;
    let mut sc = ScanCase::new(g, t, n);
    let seq = sc.seq_dims();
    sc.inputs[0] = case.required(&["inputs", "x_seq"], t * n)?;
    sc.init_states[0] = default_init(&sc.graph, 0, n)?;
    let out_len = decode.output_len(t, n);
    let out_dims = if decode == Decode::Sequence {
        seq.clone()
    } else {
        vec![n]
    };
    sc.decode = Some(DecodeCheck {
        output: 0,
        decode,
        want: case
            .tensor(&["outputs", "output"], out_len)?
            .map(|v| Expect::new("outputs.output", out_dims, v, false)),
        upstream: case.tensor(&["grad_outputs", "output"], out_len)?,
    });
    sc.grad_inputs[0] = case
        .tensor(&["grads", "x_seq"], t * n)?
        .map(|v| Expect::new("grads.x_seq", seq, v, false));
    Ok(sc)
}

/// `FlexSN:<core>`: the core bound in `cores`, built from `params.core_kwargs`; inputs, states,
/// static inputs (params) and outputs matched by name with `meta.*_names`.
pub fn flexsn_case(case: &Case, core: &str, cores: &Cores) -> Result<ScanCase, String> {
    let factory = cores.get(core).ok_or_else(|| {
        format!("no core bound for FlexSN core `{core}` (bind one with --core {core}=PATH)")
    })?;
    let mut hyper: Vec<(String, f64)> = vec![];
    if let Some(kw) = case.get(&["params", "core_kwargs"]) {
        for (k, v) in kw
            .as_object()
            .ok_or("`params.core_kwargs` is not an object")?
        {
            let x = v
                .as_f64()
                .ok_or_else(|| format!("core_kwargs `{k}` = {v} is not a number"))?;
            hyper.push((k.clone(), x));
        }
    }
    let (t, n) = case.t_n()?;
    let mut param_shapes = vec![];
    for name in case.names(&["meta", "static_input_names"])? {
        let shape = case
            .get(&["tensor_shapes", &name])
            .and_then(Value::as_array)
            .and_then(|dims| {
                dims.iter()
                    .map(|d| d.as_u64().map(|d| d as usize))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| format!("`tensor_shapes.{name}` is missing or not a shape"))?;
        param_shapes.push((name, shape));
    }
    let args = CoreArgs {
        hyper,
        param_shapes,
        t,
        n,
    };
    let g = factory(&args).map_err(|e| format!("core `{core}`: {e}"))?;
    let mut sc = ScanCase::new(g, t, n);
    let g = sc.graph.clone();
    let seq = sc.seq_dims();
    let vec_n = vec![n];

    let list = |what: &str, names: &[String], decls: Vec<&str>| -> Result<(), String> {
        let mut a: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut b = decls;
        a.sort_unstable();
        b.sort_unstable();
        if a == b {
            Ok(())
        } else {
            Err(format!(
                "core `{core}` declares {what} {b:?}, the case has {a:?}"
            ))
        }
    };
    let input_names = case.names(&["meta", "input_names"])?;
    let state_names = case.names(&["meta", "state_names"])?;
    let output_names = case.names(&["meta", "output_names"])?;
    let static_names = case.names(&["meta", "static_input_names"])?;
    list(
        "inputs",
        &input_names,
        g.inputs().iter().map(|d| d.name.as_str()).collect(),
    )?;
    list(
        "states",
        &state_names,
        g.states().iter().map(|d| d.name.as_str()).collect(),
    )?;
    list(
        "outputs",
        &output_names,
        g.outputs().iter().map(|d| d.name.as_str()).collect(),
    )?;
    list(
        "params (static inputs)",
        &static_names,
        g.params().iter().map(|d| d.name.as_str()).collect(),
    )?;

    for (i, d) in g.inputs().iter().enumerate() {
        sc.inputs[i] = case.required(&["inputs", &d.name], t * n)?;
        sc.grad_inputs[i] = case
            .tensor(&["grads", &d.name], t * n)?
            .map(|v| Expect::new(format!("grads.{}", d.name), seq.clone(), v, false));
    }
    for (j, d) in g.states().iter().enumerate() {
        // FlexSN starts every state at zero unless `state_init` gives it.
        let init = case.tensor(&["state_init", &d.name], n)?;
        let given = init.is_some();
        sc.init_states[j] = init.unwrap_or_else(|| vec![0.0; n]);
        sc.state_seqs[j] = case
            .tensor(&["state_seqs", &d.name], t * n)?
            .map(|v| Expect::new(format!("state_seqs.{}", d.name), seq.clone(), v, false));
        sc.final_states[j] = case
            .tensor(&["final_states", &d.name], n)?
            .map(|v| Expect::new(format!("final_states.{}", d.name), vec_n.clone(), v, false));
        sc.up_state_seqs[j] = case.tensor(&["grad_outputs", "state_seqs", &d.name], t * n)?;
        let key = format!("{}_init", d.name);
        if given {
            sc.grad_init_states[j] = case
                .tensor(&["grads", &key], n)?
                .map(|v| Expect::new(format!("grads.{key}"), vec_n.clone(), v, false));
        }
    }
    for (k, d) in g.params().iter().enumerate() {
        let len = param_len(d.kind, t, n);
        sc.params[k] = case.required(&["parameters", &d.name], len)?;
        let dims = if len == 1 { vec![] } else { vec![len] };
        sc.grad_params[k] = case
            .tensor(&["grads", &d.name], len)?
            .map(|v| Expect::new(format!("grads.{}", d.name), dims, v, false));
    }
    for (o, d) in g.outputs().iter().enumerate() {
        let exact = matches!(g.node(d.value).op, Op::Spike(_));
        sc.outputs[o] = case
            .tensor(&["outputs", &d.name], t * n)?
            .map(|v| Expect::new(format!("outputs.{}", d.name), seq.clone(), v, exact));
        sc.up_outputs[o] = case.tensor(&["grad_outputs", &d.name], t * n)?;
    }
    Ok(sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_formatting() {
        assert_eq!(fmt_index(&[4, 7], 9), "[1,2]");
        assert_eq!(fmt_index(&[7], 3), "[3]");
        assert_eq!(fmt_index(&[], 0), "[0]");
    }

    #[test]
    fn comparison_rules() {
        let mut c = Checker {
            tol: Tolerance::default(),
            stats: vec![],
        };
        let e = Expect::new("a", vec![3], vec![1.0, 0.0, -2.0], false);
        assert!(c.compare(&e, &[1.000009, 9e-7, -2.0]).is_ok());
        let err = c.compare(&e, &[1.0, 2e-6, -2.0]).unwrap_err();
        assert!(err.contains("a[1]") && err.contains("1 of 3"), "{err}");
        let s = Expect::new("s", vec![3], vec![1.0, 0.0, 1.0], true);
        assert!(c.compare(&s, &[1.0, 0.0, 1.0]).is_ok());
        assert!(c.compare(&s, &[1.0, 1e-30, 1.0]).is_err());
        let nan = Expect::new("n", vec![1], vec![f32::NAN], false);
        assert!(c.compare(&nan, &[f32::NAN]).is_ok());
        assert!(c.compare(&nan, &[0.0]).is_err());
        assert!(c.compare(&e, &[1.0]).is_err());
        // Worst errors and where: the first comparison's largest error is at [0]; relative
        // errors skip zero references.
        let st = &c.stats[0];
        assert_eq!(st.max_abs.as_ref().unwrap().at, "a[0]");
        assert_eq!(st.max_rel.as_ref().unwrap().at, "a[0]");
        assert_eq!(st.mismatches, 0);
        assert_eq!(c.stats[1].max_abs.as_ref().unwrap().at, "a[1]");
        assert_eq!(c.stats[1].mismatches, 1);
    }

    #[test]
    fn exact_f32_bits_from_json() {
        let cases = parse_cases(
            r#"[{"name": "c", "neuron": "IFNode", "shape": [1, 2],
                 "inputs": {"x_seq": [0.30000001192092896, 1.100000023841858]}}]"#,
            "inline",
        )
        .unwrap();
        let x = cases[0].required(&["inputs", "x_seq"], 2).unwrap();
        assert_eq!(x, vec![0.3f32, 1.1f32]);
        assert!(cases[0].required(&["inputs", "x_seq"], 3).is_err());
        assert_eq!(cases[0].t_n().unwrap(), (1, 2));
    }

    #[test]
    fn bad_files_are_errors() {
        assert!(matches!(parse_cases("{", "f"), Err(LoadError::Json { .. })));
        assert!(matches!(
            parse_cases("{}", "f"),
            Err(LoadError::NotAList { .. })
        ));
        assert!(matches!(
            parse_cases(r#"{"files": {}}"#, "f"),
            Err(LoadError::Manifest { .. })
        ));
        assert!(matches!(
            parse_cases(r#"[{"neuron": "IFNode"}]"#, "f"),
            Err(LoadError::BadCase { index: 0, .. })
        ));
    }

    #[test]
    fn unknown_and_unsupported_kinds_fail_with_reasons() {
        let cases = parse_cases(
            r#"[{"name": "a", "neuron": "DSRIFNode", "shape": [1, 1]},
                {"name": "b", "neuron": "PSN", "shape": [1, 1]},
                {"name": "c", "neuron": "FlexSN:mycore", "shape": [1, 1]},
                {"name": "d", "neuron": "LIFNode", "shape": [1, 1], "params": {"tau": 2.0, "wobble": 1}}]"#,
            "inline",
        )
        .unwrap();
        let mut be = Interpreter;
        let cores = Cores::default();
        let mut h = Harness::new(&mut be, &cores);
        let r: Vec<_> = cases.iter().map(|c| h.run_case(c)).collect();
        assert!(r.iter().all(|r| !r.passed()));
        assert!(
            r[0].failure
                .as_ref()
                .unwrap()
                .contains("unknown neuron kind `DSRIFNode`")
        );
        assert!(r[1].failure.as_ref().unwrap().contains("inputs.x_seq"));
        assert!(r[2].failure.as_ref().unwrap().contains("`mycore`"));
        assert!(r[3].failure.as_ref().unwrap().contains("wobble"));
        assert!(r[0].to_string().starts_with("FAIL a  unknown neuron kind"));
    }
}
