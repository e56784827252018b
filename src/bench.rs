//! `flexsn bench`: throughput of compiled neuron kernels against a plain memory copy.
//!
//! For each neuron (`if`, `lif`, `plif`, `alif`), phase, `T`, `N` and thread count it reports the
//! median wall time, the bytes the phase must move, the achieved GB/s, the GB/s of a plain copy
//! of the same number of bytes measured in the same run (same thread count), and their ratio.
//!
//! ## Bytes
//!
//! Every tensor a phase reads or writes is counted once, 4 bytes per element:
//!
//! - `forward` (inference): reads the inputs `[T, N]`, initial states `[N]` and params; writes
//!   the outputs `[T, N]` and final states `[N]`.
//! - `forward_backward` (training step with an upstream gradient for every output): additionally
//!   writes and reads back the state sequences `[T, N]` (the only intermediate that must go
//!   through memory), reads the upstream gradients `[T, N]`, and writes the input gradients
//!   `[T, N]`, initial-state gradients `[N]` and param gradients. Inputs and params are counted
//!   once although both passes read them.
//!
//! Under `--save-policy checkpoint:K` the training forward keeps only `⌈T/K⌉` rows of each
//! state instead of the sequence, and backward recomputes each segment of `K` steps from its
//! checkpoint: `forward_backward` then counts the checkpoints written and read (`2 S ⌈T/K⌉ N`)
//! instead of the state sequences (`2 S T N`), plus the inputs and per-time params read again
//! by the recomputation. Every `forward_backward` row also reports `saved_bytes`, the bytes the
//! forward pass actually kept for backward (`Forward::saved_bytes`).
//!
//! Compile times are wall times of `Jit::compile` (the inference and training forward scans) and
//! of compiling the backward scan, after one untimed warm-up compilation in the process.
//!
//! The copy baseline copies `bytes / 2` bytes (reading and writing `bytes` in all) between two
//! buffers touched beforehand, split over the same number of threads, once after each timed run
//! of the phase (the `timing` module): the two medians come from the same stretch of time.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use flexsn_compiler::dsl::CoreBuilder;
use flexsn_compiler::ir::{ParamKind, StateInit, StepGraph, Surrogate};
use flexsn_compiler::rng::SplitMix64;
use flexsn_compiler::scan::param_len;
use flexsn_runtime::cpu::{self, CpuOptions};
use flexsn_runtime::memory::{Estimate, MemoryLimit};
use flexsn_runtime::{Backend, Forward, Gradients, Inference, Jit, Kernel, SavePolicy, Upstream};

mod psn;
mod timing;

pub use psn::{psn_work, sliding_flops};
use timing::{Baseline, time};

/// The neurons `flexsn bench` knows (`psn`, `sliding-psn`: see the `psn` module; their rows add the
/// GFLOP/s of the time mixing).
pub const NEURONS: &[&str] = &["if", "lif", "plif", "alif", "psn", "sliding-psn"];
/// Default time steps.
pub const DEFAULT_T: &[usize] = &[4, 16, 64];
/// Default neuron counts.
pub const DEFAULT_N: &[usize] = &[4096, 65536, 1048576];

/// A benchmark phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Forward inference (no state sequences kept).
    Forward,
    /// Forward keeping state sequences, then backward.
    ForwardBackward,
}

impl Phase {
    /// The name rows print (`forward`, `forward_backward`).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Forward => "forward",
            Phase::ForwardBackward => "forward_backward",
        }
    }
}

/// The default [`BenchOptions::max_memory`]: 16 GiB (LIF at T = 1024, N = 2^18 needs 8.6 GB
/// with its copy baseline).
pub const DEFAULT_BENCH_MEMORY: u64 = 16 << 30;

/// What to run. Empty lists mean the defaults.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Neurons by bench name (`if`, `lif`, ...; see [`NEURONS`]). Default: all.
    pub neurons: Vec<String>,
    /// Time steps. Default: [`DEFAULT_T`].
    pub ts: Vec<usize>,
    /// Neuron counts. Default: [`DEFAULT_N`].
    pub ns: Vec<usize>,
    /// Thread counts; 0 means all available cores. Default: 1 and all.
    pub threads: Vec<usize>,
    /// Phases. Default: both.
    pub phases: Vec<Phase>,
    /// `cpu` or `interpreter`.
    pub backend: String,
    /// One JSON object per row on the output (compile times go to stderr).
    pub json: bool,
    /// Minimum measuring time per row.
    pub min_time: Duration,
    /// Minimum number of timed runs per row.
    pub min_runs: usize,
    /// CPU code generation: neurons per chunk (multiple of 16; 0 = automatic).
    pub chunk: usize,
    /// f32x4 copies per loop iteration (1-4; 0 = automatic).
    pub unroll: usize,
    /// What the training forward keeps for backward.
    pub save_policy: SavePolicy,
    /// The most memory one row may allocate (its tensors and its copy baseline): larger rows
    /// are refused before anything is allocated.
    pub max_memory: MemoryLimit,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            neurons: vec![],
            ts: vec![],
            ns: vec![],
            threads: vec![],
            phases: vec![],
            backend: "cpu".into(),
            json: false,
            min_time: Duration::from_millis(300),
            min_runs: 5,
            chunk: 0,
            unroll: 0,
            save_policy: SavePolicy::States,
            max_memory: MemoryLimit(DEFAULT_BENCH_MEMORY),
        }
    }
}

/// One result row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The neuron's bench name.
    pub neuron: String,
    /// What was timed.
    pub phase: Phase,
    /// Time steps.
    pub t: usize,
    /// Neurons.
    pub n: usize,
    /// Threads the kernel ran on.
    pub threads: usize,
    /// Median time of one call, in milliseconds.
    pub median_ms: f64,
    /// Bytes one call reads and writes.
    pub bytes: u64,
    /// `bytes` per median time, in GB/s.
    pub gbps: f64,
    /// A plain memory copy of the same bytes in the same run, in GB/s.
    pub copy_gbps: f64,
    /// `gbps / copy_gbps`: the fraction of copy bandwidth the kernel reaches.
    pub ratio: f64,
    /// `forward_backward` rows of scan neurons: bytes the forward kept for backward.
    pub saved_bytes: Option<u64>,
}

impl Row {
    /// The JSON object of `--json` (keys exactly `neuron, phase, t, n, threads, median_ms, bytes,
    /// gbps, copy_gbps, ratio, saved_bytes`; `saved_bytes` is null where not measured).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "neuron": self.neuron,
            "phase": self.phase.name(),
            "t": self.t,
            "n": self.n,
            "threads": self.threads,
            "median_ms": self.median_ms,
            "bytes": self.bytes,
            "gbps": self.gbps,
            "copy_gbps": self.copy_gbps,
            "ratio": self.ratio,
            "saved_bytes": self.saved_bytes,
        })
    }
}

impl Row {
    /// A phase that took `secs` to move `bytes`, beside `baseline`'s copy of the same bytes
    /// timed between the phase's runs (the same run).
    #[allow(clippy::too_many_arguments)]
    fn measured(
        neuron: &str,
        phase: Phase,
        t: usize,
        n: usize,
        threads: usize,
        secs: f64,
        bytes: u64,
        baseline: &mut Baseline,
    ) -> Result<Row> {
        let copy = baseline.median();
        let gbps = bytes as f64 / secs / 1e9;
        let copy_gbps = bytes as f64 / copy / 1e9;
        Ok(Row {
            neuron: neuron.to_string(),
            phase,
            t,
            n,
            threads,
            median_ms: secs * 1e3,
            bytes,
            gbps,
            copy_gbps,
            ratio: gbps / copy_gbps,
            saved_bytes: None,
        })
    }
}

/// The table header (none with `--json`); `gflops` adds the GFLOP/s column.
fn write_header(opts: &BenchOptions, out: &mut dyn Write, gflops: bool) -> Result<()> {
    if opts.json {
        return Ok(());
    }
    write!(
        out,
        "{:<11} {:<17} {:>4} {:>8} {:>3} {:>11} {:>10} {:>8} {:>9} {:>6} {:>9}",
        "neuron",
        "phase",
        "T",
        "N",
        "thr",
        "median_ms",
        "MB",
        "GB/s",
        "copy_GB/s",
        "ratio",
        "saved_MB"
    )?;
    if gflops {
        write!(out, " {:>8}", "GFLOP/s")?;
    }
    writeln!(out)?;
    Ok(())
}

/// One row: a table line, or with `--json` its object (plus a `gflops` key when given).
fn write_row(
    opts: &BenchOptions,
    out: &mut dyn Write,
    row: &Row,
    gflops: Option<f64>,
) -> Result<()> {
    if opts.json {
        let mut j = row.to_json();
        if let (Some(g), Some(o)) = (gflops, j.as_object_mut()) {
            o.insert("gflops".into(), g.into());
        }
        writeln!(out, "{j}")?;
    } else {
        write!(
            out,
            "{:<11} {:<17} {:>4} {:>8} {:>3} {:>11.3} {:>10.1} {:>8.2} {:>9.2} {:>6.2} {:>9}",
            row.neuron,
            row.phase.name(),
            row.t,
            row.n,
            row.threads,
            row.median_ms,
            row.bytes as f64 / 1e6,
            row.gbps,
            row.copy_gbps,
            row.ratio,
            row.saved_bytes
                .map_or_else(|| "-".into(), |b| format!("{:.1}", b as f64 / 1e6))
        )?;
        if let Some(g) = gflops {
            write!(out, " {g:>8.2}")?;
        }
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}

/// JIT compile times of one neuron's kernels.
#[derive(Clone, Debug, PartialEq)]
pub struct CompileTimes {
    /// The neuron's bench name.
    pub neuron: String,
    /// Threads the kernels were compiled for.
    pub threads: usize,
    /// Forward (inference and training scans together).
    pub forward: Duration,
    /// The backward scan (upstream gradients for every output).
    pub backward: Duration,
}

/// The two-state adaptive LIF of the benchmarks: `h = v + (x - v) / 2`,
/// `s = Θ(h - (1 + a))` (Sigmoid surrogate, α = 4), hard reset `v' = h (1 - s)`, threshold
/// adaptation `a' = 0.9 a + 0.1 s`.
pub fn alif() -> Result<StepGraph> {
    let b = CoreBuilder::new("alif");
    b.describe("two-state adaptive LIF (benchmark neuron)");
    let x = b.input("x");
    let v = b.state("v", StateInit::Const(0.0));
    let a = b.state("a", StateInit::Const(0.0));
    let h = v + (x - v) / 2.0;
    let s = (h - (a + 1.0)).spike(Surrogate::Sigmoid { alpha: 4.0 });
    b.output("spike", s);
    b.set_state("v", h * (1.0 - s));
    b.set_state("a", a * 0.9 + s * 0.1);
    Ok(b.build()?)
}

/// The step graph of a benchmark neuron by CLI name.
pub fn neuron_graph(name: &str) -> Result<StepGraph> {
    let g = match name {
        "if" => flexsn_neurons::IFNode::new().step_graph()?,
        "lif" => flexsn_neurons::LIFNode::new().step_graph()?,
        "plif" => flexsn_neurons::ParametricLIFNode::new().step_graph()?,
        "alif" => alif()?,
        // Any other scan built-in of `flexsn list`, with its defaults.
        other => match flexsn_neurons::Builtin::from_name(other) {
            Ok(b) => b.step_graph()?,
            Err(_) => bail!(
                "unknown benchmark neuron `{other}`; known: {}, or any scan neuron of `flexsn list`",
                NEURONS.join(", ")
            ),
        },
    };
    Ok(g)
}

fn jit_for(opts: &BenchOptions, threads: usize) -> Result<Jit> {
    let backend = opts.backend.as_str();
    // `cuda-jit`: the CUDA backend through the `Kernel` API (host buffers, transfers timed).
    let b = match backend {
        "cuda-jit" => Backend::Cuda,
        other => Backend::from_name(other)?,
    };
    Ok(match b {
        Backend::Cpu => Jit::cpu(CpuOptions {
            threads,
            chunk: opts.chunk,
            unroll: opts.unroll,
        })?,
        other => Jit::new(other)?,
    })
}

/// Checks what a row of `g` allocates against the limit before anything is allocated: its
/// input data, what the phase writes (outputs, kept states or checkpoints, gradients) and the
/// copy baseline (`bytes_moved_under` bytes in two buffers). Returns the bytes the phase moves.
fn check_row_memory(
    opts: &BenchOptions,
    g: &StepGraph,
    phase: Phase,
    t: usize,
    n: usize,
) -> Result<u64> {
    let (i, o, s) = (g.inputs().len(), g.outputs().len(), g.states().len());
    let params: usize = g.params().iter().map(|d| param_len(d.kind, t, n)).sum();
    let mut e = Estimate::new()
        .add(i + o, &[t, n], 4)
        .add(2 * s, &[n], 4)
        .add(1, &[params], 4);
    if phase == Phase::ForwardBackward {
        let kept = match opts.save_policy {
            SavePolicy::Checkpoint(k) => t.div_ceil(k.max(1)) + 1,
            SavePolicy::States => t,
        };
        e = e
            .add(o + i, &[t, n], 4)
            .add(s, &[kept, n], 4)
            .add(2, &[params], 4);
    }
    let what = format!("the {} row at T = {t}, N = {n}", phase.name());
    let data = e.check(opts.max_memory, &what)?;
    // Within the limit, so `t * n` is small enough for the byte count not to overflow.
    let bytes = bytes_moved_under(g, phase, t, n, opts.save_policy);
    Estimate::new()
        .add(1, &[data as usize], 1)
        .add(1, &[bytes as usize], 1)
        .check(opts.max_memory, &what)?;
    Ok(bytes)
}

/// Bytes `phase` moves for `g` over `[t, n]` under [`SavePolicy::States`] (see the module docs).
pub fn bytes_moved(g: &StepGraph, phase: Phase, t: usize, n: usize) -> u64 {
    bytes_moved_under(g, phase, t, n, SavePolicy::States)
}

/// Bytes `phase` moves for `g` over `[t, n]` under `policy` (see the module docs).
pub fn bytes_moved_under(
    g: &StepGraph,
    phase: Phase,
    t: usize,
    n: usize,
    policy: SavePolicy,
) -> u64 {
    let tn = (t * n) as u64;
    let (i, s, o) = (
        g.inputs().len() as u64,
        g.states().len() as u64,
        g.outputs().len() as u64,
    );
    let p: u64 = g
        .params()
        .iter()
        .map(|d| param_len(d.kind, t, n) as u64)
        .sum();
    let pl: u64 = g
        .params()
        .iter()
        .filter(|d| d.learnable)
        .map(|d| param_len(d.kind, t, n) as u64)
        .sum();
    let per_time: u64 = g
        .params()
        .iter()
        .filter(|d| d.kind == ParamKind::PerTime)
        .map(|_| t as u64)
        .sum();
    let saved = match policy {
        SavePolicy::Checkpoint(k) if s > 0 => {
            // Checkpoints written and read; inputs and per-time params read again.
            2 * s * t.div_ceil(k.max(1)) as u64 * n as u64 + i * tn + per_time
        }
        _ => 2 * s * tn,
    };
    let n = n as u64;
    let fwd = i * tn + s * n + p + o * tn + s * n;
    let elems = match phase {
        Phase::Forward => fwd,
        Phase::ForwardBackward => fwd + saved + o * tn + i * tn + s * n + pl,
    };
    4 * elems
}

struct Data {
    inputs: Vec<Vec<f32>>,
    params: Vec<(String, Vec<f32>)>,
    grads: Vec<Vec<f32>>,
}

fn data(g: &StepGraph, t: usize, n: usize) -> Data {
    let mut rng = SplitMix64::new(0x5EED);
    let inputs = g
        .inputs()
        .iter()
        .map(|_| (0..t * n).map(|_| rng.uniform(-0.5, 2.5)).collect())
        .collect();
    let params = g
        .params()
        .iter()
        .map(|d| {
            let len = param_len(d.kind, t, n);
            let v = match d.kind {
                ParamKind::Shared => vec![0.0; len],
                _ => (0..len).map(|_| rng.uniform(-0.5, 0.5)).collect(),
            };
            (d.name.clone(), v)
        })
        .collect();
    let grads = g
        .outputs()
        .iter()
        .map(|_| (0..t * n).map(|_| rng.uniform(-1.0, 1.0)).collect())
        .collect();
    Data {
        inputs,
        params,
        grads,
    }
}

/// Median seconds of `phase` (its runs alternating with `baseline`'s copies), and for
/// `forward_backward` the bytes the forward kept.
fn measure_saved(
    opts: &BenchOptions,
    k: &Kernel,
    phase: Phase,
    t: usize,
    n: usize,
    baseline: &mut Baseline,
) -> Result<(f64, Option<u64>)> {
    let g = k.graph();
    let d = data(g, t, n);
    let xs: Vec<&[f32]> = d.inputs.iter().map(Vec::as_slice).collect();
    let ps: Vec<(&str, &[f32])> = d
        .params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    match phase {
        Phase::Forward => {
            let mut out = Inference::default();
            let secs = time(opts, Some(baseline), || {
                Ok(k.infer_into(t, n, &xs, None, &ps, &mut out)?)
            })?;
            Ok((secs, None))
        }
        Phase::ForwardBackward => {
            let mut f = Forward::default();
            let mut gr = Gradients {
                inputs: vec![],
                init_states: vec![],
                params: vec![],
            };
            let up = Upstream {
                outputs: d.grads.iter().map(|x| Some(x.as_slice())).collect(),
                ..Upstream::none(g)
            };
            if std::env::var_os("FLEXSN_BENCH_SPLIT").is_some() {
                // Diagnostic: time the two passes separately (to stderr).
                let tf = time(opts, None, || {
                    Ok(k.forward_into(t, n, &xs, None, &ps, &mut f)?)
                })?;
                let tb = time(opts, None, || Ok(k.backward_into(&f, &up, &mut gr)?))?;
                eprintln!(
                    "  split: forward (training) {:.3} ms, backward {:.3} ms",
                    tf * 1e3,
                    tb * 1e3
                );
            }
            let secs = time(opts, Some(baseline), || {
                k.forward_into(t, n, &xs, None, &ps, &mut f)?;
                k.backward_into(&f, &up, &mut gr)?;
                Ok(())
            })?;
            Ok((secs, Some(f.saved_bytes() as u64)))
        }
    }
}

/// Runs the benchmark, printing a table (or JSON rows) to `out`. Returns the rows.
pub fn run(opts: &BenchOptions, out: &mut dyn Write) -> Result<(Vec<Row>, Vec<CompileTimes>)> {
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let neurons: Vec<String> = if opts.neurons.is_empty() {
        NEURONS.iter().map(|s| s.to_string()).collect()
    } else {
        opts.neurons.clone()
    };
    let ts = if opts.ts.is_empty() {
        DEFAULT_T.to_vec()
    } else {
        opts.ts.clone()
    };
    let ns = if opts.ns.is_empty() {
        DEFAULT_N.to_vec()
    } else {
        opts.ns.clone()
    };
    let mut threads: Vec<usize> = if opts.threads.is_empty() {
        vec![1, all]
    } else {
        opts.threads
            .iter()
            // More threads than cores only contend: the kernel and the copy get at most `all`.
            .map(|&t| if t == 0 { all } else { t.min(all) })
            .collect()
    };
    threads.dedup();
    let phases = if opts.phases.is_empty() {
        vec![Phase::Forward, Phase::ForwardBackward]
    } else {
        opts.phases.clone()
    };
    if !opts.json {
        writeln!(
            out,
            "backend {}, {} available threads, save policy {}; bytes: every tensor read or \
             written once (f32)",
            opts.backend, all, opts.save_policy
        )?;
    }
    let mut rows = vec![];
    let mut compiles = vec![];
    // One untimed compilation first: it pays the process's one-time costs (paging in the code
    // generator, first allocations), which are not the kernels' compile time.
    jit_for(opts, 1)?.compile(&alif()?)?;
    for name in &neurons {
        if psn::PSN_NEURONS.contains(&name.as_str()) {
            psn::run_neuron(opts, name, &threads, &phases, &ts, &ns, out, &mut rows)?;
            continue;
        }
        let g = neuron_graph(name)?;
        for &th in &threads {
            let jit = jit_for(opts, th)?;
            let t0 = Instant::now();
            let mut k = jit.compile(&g)?;
            let forward = t0.elapsed();
            k.set_save_policy(opts.save_policy)?;
            let spec = flexsn_runtime::GradSpec::outputs_only(k.graph());
            let t1 = Instant::now();
            k.prepare_backward(&spec)?;
            let backward = t1.elapsed();
            let ct = CompileTimes {
                neuron: name.clone(),
                threads: th,
                forward,
                backward,
            };
            let line = format!(
                "compile {name} (threads {th}): forward (inference + training) {:.2} ms, \
                 backward {:.2} ms, total {:.2} ms",
                forward.as_secs_f64() * 1e3,
                backward.as_secs_f64() * 1e3,
                (forward + backward).as_secs_f64() * 1e3
            );
            if opts.json {
                eprintln!("{line}");
            } else {
                writeln!(out, "{line}")?;
            }
            compiles.push(ct);
            write_header(opts, out, false)?;
            for &phase in &phases {
                for &t in &ts {
                    for &n in &ns {
                        let bytes = check_row_memory(opts, k.graph(), phase, t, n)?;
                        // The copy runs on as many threads as the kernel does.
                        let mut base = Baseline::new(bytes, cpu::threads_for_work(th, t, n));
                        let (secs, saved) = measure_saved(opts, &k, phase, t, n, &mut base)?;
                        let mut row = Row::measured(name, phase, t, n, th, secs, bytes, &mut base)?;
                        row.saved_bytes = saved;
                        write_row(opts, out, &row, None)?;
                        rows.push(row);
                    }
                }
            }
        }
    }
    Ok((rows, compiles))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_count_every_tensor_once() {
        let g = neuron_graph("lif").unwrap();
        // x read, spikes written, v0 read, v_T written.
        assert_eq!(
            bytes_moved(&g, Phase::Forward, 2, 10),
            4 * (20 + 20 + 10 + 10)
        );
        // + v seq written and read, grad spikes read, grad x written, grad v0 written.
        assert_eq!(
            bytes_moved(&g, Phase::ForwardBackward, 2, 10),
            4 * (60 + 40 + 20 + 20 + 10)
        );
        // checkpoint:4 over 8 steps: 2 checkpoint rows written and read, x read again.
        let ck = SavePolicy::Checkpoint(4);
        assert_eq!(
            bytes_moved_under(&g, Phase::ForwardBackward, 8, 10, ck),
            bytes_moved(&g, Phase::ForwardBackward, 8, 10) - 4 * (2 * 80) + 4 * (2 * 20 + 80)
        );
        assert_eq!(
            bytes_moved_under(&g, Phase::Forward, 8, 10, ck),
            bytes_moved(&g, Phase::Forward, 8, 10)
        );
        let p = neuron_graph("plif").unwrap();
        assert_eq!(
            bytes_moved(&p, Phase::ForwardBackward, 2, 10)
                - bytes_moved(&g, Phase::ForwardBackward, 2, 10),
            4 * 2
        );
    }

    #[test]
    fn tiny_run_produces_rows_and_json() {
        let opts = BenchOptions {
            neurons: vec!["alif".into(), "plif".into()],
            ts: vec![3],
            ns: vec![100],
            threads: vec![1],
            min_time: Duration::from_millis(1),
            min_runs: 1,
            json: true,
            ..BenchOptions::default()
        };
        let mut out = vec![];
        let (rows, compiles) = run(&opts, &mut out).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(compiles.len(), 2);
        let text = String::from_utf8(out).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
            let mut want = vec![
                "neuron",
                "phase",
                "t",
                "n",
                "threads",
                "median_ms",
                "bytes",
                "gbps",
                "copy_gbps",
                "ratio",
                "saved_bytes",
            ];
            want.sort();
            let mut keys = keys;
            keys.sort();
            assert_eq!(keys, want);
        }
        for r in &rows {
            // T + 1 rows of N per state (alif has two states, plif one).
            let states = if r.neuron == "alif" { 2 } else { 1 };
            let want = (r.phase == Phase::ForwardBackward).then_some(4 * states * (3 + 1) * 100);
            assert_eq!(r.saved_bytes, want);
        }
        let ck = BenchOptions {
            neurons: vec!["lif".into()],
            save_policy: SavePolicy::Checkpoint(2),
            ..opts.clone()
        };
        let (rows, _) = run(&ck, &mut vec![]).unwrap();
        // lif: one state, ⌈3/2⌉ = 2 rows.
        assert_eq!(rows[1].saved_bytes, Some(4 * 2 * 100));
        assert!(
            run(
                &BenchOptions {
                    neurons: vec!["nope".into()],
                    ..opts
                },
                &mut vec![]
            )
            .is_err()
        );
    }
}
