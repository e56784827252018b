//! Measurements behind the design of the PSN time mixing (ignored by default; run in release):
//!
//! ```text
//! cargo test --release -p flexsn-neurons --test psn_perf -- --ignored --nocapture
//! ```
//!
//! Compares the fused, blocked GEMM path (the runtime's [`Mixing`] on a CPU `Jit`) with two alternatives built here:
//! an unfused path (one GEMM over all columns into `H [T, N]`, then a pass for the spike) and a
//! direct loop (no GEMM crate: for each output step, `h += w[t][j] * x[j]` over a column block,
//! left to the compiler's vectoriser). Also a plain copy of the same bytes, for scale.

use std::time::{Duration, Instant};

use flexsn_compiler::ir::Surrogate;
use flexsn_neurons::psn::Mixing;
use flexsn_neurons::psn::rng::SplitMix64;
use flexsn_runtime::Jit;
use flexsn_runtime::cpu::CpuOptions;

fn cpu(threads: usize) -> Jit {
    Jit::cpu(CpuOptions {
        threads,
        ..CpuOptions::default()
    })
    .unwrap()
}

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
                let be = &cpu(th);
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

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn thread_scaling() {
    let all = std::thread::available_parallelism().map_or(1, |p| p.get());
    let mut rng = SplitMix64::new(3);
    for &(t, n) in &[
        (4usize, 1usize << 22),
        (8, 1 << 21),
        (16, 1 << 20),
        (64, 1 << 18),
    ] {
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
        let mut out = vec![0.0f32; t * n];
        // Interleave the thread counts so that load from other processes hits both alike.
        let mut best = vec![(f64::INFINITY, f64::INFINITY); all + 1];
        for _ in 0..5 {
            for (th, slot) in best.iter_mut().enumerate().skip(1) {
                let be = &cpu(th);
                let s = Instant::now();
                mix.forward_into(&x, n, be, &mut out).unwrap();
                let f = s.elapsed().as_secs_f64();
                let s = Instant::now();
                std::hint::black_box(mix.backward_into(&x, n, &gs, be, &mut out).unwrap());
                let bw = s.elapsed().as_secs_f64();
                slot.0 = slot.0.min(f);
                slot.1 = slot.1.min(bw);
            }
        }
        for (th, (f, bw)) in best.iter().enumerate().skip(1) {
            println!(
                "T={t:>2} N={n:>8} threads={th}: forward {:>8.2} ms ({:>5.1} GFLOP/s), backward {:>8.2} ms ({:>5.1} GFLOP/s)",
                f * 1e3,
                (2 * t * t * n) as f64 / f / 1e9,
                bw * 1e3,
                (6 * t * t * n) as f64 / bw / 1e9
            );
        }
    }
}

/// `C ← A·B + beta·C` (row-major C with row stride `rsc`); test-only wrapper.
#[allow(clippy::too_many_arguments)]
fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    rsa: usize,
    csa: usize,
    b: &[f32],
    rsb: usize,
    csb: usize,
    beta: f32,
    c: &mut [f32],
    rsc: usize,
    csc: usize,
) {
    assert!((m - 1) * rsa + (k - 1) * csa < a.len());
    assert!((k - 1) * rsb + (n - 1) * csb < b.len());
    assert!((m - 1) * rsc + (n - 1) * csc < c.len());
    // SAFETY: bounds asserted above; c is a unique borrow.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            csc as isize,
        );
    }
}

#[inline(always)]
fn hoisted(s: Surrogate, g: &mut [f32], gs: &[f32]) {
    for (gv, &sv) in g.iter_mut().zip(gs) {
        *gv = s.grad(*gv - 1.0) * sv;
    }
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn backward_breakdown() {
    let mut rng = SplitMix64::new(4);
    for &t in &[16usize, 64] {
        let n = (1usize << 24) / t;
        let nb = (16 * 1024 / t).clamp(16, 4096) / 16 * 16;
        let w: Vec<f32> = (0..t * t).map(|_| rng.uniform_symmetric(0.5)).collect();
        let x: Vec<f32> = (0..t * n).map(|_| rng.uniform_symmetric(3.0)).collect();
        let gs: Vec<f32> = (0..t * n).map(|_| rng.uniform_symmetric(1.0)).collect();
        let sg = Surrogate::ATan { alpha: 2.0 };
        let mut g = vec![0.0f32; t * nb];
        let mut gxb = vec![0.0f32; t * nb];
        let mut gw = vec![0.0f32; t * t];
        let mut gwt = vec![0.0f32; t * t];
        let mut times = [0.0f64; 7];
        let mut c0 = 0;
        while c0 < n {
            let wd = nb.min(n - c0);
            let s = Instant::now();
            sgemm(t, t, wd, &w, t, 1, &x[c0..], n, 1, 0.0, &mut g, wd, 1);
            times[0] += s.elapsed().as_secs_f64();
            let s = Instant::now();
            for r in 0..t {
                for (gv, &sv) in g[r * wd..(r + 1) * wd]
                    .iter_mut()
                    .zip(&gs[r * n + c0..r * n + c0 + wd])
                {
                    *gv = sg.grad(*gv - 1.0) * sv;
                }
            }
            times[1] += s.elapsed().as_secs_f64();
            let s = Instant::now();
            if let Surrogate::ATan { alpha } = sg {
                hoisted(
                    Surrogate::ATan { alpha },
                    &mut g[..t * wd],
                    &gs[c0..c0 + t * wd],
                );
            }
            times[6] += s.elapsed().as_secs_f64();
            let s = Instant::now();
            for r in 0..t {
                std::hint::black_box(
                    g[r * wd..(r + 1) * wd]
                        .iter()
                        .map(|&v| v as f64)
                        .sum::<f64>(),
                );
            }
            times[5] += s.elapsed().as_secs_f64();
            let s = Instant::now();
            sgemm(t, t, wd, &w, 1, t, &g, wd, 1, 0.0, &mut gxb, wd, 1);
            times[2] += s.elapsed().as_secs_f64();
            let s = Instant::now();
            sgemm(t, wd, t, &g, wd, 1, &x[c0..], 1, n, 1.0, &mut gw, t, 1);
            times[3] += s.elapsed().as_secs_f64();
            let s = Instant::now();
            sgemm(t, wd, t, &x[c0..], n, 1, &g, 1, wd, 1.0, &mut gwt, t, 1);
            times[4] += s.elapsed().as_secs_f64();
            c0 += wd;
        }
        println!(
            "T={t} N={n} nb={nb}: H gemm {:.1} ms, surrogate {:.1} ms, gX gemm {:.1} ms, gW = G·Xᵀ {:.1} ms, gWᵀ = X·Gᵀ {:.1} ms, serial f64 bias sum {:.1} ms, hoisted surrogate {:.1} ms",
            times[0] * 1e3,
            times[1] * 1e3,
            times[2] * 1e3,
            times[3] * 1e3,
            times[4] * 1e3,
            times[5] * 1e3,
            times[6] * 1e3
        );
    }
}
