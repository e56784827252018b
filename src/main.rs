//! The `flexsn` command line.
//!
//! Subcommands: `conformance` (SpikingJelly golden cases on a backend), `inspect` (a neuron's IR,
//! backward IR, DOT graph), `list` (built-in neurons and their parameters), `run` (a neuron on
//! random input). Each subcommand is one `Args` struct and one `cmd_*` function; emit kinds and
//! backends are one enum variant / one match arm each.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use flexsn::compiler::autodiff::{self, GradSpec};
use flexsn::compiler::bptt::Upstream;
use flexsn::compiler::frontend::{self, Bindings};
use flexsn::compiler::ir::StepGraph;
use flexsn::compiler::rng::SplitMix64;
use flexsn::compiler::scan::param_len;
use flexsn::compiler::text;
use flexsn::compiler::{dot, passes};
use flexsn::conformance::{self, CoreArgs, Cores, Harness, Summary, Tolerance};
use flexsn::neurons::{self, Builtin};
use flexsn::runtime::memory::{self, MemoryLimit};
use flexsn::runtime::{Backend, Jit};

#[derive(Parser)]
#[command(
    name = "flexsn",
    version,
    about = "Compiler for spiking-neuron kernels: one time step in, fused multi-step forward and backward kernels out."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run SpikingJelly golden cases (JSON) on a backend and compare outputs and gradients.
    Conformance(ConformanceArgs),
    /// Print a neuron's step graph, its backward graph, or its DOT form.
    Inspect(InspectArgs),
    /// List the built-in neurons with their parameters and defaults.
    List(ListArgs),
    /// Run a neuron forward (and optionally backward) on random input and summarise.
    Run(RunArgs),
    /// Benchmark compiled kernels (if, lif, plif, alif) against a plain memory copy.
    Bench(BenchArgs),
}

/// A `--backend` value: a name [`Backend::from_name`] reads.
fn backend_arg() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(Backend::NAMES)
}

/// `bench` also takes `cuda-jit`: the CUDA backend timed through the kernel API.
fn bench_backend_arg() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(Backend::NAMES.iter().copied().chain(["cuda-jit"]))
}

#[derive(Args)]
struct ListArgs {
    /// Print JSON (an array of neurons with their parameters) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ConformanceArgs {
    /// Golden files in SpikingJelly format (e.g. tests/golden/lifnode.json).
    #[arg(required = true, value_name = "FILE.json")]
    files: Vec<PathBuf>,
    /// The backend that runs the scans.
    #[arg(long, default_value = "interp", value_parser = backend_arg())]
    backend: String,
    /// Bind the cases `FlexSN:NAME` to the core in PATH (repeatable).
    #[arg(long = "core", value_name = "NAME=PATH", value_parser = parse_core_binding)]
    cores: Vec<(String, PathBuf)>,
    /// Only run cases whose name contains this text.
    #[arg(long)]
    filter: Option<String>,
    /// Relative tolerance for non-spike values.
    #[arg(long, default_value_t = Tolerance::default().rtol, value_parser = parse_tolerance, allow_hyphen_values = true)]
    rtol: f64,
    /// Absolute tolerance for non-spike values.
    #[arg(long, default_value_t = Tolerance::default().atol, value_parser = parse_tolerance, allow_hyphen_values = true)]
    atol: f64,
    /// The most memory a case may allocate (e.g. 512M, 8G): larger cases fail before anything
    /// is allocated.
    #[arg(long, value_name = "SIZE", default_value = "8G", value_parser = memory::parse_size)]
    max_memory: u64,
    /// Print every compared tensor under each case.
    #[arg(long, short)]
    verbose: bool,
    /// Print one JSON object (backend, tolerance, every case with its compared tensors, the
    /// summary; see `flexsn::conformance::RunReport`) instead of text.
    #[arg(long)]
    json: bool,
}

/// A tolerance: finite and not negative (NaN would fail every comparison).
fn parse_tolerance(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "`{s}` is not a tolerance: expected a finite number >= 0"
        )),
    }
}

fn parse_core_binding(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(format!(
            "`{s}`: expected NAME=PATH (e.g. lif_soft=cores/lif_soft.rs)"
        )),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Emit {
    /// The step graph in the text form (optimised when the passes are available).
    Ir,
    /// The backward step graph (reverse scan) from autodiff, as the CPU and CUDA backends compile
    /// it (of the optimised step graph, optimised again).
    GradIr,
    /// Graphviz DOT of the step graph.
    Dot,
    /// CUDA C source of the forward (training) and backward scan kernels (see --dtype, --math).
    Cuda,
    /// PTX of the CUDA kernels, compiled by NVRTC (needs NVRTC; see FLEXSN_NVRTC_PATH).
    Ptx,
    /// The CPU backend's Cranelift IR (forward inference, forward training, backward),
    /// annotated with the step-graph node of each instruction group.
    Clif,
    /// The CPU backend's machine code (x86-64 disassembly), annotated the same way.
    Asm,
}

#[derive(Args)]
struct InspectArgs {
    /// A built-in neuron (`lif`, `LIFNode`, ...; see `flexsn list`) or a core file (`PATH.rs`).
    neuron: String,
    /// Set a neuron parameter (repeatable), e.g. --set tau=3.5 --set surrogate=ATan; for a core
    /// file, bind a hyperparameter (--set beta=0.9).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// What to print.
    #[arg(long, value_enum, default_value = "ir")]
    emit: Emit,
    /// For grad-ir: also take upstream gradients for the state sequences (not only outputs).
    #[arg(long)]
    state_seq_grads: bool,
    /// Print the graph as built, without the optimisation passes (ir, grad-ir, dot, cuda, ptx).
    #[arg(long)]
    no_opt: bool,
    /// For cuda/ptx: storage type of [T, N] sequences (math is always f32).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16"])]
    dtype: String,
    /// For cuda/ptx: precise (expf, IEEE division) or fast (__expf, __fdividef, ...) math.
    #[arg(long, default_value = "precise", value_parser = ["precise", "fast"])]
    math: String,
    /// For ptx: the virtual architecture XY of compute_XY (default: the GPU's, else 90).
    #[arg(long, value_name = "XY")]
    arch: Option<i32>,
}

#[derive(Args)]
struct RunArgs {
    /// A built-in neuron (`lif`, `LIFNode`, ...; see `flexsn list`) or a core file (`PATH.rs`).
    neuron: String,
    /// Number of time steps.
    #[arg(long, short = 't', default_value_t = 16)]
    t: usize,
    /// Number of neurons.
    #[arg(long, short = 'n', default_value_t = 4096)]
    n: usize,
    /// Set a neuron parameter (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// The backend that runs the scans.
    #[arg(long, default_value = "interp", value_parser = backend_arg())]
    backend: String,
    /// Also run backward (upstream gradient 1 for every output).
    #[arg(long)]
    backward: bool,
    /// Input x = mean + std * randn.
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    mean: f32,
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    std: f32,
    /// Seed of the input generator.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// What the training forward keeps for backward: `states` or `checkpoint:K` (prints the
    /// bytes kept).
    #[arg(long, value_name = "POLICY")]
    save_policy: Option<flexsn::runtime::SavePolicy>,
    /// The most memory the run may allocate (e.g. 512M, 8G, 1.5T): larger runs are refused
    /// before anything is allocated.
    #[arg(long, value_name = "SIZE", default_value = "8G", value_parser = memory::parse_size)]
    max_memory: u64,
    /// Print one JSON object (see `RunReport`) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Neuron(s) to run (repeatable): if, lif, plif, alif, psn, sliding-psn, or any other scan
    /// neuron of `flexsn list` (qif, izhikevich, ...). Default: the first six.
    #[arg(long = "neuron", value_name = "NAME")]
    neurons: Vec<String>,
    /// Time steps (repeatable). Default: 4, 16, 64.
    #[arg(long = "t", value_name = "T")]
    ts: Vec<usize>,
    /// Neurons (repeatable). Default: 4096, 65536, 1048576.
    #[arg(long = "n", value_name = "N")]
    ns: Vec<usize>,
    /// Threads (repeatable; 0 = all cores). Default: 1 and all.
    #[arg(long = "threads", value_name = "K")]
    threads: Vec<usize>,
    /// Phase(s): forward, forward_backward. Default: both.
    #[arg(long = "phase", value_name = "PHASE")]
    phases: Vec<String>,
    /// The backend (interp or interpreter, cpu, cuda-emulated, cuda). `cuda` times the kernels
    /// on device buffers with CUDA events (see --dtype, --math); its defaults are T = 64,
    /// N = 16777216; with --save-policy checkpoint:K it times the fused checkpoint kernels.
    /// `cuda-jit` times the CUDA backend through the kernel API (host buffers, transfers
    /// included).
    #[arg(long, default_value = "cpu", value_parser = bench_backend_arg())]
    backend: String,
    /// For --backend cuda: storage type(s) of sequences (repeatable): f32, f16, bf16.
    /// Default: f32 and bf16.
    #[arg(long = "dtype", value_name = "DTYPE", value_parser = ["f32", "f16", "bf16"])]
    dtypes: Vec<String>,
    /// For --backend cuda: precise or fast math.
    #[arg(long, default_value = "precise", value_parser = ["precise", "fast"])]
    math: String,
    /// For --backend cuda: row layout(s) of the [T, N] buffers (repeatable): dense (row t at
    /// t * N) or padded (rows 128-byte aligned; rows labelled NAME+pad). Default: dense.
    #[arg(long = "rows", value_name = "LAYOUT", value_parser = ["dense", "padded"])]
    rows: Vec<String>,
    /// One JSON object per row (compile times go to stderr).
    #[arg(long)]
    json: bool,
    /// Minimum measuring time per row, in milliseconds.
    #[arg(long, default_value_t = 300)]
    min_ms: u64,
    /// CPU: neurons per chunk (multiple of 16; 0 = automatic).
    #[arg(long, default_value_t = 0)]
    chunk: usize,
    /// CPU: f32x4 copies per loop iteration (1-4; 0 = automatic).
    #[arg(long, default_value_t = 0)]
    unroll: usize,
    /// The most memory one row may allocate, its copy baseline included (e.g. 512M, 16G, 1.5T):
    /// larger rows are refused before anything is allocated (every backend but `cuda`).
    #[arg(long, value_name = "SIZE", default_value = "16G", value_parser = memory::parse_size)]
    max_memory: u64,
    /// What the training forward keeps for backward: `states` or `checkpoint:K` (only the
    /// state before every K-th step; backward recomputes the rest).
    #[arg(long, default_value = "states", value_name = "POLICY")]
    save_policy: flexsn::runtime::SavePolicy,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let out = &mut stdout.lock();
    let result = match cli.command {
        Command::Conformance(a) => cmd_conformance(a, out),
        Command::Inspect(a) => cmd_inspect(a, out).map(|()| true),
        Command::List(a) => cmd_list(a, out).map(|()| true),
        Command::Run(a) => cmd_run(a, out).map(|()| true),
        Command::Bench(a) => cmd_bench(a, out).map(|()| true),
    };
    let result = result.and_then(|ok| Ok(out.flush().map(|()| ok)?));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        // The reader went away (`flexsn ... | head`): stop quietly.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", report(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, each once: a cause whose text the message already holds (an error
/// that prints its source itself) is not repeated.
fn report(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

// ---------------------------------------------------------------------------------------------
// Neurons by name

/// A neuron named on the command line, resolved to its step graph.
struct Target {
    graph: StepGraph,
    builtin: Option<Builtin>,
}

/// `steps`: the graph of a run of that many steps ([`Builtin::step_graph_for`]); `None`: the
/// whole step graph.
fn resolve_neuron(spec: &str, sets: &[String], steps: Option<usize>) -> Result<Target> {
    if spec.ends_with(".rs") {
        // A core written in Rust syntax; --set binds hyperparameters (and dynamic param kinds).
        let mut b = Bindings::new();
        for s in sets {
            b.set(s)?;
        }
        let graph = frontend::load_core_file_with(spec, &b)?;
        return Ok(Target {
            graph,
            builtin: None,
        });
    }
    let b = Builtin::from_settings(spec, sets)?;
    let graph = match steps {
        Some(t) => b.step_graph_for(t),
        None => b.step_graph(),
    }
    .with_context(|| format!("building {}", b.class_name()))?;
    Ok(Target {
        graph,
        builtin: Some(b),
    })
}

// ---------------------------------------------------------------------------------------------
// conformance

/// Binds `--core NAME=PATH`: the core is read from the file (Rust syntax) with each case's
/// `core_kwargs` as hyperparameters and the shapes of its `parameters` giving the kinds of
/// `Param<Dynamic>` params.
fn bind_core_file(cores: &mut Cores, name: &str, path: PathBuf) -> Result<()> {
    // Read the interface now, so that a missing or broken file fails before anything runs.
    let info = frontend::core_file_info(&path)
        .with_context(|| format!("--core {name}={}", path.display()))?;
    let dynamic: Vec<String> = info
        .params
        .iter()
        .filter(|(_, kind, _)| kind.is_none())
        .map(|(p, _, _)| p.clone())
        .collect();
    cores.bind(
        name,
        move |a: &CoreArgs| -> Result<StepGraph, conformance::BoxError> {
            let mut b = Bindings::new();
            for (k, v) in &a.hyper {
                b = b.hyper(k, *v);
            }
            for (k, shape) in &a.param_shapes {
                if dynamic.contains(k) {
                    let kind =
                        frontend::param_kind_from_shape(shape, a.t, a.n).ok_or_else(|| {
                            format!(
                                "static input `{k}` has shape {shape:?}, which fits no param kind"
                            )
                        })?;
                    b = b.param_kind(k, kind);
                }
            }
            Ok(frontend::load_core_file_with(&path, &b)?)
        },
    );
    Ok(())
}

fn cmd_conformance(a: ConformanceArgs, out: &mut dyn Write) -> Result<bool> {
    // An unknown or unavailable backend fails here, before anything runs.
    let backend = Backend::from_name(&a.backend)?;
    let mut jit = Jit::new(backend)?;
    jit.set_memory_limit(MemoryLimit(a.max_memory));
    let mut cores = Cores::default();
    for (name, path) in a.cores {
        bind_core_file(&mut cores, &name, path)?;
    }
    // Load every file first, so a typo fails before anything runs.
    let mut files = vec![];
    for f in &a.files {
        match conformance::load_cases(f) {
            Ok(cases) => files.push(cases),
            // `tests/golden/*.json` includes the manifest: not cases, so not run.
            Err(e @ conformance::LoadError::Manifest { .. }) => eprintln!("note: skipping {e}"),
            Err(e) => return Err(e.into()),
        }
    }
    let mut h = Harness::with_jit(jit, &cores);
    h.tol = Tolerance {
        rtol: a.rtol,
        atol: a.atol,
    };
    let mut summary = Summary::default();
    let mut reports = vec![];
    for cases in &files {
        for case in cases {
            if let Some(f) = &a.filter
                && !case.name.contains(f.as_str())
            {
                continue;
            }
            let r = h.run_case(case);
            summary.add(&r);
            if a.json {
                reports.push(r);
                continue;
            }
            writeln!(out, "{r}")?;
            if a.verbose {
                for t in &r.tensors {
                    writeln!(
                        out,
                        "    {:<40} {:>6} values{}  max abs {}  max rel {}{}",
                        t.label,
                        t.len,
                        if t.exact { " (exact)" } else { "" },
                        t.max_abs
                            .as_ref()
                            .map_or("-".into(), |w| format!("{:.2e}", w.value)),
                        t.max_rel
                            .as_ref()
                            .map_or("-".into(), |w| format!("{:.2e}", w.value)),
                        if t.mismatches > 0 {
                            format!("  {} mismatches", t.mismatches)
                        } else {
                            String::new()
                        }
                    )?;
                }
            }
        }
    }
    if a.json {
        let run = conformance::RunReport {
            backend: backend.name().to_string(),
            tolerance: h.tol,
            cases: reports,
            summary,
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&run)?)?;
    } else {
        writeln!(out, "{summary}")?;
    }
    Ok(summary.failed == 0)
}

// ---------------------------------------------------------------------------------------------
// inspect

/// The time mixing of `PSN` / `MaskedPSN` (their CUDA kernels are mixing kernels, not scans).
fn mixing_spec(b: &Builtin) -> Option<flexsn::compiler::codegen::cuda::mixing::MixingSpec> {
    let (t, surrogate) = match b {
        Builtin::Psn(c) => (c.t, c.surrogate),
        Builtin::MaskedPsn(c) => (c.t, c.surrogate),
        _ => return None,
    };
    Some(flexsn::compiler::codegen::cuda::mixing::MixingSpec {
        rows: t,
        cols: t,
        surrogate,
    })
}

fn cmd_inspect(a: InspectArgs, out: &mut dyn Write) -> Result<()> {
    if matches!(a.emit, Emit::Cuda | Emit::Ptx) && !a.neuron.ends_with(".rs") {
        use flexsn::compiler::codegen::cuda::{CudaOptions, MathMode, StorageDtype, mixing};
        use flexsn::runtime::cuda::{inspect, nvrtc};
        if let Some(spec) = mixing_spec(&Builtin::from_settings(&a.neuron, &a.sets)?) {
            let opts = CudaOptions::new(
                StorageDtype::from_name(&a.dtype).ok_or_else(|| anyhow!("bad --dtype"))?,
                MathMode::from_name(&a.math).ok_or_else(|| anyhow!("bad --math"))?,
            );
            let src = mixing::codegen_mixing(&spec, &opts)?;
            if a.emit == Emit::Cuda {
                write!(out, "{}", src.code)?;
            } else {
                let arch = a.arch.unwrap_or_else(inspect::default_ptx_arch);
                write!(out, "{}", nvrtc::ptx(&src, arch)?)?;
            }
            return Ok(());
        }
    }
    let target = resolve_neuron(&a.neuron, &a.sets, None)?;
    let g = &target.graph;
    let opt = |g: &StepGraph| {
        if a.no_opt {
            g.clone()
        } else {
            passes::optimize(g)
        }
    };
    match a.emit {
        Emit::Ir => write!(out, "{}", text::print(&opt(g)))?,
        Emit::GradIr => {
            // What the runtime compiles: autodiff of the optimised step graph, optimised again.
            let fwd = opt(g);
            let spec = if a.state_seq_grads {
                GradSpec::all(&fwd)
            } else {
                GradSpec::outputs_only(&fwd)
            };
            let bwd = opt(&autodiff::backward(&fwd, &spec)?.kernel.graph);
            write!(out, "{}", text::print(&bwd))?;
        }
        Emit::Dot => write!(out, "{}", dot::to_dot(&opt(g)))?,
        Emit::Clif | Emit::Asm => {
            use flexsn::runtime::cpu::{CpuOptions, Listing, inspect_kernel};
            let mut jit = flexsn::runtime::Jit::cpu(CpuOptions::default())?;
            jit.set_optimize(!a.no_opt);
            let k = jit.compile(g)?;
            let spec = if a.state_seq_grads {
                GradSpec::all(k.graph())
            } else {
                GradSpec::outputs_only(k.graph())
            };
            let what = if a.emit == Emit::Clif {
                Listing::Clif
            } else {
                Listing::Asm
            };
            write!(
                out,
                "{}",
                inspect_kernel(&k, &spec, what, &CpuOptions::default())?
            )?;
        }
        Emit::Cuda | Emit::Ptx => {
            use flexsn::compiler::codegen::cuda::{CudaOptions, MathMode, StorageDtype};
            use flexsn::runtime::cuda::inspect;
            let spec = if a.state_seq_grads {
                GradSpec::all(g)
            } else {
                GradSpec::outputs_only(g)
            };
            let opts = CudaOptions::new(
                StorageDtype::from_name(&a.dtype).ok_or_else(|| anyhow!("bad --dtype"))?,
                MathMode::from_name(&a.math).ok_or_else(|| anyhow!("bad --math"))?,
            );
            let text = if matches!(a.emit, Emit::Cuda) {
                inspect::cuda_text(g, &spec, &opts, !a.no_opt)?
            } else {
                let arch = a.arch.unwrap_or_else(inspect::default_ptx_arch);
                inspect::ptx_text(g, &spec, &opts, !a.no_opt, arch)?
            };
            write!(out, "{text}")?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// list

fn cmd_list(a: ListArgs, out: &mut dyn Write) -> Result<()> {
    if a.json {
        let mut list = vec![];
        for info in neurons::BUILTINS {
            let params: Vec<serde_json::Value> = Builtin::from_name(info.cli_name)?
                .param_values()
                .iter()
                .map(|p| serde_json::json!({"key": p.key, "value": p.value, "help": p.help}))
                .collect();
            list.push(serde_json::json!({
                "name": info.cli_name,
                "class": info.class_name,
                "summary": info.summary,
                "params": params,
            }));
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "Built-in neurons (name or SpikingJelly class name; set parameters with --set KEY=VALUE):"
    )?;
    for info in neurons::BUILTINS {
        let b = Builtin::from_name(info.cli_name)?;
        writeln!(out)?;
        writeln!(
            out,
            "{} ({})  {}",
            info.cli_name, info.class_name, info.summary
        )?;
        let params = b.param_values();
        let w = params.iter().map(|p| p.key.len()).max().unwrap_or(0);
        let vw = params.iter().map(|p| p.value.len()).max().unwrap_or(0);
        for p in params {
            writeln!(out, "    {:<w$}  {:<vw$}  {}", p.key, p.value, p.help)?;
        }
    }
    writeln!(out)?;
    for (simple, full) in neurons::SIMPLE_CLASSES {
        writeln!(
            out,
            "{simple}: SpikingJelly's simplified {full} (starts at v = 0; v_reset 0 or none)"
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// run

/// `run`'s input: `mean + std * randn`, Box–Muller over the compiler's SplitMix64 (the same
/// draws for the same seed everywhere).
struct Normal(SplitMix64);

impl Normal {
    fn new(seed: u64) -> Self {
        Normal(SplitMix64::new(seed))
    }
    /// Uniform in (0, 1]: `ln` stays finite.
    fn uniform(&mut self) -> f64 {
        ((self.0.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
    fn sample(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    /// `len` input values `mean + std * randn`.
    fn input(&mut self, a: &RunArgs, len: usize) -> Vec<f32> {
        (0..len)
            .map(|_| (a.mean as f64 + a.std as f64 * self.sample()) as f32)
            .collect()
    }
}

fn cmd_run(a: RunArgs, out: &mut dyn Write) -> Result<()> {
    if a.t == 0 || a.n == 0 {
        bail!(
            "--t and --n must be at least 1 (got T = {}, N = {})",
            a.t,
            a.n
        );
    }
    let tn =
        a.t.checked_mul(a.n)
            .ok_or_else(|| anyhow!("T * N overflows"))?;
    if !a.neuron.ends_with(".rs") {
        match Builtin::from_settings(&a.neuron, &a.sets)? {
            Builtin::Psn(c) => return run_psn(&a, c, out),
            Builtin::MaskedPsn(c) => return run_masked_psn(&a, c, out),
            _ => {}
        }
    }
    let target = resolve_neuron(&a.neuron, &a.sets, Some(a.t))?;
    let g = &target.graph;
    scan_memory(g, a.t, a.n, a.backward).check(MemoryLimit(a.max_memory), "this run")?;
    // An unknown or unavailable backend fails here, before anything is printed.
    let mut kernel = Jit::new(Backend::from_name(&a.backend)?)?.compile(g)?;
    if let Some(p) = a.save_policy {
        kernel.set_save_policy(p)?;
    }

    let mut rng = Normal::new(a.seed);
    let inputs: Vec<Vec<f32>> = g.inputs().iter().map(|_| rng.input(&a, tn)).collect();
    // By name: a neuron may have many params (SlidingPSN's k weights); the first entry wins.
    let initial: std::collections::HashMap<String, Vec<f32>> = target
        .builtin
        .map(|b| b.initial_params())
        .unwrap_or_default()
        .into_iter()
        .rev()
        .collect();
    let params: Vec<Vec<f32>> = g
        .params()
        .iter()
        .map(|d| match initial.get(&d.name) {
            Some(v) if v.len() == 1 => Ok(vec![v[0]; param_len(d.kind, a.t, a.n)]),
            _ => Err(anyhow!("param `{}` has no default value", d.name)),
        })
        .collect::<Result<_>>()?;
    let xs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let named: Vec<(&str, &[f32])> = g
        .params()
        .iter()
        .zip(&params)
        .map(|(d, v)| (d.name.as_str(), v.as_slice()))
        .collect();

    let mut report = RunReport::new(&a, g.name());
    if let Some(Builtin::SlidingPsn(c)) = &target.builtin {
        let w = c.window_for(a.t);
        if a.backward && w < c.k {
            report.unreached_params = Some(format!(
                "{}..{}",
                neurons::psn::sliding_weight_name(0),
                neurons::psn::sliding_weight_name(c.k - w - 1)
            ));
        }
    }
    let start = Instant::now();
    // Training forward (state sequences kept for backward) only when backward follows.
    let fwd = if a.backward {
        Some(kernel.forward(a.t, a.n, &xs, None, &named)?)
    } else {
        None
    };
    let outputs = match &fwd {
        Some(f) => f.outputs.clone(),
        None => kernel.infer(a.t, a.n, &xs, None, &named)?.outputs,
    };
    report.forward = Timing::new(start.elapsed(), tn);
    if let (Some(f), Some(_)) = (&fwd, a.save_policy) {
        report.saved_bytes = Some(f.saved_bytes());
        report.save_policy = Some(f.save_policy().to_string());
    }
    for (d, seq) in g.outputs().iter().zip(&outputs) {
        use flexsn::compiler::ir::{Op, Surrogate};
        let stat = match g.node(d.value).op {
            Op::Spike(Surrogate::MultiLevelSpikeCount { .. }) => "mean spike count",
            Op::Spike(_) => "firing rate",
            _ => "mean",
        };
        report.outputs.push(OutputStat {
            name: d.name.clone(),
            stat,
            value: mean(seq.iter().copied()),
        });
    }
    if let Some(decode) = target.builtin.and_then(|b| b.decode())
        && decode != neurons::Decode::Sequence
    {
        let decoded = decode.forward(&outputs[0], a.t, a.n)?;
        report.decoded = Some(DecodedStat {
            decode: decode.name(),
            mean: mean(decoded.iter().copied()),
        });
    }

    if let Some(fwd) = &fwd {
        // Upstream gradient 1 for every output value; through the decode's backward when the
        // neuron decodes its output over time.
        let ones = vec![1.0f32; tn];
        let mut up_outputs: Vec<Vec<f32>> = vec![ones; g.outputs().len()];
        if let Some(decode) = target.builtin.and_then(|b| b.decode()) {
            let g_decoded = vec![1.0f32; decode.output_len(a.t, a.n)];
            up_outputs[0] = decode.backward(&outputs[0], &g_decoded, a.t, a.n)?;
        }
        let upstream = Upstream {
            outputs: up_outputs.iter().map(|u| Some(u.as_slice())).collect(),
            state_seqs: vec![None; g.states().len()],
            final_states: vec![None; g.states().len()],
        };
        let start = Instant::now();
        let grads = kernel.backward(fwd, &upstream)?;
        report.backward = Some(Timing::new(start.elapsed(), tn));
        for (d, gx) in g.inputs().iter().zip(&grads.inputs) {
            report.grads.push(GradStat::new(&d.name, "input", gx));
        }
        for (d, gp) in g.params().iter().zip(&grads.params) {
            if let Some(gp) = gp {
                report.grads.push(GradStat::new(&d.name, "param", gp));
            }
        }
    }
    report.write(a.json, out)
}

/// The mean of `values` (in f64).
fn mean(values: impl ExactSizeIterator<Item = f32>) -> f64 {
    let len = values.len().max(1) as f64;
    values.map(f64::from).sum::<f64>() / len
}

/// What `flexsn run` reports. With `--json` it prints as one JSON object with these fields:
/// `neuron`, `backend`, `t`, `n`, `input` (`mean`, `std`, `seed` of x = mean + std * randn),
/// `forward` (`ms`, `neuron_steps_per_s`), `saved_bytes` and `save_policy` (with
/// `--save-policy`, else null), `outputs` (per output: `name`, `stat` — `firing rate`,
/// `mean spike count` or `mean` — and `value`), `decoded` (`decode`, `mean`; null unless the
/// neuron decodes its output over time), `backward` (like `forward`; null without
/// `--backward`) and `grads` (per input and learnable param: `name`, `of` — `input` or
/// `param` — `mean_abs` and `head`, the first four values) and `unreached_params` (SlidingPSN
/// with `k > T` and `--backward`: the range of weights no step reaches, whose gradient is 0;
/// else null).
#[derive(serde::Serialize)]
struct RunReport {
    neuron: String,
    backend: String,
    t: usize,
    n: usize,
    input: InputSpec,
    forward: Timing,
    saved_bytes: Option<usize>,
    save_policy: Option<String>,
    outputs: Vec<OutputStat>,
    decoded: Option<DecodedStat>,
    backward: Option<Timing>,
    grads: Vec<GradStat>,
    unreached_params: Option<String>,
}

/// `x = mean + std * randn` from `seed`.
#[derive(serde::Serialize)]
struct InputSpec {
    mean: f32,
    std: f32,
    seed: u64,
}

/// How long a phase took.
#[derive(Default, serde::Serialize)]
struct Timing {
    ms: f64,
    neuron_steps_per_s: f64,
}

impl Timing {
    fn new(d: std::time::Duration, tn: usize) -> Self {
        let s = d.as_secs_f64();
        Timing {
            ms: s * 1e3,
            neuron_steps_per_s: if s > 0.0 { tn as f64 / s } else { 0.0 },
        }
    }
}

/// One output's summary.
#[derive(serde::Serialize)]
struct OutputStat {
    name: String,
    stat: &'static str,
    value: f64,
}

/// The decoded output's mean.
#[derive(serde::Serialize)]
struct DecodedStat {
    decode: &'static str,
    mean: f64,
}

/// One gradient's summary.
#[derive(serde::Serialize)]
struct GradStat {
    name: String,
    of: &'static str,
    mean_abs: f64,
    head: Vec<f32>,
}

impl GradStat {
    fn new(name: &str, of: &'static str, g: &[f32]) -> Self {
        GradStat {
            name: name.to_string(),
            of,
            mean_abs: mean(g.iter().map(|v| v.abs())),
            head: g[..g.len().min(4)].to_vec(),
        }
    }
}

impl RunReport {
    fn new(a: &RunArgs, neuron: &str) -> Self {
        RunReport {
            neuron: neuron.to_string(),
            backend: a.backend.clone(),
            t: a.t,
            n: a.n,
            input: InputSpec {
                mean: a.mean,
                std: a.std,
                seed: a.seed,
            },
            forward: Timing::default(),
            saved_bytes: None,
            save_policy: None,
            outputs: vec![],
            decoded: None,
            backward: None,
            grads: vec![],
            unreached_params: None,
        }
    }

    /// Prints the report as JSON or as text.
    fn write(&self, json: bool, out: &mut dyn Write) -> Result<()> {
        if json {
            writeln!(out, "{}", serde_json::to_string_pretty(self)?)?;
            return Ok(());
        }
        let i = &self.input;
        writeln!(
            out,
            "{}  T={} N={}  backend {}  input x = {} + {} * randn (seed {})",
            self.neuron, self.t, self.n, self.backend, i.mean, i.std, i.seed
        )?;
        self.forward.write(out, "forward")?;
        if let (Some(bytes), Some(policy)) = (self.saved_bytes, &self.save_policy) {
            writeln!(out, "  kept for backward: {bytes} bytes ({policy})")?;
        }
        for o in &self.outputs {
            writeln!(out, "  {:<12} {} {:.4}", o.name, o.stat, o.value)?;
        }
        if let Some(d) = &self.decoded {
            writeln!(out, "  decoded ({}) mean {:.4}", d.decode, d.mean)?;
        }
        if let Some(b) = &self.backward {
            b.write(out, "backward")?;
        }
        for g in &self.grads {
            match g.of {
                "input" => writeln!(out, "  grad {:<7} mean |g| {:.4e}", g.name, g.mean_abs)?,
                _ => writeln!(out, "  grad {:<7} {:?}", g.name, g.head)?,
            }
        }
        if let Some(range) = &self.unreached_params {
            writeln!(out, "  grad {range}: 0 (no step of the run reaches them)")?;
        }
        Ok(())
    }
}

impl Timing {
    fn write(&self, out: &mut dyn Write, phase: &str) -> Result<()> {
        writeln!(
            out,
            "{phase:<9} {:>10.3} ms  {:>8.2} M neuron-steps/s",
            self.ms,
            self.neuron_steps_per_s / 1e6
        )?;
        Ok(())
    }
}

/// The memory a `[t, n]` run of `g` allocates (f32 buffers): inputs, outputs and states; with
/// `backward`, the state sequences, upstream gradients, gradients and the backward scan's
/// buffers too (an upper estimate).
fn scan_memory(g: &StepGraph, t: usize, n: usize, backward: bool) -> memory::Estimate {
    let (ins, outs, states) = (g.inputs().len(), g.outputs().len(), g.states().len());
    let params = g.params().len();
    let e = memory::Estimate::new()
        .add(ins + outs, &[t, n], 4)
        .add(2 * states + params, &[n], 4)
        .add(params, &[t], 4);
    if backward {
        e.add(2 * (ins + outs + states), &[t, n], 4)
            .add(2 * states + params, &[n], 4)
    } else {
        e
    }
}

/// `T` for a PSN-family run: the module's `T` must be `--t` (set it with `--t` alone, or both
/// the same).
fn psn_steps(a: &RunArgs, configured: usize) -> Result<usize> {
    let explicit = a
        .sets
        .iter()
        .any(|s| s.starts_with("T=") || s.starts_with("t="));
    if explicit && configured != a.t {
        bail!(
            "--set T={configured} disagrees with --t {}: a PSN's weight is [T, T]",
            a.t
        );
    }
    Ok(a.t)
}

/// What `flexsn run` needs of `PSN` and `MaskedPSN`.
trait MixingRun {
    /// Spikes `[T, N]` of `x` (`[T, N]`).
    fn run_forward(&mut self, x: &[f32], n: usize) -> Result<Vec<f32>>;
    /// `(grad x, grad weight, grad bias)` for the upstream gradient `g` of the spikes.
    fn run_backward(&mut self, g: &[f32]) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)>;
}

impl MixingRun for neurons::psn::PSN {
    fn run_forward(&mut self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        Ok(self.forward(x, n)?)
    }
    fn run_backward(&mut self, g: &[f32]) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let gx = self.backward(g)?;
        Ok((gx, self.weight_grad().to_vec(), self.bias_grad().to_vec()))
    }
}

impl MixingRun for neurons::psn::MaskedPSN {
    /// Multi-step: the whole sequence at once; single-step: one step after another.
    fn run_forward(&mut self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        if self.step_mode() == neurons::node::StepMode::Multi {
            return Ok(self.forward(x, n)?);
        }
        let mut s = Vec::with_capacity(x.len());
        for step in x.chunks(n) {
            s.extend(self.forward(step, n)?);
        }
        Ok(s)
    }
    fn run_backward(&mut self, g: &[f32]) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let gx = self.backward(g)?;
        Ok((gx, self.weight_grad().to_vec(), self.bias_grad().to_vec()))
    }
}

/// `flexsn run` for `PSN` / `MaskedPSN`: forward, and backward with upstream gradient 1.
fn run_mixing(a: &RunArgs, label: &str, m: &mut dyn MixingRun, out: &mut dyn Write) -> Result<()> {
    let tn = a.t * a.n;
    let x = Normal::new(a.seed).input(a, tn);
    let mut report = RunReport::new(a, label);
    let start = Instant::now();
    let s = m.run_forward(&x, a.n)?;
    report.forward = Timing::new(start.elapsed(), tn);
    report.outputs.push(OutputStat {
        name: "spike".into(),
        stat: "firing rate",
        value: mean(s.iter().copied()),
    });
    if a.backward {
        let start = Instant::now();
        let (gx, gw, gb) = m.run_backward(&vec![1.0f32; tn])?;
        report.backward = Some(Timing::new(start.elapsed(), tn));
        report.grads.push(GradStat::new("x_seq", "input", &gx));
        report.grads.push(GradStat::new("weight", "param", &gw));
        report.grads.push(GradStat::new("bias", "param", &gb));
    }
    report.write(a.json, out)
}

fn mix_backend(a: &RunArgs) -> Result<Backend> {
    Ok(Backend::from_name(&a.backend)?)
}

/// Checks the memory of a PSN-family run before its `[T, T]` weight is allocated: x, the
/// membrane and spikes (`[T, N]`) and the weight; backward about twice that.
fn check_mixing_memory(a: &RunArgs) -> Result<()> {
    let copies = if a.backward { 2 } else { 1 };
    memory::Estimate::new()
        .add(3 * copies, &[a.t, a.n], 4)
        .add(copies, &[a.t, a.t], 4)
        .check(MemoryLimit(a.max_memory), "this run")?;
    Ok(())
}

fn run_psn(a: &RunArgs, mut c: neurons::psn::PSNConfig, out: &mut dyn Write) -> Result<()> {
    c.t = psn_steps(a, c.t)?;
    check_mixing_memory(a)?;
    let mut m = c.build(mix_backend(a)?)?;
    m.set_training(a.backward);
    run_mixing(a, "PSN", &mut m, out)
}

fn run_masked_psn(
    a: &RunArgs,
    mut c: neurons::psn::MaskedPSNConfig,
    out: &mut dyn Write,
) -> Result<()> {
    c.t = psn_steps(a, c.t)?;
    check_mixing_memory(a)?;
    let mut m = c.build(mix_backend(a)?)?;
    m.set_training(a.backward);
    run_mixing(a, "MaskedPSN", &mut m, out)
}

// ---------------------------------------------------------------------------------------------
// bench

fn cmd_bench(a: BenchArgs, out: &mut dyn Write) -> Result<()> {
    use flexsn::bench::{BenchOptions, Phase, run};
    if a.backend == "cuda" {
        let args = flexsn::cuda::CudaBenchArgs {
            neurons: a.neurons,
            ts: a.ts,
            ns: a.ns,
            dtypes: a.dtypes,
            math: a.math,
            json: a.json,
            save_policy: a.save_policy,
            rows: a.rows,
        };
        return flexsn::cuda::bench_from_cli(&args, out);
    }
    let phases = a
        .phases
        .iter()
        .map(|p| match p.as_str() {
            "forward" => Ok(Phase::Forward),
            "forward_backward" | "forward+backward" => Ok(Phase::ForwardBackward),
            other => Err(anyhow!(
                "unknown phase `{other}`: use forward or forward_backward"
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    let opts = BenchOptions {
        neurons: a.neurons,
        ts: a.ts,
        ns: a.ns,
        threads: a.threads,
        phases,
        backend: a.backend,
        json: a.json,
        min_time: std::time::Duration::from_millis(a.min_ms),
        chunk: a.chunk,
        unroll: a.unroll,
        save_policy: a.save_policy,
        max_memory: MemoryLimit(a.max_memory),
        ..BenchOptions::default()
    };
    run(&opts, out)?;
    Ok(())
}
