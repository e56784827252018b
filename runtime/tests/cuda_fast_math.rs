//! Fast math never changes a result class (NaN, infinity, number): the host shim computes the
//! device intrinsics the way the GPU does (so these tests would see `__powf`'s NaN for a negative
//! base and `__fdividef`'s 0 for huge divisors), and the generated fast-math kernels avoid both.
//!
//! These tests need a host C++ compiler (skip without one unless `FLEXSN_REQUIRE_CXX=1`).

use flexsn_compiler::codegen::cuda::{CudaOptions, MathMode, StorageDtype, shim};
use flexsn_compiler::dsl::CoreBuilder;
use flexsn_compiler::ir::StateInit;
use flexsn_compiler::scan::{ScanArgs, ScanKernel};
use flexsn_runtime::cuda::EmulatedCuda;
use flexsn_runtime::cuda::compare::interpreter_reference;
use flexsn_runtime::cuda::emulated::{compile_host_library, find_cxx};
use flexsn_runtime::cuda::probe::{Tool, present_or_skip};

fn have_cxx() -> bool {
    present_or_skip(Tool::Cxx, find_cxx()).is_some()
}

/// `2^e` as f32.
fn p2(e: i32) -> f32 {
    2f32.powi(e)
}

#[test]
fn the_shim_computes_fast_intrinsics_like_the_device() {
    if !have_cxx() {
        return;
    }
    let tu = format!(
        "{}\nextern \"C\" float t_powf(float x, float y) {{ return __powf(x, y); }}\n\
         extern \"C\" float t_fdividef(float x, float y) {{ return __fdividef(x, y); }}\n\
         extern \"C\" float t_expf(float x) {{ return __expf(x); }}\n\
         extern \"C\" float t_logf(float x) {{ return __logf(x); }}\n",
        shim::SHIM_HEADER
    );
    let lib = compile_host_library(&tu).unwrap();
    type F2 = unsafe extern "C" fn(f32, f32) -> f32;
    type F1 = unsafe extern "C" fn(f32) -> f32;
    // SAFETY: the signatures are the ones written above.
    let (powf, fdiv, expf, logf) = unsafe {
        (
            lib.get::<F2>("t_powf").unwrap(),
            lib.get::<F2>("t_fdividef").unwrap(),
            lib.get::<F1>("t_expf").unwrap(),
            lib.get::<F1>("t_logf").unwrap(),
        )
    };
    // SAFETY (all calls): plain float functions.
    unsafe {
        // exp2(y * log2(x)): NaN for a negative base, even with an integer exponent.
        assert!(powf(-2.0, 3.0).is_nan());
        assert!((powf(2.0, 3.0) - 8.0).abs() < 1e-5);
        // Divisors of magnitude in (2^126, 2^128) give 0 (NaN for an infinite dividend).
        assert_eq!(fdiv(p2(100), p2(127)), 0.0);
        assert_eq!(fdiv(-1.0, -p2(127)), 0.0);
        assert!(fdiv(f32::INFINITY, p2(127)).is_nan());
        assert!((fdiv(6.0, 3.0) - 2.0).abs() < 1e-6);
        assert_eq!(fdiv(1.0, f32::INFINITY), 0.0);
        assert!((expf(1.0) - std::f32::consts::E).abs() < 1e-5);
        assert_eq!(expf(f32::NEG_INFINITY), 0.0);
        assert!(logf(-1.0).is_nan());
        assert_eq!(logf(0.0), f32::NEG_INFINITY);
    }
}

/// `pow(x, 3)`, `pow(x, y)`, `x / y` and `1 / y` of two inputs (one state, so the kernel has the
/// usual shape).
fn kernel() -> ScanKernel {
    let b = CoreBuilder::new("fast_classes");
    let x = b.input("x");
    let y = b.input("y");
    let v = b.state("v", StateInit::Const(0.0));
    b.output("cube", x.pow(3.0));
    b.output("pow", x.pow(y));
    b.output("div", x / y);
    b.output("recip", y.recip());
    b.set_state("v", v + x);
    ScanKernel::forward(b.build().unwrap(), false)
}

#[test]
fn fast_math_kernels_keep_the_result_class_of_every_value() {
    if !have_cxx() {
        return;
    }
    let k = kernel();
    // Negative bases with integer exponents, huge divisors, and ordinary values.
    let xs = [-2.0, -3.0, p2(100), -p2(100), 1.5, 0.0, -0.5, 2.0];
    let ys = [3.0, 2.0, p2(127), -p2(127), 2.0, p2(126) * 1.5, 4.0, -3.0];
    let n = xs.len();
    let init = vec![0.0f32; n];
    let args = ScanArgs {
        t: 1,
        n,
        inputs: vec![&xs[..], &ys[..]],
        init_states: vec![&init[..]],
        params: vec![],
    };
    let want = interpreter_reference(&k, &args, StorageDtype::F32).unwrap();
    let e =
        EmulatedCuda::with_options(CudaOptions::new(StorageDtype::F32, MathMode::Fast)).unwrap();
    let got = e.run_scan(&k, &args).unwrap();
    for (o, name) in ["cube", "pow", "div", "recip"].iter().enumerate() {
        for i in 0..n {
            let (g, w) = (got.outputs[o][i], want.outputs[o][i]);
            // Zero and subnormal are one class here: `--ftz=true` flushes subnormals on the
            // device (and in the emulation).
            let class = |v: f32| (v.is_nan(), v.is_infinite());
            assert_eq!(
                class(g),
                class(w),
                "{name}[{i}] (x = {:e}, y = {:e}): fast {g:e}, interpreter {w:e}",
                xs[i],
                ys[i]
            );
            if w.is_finite() && w.abs() >= f32::MIN_POSITIVE {
                assert!(
                    ((g - w) / w).abs() < 1e-5,
                    "{name}[{i}]: fast {g:e}, interpreter {w:e}"
                );
            }
        }
    }
}
