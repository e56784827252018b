//! A differential run over random graphs: the interpreter (the oracle) against the CPU backend
//! and the emulated CUDA backend, forward and backward.
//!
//! By default a few graphs (seconds). `FLEXSN_DIFF_SECS=3600` runs graphs for an hour from seed
//! `FLEXSN_DIFF_SEED` (default 0) and prints a summary line; every disagreement is printed with
//! its seed and the run fails at the end if there was one.
//!
//! The CPU must equal the interpreter bit for bit on graphs of exactly lowered ops and the model
//! (`codegen::clif::model`) on the others; emulated CUDA must be within its tolerance of the
//! interpreter.

use std::time::{Duration, Instant};

use flexsn_compiler::autodiff::{GradSpec, backward};
use flexsn_compiler::codegen::clif::lower::is_approximated;
use flexsn_compiler::codegen::clif::model;
use flexsn_compiler::codegen::cuda::{CudaOptions, StorageDtype};
use flexsn_compiler::interp;
use flexsn_compiler::ir::StepGraph;
use flexsn_compiler::random::{RandomGraphConfig, random_graph, random_inputs, scan_args};
use flexsn_compiler::scan::{ScanKernel, ScanResult};
use flexsn_runtime::cpu::{CpuOptions, CpuScan};
use flexsn_runtime::cuda::compare::{Tolerance, compare_results, interpreter_reference};
use flexsn_runtime::cuda::emulated::{EmulatedCuda, find_cxx};
use flexsn_runtime::cuda::probe::{Tool, present_or_skip};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Bit-identical results, NaN equal to NaN.
fn identical(got: &ScanResult<f32>, want: &ScanResult<f32>) -> bool {
    let same = |a: &[Vec<f32>], b: &[Vec<f32>]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.len() == y.len()
                    && x.iter()
                        .zip(y)
                        .all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()))
            })
    };
    same(&got.outputs, &want.outputs)
        && same(&got.state_seqs, &want.state_seqs)
        && same(&got.final_states, &want.final_states)
}

/// The disagreements of one kernel on one data set, as lines naming the seed.
fn check(kernel: &ScanKernel, seed: u64, emu: Option<&EmulatedCuda>, what: &str) -> Vec<String> {
    let (t, n) = (1 + (seed % 9) as usize, [1, 5, 33, 70][(seed % 4) as usize]);
    let data = random_inputs(seed, &kernel.graph, t, n);
    let args = scan_args(t, n, &data);
    let mut bad = Vec::new();
    let oracle = interp::run_scan(kernel, &args).expect("the interpreter runs");
    let exact = kernel
        .graph
        .nodes()
        .all(|(_, node)| !is_approximated(&node.op));
    let cpu = CpuScan::compile(
        kernel,
        &CpuOptions {
            threads: 1,
            ..CpuOptions::default()
        },
    )
    .and_then(|c| c.run(&args));
    match cpu {
        Ok(got) => {
            let want = if exact {
                oracle.clone()
            } else {
                model::run_scan(kernel, &args).expect("the model runs")
            };
            if !identical(&got, &want) {
                bad.push(format!("seed {seed} {what}: cpu differs (T={t} N={n})"));
            }
        }
        Err(e) => bad.push(format!("seed {seed} {what}: cpu fails: {e}")),
    }
    if let Some(e) = emu {
        match e.run_scan(kernel, &args) {
            Ok(got) => {
                let want = interpreter_reference(kernel, &args, StorageDtype::F32).unwrap();
                if let Err(ms) =
                    compare_results(&got, &want, Tolerance::emulated(StorageDtype::F32))
                {
                    bad.push(format!(
                        "seed {seed} {what}: cuda-emulated differs: {}",
                        ms[0]
                    ));
                }
            }
            Err(err) => bad.push(format!("seed {seed} {what}: cuda-emulated fails: {err}")),
        }
    }
    bad
}

fn kernels(g: &StepGraph, seed: u64) -> Vec<(ScanKernel, &'static str)> {
    let mut ks = vec![(
        ScanKernel::forward(g.clone(), seed.is_multiple_of(2)),
        "forward",
    )];
    if let Ok(b) = backward(g, &GradSpec::all(g)) {
        ks.push((b.kernel, "backward"));
    }
    ks
}

#[test]
fn random_graphs_agree_with_the_interpreter() {
    let emu = present_or_skip(Tool::Cxx, find_cxx())
        .map(|_| EmulatedCuda::with_options(CudaOptions::default()).unwrap());
    let secs = env_u64("FLEXSN_DIFF_SECS");
    let first = env_u64("FLEXSN_DIFF_SEED").unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(secs.unwrap_or(0));
    let configs = [RandomGraphConfig::all(), RandomGraphConfig::smooth()];
    let (mut graphs, mut runs, mut bad) = (0u64, 0u64, Vec::new());
    for seed in first.. {
        let done = match secs {
            Some(_) => Instant::now() >= deadline,
            None => graphs >= 6,
        };
        if done {
            break;
        }
        let g = random_graph(seed, &configs[(seed % 2) as usize]);
        for (k, what) in kernels(&g, seed) {
            runs += 1;
            bad.extend(check(&k, seed, emu.as_ref(), what));
        }
        graphs += 1;
        if secs.is_some() && graphs.is_multiple_of(100) {
            eprintln!(
                "{graphs} graphs, {runs} kernels, {} disagreements",
                bad.len()
            );
        }
    }
    eprintln!(
        "differential run: {graphs} graphs (seeds {first}..{}), {runs} kernels, {} disagreements, emulated CUDA {}",
        first + graphs,
        bad.len(),
        if emu.is_some() { "on" } else { "skipped" }
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
