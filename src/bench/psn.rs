//! The PSN family in `flexsn bench`: `psn` (the `[T, T]` time mixing, a GEMM fused with the
//! spike, [`flexsn_runtime::Mixing`]) and `sliding-psn` (a scan compiled like the other
//! neurons, with the default window `k = 2`).
//!
//! Beside GB/s, each row gives the achieved GFLOP/s of the time mixing:
//!
//! - `psn`: forward `2·T·T·N` (the GEMM `W·X`); forward_backward `8·T·T·N` (forward, then in
//!   backward `H` recomputed, `gX = Wᵀ·gH` and `gW = gH·Xᵀ`: three more GEMMs of the same size).
//! - `sliding-psn`: `2·k·T·N` forward, `6·k·T·N` forward_backward (forward, the recomputed step,
//!   and the input and weight gradients, each `k` multiply-adds per neuron and step).
//!
//! Bytes follow the module's rule (every tensor once): PSN forward reads `X` `[T, N]`, `W`
//! `[T, T]`, `b` `[T]` and writes `S` `[T, N]`; forward_backward also reads `gS` and writes `gX`
//! (`[T, N]` each), `gW` and `gb`. `PSN` keeps no state sequence: `H` is recomputed in
//! backward rather than stored. The PSN timing is the mixing kernel on caller buffers
//! ([`Mixing::forward_into`], [`Mixing::backward_into`]).

use std::io::Write;

use anyhow::Result;
use flexsn_compiler::ir::StepGraph;
use flexsn_neurons::psn::rng::SplitMix64;
use flexsn_neurons::psn::{Mixing, PSNConfig, SlidingPSNConfig};
use flexsn_runtime::cpu::{CpuOptions, threads_for_work};
use flexsn_runtime::memory::Estimate;
use flexsn_runtime::{Backend, Jit};

use super::timing::{Baseline, time};
use super::{
    BenchOptions, Phase, Row, check_row_memory, jit_for, measure_saved, write_header, write_row,
};

/// The benchmark names this module handles.
pub const PSN_NEURONS: &[&str] = &["psn", "sliding-psn"];

/// The window of the `sliding-psn` benchmark (SlidingPSN's default).
pub fn sliding_config() -> SlidingPSNConfig {
    SlidingPSNConfig::default()
}

/// SlidingPSN's step graph for the benchmark.
pub fn sliding_graph() -> Result<StepGraph> {
    Ok(sliding_config().step_graph()?)
}

/// `(bytes, flops)` of one PSN phase over `[t, n]`.
pub fn psn_work(phase: Phase, t: usize, n: usize) -> (u64, f64) {
    let (tn, tt) = ((t * n) as u64, (t * t) as u64);
    let fwd = 2 * tn + tt + t as u64;
    let (elems, gemms) = match phase {
        Phase::Forward => (fwd, 1.0),
        Phase::ForwardBackward => (fwd + 2 * tn + tt + t as u64, 4.0),
    };
    (4 * elems, gemms * 2.0 * (t * t) as f64 * n as f64)
}

/// Flops of the `sliding-psn` phase over `[t, n]` (see the module docs).
pub fn sliding_flops(phase: Phase, t: usize, n: usize) -> f64 {
    let k = sliding_config().k as f64;
    let per = match phase {
        Phase::Forward => 2.0,
        Phase::ForwardBackward => 6.0,
    };
    per * k * t as f64 * n as f64
}

/// Checks what a PSN row allocates (input, upstream gradient, spikes, input gradient, the
/// `[T, T]` weight and `[T]` bias, the copy baseline) against the limit before anything is
/// allocated.
fn check_psn_memory(opts: &BenchOptions, phase: Phase, t: usize, n: usize) -> Result<()> {
    let what = format!("the psn {} row at T = {t}, N = {n}", phase.name());
    let data = Estimate::new()
        .add(4, &[t, n], 4)
        .add(1, &[t, t + 1], 4)
        .check(opts.max_memory, &what)?;
    // Within the limit, so the byte count does not overflow.
    let (bytes, _) = psn_work(phase, t, n);
    Estimate::new()
        .add(1, &[data as usize], 1)
        .add(1, &[bytes as usize], 1)
        .check(opts.max_memory, &what)?;
    Ok(())
}

/// Median seconds of one PSN phase on `be`, its runs alternating with `baseline`'s copies.
fn measure_psn(
    opts: &BenchOptions,
    phase: Phase,
    t: usize,
    n: usize,
    be: &Jit,
    baseline: &mut Baseline,
) -> Result<f64> {
    let mut rng = SplitMix64::new(0x5EED);
    let (w, b) = PSNConfig::new(t).init_params();
    let x: Vec<f32> = (0..t * n).map(|_| rng.uniform_symmetric(3.0)).collect();
    let gs: Vec<f32> = (0..t * n).map(|_| rng.uniform_symmetric(1.0)).collect();
    let mix = Mixing {
        rows: t,
        cols: t,
        weight: &w,
        bias: &b,
        surrogate: flexsn_neurons::psn::DEFAULT_SURROGATE,
    };
    let mut s = vec![0.0f32; t * n];
    let mut gx = vec![0.0f32; t * n];
    match phase {
        Phase::Forward => time(opts, Some(baseline), || {
            Ok(mix.forward_into(&x, n, be, &mut s)?)
        }),
        Phase::ForwardBackward => time(opts, Some(baseline), || {
            mix.forward_into(&x, n, be, &mut s)?;
            std::hint::black_box(mix.backward_into(&x, n, &gs, be, &mut gx)?);
            Ok(())
        }),
    }
}

/// Runs the `psn` or `sliding-psn` rows, printing a table (with GFLOP/s) or JSON rows (with an
/// extra `gflops` key) to `out`.
#[allow(clippy::too_many_arguments)]
pub fn run_neuron(
    opts: &BenchOptions,
    name: &str,
    threads: &[usize],
    phases: &[Phase],
    ts: &[usize],
    ns: &[usize],
    out: &mut dyn Write,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let mix = |threads| match Backend::from_name(&opts.backend)? {
        Backend::Cpu => Ok(Jit::cpu(CpuOptions {
            threads,
            ..CpuOptions::default()
        })?),
        // Host slices copied per call: a correctness path, not a benchmark of the kernels
        // (`--backend cuda` times them on device buffers).
        Backend::Cuda => Err(anyhow::anyhow!(
            "psn: `--backend cuda` benchmarks the device kernels, not host time mixing"
        )),
        other => Ok(Jit::new(other)?),
    };
    if name == "psn" {
        mix(1)?;
    }
    for &th in threads {
        let kernel = if name == "sliding-psn" {
            let g = sliding_graph()?;
            let jit = jit_for(opts, th)?;
            Some(jit.compile(&g)?)
        } else {
            None
        };
        write_header(opts, out, true)?;
        for &phase in phases {
            for &t in ts {
                for &n in ns {
                    let (bytes, flops) = match &kernel {
                        Some(k) => (
                            check_row_memory(opts, k.graph(), phase, t, n)?,
                            sliding_flops(phase, t, n),
                        ),
                        None => {
                            check_psn_memory(opts, phase, t, n)?;
                            psn_work(phase, t, n)
                        }
                    };
                    // The copy runs on as many threads as the kernel does.
                    let mut base = Baseline::new(bytes, threads_for_work(th, t, n));
                    let secs = match &kernel {
                        Some(k) => measure_saved(opts, k, phase, t, n, &mut base)?.0,
                        None => measure_psn(opts, phase, t, n, &mix(th)?, &mut base)?,
                    };
                    let row = Row::measured(name, phase, t, n, th, secs, bytes, &mut base)?;
                    write_row(opts, out, &row, Some(flops / secs / 1e9))?;
                    rows.push(row);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_counts() {
        let (b, f) = psn_work(Phase::Forward, 4, 10);
        assert_eq!(b, 4 * (2 * 40 + 16 + 4));
        assert_eq!(f, 2.0 * 16.0 * 10.0);
        let (b2, f2) = psn_work(Phase::ForwardBackward, 4, 10);
        assert_eq!(b2, 4 * (2 * 40 + 16 + 4 + 2 * 40 + 16 + 4));
        assert_eq!(f2, 4.0 * f);
        assert_eq!(sliding_flops(Phase::Forward, 4, 10), 2.0 * 2.0 * 40.0);
    }

    #[test]
    fn tiny_psn_rows_with_gflops() {
        let opts = BenchOptions {
            neurons: vec!["psn".into(), "sliding-psn".into()],
            ts: vec![4],
            ns: vec![64],
            threads: vec![1],
            json: true,
            min_time: std::time::Duration::ZERO,
            min_runs: 1,
            ..BenchOptions::default()
        };
        let mut out = vec![];
        let mut rows = vec![];
        for name in PSN_NEURONS {
            run_neuron(
                &opts,
                name,
                &[1],
                &[Phase::Forward, Phase::ForwardBackward],
                &[4],
                &[64],
                &mut out,
                &mut rows,
            )
            .unwrap();
        }
        assert_eq!(rows.len(), 4);
        let text = String::from_utf8(out).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v["gflops"].as_f64().unwrap() > 0.0, "{line}");
            assert!(v["gbps"].as_f64().unwrap() > 0.0, "{line}");
        }
    }

    /// The full PSN-family table (what `flexsn bench --neuron psn --neuron sliding-psn` prints):
    /// `cargo test --release --lib bench::psn -- --ignored --nocapture`.
    #[test]
    #[ignore = "measurement; run in release"]
    fn full_table() {
        let opts = BenchOptions {
            ns: vec![65536, 1048576],
            ..BenchOptions::default()
        };
        let all = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut threads = vec![1, all];
        threads.dedup();
        let mut out = std::io::stdout();
        let mut rows = vec![];
        for name in PSN_NEURONS {
            run_neuron(
                &opts,
                name,
                &threads,
                &[Phase::Forward, Phase::ForwardBackward],
                &[4, 16, 64],
                &opts.ns,
                &mut out,
                &mut rows,
            )
            .unwrap();
        }
    }
}
