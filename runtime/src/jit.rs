//! [`Jit`] and [`Kernel`]: compile a neuron once for a backend, run forward and backward for any
//! `T` and `N`.
//!
//! ## What is compiled when
//!
//! [`Jit::compile`] optimises the neuron's step graph (`passes::optimize`) and compiles its two
//! forward scans eagerly: *inference* (outputs and final states only) and *training* (also the
//! state sequences, which backward needs). Backward scans are compiled lazily, on the first
//! [`Kernel::backward`] call for each combination of present upstream gradients (an absent
//! gradient is zero and costs nothing), then kept; [`Kernel::prepare_backward`] compiles one
//! ahead of time. Every compiled scan is cached in the [`Jit`] under the backend's name and the
//! scan kernel's stable hash ([`ScanKernel::stable_hash_hex`], a hash of the optimised graph), so
//! compiling the same neuron twice, or two neurons with the same optimised graph, compiles once.
//!
//! ## Shapes
//!
//! Sequences are time-major `[T, N]` (`t * N + n`), initial states and per-neuron params `[N]`,
//! shared params `[1]`, per-time params `[T]`. Everything is checked before any generated code
//! runs; a mismatch is a [`RuntimeError`] naming the argument, the expected and the actual
//! shape.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use flexsn_compiler::autodiff::{self, BackwardGraph, GradSpec};
use flexsn_compiler::bptt::{self, Gradients, Upstream};
use flexsn_compiler::checkpoint::{self, SavePolicy, SegmentBackward};
use flexsn_compiler::ir::StepGraph;
use flexsn_compiler::passes;
use flexsn_compiler::scan::{ScanArgs, ScanKernel};
use ndarray::{ArrayView1, ArrayView2};

use crate::cpu::{CpuCompiler, CpuOptions};
use crate::executor::{BackendCompiler, InterpreterCompiler, ScanExecutor};
use crate::host::{GradBuffers, InferenceBuffers, Resolved, TrainingBuffers};
use crate::memory::{Estimate, MemoryLimit};
use crate::mixing::MixTarget;
use crate::{Neuron, RuntimeError};

/// The backends [`Jit::new`] knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The interpreter (the oracle; slow).
    Interpreter,
    /// Cranelift-generated kernels on the host CPU, over threads.
    Cpu,
    /// CUDA kernels through NVRTC and the driver.
    Cuda,
    /// CUDA source compiled as host C++ (no GPU needed).
    CudaEmulated,
}

impl Backend {
    /// Every backend, in the order the CLI lists them.
    pub const ALL: [Backend; 4] = [
        Backend::Interpreter,
        Backend::Cpu,
        Backend::CudaEmulated,
        Backend::Cuda,
    ];

    /// Every name [`Backend::from_name`] accepts (for command-line value lists).
    pub const NAMES: &[&str] = &["interp", "interpreter", "cpu", "cuda-emulated", "cuda"];

    /// The canonical name (`interpreter`, `cpu`, `cuda`, `cuda-emulated`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Interpreter => "interpreter",
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::CudaEmulated => "cuda-emulated",
        }
    }

    /// The one parser of backend names: [`Backend::name`], and `interp` for the interpreter.
    pub fn from_name(s: &str) -> Result<Backend, UnknownBackend> {
        match s {
            "interp" => Ok(Backend::Interpreter),
            _ => Backend::ALL
                .into_iter()
                .find(|b| b.name() == s)
                .ok_or_else(|| UnknownBackend(s.to_string())),
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = UnknownBackend;
    fn from_str(s: &str) -> Result<Backend, UnknownBackend> {
        Backend::from_name(s)
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A backend name [`Backend::from_name`] does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend `{0}`; known: interp (or interpreter), cpu, cuda-emulated, cuda")]
pub struct UnknownBackend(pub String);

type Cache = Arc<Mutex<HashMap<String, Arc<dyn ScanExecutor>>>>;

/// A backend with a kernel cache. Cheap to clone (clones share the cache).
#[derive(Clone)]
pub struct Jit {
    compiler: Arc<dyn BackendCompiler>,
    cache: Cache,
    optimize: bool,
    memory_limit: MemoryLimit,
    mix: MixTarget,
}

impl std::fmt::Debug for Jit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jit")
            .field("backend", &self.compiler.name())
            .field("optimize", &self.optimize)
            .field("memory_limit", &self.memory_limit)
            .finish()
    }
}

impl Jit {
    /// A JIT for `backend` with default options (the interpreter without `passes::optimize`).
    pub fn new(backend: Backend) -> Result<Jit, RuntimeError> {
        match backend {
            // The oracle runs the graph as built: an optimiser bug cannot hide behind it.
            Backend::Interpreter => Ok(Jit {
                optimize: false,
                ..Jit::with_compiler(Arc::new(InterpreterCompiler))
            }),
            Backend::Cpu => Jit::cpu(CpuOptions::default()),
            Backend::Cuda => crate::cuda::backend::cuda_jit(Default::default()),
            Backend::CudaEmulated => crate::cuda::backend::emulated_jit(Default::default()),
        }
    }

    /// The CPU backend with `opts`.
    pub fn cpu(opts: CpuOptions) -> Result<Jit, RuntimeError> {
        crate::cpu::host_isa()?;
        Ok(Jit {
            mix: MixTarget::Cpu {
                threads: opts.threads,
            },
            ..Jit::with_compiler(Arc::new(CpuCompiler { opts }))
        })
    }

    /// Any backend. Its time mixing ([`crate::Mixing`]) runs the reference loops.
    pub fn with_compiler(compiler: Arc<dyn BackendCompiler>) -> Jit {
        Jit {
            compiler,
            cache: Arc::default(),
            optimize: true,
            memory_limit: MemoryLimit::default(),
            mix: MixTarget::Reference,
        }
    }

    /// Where [`crate::Mixing`] runs on this Jit.
    pub(crate) fn mix_target(&self) -> MixTarget {
        self.mix
    }

    /// This Jit with its time mixing on `mix`.
    pub(crate) fn with_mix_target(self, mix: MixTarget) -> Jit {
        Jit { mix, ..self }
    }

    /// The most memory a kernel call may allocate (default [`crate::memory::DEFAULT_MAX_MEMORY`]):
    /// each entry point of the kernels compiled afterwards estimates what it allocates for its
    /// `T` and `N` and returns [`RuntimeError::Memory`] past it, before allocating anything.
    pub fn set_memory_limit(&mut self, limit: MemoryLimit) {
        self.memory_limit = limit;
    }

    /// See [`Jit::set_memory_limit`].
    pub fn memory_limit(&self) -> MemoryLimit {
        self.memory_limit
    }

    /// Whether graphs go through `passes::optimize` before compilation (default: yes).
    pub fn set_optimize(&mut self, on: bool) {
        self.optimize = on;
    }

    /// The backend's name and options.
    pub fn backend_name(&self) -> String {
        self.compiler.name()
    }

    /// Compiles one scan kernel, or returns it from the cache.
    pub fn compile_scan(&self, kernel: &ScanKernel) -> Result<Arc<dyn ScanExecutor>, RuntimeError> {
        let key = format!("{}:{}", self.compiler.name(), kernel.stable_hash_hex());
        if let Some(e) = self.lock().get(&key) {
            return Ok(e.clone());
        }
        let exec = self.compiler.compile_scan(kernel)?;
        Ok(self.lock().entry(key).or_insert(exec).clone())
    }

    /// Number of compiled scans in the cache.
    pub fn cached_scans(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<dyn ScanExecutor>>> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts).
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn prepare(&self, g: &StepGraph) -> Result<StepGraph, RuntimeError> {
        if !self.optimize {
            return Ok(g.clone());
        }
        Ok(passes::optimize_checked(g)?)
    }

    /// Compiles `neuron`'s forward scans now (its backward scans on first use), optimised when the
    /// JIT optimises ([`Jit::set_optimize`]; off for the interpreter).
    pub fn compile<N: Neuron + ?Sized>(&self, neuron: &N) -> Result<Kernel, RuntimeError> {
        let g = neuron.step_graph()?;
        flexsn_compiler::verify::verify(&g)?;
        let graph = self.prepare(&g)?;
        let inference = self.compile_scan(&ScanKernel::forward(graph.clone(), false))?;
        let training = self.compile_scan(&ScanKernel::forward(graph.clone(), true))?;
        Ok(Kernel {
            jit: self.clone(),
            hash: graph.stable_hash_hex(),
            graph: Arc::new(graph),
            inference,
            training,
            backward: Mutex::default(),
            save_policy: SavePolicy::States,
            recompute: OnceLock::new(),
        })
    }
}

/// A compiled backward scan and the graph it was made from.
pub(crate) struct BackwardKernel {
    pub(crate) graph: BackwardGraph,
    pub(crate) exec: Arc<dyn ScanExecutor>,
    /// Its segment form for `checkpoint:K`, compiled on first use.
    segment: OnceLock<(SegmentBackward, Arc<dyn ScanExecutor>)>,
}

/// A neuron compiled for one backend. `Send + Sync`: share it across threads.
pub struct Kernel {
    jit: Jit,
    graph: Arc<StepGraph>,
    hash: String,
    inference: Arc<dyn ScanExecutor>,
    training: Arc<dyn ScanExecutor>,
    backward: Mutex<HashMap<GradSpec, Arc<BackwardKernel>>>,
    save_policy: SavePolicy,
    /// The recompute scan of `checkpoint:K`, compiled on first use.
    recompute: OnceLock<Arc<dyn ScanExecutor>>,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("graph", &self.graph.name())
            .field("hash", &self.hash)
            .field("backend", &self.jit.backend_name())
            .finish()
    }
}

/// What a training forward pass returns, and what backward needs (it borrows the inputs and
/// params, so they must outlive it).
///
/// Under [`SavePolicy::States`], each state's sequence lives in one `[(T+1), N]` buffer whose
/// first row is the initial state: backward reads "the state before step t" as rows `0..T` and
/// the sequence is rows `1..=T`, so neither is copied. Under [`SavePolicy::Checkpoint`] only
/// the state before every `K`-th step is kept (`⌈T/K⌉` rows); backward recomputes the rest.
#[derive(Clone, Debug, Default)]
pub struct Forward<'a> {
    /// Time steps of the call.
    pub t: usize,
    /// Neurons of the call.
    pub n: usize,
    /// Per output: `[T, N]`.
    pub outputs: Vec<Vec<f32>>,
    /// Per state: `[N]`.
    pub final_states: Vec<Vec<f32>>,
    seq_bufs: Vec<Vec<f32>>,
    /// Under `checkpoint:K`: per state, `⌈T/K⌉` rows of `N` (the state before steps 0, K, …).
    checkpoints: Vec<Vec<f32>>,
    policy: SavePolicy,
    inputs: Vec<&'a [f32]>,
    init_states: Option<Vec<&'a [f32]>>,
    params: Vec<&'a [f32]>,
}

impl Forward<'_> {
    /// State `j` after each step, `[T, N]`: `None` under `checkpoint:K` (not kept) or when `j`
    /// is not a state.
    pub fn state_seq(&self, j: usize) -> Option<&[f32]> {
        self.seq_bufs.get(j).map(|b| &b[self.n..])
    }

    /// Every state's sequence, in graph order (empty under `checkpoint:K`).
    pub fn state_seqs(&self) -> Vec<&[f32]> {
        self.seq_bufs.iter().map(|b| &b[self.n..]).collect()
    }

    /// The save policy this forward ran under.
    pub fn save_policy(&self) -> SavePolicy {
        self.policy
    }

    /// Bytes kept for backward (besides the outputs and final states returned anyway): the
    /// state buffers of `states`, or the checkpoints of `checkpoint:K`.
    pub fn saved_bytes(&self) -> usize {
        let floats: usize = self
            .seq_bufs
            .iter()
            .chain(&self.checkpoints)
            .map(Vec::len)
            .sum();
        floats * std::mem::size_of::<f32>()
    }

    /// Output `o`'s sequence.
    pub fn output(&self, o: usize) -> &[f32] {
        &self.outputs[o]
    }
}

/// Each buffer of `v` as a mutable slice.
fn mut_slices(v: &mut [Vec<f32>]) -> Vec<&mut [f32]> {
    v.iter_mut().map(Vec::as_mut_slice).collect()
}

/// Makes `v` hold `count` buffers of `len` floats, reusing allocations.
pub(crate) fn shape_buffers(v: &mut Vec<Vec<f32>>, count: usize, len: usize) {
    v.resize_with(count, Vec::new);
    for b in v.iter_mut() {
        b.resize(len, 0.0);
    }
}

/// What an inference forward pass returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inference {
    /// Time steps of the call.
    pub t: usize,
    /// Neurons of the call.
    pub n: usize,
    /// Per output: `[T, N]`.
    pub outputs: Vec<Vec<f32>>,
    /// Per state: `[N]`.
    pub final_states: Vec<Vec<f32>>,
}

fn view1<'a>(name: &str, v: &ArrayView1<'a, f32>) -> Result<&'a [f32], RuntimeError> {
    v.to_slice()
        .ok_or_else(|| RuntimeError::NotContiguous(name.to_string()))
}

impl Kernel {
    /// The optimised forward step graph.
    pub fn graph(&self) -> &StepGraph {
        &self.graph
    }

    /// The stable hash of [`Kernel::graph`].
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The JIT this kernel was compiled with.
    pub fn jit(&self) -> &Jit {
        &self.jit
    }

    /// Sets this kernel's memory limit (initially its [`Jit`]'s; see [`Jit::set_memory_limit`]).
    pub fn set_memory_limit(&mut self, limit: MemoryLimit) {
        self.jit.memory_limit = limit;
    }

    /// Checks `estimate` (what a call is about to allocate) against the memory limit; `what`
    /// names the call in the error. For callers that allocate buffers for this kernel.
    pub fn check_memory(&self, estimate: Estimate, what: &str) -> Result<(), RuntimeError> {
        estimate.check(self.jit.memory_limit, what)?;
        Ok(())
    }

    /// The inference scan (no state sequences).
    pub fn inference_scan(&self) -> &Arc<dyn ScanExecutor> {
        &self.inference
    }

    /// The training scan (with state sequences).
    pub fn training_scan(&self) -> &Arc<dyn ScanExecutor> {
        &self.training
    }

    fn resolve<'a>(
        &self,
        t: usize,
        n: usize,
        inputs: &[&'a [f32]],
        init_states: Option<&[&'a [f32]]>,
        params: &[(&str, &'a [f32])],
    ) -> Result<Resolved<'a>, RuntimeError> {
        Ok(Resolved {
            t,
            n,
            inputs: inputs.to_vec(),
            init_states: init_states.map(<[_]>::to_vec),
            params: self.order_params(params)?,
        })
    }

    /// Forward for training: outputs, state sequences and final states, kept for
    /// [`Kernel::backward`]. `inputs` are `[T, N]` in graph order; `init_states` `[N]` in graph
    /// order (`None`: the graph's declared initial values); `params` by name, all of them.
    pub fn forward<'a>(
        &self,
        t: usize,
        n: usize,
        inputs: &[&'a [f32]],
        init_states: Option<&[&'a [f32]]>,
        params: &[(&str, &'a [f32])],
    ) -> Result<Forward<'a>, RuntimeError> {
        let mut f = Forward::default();
        self.forward_into(t, n, inputs, init_states, params, &mut f)?;
        Ok(f)
    }

    /// [`Kernel::forward`] into `fwd`, reusing its buffers (for training loops).
    pub fn forward_into<'a>(
        &self,
        t: usize,
        n: usize,
        inputs: &[&'a [f32]],
        init_states: Option<&[&'a [f32]]>,
        params: &[(&str, &'a [f32])],
        fwd: &mut Forward<'a>,
    ) -> Result<(), RuntimeError> {
        let r = self.resolve(t, n, inputs, init_states, params)?;
        let g = &self.graph;
        let (outs, states) = (g.outputs().len(), g.states().len());
        let kept_rows = match self.save_policy {
            SavePolicy::States => t,
            SavePolicy::Checkpoint(k) => t.div_ceil(k.max(1)),
        };
        // Outputs, final states, the kept state rows and the initial states.
        let e = Estimate::new()
            .add(outs, &[t, n], 4)
            .add(states, &[kept_rows, n], 4)
            .add(3 * states, &[n], 4);
        self.check_memory(e, "this forward call")?;
        fwd.t = t;
        fwd.n = n;
        // Without states or steps there is nothing to save either way.
        fwd.policy = if g.states().is_empty() || t == 0 {
            SavePolicy::States
        } else {
            self.save_policy
        };
        shape_buffers(&mut fwd.outputs, g.outputs().len(), t * n);
        shape_buffers(&mut fwd.final_states, g.states().len(), n);
        match fwd.policy {
            SavePolicy::Checkpoint(k) => {
                fwd.seq_bufs.clear();
                let rows = SavePolicy::Checkpoint(k).saved_rows(t);
                shape_buffers(&mut fwd.checkpoints, g.states().len(), rows * n);
                let (mut o, mut c, mut f) = (
                    mut_slices(&mut fwd.outputs),
                    mut_slices(&mut fwd.checkpoints),
                    mut_slices(&mut fwd.final_states),
                );
                let saved = crate::checkpoint::Saved {
                    outputs: &mut o,
                    checkpoints: &mut c,
                    final_states: &mut f,
                };
                self.forward_checkpointed_resolved(&r, k, saved)?;
            }
            SavePolicy::States => {
                fwd.checkpoints.clear();
                shape_buffers(&mut fwd.seq_bufs, g.states().len(), (t + 1) * n);
                let mut out = TrainingBuffers {
                    outputs: fwd.outputs.iter_mut().map(Vec::as_mut_slice).collect(),
                    state_bufs: fwd.seq_bufs.iter_mut().map(Vec::as_mut_slice).collect(),
                    final_states: fwd.final_states.iter_mut().map(Vec::as_mut_slice).collect(),
                };
                self.forward_resolved(&r, &mut out)?;
            }
        }
        fwd.inputs = r.inputs;
        fwd.init_states = r.init_states;
        fwd.params = r.params;
        Ok(())
    }

    /// Forward for inference: outputs and final states only (nothing saved for backward).
    pub fn infer(
        &self,
        t: usize,
        n: usize,
        inputs: &[&[f32]],
        init_states: Option<&[&[f32]]>,
        params: &[(&str, &[f32])],
    ) -> Result<Inference, RuntimeError> {
        let mut out = Inference::default();
        self.infer_into(t, n, inputs, init_states, params, &mut out)?;
        Ok(out)
    }

    /// [`Kernel::infer`] into `out`, reusing its buffers.
    pub fn infer_into(
        &self,
        t: usize,
        n: usize,
        inputs: &[&[f32]],
        init_states: Option<&[&[f32]]>,
        params: &[(&str, &[f32])],
        out: &mut Inference,
    ) -> Result<(), RuntimeError> {
        let r = self.resolve(t, n, inputs, init_states, params)?;
        let g = &self.graph;
        let e =
            Estimate::new()
                .add(g.outputs().len(), &[t, n], 4)
                .add(2 * g.states().len(), &[n], 4);
        self.check_memory(e, "this inference call")?;
        out.t = t;
        out.n = n;
        shape_buffers(&mut out.outputs, g.outputs().len(), t * n);
        shape_buffers(&mut out.final_states, g.states().len(), n);
        let mut o = InferenceBuffers {
            outputs: out.outputs.iter_mut().map(Vec::as_mut_slice).collect(),
            final_states: out.final_states.iter_mut().map(Vec::as_mut_slice).collect(),
        };
        self.infer_resolved(&r, &mut o)
    }

    /// `(T, N)` and slices of ndarray arguments: inputs `[T, N]`, initial states and params 1-D.
    #[allow(clippy::type_complexity)]
    fn nd_slices<'a>(
        &self,
        inputs: &[ArrayView2<'a, f32>],
        init_states: Option<&[ArrayView1<'a, f32>]>,
        params: &[(&str, ArrayView1<'a, f32>)],
    ) -> Result<
        (
            usize,
            usize,
            Vec<&'a [f32]>,
            Option<Vec<&'a [f32]>>,
            Vec<(String, &'a [f32])>,
        ),
        RuntimeError,
    > {
        let g = &self.graph;
        let first = inputs.first().ok_or_else(|| {
            RuntimeError::Unsupported(
                "the ndarray API takes T and N from the first input; this kernel has no inputs \
                 (use the slice API with explicit T and N)"
                    .into(),
            )
        })?;
        let (t, n) = (first.nrows(), first.ncols());
        let mut xs = vec![];
        for (i, x) in inputs.iter().enumerate() {
            let name = g
                .inputs()
                .get(i)
                .map_or_else(|| format!("input {i}"), |d| d.name.clone());
            if x.dim() != (t, n) {
                return Err(RuntimeError::ArrayShape {
                    name,
                    expected: format!("[T={t}, N={n}]"),
                    got: format!("{:?}", x.shape()),
                });
            }
            xs.push(
                x.to_slice()
                    .ok_or_else(|| RuntimeError::NotContiguous(name.clone()))?,
            );
        }
        let s0 = match init_states {
            Some(s) => Some(
                s.iter()
                    .enumerate()
                    .map(|(j, v)| {
                        let name = g
                            .states()
                            .get(j)
                            .map_or_else(|| format!("state {j}"), |d| d.name.clone());
                        view1(&name, v)
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        let ps = params
            .iter()
            .map(|(name, v)| Ok((name.to_string(), view1(name, v)?)))
            .collect::<Result<Vec<_>, RuntimeError>>()?;
        Ok((t, n, xs, s0, ps))
    }

    /// [`Kernel::forward`] with ndarray views (`T`, `N` from the first input's shape).
    pub fn forward_nd<'a>(
        &self,
        inputs: &[ArrayView2<'a, f32>],
        init_states: Option<&[ArrayView1<'a, f32>]>,
        params: &[(&str, ArrayView1<'a, f32>)],
    ) -> Result<Forward<'a>, RuntimeError> {
        let (t, n, xs, s0, ps) = self.nd_slices(inputs, init_states, params)?;
        let ps: Vec<(&str, &'a [f32])> = ps.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        self.forward(t, n, &xs, s0.as_deref(), &ps)
    }

    /// [`Kernel::infer`] with ndarray views.
    pub fn infer_nd(
        &self,
        inputs: &[ArrayView2<'_, f32>],
        init_states: Option<&[ArrayView1<'_, f32>]>,
        params: &[(&str, ArrayView1<'_, f32>)],
    ) -> Result<Inference, RuntimeError> {
        let (t, n, xs, s0, ps) = self.nd_slices(inputs, init_states, params)?;
        let ps: Vec<(&str, &[f32])> = ps.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        self.infer(t, n, &xs, s0.as_deref(), &ps)
    }

    pub(crate) fn backward_kernel(
        &self,
        spec: &GradSpec,
    ) -> Result<Arc<BackwardKernel>, RuntimeError> {
        let mut map = self.backward.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get(spec) {
            return Ok(b.clone());
        }
        let mut graph = autodiff::backward(&self.graph, spec)?;
        let opt = self.jit.prepare(&graph.kernel.graph)?;
        graph.kernel.graph = opt;
        let exec = self.jit.compile_scan(&graph.kernel)?;
        let b = Arc::new(BackwardKernel {
            graph,
            exec,
            segment: OnceLock::new(),
        });
        map.insert(spec.clone(), b.clone());
        Ok(b)
    }

    /// Training forward under `checkpoint:K` of resolved arguments (initial states: given or
    /// the graph's constants) into `saved`, whose shapes the caller has made right.
    pub(crate) fn forward_checkpointed_resolved(
        &self,
        r: &Resolved<'_>,
        k: usize,
        saved: crate::checkpoint::Saved<'_, '_>,
    ) -> Result<(), RuntimeError> {
        let g = &self.graph;
        let defaults;
        let init: Vec<&[f32]> = match &r.init_states {
            Some(s) => s.clone(),
            None => {
                defaults = bptt::default_init_states::<f32>(g, r.n)?;
                defaults.iter().map(Vec::as_slice).collect()
            }
        };
        let args = ScanArgs {
            t: r.t,
            n: r.n,
            inputs: r.inputs.clone(),
            init_states: init,
            params: r.params.clone(),
        };
        args.check(g)?;
        crate::checkpoint::forward(self.inference.as_ref(), g, &args, k, saved)
    }

    /// [`Kernel::backward_into`] for a forward under `checkpoint:K`.
    fn backward_checkpointed(
        &self,
        fwd: &Forward<'_>,
        k: usize,
        upstream: &Upstream<'_, f32>,
        grads: &mut Gradients<f32>,
    ) -> Result<(), RuntimeError> {
        let g = &self.graph;
        let rows_ok = fwd.checkpoints.iter().all(|c| c.len() >= fwd.n);
        if fwd.checkpoints.len() != g.states().len()
            || !rows_ok
            || fwd.inputs.len() != g.inputs().len()
        {
            return Err(RuntimeError::Exec(bptt::ExecError::MissingStateSeqs));
        }
        let r = Resolved {
            t: fwd.t,
            n: fwd.n,
            inputs: fwd.inputs.clone(),
            init_states: fwd.init_states.clone(),
            params: fwd.params.clone(),
        };
        let cps: Vec<&[f32]> = fwd.checkpoints.iter().map(Vec::as_slice).collect();
        shape_buffers(&mut grads.inputs, g.inputs().len(), fwd.t * fwd.n);
        let mut inputs: Vec<&mut [f32]> = grads.inputs.iter_mut().map(Vec::as_mut_slice).collect();
        let got = self.backward_checkpointed_resolved(&r, k, &cps, upstream, &mut inputs)?;
        grads.init_states = got.init_states;
        grads.params = got.params;
        Ok(())
    }

    /// Backward under `checkpoint:K` of resolved arguments from `checkpoints` (`⌈T/K⌉` rows of
    /// `N` per state, checked by the caller): the input gradients straight into `input_grads`
    /// (`[T, N]` each; the returned `inputs` are empty), the rest returned.
    pub(crate) fn backward_checkpointed_resolved(
        &self,
        r: &Resolved<'_>,
        k: usize,
        checkpoints: &[&[f32]],
        upstream: &Upstream<'_, f32>,
        input_grads: &mut [&mut [f32]],
    ) -> Result<Gradients<f32>, RuntimeError> {
        let (t, n) = (r.t, r.n);
        let g = &self.graph;
        // Checked before a backward scan is compiled for `upstream.spec()`.
        upstream.check(g, t, n)?;
        // The same estimate as the `states` backward: the owned and host entry points of
        // `checkpoint:K` both come through here.
        let e = Estimate::new()
            .add(g.inputs().len(), &[t, n], 4)
            .add(g.states().len(), &[n], 4);
        self.check_memory(e, "this backward call")?;
        let defaults;
        let init_states = match (&r.init_states, t) {
            (Some(s), _) => s.clone(),
            // Without steps there is no checkpoint row: the graph's initial values.
            (None, 0) => {
                defaults = bptt::default_init_states::<f32>(g, n)?;
                defaults.iter().map(Vec::as_slice).collect()
            }
            // The initial states are the first checkpoint row unless given.
            (None, _) => checkpoints.iter().map(|c| &c[..n]).collect(),
        };
        let args = ScanArgs {
            t,
            n,
            inputs: r.inputs.clone(),
            init_states,
            params: r.params.clone(),
        };
        args.check(g)?;
        let bk = self.backward_kernel(&upstream.spec())?;
        let (segment, segment_exec) = self.segment_backward(&bk)?;
        let scans = crate::checkpoint::Scans {
            recompute: self.recompute_scan()?.as_ref(),
            segment,
            segment_exec: segment_exec.as_ref(),
        };
        crate::checkpoint::backward(
            &scans,
            g,
            &bk.graph,
            &args,
            k,
            checkpoints,
            upstream,
            input_grads,
        )
    }

    /// The save policy of [`Kernel::forward`] (default [`SavePolicy::States`]).
    pub fn save_policy(&self) -> SavePolicy {
        self.save_policy
    }

    /// Sets what [`Kernel::forward`] keeps for backward. A `checkpoint:K` policy's extra scans
    /// (the recompute scan, and each backward scan's segment form) compile on first use.
    pub fn set_save_policy(&mut self, policy: SavePolicy) -> Result<(), RuntimeError> {
        if let SavePolicy::Checkpoint(k) = policy {
            crate::host::check_interval(k)?;
        }
        self.save_policy = policy;
        Ok(())
    }

    fn recompute_scan(&self) -> Result<&Arc<dyn ScanExecutor>, RuntimeError> {
        if let Some(e) = self.recompute.get() {
            return Ok(e);
        }
        let exec = self
            .jit
            .compile_scan(&checkpoint::recompute_kernel(&self.graph)?)?;
        Ok(self.recompute.get_or_init(|| exec))
    }

    fn segment_backward<'b>(
        &self,
        bk: &'b BackwardKernel,
    ) -> Result<(&'b SegmentBackward, &'b Arc<dyn ScanExecutor>), RuntimeError> {
        if let Some((s, e)) = bk.segment.get() {
            return Ok((s, e));
        }
        let seg = SegmentBackward::new(&bk.graph)?;
        let exec = self.jit.compile_scan(&seg.kernel)?;
        let (s, e) = bk.segment.get_or_init(|| (seg, exec));
        Ok((s, e))
    }

    /// Compiles the backward scan for the upstream gradients `spec` now rather than on the first
    /// [`Kernel::backward`] call; returns it.
    pub fn prepare_backward(&self, spec: &GradSpec) -> Result<Arc<dyn ScanExecutor>, RuntimeError> {
        Ok(self.backward_kernel(spec)?.exec.clone())
    }

    /// The backward scan kernel for `spec` (for inspection).
    pub fn backward_scan_kernel(&self, spec: &GradSpec) -> Result<ScanKernel, RuntimeError> {
        Ok(self.backward_kernel(spec)?.graph.kernel.clone())
    }

    /// Backpropagation through time: gradients w.r.t. the inputs, initial states and learnable
    /// params of `fwd`'s call, for upstream gradients of its outputs, state sequences and final
    /// states (any may be absent: zero). Param gradients are reduced by
    /// [`bptt::collect_gradients`] in a fixed order, so they are bit-identical for every thread
    /// count.
    pub fn backward(
        &self,
        fwd: &Forward<'_>,
        upstream: &Upstream<'_, f32>,
    ) -> Result<Gradients<f32>, RuntimeError> {
        let mut g = Gradients {
            inputs: vec![],
            init_states: vec![],
            params: vec![],
        };
        self.backward_into(fwd, upstream, &mut g)?;
        Ok(g)
    }

    /// [`Kernel::backward`] into `grads`, reusing its input- and state-gradient buffers (through
    /// [`Kernel::backward_host`]'s path: the previous-state sequences are rows `0..T` of the
    /// forward's state buffers, not copies).
    pub fn backward_into(
        &self,
        fwd: &Forward<'_>,
        upstream: &Upstream<'_, f32>,
        grads: &mut Gradients<f32>,
    ) -> Result<(), RuntimeError> {
        let (t, n) = (fwd.t, fwd.n);
        let g = &self.graph;
        if let SavePolicy::Checkpoint(k) = fwd.policy {
            return self.backward_checkpointed(fwd, k, upstream, grads);
        }
        if fwd.seq_bufs.len() != g.states().len() || fwd.inputs.len() != g.inputs().len() {
            return Err(RuntimeError::Exec(bptt::ExecError::MissingStateSeqs));
        }
        let e = Estimate::new()
            .add(g.inputs().len(), &[t, n], 4)
            .add(g.states().len(), &[n], 4);
        self.check_memory(e, "this backward call")?;
        let r = Resolved {
            t,
            n,
            inputs: fwd.inputs.clone(),
            init_states: fwd.init_states.clone(),
            params: fwd.params.clone(),
        };
        shape_buffers(&mut grads.inputs, g.inputs().len(), t * n);
        shape_buffers(&mut grads.init_states, g.states().len(), n);
        let bufs: Vec<&[f32]> = fwd.seq_bufs.iter().map(Vec::as_slice).collect();
        let mut out = GradBuffers {
            inputs: grads.inputs.iter_mut().map(Vec::as_mut_slice).collect(),
            init_states: grads
                .init_states
                .iter_mut()
                .map(Vec::as_mut_slice)
                .collect(),
        };
        grads.params = self.backward_resolved(&r, &bufs, upstream, &mut out)?;
        Ok(())
    }

    /// [`Kernel::backward`] with upstream gradients for outputs only.
    pub fn backward_outputs(
        &self,
        fwd: &Forward<'_>,
        grad_outputs: &[Option<&[f32]>],
    ) -> Result<Gradients<f32>, RuntimeError> {
        let mut up = Upstream::none(&self.graph);
        up.outputs = grad_outputs.to_vec();
        self.backward(fwd, &up)
    }
}
