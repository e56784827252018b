//! CUDA source generation: snapshots of generated text, structural checks, and a host C++
//! syntax check of every variant through the emulation shim.

use flexsn_compiler::autodiff::{GradSpec, backward};
use flexsn_compiler::codegen::cuda::{
    self, ArgRole, CodegenError, CudaOptions, MathMode, StorageDtype, codegen_scan,
    mixing::{MixingSpec, codegen_mixing},
    samples, shim,
};
use flexsn_compiler::ir::StepGraph;
use flexsn_compiler::scan::{Direction, OutputMode, ScanKernel};

fn lif() -> StepGraph {
    samples::lif(2.0, 1.0, 0.0).unwrap()
}

fn bwd(g: &StepGraph) -> ScanKernel {
    backward(g, &GradSpec::all(g)).unwrap().kernel
}

/// Forward (training: with state sequences) and backward kernels of every sample core.
fn all_kernels() -> Vec<ScanKernel> {
    let mut ks = Vec::new();
    for g in [
        lif(),
        samples::if_soft(1.0).unwrap(),
        samples::plif(1.0, 0.0).unwrap(),
        samples::all_ops().unwrap(),
    ] {
        ks.push(ScanKernel::forward(g.clone(), false));
        ks.push(ScanKernel::forward(g.clone(), true));
        ks.push(bwd(&g));
    }
    ks
}

#[test]
fn snapshot_lif_forward_f32() {
    let k = ScanKernel::forward(lif(), true);
    let src = codegen_scan(&k, &CudaOptions::default()).unwrap();
    insta::assert_snapshot!("lif_forward_f32_precise", src.code);
}

#[test]
fn snapshot_lif_forward_bf16_fast() {
    let k = ScanKernel::forward(lif(), false);
    let src = codegen_scan(&k, &CudaOptions::new(StorageDtype::Bf16, MathMode::Fast)).unwrap();
    insta::assert_snapshot!("lif_forward_bf16_fast", src.code);
}

#[test]
fn snapshot_lif_backward_f32() {
    let k = bwd(&lif());
    let src = codegen_scan(&k, &CudaOptions::default()).unwrap();
    insta::assert_snapshot!("lif_backward_f32_precise", src.code);
}

#[test]
fn snapshot_plif_backward_f16() {
    // Shared learnable param: its gradient is a SumOverTime output.
    let k = bwd(&samples::plif(1.0, 0.0).unwrap());
    assert!(k.output_modes.contains(&OutputMode::SumOverTime));
    let src = codegen_scan(&k, &CudaOptions::new(StorageDtype::F16, MathMode::Precise)).unwrap();
    insta::assert_snapshot!("plif_backward_f16_precise", src.code);
}

#[test]
fn snapshot_all_ops_f32_precise_and_fast() {
    let k = ScanKernel::forward(samples::all_ops().unwrap(), true);
    let precise = codegen_scan(&k, &CudaOptions::default()).unwrap();
    insta::assert_snapshot!("all_ops_forward_f32_precise", precise.code);
    let fast = codegen_scan(&k, &CudaOptions::new(StorageDtype::F32, MathMode::Fast)).unwrap();
    insta::assert_snapshot!("all_ops_forward_f32_fast", fast.code);
}

#[test]
fn entry_names_are_stable_and_distinct() {
    let k = ScanKernel::forward(lif(), false);
    let a = cuda::entry_name(&k, &CudaOptions::default());
    let b = cuda::entry_name(&k.clone(), &CudaOptions::default());
    assert_eq!(a, b);
    assert!(a.starts_with("flexsn_lif_fwd_f32_precise_"), "{a}");
    let bf = cuda::entry_name(&k, &CudaOptions::new(StorageDtype::Bf16, MathMode::Fast));
    assert!(bf.starts_with("flexsn_lif_fwd_bf16_fast_"), "{bf}");
    let seq = cuda::entry_name(&ScanKernel::forward(lif(), true), &CudaOptions::default());
    assert_ne!(a, seq, "state sequences change the kernel");
    let back = cuda::entry_name(&bwd(&lif()), &CudaOptions::default());
    assert!(back.contains("_bwd_"), "{back}");
}

#[test]
fn args_follow_the_abi_order() {
    let g = samples::all_ops().unwrap();
    let k = ScanKernel::forward(g.clone(), true);
    let src = codegen_scan(&k, &CudaOptions::default()).unwrap();
    let mut expected = Vec::new();
    expected.extend((0..g.inputs().len()).map(ArgRole::Input));
    expected.extend((0..g.states().len()).map(ArgRole::InitState));
    expected.extend((0..g.params().len()).map(ArgRole::Param));
    expected.extend((0..g.outputs().len()).map(ArgRole::Output));
    expected.extend((0..g.states().len()).map(ArgRole::StateSeq));
    expected.extend((0..g.states().len()).map(ArgRole::FinalState));
    let roles: Vec<ArgRole> = src.args.iter().map(|a| a.role).collect();
    assert_eq!(roles, expected);
    // Every argument appears in the signature, in order.
    let mut at = src.code.find("void __launch_bounds__").unwrap();
    for a in &src.args {
        let pos = src.code[at..]
            .find(&format!("__restrict__ {},", a.name))
            .unwrap();
        at += pos;
    }
}

#[test]
fn every_ir_node_becomes_a_numbered_variable() {
    for k in all_kernels() {
        let src = codegen_scan(&k, &CudaOptions::default()).unwrap();
        for (v, _) in k.graph.nodes() {
            let decl = format!("const float v{} = ", v.index());
            assert!(src.code.contains(&decl), "missing {decl} in {}", src.entry);
        }
        assert_eq!(src.code.matches("extern \"C\" __global__").count(), 2);
        assert!(!src.code.contains("#include"));
        match k.direction {
            Direction::Forward => assert!(src.code.contains("for (long long t = 0; t < T; ++t)")),
            Direction::Reverse => {
                assert!(src.code.contains("for (long long t = T - 1; t >= 0; --t)"))
            }
        }
    }
}

#[test]
fn fast_math_uses_intrinsics_and_precise_does_not() {
    let k = ScanKernel::forward(samples::all_ops().unwrap(), false);
    let p = codegen_scan(&k, &CudaOptions::default()).unwrap().code;
    let f = codegen_scan(&k, &CudaOptions::new(StorageDtype::F32, MathMode::Fast))
        .unwrap()
        .code;
    for intrinsic in [
        "__expf(",
        "__logf(",
        "__fdividef(",
        "__sinf(",
        "__powf(",
        "rsqrtf(",
    ] {
        assert!(f.contains(intrinsic), "fast lacks {intrinsic}");
        assert!(!p.contains(intrinsic), "precise has {intrinsic}");
    }
    for func in [
        "expf(", "logf(", "tanhf(", "erff(", "atanf(", "powf(", "fmodf(", "rintf(",
    ] {
        assert!(p.contains(func), "precise lacks {func}");
    }
    assert!(
        !p.contains("fminf") && !p.contains("fmaxf"),
        "fminf/fmaxf drop NaN"
    );
}

#[test]
fn comments_can_be_turned_off() {
    let k = ScanKernel::forward(lif(), false);
    let opts = CudaOptions {
        comments: false,
        ..Default::default()
    };
    let src = codegen_scan(&k, &opts).unwrap();
    assert!(!src.code.contains("// %"));
    let with = codegen_scan(&k, &CudaOptions::default()).unwrap();
    assert!(with.code.contains("// %0 = input x"));
}

#[test]
fn bad_kernels_are_typed_errors() {
    let mut k = ScanKernel::forward(lif(), false);
    k.output_modes.push(OutputMode::Sequence);
    assert!(matches!(
        codegen_scan(&k, &CudaOptions::default()),
        Err(CodegenError::OutputModes {
            modes: 2,
            outputs: 1
        })
    ));
    let k = ScanKernel::forward(lif(), false);
    for bs in [0, 31, 48, 2048] {
        let opts = CudaOptions {
            block_size: bs,
            ..Default::default()
        };
        assert!(matches!(
            codegen_scan(&k, &opts),
            Err(CodegenError::BlockSize(_))
        ));
    }
}

/// The host C++ compiler, if any (the emulation tests in `runtime` run the code; this only
/// checks that every variant is valid C++ with the shim).
fn cxx() -> Option<String> {
    let candidates = [
        std::env::var("CXX").ok(),
        Some("c++".into()),
        Some("g++".into()),
    ];
    candidates.into_iter().flatten().find(|c| {
        std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn every_variant_is_valid_host_cxx_with_the_shim() {
    let Some(cxx) = cxx() else {
        assert!(
            std::env::var_os("CI").is_none()
                && std::env::var("FLEXSN_REQUIRE_CXX").as_deref() != Ok("1"),
            "no C++ compiler (c++, g++ or $CXX) found, and CI needs one for the CUDA emulation"
        );
        eprintln!("skipping: no C++ compiler (c++, g++ or $CXX) found");
        return;
    };
    let dir = std::env::temp_dir().join(format!("flexsn-cuda-syntax-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // One translation unit per dtype/math mode holding every kernel would clash on the reduce
    // kernel's name, so check each source separately but in one compiler call per file batch.
    let mut files = Vec::new();
    for (i, k) in all_kernels().iter().enumerate() {
        for dtype in StorageDtype::ALL {
            for math in MathMode::ALL {
                let src = codegen_scan(k, &CudaOptions::new(dtype, math)).unwrap();
                let path = dir.join(format!("k{i}_{}_{}.cpp", dtype.name(), math.name()));
                std::fs::write(&path, shim::host_translation_unit(&src)).unwrap();
                files.push(path);
            }
        }
    }
    for (i, spec) in mixing_specs().iter().enumerate() {
        for dtype in StorageDtype::ALL {
            for math in MathMode::ALL {
                let src = codegen_mixing(spec, &CudaOptions::new(dtype, math)).unwrap();
                let path = dir.join(format!("mix{i}_{}_{}.cpp", dtype.name(), math.name()));
                std::fs::write(&path, shim::mixing_translation_unit(&src)).unwrap();
                files.push(path);
            }
        }
    }
    for chunk in files.chunks(12) {
        let out = std::process::Command::new(&cxx)
            .args([
                "-std=c++17",
                "-fsyntax-only",
                "-Wall",
                "-Wno-unused-variable",
                "-Wno-unknown-pragmas",
            ])
            .args(chunk)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "warnings: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Mixing shapes covering the register path, one row (MaskedPSN's single step) and the long
/// columns read from memory.
fn mixing_specs() -> Vec<MixingSpec> {
    use flexsn_compiler::ir::Surrogate;
    vec![
        MixingSpec {
            rows: 4,
            cols: 4,
            surrogate: Surrogate::ATan { alpha: 2.0 },
        },
        MixingSpec {
            rows: 1,
            cols: 3,
            surrogate: Surrogate::Sigmoid { alpha: 4.0 },
        },
        MixingSpec {
            rows: 150,
            cols: 150,
            surrogate: Surrogate::PiecewiseQuadratic { alpha: 1.0 },
        },
    ]
}

#[test]
fn mixing_source_snapshot() {
    let src = codegen_mixing(&mixing_specs()[0], &CudaOptions::default()).unwrap();
    insta::assert_snapshot!("mixing_r4c4_atan_f32_precise", src.code);
}
