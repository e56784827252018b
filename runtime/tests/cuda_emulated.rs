//! The generated CUDA source, compiled as host C++ with the shim and run over its grid on the
//! CPU, against the interpreter: sample cores, random graphs, forward and backward, every storage
//! type; plus the storage conversions and the deterministic reduction.
//!
//! These tests need a host C++ compiler. Without one they fail when `FLEXSN_REQUIRE_CXX=1` or
//! `CI` is set (CI must run them) and skip with a message otherwise.

use flexsn_compiler::autodiff::{GradSpec, backward};
use flexsn_compiler::bptt::Upstream;
use flexsn_compiler::codegen::cuda::{
    CudaOptions, MathMode, REDUCE_BLOCK, REDUCE_CHUNK, REDUCE_ITEMS, StorageDtype, samples, shim,
};
use flexsn_compiler::interp;
use flexsn_compiler::ir::StepGraph;
use flexsn_compiler::random::{RandomGraphConfig, graph_strategy, random_inputs, scan_args};
use flexsn_compiler::scan::{ScanArgs, ScanKernel};
use flexsn_runtime::cuda::compare::{Tolerance, compare, compare_results, interpreter_reference};
use flexsn_runtime::cuda::emulated::{EmulatedCuda, compile_host_library, find_cxx};
use flexsn_runtime::cuda::probe::{Tool, present_or_skip};
use flexsn_runtime::cuda::{CudaError, host::round_to_storage};
use proptest::prelude::any;
use proptest::test_runner::{Config, TestRunner};

/// The emulated backend, or `None` (skip) where no C++ compiler exists and none is required.
fn emu(opts: CudaOptions) -> Option<EmulatedCuda> {
    present_or_skip(Tool::Cxx, find_cxx())?;
    Some(EmulatedCuda::with_options(opts).unwrap())
}

/// Deterministic pseudo-random data for a graph (uses the shared generator).
fn data(g: &StepGraph, seed: u64, t: usize, n: usize) -> flexsn_compiler::random::RandomInputs {
    random_inputs(seed, g, t, n)
}

/// Runs `kernel` emulated with `opts` and compares with the interpreter on the same data.
fn check_kernel(e: &EmulatedCuda, kernel: &ScanKernel, args: &ScanArgs<'_, f32>, what: &str) {
    let dtype = e.options().dtype;
    let got = e
        .run_scan(kernel, args)
        .unwrap_or_else(|err| panic!("{what}: {err}"));
    let want = interpreter_reference(kernel, args, dtype).unwrap();
    let tol = Tolerance::emulated_math(dtype, e.options().math);
    if let Err(ms) = compare_results(&got, &want, tol) {
        let lines: Vec<String> = ms.iter().map(ToString::to_string).collect();
        panic!(
            "{what} ({} {}): emulated CUDA differs from the interpreter:\n{}",
            dtype.name(),
            e.options().math.name(),
            lines.join("\n")
        );
    }
}

fn cores() -> Vec<StepGraph> {
    vec![
        samples::lif(2.0, 1.0, 0.0).unwrap(),
        samples::lif(1.5, 0.8, -0.2).unwrap(),
        samples::if_soft(1.0).unwrap(),
        samples::plif(1.0, 0.0).unwrap(),
        samples::all_ops().unwrap(),
    ]
}

/// The backward kernel's arguments for a forward run (through the real BPTT input assembly is
/// tested separately; here random data of the right shapes is enough).
fn backward_kernel(g: &StepGraph) -> ScanKernel {
    backward(g, &GradSpec::all(g)).unwrap().kernel
}

#[test]
fn sample_cores_forward_and_backward_match_the_interpreter() {
    for dtype in StorageDtype::ALL {
        for math in MathMode::ALL {
            let Some(e) = emu(CudaOptions::new(dtype, math)) else {
                return;
            };
            for (ci, g) in cores().into_iter().enumerate() {
                // N not a multiple of the block size, so the bounds check matters; T shorter
                // than, equal to and longer than the prefetch distance.
                for (t, n) in [(9, 300), (1, 40), (2, 40), (3, 40)] {
                    for seqs in [false, true] {
                        let k = ScanKernel::forward(g.clone(), seqs);
                        let d = data(&g, ci as u64, t, n);
                        let what = format!("{} forward T={t}", g.name());
                        check_kernel(&e, &k, &scan_args(t, n, &d), &what);
                    }
                    let bk = backward_kernel(&g);
                    let d = data(&bk.graph, 100 + ci as u64, t, n);
                    let what = format!("{} backward T={t}", g.name());
                    check_kernel(&e, &bk, &scan_args(t, n, &d), &what);
                }
            }
        }
    }
}

#[test]
fn random_graphs_forward_and_backward_match_the_interpreter() {
    let Some(e32) = emu(CudaOptions::default()) else {
        return;
    };
    // bf16 without software pipelining (the other loop shape).
    let Some(ebf) = emu(CudaOptions {
        prefetch: 0,
        ..CudaOptions::new(StorageDtype::Bf16, MathMode::Precise)
    }) else {
        return;
    };
    // The compiler's strategy: a failing graph shrinks to a small one.
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    let cases = (graph_strategy(RandomGraphConfig::all()), any::<u64>());
    let result = runner.run(&cases, |(g, seed)| {
        let (t, n) = (7, 70);
        let e = if seed % 4 == 3 { &ebf } else { &e32 };
        let k = ScanKernel::forward(g.clone(), seed % 2 == 0);
        let d = data(&g, seed, t, n);
        check_kernel(
            e,
            &k,
            &scan_args(t, n, &d),
            &format!("random graph {seed} forward"),
        );
        if seed % 2 == 0 {
            let bk = backward_kernel(&g);
            let d = data(&bk.graph, seed.wrapping_add(1000), t, n);
            check_kernel(
                e,
                &bk,
                &scan_args(t, n, &d),
                &format!("random graph {seed} backward"),
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn bptt_drivers_with_the_emulated_runner_match_the_interpreter() {
    let Some(e) = emu(CudaOptions::default()) else {
        return;
    };
    for g in [
        samples::plif(1.0, 0.0).unwrap(),
        samples::lif(2.0, 1.0, 0.0).unwrap(),
    ] {
        let (t, n) = (6, 40);
        let d = data(&g, 5, t, n);
        let args = scan_args(t, n, &d);
        let fwd = ScanKernel::forward(g.clone(), true);
        let f_emu = e.run_scan(&fwd, &args).unwrap();
        let f_int = interp::run_scan(&fwd, &args).unwrap();
        compare_results(&f_emu, &f_int, Tolerance::emulated(StorageDtype::F32)).unwrap();
        let gy: Vec<f32> = (0..t * n)
            .map(|i| ((i * 7) % 13) as f32 / 13.0 - 0.5)
            .collect();
        let up = Upstream {
            outputs: vec![Some(&gy[..])],
            state_seqs: vec![None],
            final_states: vec![None],
        };
        let bwd = backward(&g, &up.spec()).unwrap();
        let seqs: Vec<&[f32]> = f_emu.state_seqs.iter().map(Vec::as_slice).collect();
        let grads =
            flexsn_compiler::bptt::backward(&g, &bwd, &args, &seqs, &up, |k, a| e.run_scan(k, a))
                .unwrap();
        let want = flexsn_compiler::bptt::backward(&g, &bwd, &args, &seqs, &up, |k, a| {
            interp::run_scan(k, a).map_err(flexsn_compiler::bptt::ExecError::from)
        })
        .unwrap();
        let tol = Tolerance::emulated(StorageDtype::F32);
        for (i, (a, b)) in grads.inputs.iter().zip(&want.inputs).enumerate() {
            compare(&format!("grad input {i}"), a, b, tol).unwrap();
        }
        for (a, b) in grads.params.iter().zip(&want.params) {
            assert_eq!(a.is_some(), b.is_some());
            if let (Some(a), Some(b)) = (a, b) {
                compare("grad param", a, b, tol).unwrap();
            }
        }
    }
}

#[test]
fn zero_steps_return_the_initial_states() {
    let Some(e) = emu(CudaOptions::default()) else {
        return;
    };
    let g = samples::all_ops().unwrap();
    let k = ScanKernel::forward(g.clone(), true);
    let d = data(&g, 3, 0, 33);
    let r = e.run_scan(&k, &scan_args(0, 33, &d)).unwrap();
    assert_eq!(r.final_states, d.1);
    assert!(r.outputs.iter().all(Vec::is_empty));
}

#[test]
fn shape_errors_are_typed() {
    let Some(e) = emu(CudaOptions::default()) else {
        return;
    };
    let g = samples::lif(2.0, 1.0, 0.0).unwrap();
    let k = ScanKernel::forward(g, false);
    let x = [0.0f32; 10];
    let v = [0.0f32; 4];
    let bad = ScanArgs {
        t: 3,
        n: 4,
        inputs: vec![&x[..]],
        init_states: vec![&v[..]],
        params: vec![],
    };
    assert!(matches!(e.run_scan(&k, &bad), Err(CudaError::Shape(_))));
    let none = ScanArgs {
        t: 3,
        n: 0,
        inputs: vec![&x[..0]],
        init_states: vec![&v[..0]],
        params: vec![],
    };
    assert!(matches!(e.run_scan(&k, &none), Err(CudaError::Shape(_))));
}

/// The same order of additions as the reduction kernel, written in Rust.
fn reduce_reference(values: &[f32]) -> f32 {
    let mut cur = values.to_vec();
    while cur.len() > 1 {
        let blocks = (cur.len() as u64).div_ceil(REDUCE_CHUNK) as usize;
        let mut next = vec![0.0f32; blocks];
        for (b, slot) in next.iter_mut().enumerate() {
            let block = REDUCE_BLOCK as usize;
            let mut buf = vec![0.0f32; block];
            for (tid, acc_slot) in buf.iter_mut().enumerate() {
                let mut acc = 0.0f32;
                for k in 0..REDUCE_ITEMS as usize {
                    let i = b * REDUCE_CHUNK as usize + k * block + tid;
                    if i < cur.len() {
                        acc += cur[i];
                    }
                }
                *acc_slot = acc;
            }
            let mut s = block / 2;
            while s > 0 {
                for tid in 0..s {
                    buf[tid] += buf[tid + s];
                }
                s /= 2;
            }
            *slot = buf[0];
        }
        cur = next;
    }
    cur.first().copied().unwrap_or(0.0)
}

#[test]
fn reduction_is_deterministic_and_exact_in_its_order() {
    let Some(e) = emu(CudaOptions::default()) else {
        return;
    };
    let k = ScanKernel::forward(samples::lif(2.0, 1.0, 0.0).unwrap(), false);
    for len in [0usize, 1, 255, 256, 4095, 4096, 4097, 9000] {
        let xs: Vec<f32> = (0..len)
            .map(|i| ((i as f32) * 0.37).sin() * 10f32.powi((i % 7) as i32 - 3))
            .collect();
        let got = e.reduce_sum(&k, &xs).unwrap();
        let again = e.reduce_sum(&k, &xs).unwrap();
        assert_eq!(
            got.to_bits(),
            again.to_bits(),
            "len {len}: not deterministic"
        );
        let want = reduce_reference(&xs);
        assert_eq!(got.to_bits(), want.to_bits(), "len {len}: {got} vs {want}");
        let exact: f64 = xs.iter().map(|&x| x as f64).sum();
        let scale: f64 = xs.iter().map(|&x| (x as f64).abs()).sum::<f64>().max(1e-30);
        assert!(
            ((got as f64) - exact).abs() <= 1e-5 * scale,
            "len {len}: {got} vs {exact}"
        );
    }
}

/// A translation unit exposing the generated storage conversions directly.
fn conversions_tu(dtype: StorageDtype) -> String {
    let k = ScanKernel::forward(samples::lif(2.0, 1.0, 0.0).unwrap(), false);
    let src = flexsn_compiler::codegen::cuda::codegen_scan(
        &k,
        &CudaOptions::new(dtype, MathMode::Precise),
    )
    .unwrap();
    let name = dtype.name();
    format!(
        "{}{}\nextern \"C\" void conv_load(const unsigned short* in, float* out, long long n) {{ for (long long i = 0; i < n; ++i) out[i] = flexsn_load_{name}(in[i]); }}\n\
         extern \"C\" void conv_store(const float* in, unsigned short* out, long long n) {{ for (long long i = 0; i < n; ++i) out[i] = flexsn_store_{name}(in[i]); }}\n",
        shim::SHIM_HEADER,
        src.code
    )
}

#[test]
fn storage_conversions_match_the_half_crate() {
    if emu(CudaOptions::default()).is_none() {
        return;
    }
    type Load = unsafe extern "C" fn(*const u16, *mut f32, i64);
    type Store = unsafe extern "C" fn(*const f32, *mut u16, i64);
    // f32 test values: every 16-bit pattern's neighbourhood in f32, halfway points, and a
    // stride through all of f32's bit patterns.
    let mut xs: Vec<f32> = Vec::new();
    for bits in 0u32..=0xffff {
        let h = half::f16::from_bits(bits as u16).to_f32();
        let b = f32::from_bits(bits << 16);
        for base in [h, b] {
            let u = base.to_bits();
            for d in [0u32, 1, 0x0fff, 0x1000, 0x1001, 0x7fff, 0x8000, 0x8001] {
                xs.push(f32::from_bits(u.wrapping_add(d)));
                xs.push(f32::from_bits(u.wrapping_sub(d)));
            }
        }
    }
    xs.extend((0..1u64 << 20).map(|i| f32::from_bits((i * 4099) as u32)));
    for dtype in [StorageDtype::F16, StorageDtype::Bf16] {
        let lib = compile_host_library(&conversions_tu(dtype)).unwrap();
        let load: Load = unsafe { lib.get("conv_load").unwrap() };
        let store: Store = unsafe { lib.get("conv_store").unwrap() };
        let all: Vec<u16> = (0..=0xffffu32).map(|b| b as u16).collect();
        let mut loaded = vec![0f32; all.len()];
        // SAFETY: both buffers hold `all.len()` elements.
        unsafe { load(all.as_ptr(), loaded.as_mut_ptr(), all.len() as i64) };
        for (&b, &f) in all.iter().zip(&loaded) {
            let want = match dtype {
                StorageDtype::F16 => half::f16::from_bits(b).to_f32(),
                _ => half::bf16::from_bits(b).to_f32(),
            };
            assert!(
                f.to_bits() == want.to_bits() || (f.is_nan() && want.is_nan()),
                "{} load {b:#06x}: {f:e} vs {want:e}",
                dtype.name()
            );
        }
        let mut stored = vec![0u16; xs.len()];
        // SAFETY: both buffers hold `xs.len()` elements.
        unsafe { store(xs.as_ptr(), stored.as_mut_ptr(), xs.len() as i64) };
        for (&x, &h) in xs.iter().zip(&stored) {
            let want = match dtype {
                StorageDtype::F16 => half::f16::from_f32(x).to_bits(),
                _ => half::bf16::from_f32(x).to_bits(),
            };
            assert_eq!(
                h,
                want,
                "{} store {x:e} ({:#010x})",
                dtype.name(),
                x.to_bits()
            );
        }
        // Round trip through storage is what the host side's rounding gives.
        let r = round_to_storage(dtype, &xs[..1000]);
        for (&x, &y) in xs[..1000].iter().zip(&r) {
            let h = match dtype {
                StorageDtype::F16 => half::f16::from_f32(x).to_f32(),
                _ => half::bf16::from_f32(x).to_f32(),
            };
            assert!(y.to_bits() == h.to_bits() || (y.is_nan() && h.is_nan()));
        }
    }
}

/// Run in a child process with an empty PATH and a bogus CXX: the backend must say plainly
/// that no C++ compiler was found.
#[test]
fn missing_compiler_is_a_plain_typed_error() {
    if std::env::var_os("FLEXSN_TEST_CHILD_NO_CXX").is_some() {
        match EmulatedCuda::new() {
            Err(e @ CudaError::NoCxx { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("no C++ compiler found"), "{msg}");
                assert!(msg.contains("/nonexistent/c++"), "{msg}");
                return;
            }
            other => panic!("expected NoCxx, got {other:?}"),
        }
    }
    if find_cxx().is_err() {
        return; // the parent itself has no compiler; the other tests report that
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "missing_compiler_is_a_plain_typed_error",
            "--nocapture",
        ])
        .env("FLEXSN_TEST_CHILD_NO_CXX", "1")
        .env("PATH", "")
        .env("CXX", "/nonexistent/c++")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn jit_with_the_emulated_backend_matches_the_interpreter_jit() {
    use flexsn_runtime::{Backend, Jit, RuntimeError};
    if emu(CudaOptions::default()).is_none() {
        return;
    }
    let g = samples::plif(1.0, 0.0).unwrap();
    let emu_jit = Jit::new(Backend::CudaEmulated).unwrap();
    assert!(emu_jit.backend_name().starts_with("cuda-emulated"));
    let int_jit = Jit::new(Backend::Interpreter).unwrap();
    let ke = emu_jit.compile(&g).unwrap();
    let ki = int_jit.compile(&g).unwrap();
    let (t, n) = (8, 300);
    let x: Vec<f32> = (0..t * n)
        .map(|i| ((i * 37) % 101) as f32 / 40.0 - 0.5)
        .collect();
    let w = [0.3f32];
    let fe = ke.forward(t, n, &[&x], None, &[("w", &w)]).unwrap();
    let fi = ki.forward(t, n, &[&x], None, &[("w", &w)]).unwrap();
    let tol = Tolerance::emulated(StorageDtype::F32);
    compare("spikes", &fe.outputs[0], &fi.outputs[0], tol).unwrap();
    let gy = vec![1.0f32; t * n];
    let ge = ke.backward_outputs(&fe, &[Some(&gy)]).unwrap();
    let gi = ki.backward_outputs(&fi, &[Some(&gy)]).unwrap();
    compare("grad x", &ge.inputs[0], &gi.inputs[0], tol).unwrap();
    compare(
        "grad w",
        ge.params[0].as_ref().unwrap(),
        gi.params[0].as_ref().unwrap(),
        tol,
    )
    .unwrap();
    // Real CUDA on this machine: either it works, or it says why, as a typed error.
    match Jit::new(Backend::Cuda) {
        Ok(_) | Err(RuntimeError::BackendUnavailable { .. }) => {}
        Err(e) => panic!("unexpected error: {e}"),
    }
}
