//! The PSN time-mixing kernels against plain loops: emulated (host C++) on every machine with a
//! C++ compiler, compiled to PTX by NVRTC where it is present, and on the GPU where there is one.
//!
//! Missing tools skip with a message unless required: `FLEXSN_REQUIRE_CXX=1` (or `CI`) for the
//! C++ compiler, `FLEXSN_REQUIRE_NVRTC=1` for NVRTC, `FLEXSN_REQUIRE_GPU=1` for the device.

use flexsn_compiler::codegen::cuda::mixing::{MixingSpec, WGRAD_CHUNK, codegen_mixing, grad_len};
use flexsn_compiler::codegen::cuda::{CudaOptions, MathMode, StorageDtype};
use flexsn_compiler::ir::Surrogate;
use flexsn_compiler::random::SplitMix64;
use flexsn_runtime::cuda::emulated::find_cxx;
use flexsn_runtime::cuda::host::round_to_storage;
use flexsn_runtime::cuda::probe::{Tool, present_or_skip};
use flexsn_runtime::cuda::{
    CudaDevice, CudaError, EmulatedCuda, EmulatedMixing, MixGradients, MixingKernels, nvrtc,
};

fn emulated(opts: CudaOptions) -> Option<EmulatedCuda> {
    present_or_skip(Tool::Cxx, find_cxx())?;
    Some(EmulatedCuda::with_options(opts).unwrap())
}

struct Case {
    spec: MixingSpec,
    n: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
    x: Vec<f32>,
    grad_spike: Vec<f32>,
}

fn case(rows: usize, cols: usize, n: usize, surrogate: Surrogate, seed: u64) -> Case {
    let mut rng = SplitMix64::new(seed);
    let mut v =
        |len: usize, b: f32| -> Vec<f32> { (0..len).map(|_| rng.uniform_symmetric(b)).collect() };
    Case {
        spec: MixingSpec {
            rows,
            cols,
            surrogate,
        },
        n,
        weight: v(rows * cols, 1.0 / (cols as f32).sqrt()),
        bias: v(rows, 0.5),
        x: v(cols * n, 2.0),
        grad_spike: v(rows * n, 1.0),
    }
}

/// `h[r, n] = Σ_j W[r, j] x[j, n]` (j ascending, f32) `+ b[r]`: the kernels' order.
fn reference_h(c: &Case, x: &[f32]) -> Vec<f32> {
    let (r, k, n) = (c.spec.rows, c.spec.cols, c.n);
    let mut h = vec![0.0f32; r * n];
    for row in 0..r {
        for i in 0..n {
            let mut acc = 0.0f32;
            for j in 0..k {
                acc += c.weight[row * k + j] * x[j * n + i];
            }
            h[row * n + i] = acc + c.bias[row];
        }
    }
    h
}

fn reference_forward(c: &Case, x: &[f32]) -> Vec<f32> {
    reference_h(c, x)
        .iter()
        .map(|&h| if h >= 0.0 { 1.0 } else { 0.0 })
        .collect()
}

/// Backward in f64 sums (the oracle for the gradients).
fn reference_backward(c: &Case, x: &[f32], gs: &[f32]) -> MixGradients {
    let (r, k, n) = (c.spec.rows, c.spec.cols, c.n);
    let gh: Vec<f32> = reference_h(c, x)
        .iter()
        .zip(gs)
        .map(|(&h, &g)| c.spec.surrogate.grad(h) * g)
        .collect();
    let mut gx = vec![0.0f32; k * n];
    for j in 0..k {
        for i in 0..n {
            gx[j * n + i] = (0..r)
                .map(|row| c.weight[row * k + j] as f64 * gh[row * n + i] as f64)
                .sum::<f64>() as f32;
        }
    }
    let mut gw = vec![0.0f32; r * k];
    for row in 0..r {
        for j in 0..k {
            gw[row * k + j] = (0..n)
                .map(|i| gh[row * n + i] as f64 * x[j * n + i] as f64)
                .sum::<f64>() as f32;
        }
    }
    let gb = (0..r)
        .map(|row| (0..n).map(|i| gh[row * n + i] as f64).sum::<f64>() as f32)
        .collect();
    MixGradients {
        x: gx,
        weight: gw,
        bias: gb,
    }
}

fn assert_close(what: &str, got: &[f32], want: &[f32], rtol: f32, atol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= atol + rtol * w.abs(),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

fn cases() -> Vec<Case> {
    vec![
        case(4, 4, 37, Surrogate::ATan { alpha: 2.0 }, 1),
        case(1, 3, 300, Surrogate::Sigmoid { alpha: 4.0 }, 2),
        case(7, 5, 129, Surrogate::PiecewiseQuadratic { alpha: 1.0 }, 3),
        case(
            16,
            16,
            2 * WGRAD_CHUNK as usize + 77,
            Surrogate::ATan { alpha: 2.0 },
            4,
        ),
        case(5, 150, 40, Surrogate::SoftSign { alpha: 2.0 }, 5),
    ]
}

/// Checks one backend's forward and backward on `c` (f32 storage: spikes exact).
fn check(c: &Case, m: &dyn MixingKernels) {
    let label = format!("R = {}, C = {}, N = {}", c.spec.rows, c.spec.cols, c.n);
    let s = m.forward(&c.weight, &c.bias, &c.x, c.n).unwrap();
    assert_eq!(s, reference_forward(c, &c.x), "{label}: spikes");
    let g = backward(c, m);
    let want = reference_backward(c, &c.x, &c.grad_spike);
    assert_close(&format!("{label}: gx"), &g.x, &want.x, 1e-5, 1e-6);
    assert_close(&format!("{label}: gW"), &g.weight, &want.weight, 1e-4, 1e-4);
    assert_close(&format!("{label}: gb"), &g.bias, &want.bias, 1e-4, 1e-4);
}

fn backward(c: &Case, m: &dyn MixingKernels) -> MixGradients {
    m.backward(&c.weight, &c.bias, &c.x, &c.grad_spike, c.n)
        .unwrap()
}

#[test]
fn emulated_mixing_matches_plain_loops() {
    let Some(emu) = emulated(CudaOptions::default()) else {
        return;
    };
    for c in cases() {
        check(&c, &*emu.mixing(&c.spec).unwrap());
    }
}

#[test]
fn emulated_gradients_are_deterministic() {
    let Some(emu) = emulated(CudaOptions::default()) else {
        return;
    };
    let c = case(
        6,
        6,
        WGRAD_CHUNK as usize + 5,
        Surrogate::ATan { alpha: 2.0 },
        9,
    );
    let m = emu.mixing(&c.spec).unwrap();
    assert_eq!(backward(&c, &*m), backward(&c, &*m));
}

#[test]
fn bounded_partials_grow_the_chunks_and_keep_the_gradients() {
    let Some(_) = emulated(CudaOptions::default()) else {
        return;
    };
    // 5 units of WGRAD_CHUNK neurons; a partial budget of 3 chunks makes each block sum 2 units.
    let c = case(
        6,
        6,
        4 * WGRAD_CHUNK as usize + 11,
        Surrogate::ATan { alpha: 2.0 },
        12,
    );
    let mut m = EmulatedMixing::compile(&c.spec, &CudaOptions::default()).unwrap();
    m.source.partial_floats = 3 * grad_len((6, 6)) as u64;
    assert_eq!(m.source.wgrad_grid((6, 6), c.n as u64).0, 3);
    check(&c, &m);
    assert_eq!(backward(&c, &m), backward(&c, &m));
}

#[test]
fn emulated_16_bit_storage_rounds_sequences_only() {
    for dtype in [StorageDtype::F16, StorageDtype::Bf16] {
        let Some(emu) = emulated(CudaOptions::new(dtype, MathMode::Precise)) else {
            return;
        };
        let c = case(8, 8, 64, Surrogate::ATan { alpha: 2.0 }, 11);
        let m = emu.mixing(&c.spec).unwrap();
        // The kernel sees the inputs rounded to the storage type; spikes are exact in it.
        let x = round_to_storage(dtype, &c.x);
        let gs = round_to_storage(dtype, &c.grad_spike);
        let s = m.forward(&c.weight, &c.bias, &c.x, c.n).unwrap();
        assert_eq!(s, reference_forward(&c, &x), "{}", dtype.name());
        let g = backward(&c, &*m);
        let want = reference_backward(&c, &x, &gs);
        assert_close("gx", &g.x, &round_to_storage(dtype, &want.x), 1e-5, 1e-6);
        assert_close("gW", &g.weight, &want.weight, 1e-4, 1e-4);
        assert_close("gb", &g.bias, &want.bias, 1e-4, 1e-4);
    }
}

#[test]
fn bad_shapes_are_typed_errors() {
    let Some(emu) = emulated(CudaOptions::default()) else {
        return;
    };
    let c = case(3, 3, 10, Surrogate::ATan { alpha: 2.0 }, 1);
    let m = emu.mixing(&c.spec).unwrap();
    assert!(matches!(
        m.forward(&c.weight, &c.bias, &c.x, 0),
        Err(CudaError::Shape(_))
    ));
    assert!(matches!(
        m.forward(&c.weight[1..], &c.bias, &c.x, c.n),
        Err(CudaError::Buffer { .. })
    ));
    assert!(matches!(
        m.forward(&c.weight, &c.bias, &c.x[1..], c.n),
        Err(CudaError::Buffer { .. })
    ));
    assert!(matches!(
        m.backward(&c.weight, &c.bias, &c.x, &c.grad_spike[1..], c.n),
        Err(CudaError::Buffer { .. })
    ));
    let empty = MixingSpec {
        rows: 0,
        cols: 3,
        surrogate: Surrogate::ATan { alpha: 2.0 },
    };
    assert!(matches!(
        emu.mixing(&empty),
        Err(CudaError::MixingCodegen(_))
    ));
}

#[test]
fn mixing_kernels_compile_to_ptx() {
    let Some(nv) = present_or_skip(Tool::Nvrtc, nvrtc::nvrtc()) else {
        return;
    };
    eprintln!("NVRTC {}.{}", nv.version.0, nv.version.1);
    for c in cases() {
        for dtype in StorageDtype::ALL {
            for math in MathMode::ALL {
                let src = codegen_mixing(&c.spec, &CudaOptions::new(dtype, math)).unwrap();
                let ptx = nvrtc::ptx(&src, 90).unwrap_or_else(|e| panic!("{e}"));
                for entry in [
                    &src.forward_entry,
                    &src.backward_entry,
                    &src.wgrad_entry,
                    &src.reduce_entry,
                ] {
                    assert!(
                        ptx.contains(&format!(".entry {entry}")),
                        "{entry} missing from the PTX"
                    );
                }
            }
        }
    }
}

#[test]
fn device_mixing_matches_plain_loops() {
    let Some(dev) = present_or_skip(Tool::Gpu, CudaDevice::new(0)) else {
        return;
    };
    for c in cases() {
        let m = dev.mixing(&c.spec, &CudaOptions::default()).unwrap();
        check(&c, &*m);
        assert_eq!(
            backward(&c, &*m),
            backward(&c, &*m),
            "device gradients are deterministic"
        );
    }
}

#[test]
fn one_compiled_shape_serves_every_window() {
    let Some(emu) = emulated(CudaOptions::default()) else {
        return;
    };
    // Register columns (C <= 64) and memory columns, W staged whole and in row blocks.
    for (big, windows) in [
        ((6, 9), vec![(1, 3), (4, 9), (6, 2), (6, 9)]),
        ((80, 80), vec![(1, 5), (80, 80), (33, 70)]),
    ] {
        let spec = MixingSpec {
            rows: big.0,
            cols: big.1,
            surrogate: Surrogate::ATan { alpha: 2.0 },
        };
        let m = emu.mixing(&spec).unwrap();
        for (i, &(rows, cols)) in windows.iter().enumerate() {
            let c = case(rows, cols, 300, spec.surrogate, 40 + i as u64);
            check(&c, &*m);
        }
        // Past the compiled maximum: a typed error.
        let c = case(big.0 + 1, big.1, 10, spec.surrogate, 1);
        assert!(matches!(
            m.forward(&c.weight, &c.bias, &c.x, c.n),
            Err(CudaError::Buffer { .. })
        ));
    }
}

#[test]
fn short_sequences_spread_the_weight_gradient_over_slices() {
    let Some(emu) = emulated(CudaOptions::default()) else {
        return;
    };
    // T = 2 and 5: 256 and 36 slices of one shared tile each; N spans several chunks and tiles.
    for (t, seed) in [(2, 21), (5, 22)] {
        let c = case(
            t,
            t,
            WGRAD_CHUNK as usize + 300,
            Surrogate::Sigmoid { alpha: 4.0 },
            seed,
        );
        let m = emu.mixing(&c.spec).unwrap();
        check(&c, &*m);
    }
}
