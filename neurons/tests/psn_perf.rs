//! Measurements behind the design of the PSN time mixing (ignored by default; run in release):
//!
//! ```text
//! cargo test --release -p flexsn-neurons --test psn_perf -- --ignored --nocapture
//! ```
//!
//! Compares the fused, blocked GEMM path ([`MixBackend::Cpu`]) with two alternatives built here:
//! an unfused path (one GEMM over all columns into `H [T, N]`, then a pass for the spike) and a
//! direct loop (no GEMM crate: for each output step, `h += w[t][j] * x[j]` over a column block,
//! left to the compiler's vectoriser). Also a plain copy of the same bytes, for scale.

use std::time::{Duration, Instant};

use flexsn_compiler::ir::Surrogate;
use flexsn_neurons::psn::rng::SplitMix64;
use flexsn_neurons::psn::{MixBackend, Mixing};

fn median(mut f: impl FnMut(), reps: usize) -> Duration {
    f();
    let mut v: Vec<Duration> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    v.sort();
    v[v.len() / 2]
}

fn unfused(w: &[f32], b: &[f32], x: &[f32], t: usize, n: usize, h: &mut [f32], s: &mut [f32]) {
    // SAFETY: w is [t, t], x [t, n], h [t, n], all row-major and sized by the caller.
    unsafe {
        matrixmultiply::sgemm(
            t,
            t,
            n,
            1.0,
            w.as_ptr(),
            t as isize,
            1,
            x.as_ptr(),
            n as isize,
            1,
            0.0,
            h.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    for r in 0..t {
        for c in 0..n {
            s[r * n + c] = if h[r * n + c] + b[r] >= 0.0 { 1.0 } else { 0.0 };
        }
    }
}

fn direct(w: &[f32], b: &[f32], x: &[f32], t: usize, n: usize, s: &mut [f32]) {
    const NB: usize = 1024;
    let mut acc = vec![0.0f32; NB];
    let mut c0 = 0;
    while c0 < n {
        let nb = NB.min(n - c0);
        for r in 0..t {
            let acc = &mut acc[..nb];
            acc.fill(0.0);
            for j in 0..t {
                let wj = w[r * t + j];
                let xr = &x[j * n + c0..j * n + c0 + nb];
                for (a, &xv) in acc.iter_mut().zip(xr) {
                    *a += wj * xv;
                }
            }
            let out = &mut s[r * n + c0..r * n + c0 + nb];
            for (o, &a) in out.iter_mut().zip(acc.iter()) {
                *o = if a + b[r] >= 0.0 { 1.0 } else { 0.0 };
            }
        }
        c0 += nb;
    }
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn psn_mixing_variants() {
    let threads_all = std::thread::available_parallelism().map_or(1, |p| p.get());
    println!(
        "{:>3} {:>8} {:>7} {:>22} {:>9} {:>8} {:>8}",
        "T", "N", "threads", "variant", "ms", "GB/s", "GFLOP/s"
    );
    let mut rng = SplitMix64::new(1);
    for &t in &[4usize, 16, 64] {
        for &n in &[65_536usize, 1 << 20] {
            let w: Vec<f32> = (0..t * t).map(|_| rng.uniform_symmetric(0.5)).collect();
            let b = vec![-1.0f32; t];
            let x: Vec<f32> = (0..t * n).map(|_| rng.uniform_symmetric(3.0)).collect();
            let gs: Vec<f32> = (0..t * n).map(|_| rng.uniform_symmetric(1.0)).collect();
            let mix = Mixing {
                rows: t,
                cols: t,
                weight: &w,
                bias: &b,
                surrogate: Surrogate::ATan { alpha: 2.0 },
            };
            let reps = if t * n > 1 << 22 { 5 } else { 11 };
            let fwd_bytes = (8 * t * n) as f64;
            let fwd_flops = (2 * t * t * n) as f64;
            let row = |what: &str, th: usize, d: Duration, bytes: f64, flops: f64| {
                let s = d.as_secs_f64();
                println!(
                    "{t:>3} {n:>8} {th:>7} {what:>22} {:>9.3} {:>8.2} {:>8.2}",
                    s * 1e3,
                    bytes / s / 1e9,
                    flops / s / 1e9
                );
            };
            let mut dst = vec![0.0f32; t * n];
            let d = median(|| dst.copy_from_slice(&x), reps);
            row("copy", 1, d, fwd_bytes, 0.0);
            for th in [1, threads_all] {
                let be = MixBackend::Cpu { threads: th };
                let d = median(
                    || {
                        std::hint::black_box(mix.forward(&x, n, be).unwrap());
                    },
                    reps,
                );
                row("fused fwd (alloc)", th, d, fwd_bytes, fwd_flops);
                let mut out = vec![0.0f32; t * n];
                let d = median(|| mix.forward_into(&x, n, be, &mut out).unwrap(), reps);
                row("fused fwd", th, d, fwd_bytes, fwd_flops);
                let d = median(
                    || {
                        std::hint::black_box(mix.backward_into(&x, n, &gs, be, &mut out).unwrap());
                    },
                    reps,
                );
                row("fused bwd", th, d, 1.5 * fwd_bytes, 3.0 * fwd_flops);
            }
            let mut h = vec![0.0f32; t * n];
            let mut s = vec![0.0f32; t * n];
            let d = median(|| unfused(&w, &b, &x, t, n, &mut h, &mut s), reps);
            row("unfused fwd", 1, d, fwd_bytes, fwd_flops);
            let d = median(|| direct(&w, &b, &x, t, n, &mut s), reps);
            row("direct loop fwd", 1, d, fwd_bytes, fwd_flops);
        }
    }
}

/// GEMM `[T, T]·[T, nb]` over column blocks of `nb`, into a reused `[T, nb]` buffer.
fn blocked_gemm(w: &[f32], x: &[f32], t: usize, n: usize, nb: usize, h: &mut [f32]) {
    let mut c0 = 0;
    while c0 < n {
        let wd = nb.min(n - c0);
        // SAFETY: w [t, t]; x[c0..] rows of stride n hold t x wd; h holds t x wd (stride wd).
        unsafe {
            matrixmultiply::sgemm(
                t,
                t,
                wd,
                1.0,
                w.as_ptr(),
                t as isize,
                1,
                x[c0..].as_ptr(),
                n as isize,
                1,
                0.0,
                h.as_mut_ptr(),
                wd as isize,
                1,
            );
        }
        c0 += wd;
    }
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn gemm_block_width() {
    let mut rng = SplitMix64::new(2);
    for &t in &[4usize, 16, 64] {
        let n = 1 << 20;
        let w: Vec<f32> = (0..t * t).map(|_| rng.uniform_symmetric(0.5)).collect();
        let x: Vec<f32> = (0..t * n).map(|_| rng.uniform_symmetric(3.0)).collect();
        let mut big = vec![0.0f32; t * n];
        let flops = (2 * t * t * n) as f64;
        let d = median(|| blocked_gemm(&w, &x, t, n, n, &mut big), 5);
        println!(
            "T={t:>2} one call        {:>8.2} GFLOP/s",
            flops / d.as_secs_f64() / 1e9
        );
        for nb in [64usize, 256, 1024, 4096, 16384] {
            let mut h = vec![0.0f32; t * nb];
            let d = median(|| blocked_gemm(&w, &x, t, n, nb, &mut h), 5);
            println!(
                "T={t:>2} nb={nb:>6}     {:>8.2} GFLOP/s",
                flops / d.as_secs_f64() / 1e9
            );
        }
    }
}
