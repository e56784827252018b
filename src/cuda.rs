//! The CUDA part of `flexsn bench` (`--backend cuda`: kernels timed on device buffers against a
//! same-run device copy). The CUDA backends themselves run through the runtime's `Jit`, like
//! every other backend.

use flexsn_compiler::codegen::cuda::{CudaOptions, RowLayout};
use flexsn_runtime::cuda::{CudaDevice, CudaError};

/// What `flexsn bench --backend cuda` measures.
#[derive(Clone, Debug)]
pub struct CudaBenchPlan {
    /// `(label, graph)` per neuron.
    pub neurons: Vec<(String, flexsn_compiler::ir::StepGraph)>,
    /// Also the PSN time mixing (`[T, T]` weight, SpikingJelly's default ATan surrogate).
    pub psn: bool,
    /// Storage types of the sequences, one table block each.
    pub dtypes: Vec<flexsn_compiler::codegen::cuda::StorageDtype>,
    /// Precise or fast math.
    pub math: flexsn_compiler::codegen::cuda::MathMode,
    /// Time steps.
    pub t: usize,
    /// Neurons.
    pub n: usize,
    /// Timed repetitions per row.
    pub reps: usize,
    /// `states`: the training forward and backward scans; `checkpoint:K`: the fused checkpoint
    /// kernels (dense rows only).
    pub save_policy: flexsn_runtime::SavePolicy,
    /// Row layouts of the `[T, N]` buffers, one set of neuron rows each (padded rows are
    /// labelled `NAME+pad`).
    pub layouts: Vec<RowLayout>,
}

/// Runs the plan on device 0: forward, backward and their sum per neuron and dtype.
pub fn run_cuda_bench(
    plan: &CudaBenchPlan,
) -> Result<(String, Vec<flexsn_runtime::cuda::bench::BenchRow>), CudaError> {
    use flexsn_compiler::codegen::cuda::mixing::MixingSpec;
    use flexsn_runtime::SavePolicy;
    use flexsn_runtime::cuda::bench::{
        BenchCase, bench_mixing, bench_neuron, bench_neuron_checkpoint,
    };
    let dev = CudaDevice::new(0)?;
    let header = format!(
        "device {} (sm_{}{}), NVRTC target {:?}, save policy {}",
        dev.name(),
        dev.compute_capability().0,
        dev.compute_capability().1,
        dev.target(),
        plan.save_policy
    );
    let mut rows = Vec::new();
    for (label, graph) in &plan.neurons {
        for &dtype in &plan.dtypes {
            for &layout in &plan.layouts {
                let case = BenchCase {
                    label: match layout {
                        RowLayout::Dense => label.clone(),
                        RowLayout::Padded => format!("{label}+pad"),
                    },
                    graph: graph.clone(),
                    opts: CudaOptions::new(dtype, plan.math),
                    t: plan.t,
                    n: plan.n,
                    reps: plan.reps,
                    layout,
                };
                rows.extend(match plan.save_policy {
                    SavePolicy::States => bench_neuron(&dev, &case)?,
                    // The fused checkpoint kernels take dense rows.
                    SavePolicy::Checkpoint(_) if layout == RowLayout::Padded => continue,
                    SavePolicy::Checkpoint(k) => bench_neuron_checkpoint(&dev, &case, k)?,
                });
            }
        }
    }
    if plan.psn {
        let spec = MixingSpec {
            rows: plan.t,
            cols: plan.t,
            surrogate: flexsn_neurons::psn::DEFAULT_SURROGATE,
        };
        for &dtype in &plan.dtypes {
            let opts = CudaOptions::new(dtype, plan.math);
            rows.extend(bench_mixing(&dev, "psn", &spec, &opts, plan.n, plan.reps)?);
        }
    }
    Ok((header, rows))
}

/// `flexsn bench --backend cuda`: runs `plan`, prints the table (or JSON rows) and the issue's
/// targets for LIF (T = 64, N = 16 777 216: fwd+bwd f32 at >= 0.8 of the copy bandwidth; bf16
/// >= 1.6x faster than f32) when those rows were measured.
pub fn bench_cli(
    plan: &CudaBenchPlan,
    json: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<Vec<flexsn_runtime::cuda::bench::BenchRow>> {
    let (header, rows) = run_cuda_bench(plan)?;
    if json {
        for r in &rows {
            writeln!(
                out,
                "{}",
                serde_json::json!({
                    "backend": "cuda",
                    "save_policy": plan.save_policy.to_string(),
                    "neuron": r.label,
                    "phase": r.phase,
                    "dtype": r.dtype.name(),
                    "t": r.t,
                    "n": r.n,
                    "median_ms": r.ms,
                    "bytes": r.bytes,
                    "gbps": r.gbps(),
                    "copy_gbps": r.copy_gbps(),
                    "ratio": r.ratio(),
                    "gflops": (r.flops > 0.0).then(|| r.gflops()),
                })
            )?;
        }
    } else {
        writeln!(
            out,
            "{header}; bytes: every buffer of the launch once (sequences in the storage type)"
        )?;
        write!(out, "{}", flexsn_runtime::cuda::bench::format_table(&rows))?;
        // The targets are those of the `states` kernels.
        let states = plan.save_policy == flexsn_runtime::SavePolicy::States;
        for line in target_lines(&rows).into_iter().filter(|_| states) {
            writeln!(out, "{line}")?;
        }
    }
    Ok(rows)
}

/// The GPU targets, checked on the measured rows (LIF, T = 64, N = 16 777 216).
pub fn target_lines(rows: &[flexsn_runtime::cuda::bench::BenchRow]) -> Vec<String> {
    use flexsn_compiler::codegen::cuda::StorageDtype;
    let find = |dtype: StorageDtype| {
        rows.iter().find(|r| {
            r.phase == "fwd+bwd"
                && r.dtype == dtype
                && r.t == 64
                && r.n == 16_777_216
                && (r.label == "lif" || r.label == "LIFNode")
        })
    };
    let mut v = Vec::new();
    if let Some(f) = find(StorageDtype::F32) {
        v.push(format!(
            "target: LIF fwd+bwd f32 T=64 N=16777216 at {:.2} of the copy bandwidth (want >= 0.80): {}",
            f.ratio(),
            if f.ratio() >= 0.8 { "MET" } else { "NOT MET" }
        ));
        if let Some(b) = find(StorageDtype::Bf16) {
            let speedup = f.ms / b.ms;
            v.push(format!(
                "target: LIF fwd+bwd bf16 {:.2}x faster than f32 (want >= 1.60): {}",
                speedup,
                if speedup >= 1.6 { "MET" } else { "NOT MET" }
            ));
        }
    }
    v
}

/// The `flexsn bench --backend cuda` arguments (empty lists take the defaults: the benchmark
/// neurons of [`crate::bench::NEURONS`], T = 64, N = 16 777 216, f32 and bf16).
#[derive(Clone, Debug, Default)]
pub struct CudaBenchArgs {
    /// Neuron names (empty: the defaults).
    pub neurons: Vec<String>,
    /// Time steps (empty: 64).
    pub ts: Vec<usize>,
    /// Neuron counts (empty: 16 777 216).
    pub ns: Vec<usize>,
    /// Storage types by name (empty: f32 and bf16).
    pub dtypes: Vec<String>,
    /// `precise` or `fast` (empty: precise).
    pub math: String,
    /// One JSON object per row instead of the table.
    pub json: bool,
    /// What the training forward keeps (see [`CudaBenchPlan::save_policy`]).
    pub save_policy: flexsn_runtime::SavePolicy,
    /// Row layouts by name, `dense` or `padded` (empty: dense).
    pub rows: Vec<String>,
}

/// Runs `flexsn bench --backend cuda`: one plan per `(T, N)`, printing each table.
pub fn bench_from_cli(a: &CudaBenchArgs, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    use anyhow::anyhow;
    use flexsn_compiler::codegen::cuda::{MathMode, StorageDtype};
    let names: Vec<String> = if a.neurons.is_empty() {
        crate::bench::NEURONS
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        a.neurons.clone()
    };
    let psn = names.iter().any(|n| n == "psn");
    let neurons = names
        .iter()
        .filter(|n| *n != "psn")
        .map(|n| Ok((n.clone(), crate::bench::neuron_graph(n)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let dtypes = if a.dtypes.is_empty() {
        vec![StorageDtype::F32, StorageDtype::Bf16]
    } else {
        a.dtypes
            .iter()
            .map(|d| StorageDtype::from_name(d).ok_or_else(|| anyhow!("unknown dtype `{d}`")))
            .collect::<anyhow::Result<_>>()?
    };
    let math = MathMode::from_name(if a.math.is_empty() {
        "precise"
    } else {
        &a.math
    })
    .ok_or_else(|| anyhow!("unknown math mode `{}`", a.math))?;
    let layouts = a
        .rows
        .iter()
        .map(|r| match r.as_str() {
            "dense" => Ok(RowLayout::Dense),
            "padded" => Ok(RowLayout::Padded),
            other => Err(anyhow!("unknown row layout `{other}` (dense, padded)")),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let layouts = if layouts.is_empty() {
        vec![RowLayout::Dense]
    } else {
        layouts
    };
    let ts = if a.ts.is_empty() {
        vec![64]
    } else {
        a.ts.clone()
    };
    let ns = if a.ns.is_empty() {
        vec![16_777_216]
    } else {
        a.ns.clone()
    };
    for &t in &ts {
        for &n in &ns {
            if t == 0 || n == 0 {
                anyhow::bail!("T and N must be at least 1 (got T = {t}, N = {n})");
            }
            let plan = CudaBenchPlan {
                neurons: neurons.clone(),
                psn,
                dtypes: dtypes.clone(),
                math,
                t,
                n,
                reps: 10,
                save_policy: a.save_policy,
                layouts: layouts.clone(),
            };
            bench_cli(&plan, a.json, out)?;
        }
    }
    Ok(())
}
