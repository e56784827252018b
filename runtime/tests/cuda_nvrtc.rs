//! Every generated kernel compiles to PTX with real NVRTC (no GPU needed).
//!
//! NVRTC comes from the `nvidia-cuda-nvrtc-cu12` wheel in CI (`scripts/ci-nvrtc.sh` sets
//! `FLEXSN_NVRTC_PATH`). Where NVRTC is missing these tests skip with a message, except when
//! `FLEXSN_REQUIRE_NVRTC=1` is set: then a missing NVRTC fails them.

use flexsn_compiler::autodiff::{GradSpec, backward};
use flexsn_compiler::codegen::cuda::{CudaOptions, MathMode, StorageDtype, codegen_scan, samples};
use flexsn_compiler::ir::StepGraph;
use flexsn_compiler::random::{RandomGraphConfig, random_graph};
use flexsn_compiler::scan::ScanKernel;
use flexsn_runtime::cuda::CudaError;
use flexsn_runtime::cuda::nvrtc::{self, Image, ModuleCache, Target};
use flexsn_runtime::cuda::probe::{Tool, present_or_skip};

/// NVRTC (with its version printed), or `None` (skip) when it is missing and not required.
fn require_nvrtc() -> Option<&'static nvrtc::Nvrtc> {
    let n = present_or_skip(Tool::Nvrtc, nvrtc::nvrtc())?;
    eprintln!(
        "NVRTC {}.{} from {}{}",
        n.version.0,
        n.version.1,
        n.source,
        if n.from_env {
            " (FLEXSN_NVRTC_PATH)"
        } else {
            ""
        }
    );
    Some(n)
}

/// The sample neurons and four random graphs.
fn graphs() -> Vec<StepGraph> {
    let mut graphs = vec![
        samples::lif(2.0, 1.0, 0.0).unwrap(),
        samples::if_soft(1.0).unwrap(),
        samples::plif(1.0, 0.0).unwrap(),
        samples::all_ops().unwrap(),
    ];
    graphs.extend((0..4).map(|s| random_graph(s, &RandomGraphConfig::all())));
    graphs
}

fn kernels() -> Vec<ScanKernel> {
    let graphs = graphs();
    let mut ks = Vec::new();
    for g in graphs {
        ks.push(ScanKernel::forward(g.clone(), false));
        ks.push(ScanKernel::forward(g.clone(), true));
        ks.push(backward(&g, &GradSpec::all(&g)).unwrap().kernel);
    }
    ks
}

#[test]
fn every_sample_kernel_compiles_to_ptx() {
    let Some(_) = require_nvrtc() else {
        return;
    };
    let mut count = 0;
    for k in kernels() {
        for dtype in StorageDtype::ALL {
            for math in MathMode::ALL {
                let src = codegen_scan(&k, &CudaOptions::new(dtype, math)).unwrap();
                let ptx = nvrtc::ptx(&src, 90).unwrap_or_else(|e| panic!("{e}"));
                assert!(
                    ptx.contains(&format!(".entry {}(", src.entry)),
                    "{} missing from PTX",
                    src.entry
                );
                assert!(ptx.contains(&format!(".entry {}(", src.reduce_entry)));
                assert!(ptx.contains(".target sm_90"));
                count += 1;
            }
        }
    }
    eprintln!("{count} kernels compiled to PTX");
}

/// The fused `checkpoint:K` kernels of the sample and random graphs (every storage type and
/// math mode) compile to PTX, the backward with dynamic shared memory.
#[test]
fn every_sample_checkpoint_kernel_compiles_to_ptx() {
    use flexsn_compiler::codegen::cuda::checkpoint::{
        codegen_checkpoint_backward, codegen_checkpoint_forward,
    };
    let Some(_) = require_nvrtc() else {
        return;
    };
    let mut count = 0;
    let graphs = graphs();
    for g in &graphs {
        let bwd = backward(g, &GradSpec::all(g)).unwrap().kernel;
        for dtype in StorageDtype::ALL {
            for math in MathMode::ALL {
                let opts = CudaOptions::new(dtype, math);
                let fwd = codegen_checkpoint_forward(&ScanKernel::forward(g.clone(), false), &opts)
                    .unwrap();
                let back = codegen_checkpoint_backward(g, &bwd, &opts).unwrap();
                for src in [fwd, back] {
                    let ptx = nvrtc::ptx(&src, 90).unwrap_or_else(|e| panic!("{e}"));
                    assert!(ptx.contains(&format!(".entry {}(", src.entry)));
                    // Only the backward takes dynamic shared memory.
                    assert_eq!(
                        ptx.contains(".extern .shared"),
                        src.backward,
                        "{}",
                        src.entry
                    );
                    count += 1;
                }
            }
        }
    }
    assert_eq!(count, graphs.len() * 2 * 3 * 2);
}

#[test]
fn fast_math_ptx_uses_approximate_instructions() {
    let Some(_) = require_nvrtc() else {
        return;
    };
    let k = ScanKernel::forward(samples::all_ops().unwrap(), false);
    let fast = nvrtc::ptx(
        &codegen_scan(&k, &CudaOptions::new(StorageDtype::F32, MathMode::Fast)).unwrap(),
        90,
    )
    .unwrap();
    let precise = nvrtc::ptx(&codegen_scan(&k, &CudaOptions::default()).unwrap(), 90).unwrap();
    // Precise: IEEE division (`div.rn`) and no contraction of the kernel's own a * b + c;
    // fast: approximate division and flush-to-zero exp2. (Library routines such as fmodf use
    // approximate instructions internally in both modes, so those are not counted.)
    assert!(precise.contains("div.rn.f32"), "precise division is IEEE");
    assert!(!fast.contains("div.rn.f32"), "fast division is approximate");
    assert!(
        fast.contains("ex2.approx.ftz.f32"),
        "fast exp uses ex2.approx with ftz"
    );
}

#[test]
fn compile_errors_carry_the_log_and_numbered_source() {
    let Some(_) = require_nvrtc() else {
        return;
    };
    let k = ScanKernel::forward(samples::lif(2.0, 1.0, 0.0).unwrap(), false);
    let mut src = codegen_scan(&k, &CudaOptions::default()).unwrap();
    src.code = src.code.replace(
        "if (n >= N) return;",
        "if (n >= N) return undeclared_thing;",
    );
    match nvrtc::ptx(&src, 90) {
        Err(CudaError::Compile {
            log,
            numbered_source,
            entry,
            ..
        }) => {
            assert!(log.contains("undeclared_thing"), "{log}");
            assert_eq!(entry, src.entry);
            let line = numbered_source
                .lines()
                .find(|l| l.contains("undeclared_thing"))
                .unwrap();
            assert!(
                line.trim_start().chars().next().unwrap().is_ascii_digit(),
                "{line}"
            );
            // The message shows both.
            let msg = CudaError::Compile {
                entry,
                options: vec![],
                log: log.clone(),
                numbered_source: numbered_source.clone(),
            }
            .to_string();
            assert!(msg.contains(&log) && msg.contains(line));
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
}

#[test]
fn module_cache_hits_memory_then_disk() {
    let Some(_) = require_nvrtc() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("flexsn-nvrtc-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let k = ScanKernel::forward(samples::if_soft(1.0).unwrap(), true);
    let src = codegen_scan(&k, &CudaOptions::default()).unwrap();
    let c1 = ModuleCache::with_dir(Some(dir.clone()));
    let a = c1.get(&src, Target::Ptx(90)).unwrap();
    let b = c1.get(&src, Target::Ptx(90)).unwrap();
    assert_eq!(a, b);
    assert_eq!(c1.stats().compiles, 1);
    assert_eq!(c1.stats().memory_hits, 1);
    let c2 = ModuleCache::with_dir(Some(dir.clone()));
    let c = c2.get(&src, Target::Ptx(90)).unwrap();
    assert_eq!(a, c);
    assert_eq!(c2.stats().disk_hits, 1);
    assert_eq!(c2.stats().compiles, 0);
    // Another architecture is another entry.
    let d = c2.get(&src, Target::Ptx(80)).unwrap();
    assert_ne!(a, d);
    assert_eq!(c2.stats().compiles, 1);
    // CUBIN for a real architecture also compiles without a GPU.
    match &*c2.get(&src, Target::Cubin(90)).unwrap() {
        Image::Cubin(bytes) => assert_eq!(&bytes[..4], b"\x7fELF"),
        other => panic!("expected a CUBIN, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn device_target_prefers_cubin_for_supported_archs() {
    let Some(nv) = require_nvrtc() else {
        return;
    };
    assert!(nv.supported_archs.contains(&90), "{:?}", nv.supported_archs);
    assert_eq!(
        nvrtc::target_for_device(nv, (9, 0), None).unwrap(),
        Target::Cubin(90)
    );
    let newest = *nv.supported_archs.last().unwrap();
    let future = nvrtc::target_for_device(nv, (99, 9), Some(nv.version)).unwrap();
    assert_eq!(future, Target::Ptx(newest));
}

fn fake_nvrtc(version: (i32, i32), archs: &[i32]) -> nvrtc::Nvrtc {
    nvrtc::Nvrtc {
        version,
        source: "libnvrtc.so.test".into(),
        from_env: false,
        supported_archs: archs.to_vec(),
    }
}

#[test]
fn nvrtc_newer_than_the_driver_is_a_typed_error_naming_both_versions() {
    let nv13 = fake_nvrtc((13, 0), &[75, 80, 86, 89, 90, 100, 120]);
    let e = nvrtc::target_for_device(&nv13, (9, 0), Some((12, 8))).unwrap_err();
    assert!(matches!(e, CudaError::NvrtcNewerThanDriver { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("NVRTC 13.0") && msg.contains("CUDA 12.8"),
        "{msg}"
    );
    assert!(msg.contains("nvidia-cuda-nvrtc-cu12"), "{msg}");
    // Same major: CUBIN loads (minor version compatibility)...
    let nv129 = fake_nvrtc((12, 9), &[50, 60, 70, 75, 80, 86, 89, 90, 100, 120]);
    assert_eq!(
        nvrtc::target_for_device(&nv129, (9, 0), Some((12, 4))).unwrap(),
        Target::Cubin(90)
    );
    // ... but PTX for a device NVRTC does not know must come from an NVRTC the driver can JIT.
    let e = nvrtc::target_for_device(&nv129, (13, 0), Some((12, 4))).unwrap_err();
    assert!(matches!(e, CudaError::NvrtcNewerThanDriver { .. }), "{e:?}");
    assert_eq!(
        nvrtc::target_for_device(&nv129, (13, 0), Some((13, 0))).unwrap(),
        Target::Ptx(120)
    );
    // Without a known driver nothing is checked (PTX inspection on a machine without a GPU).
    assert_eq!(
        nvrtc::target_for_device(&nv13, (9, 0), None).unwrap(),
        Target::Cubin(90)
    );
}

#[test]
fn architectures_nvrtc_cannot_target_are_errors_not_guesses() {
    let nv13 = fake_nvrtc((13, 0), &[75, 80, 86, 89, 90, 100, 120]);
    for cc in [(7, 0), (6, 1), (5, 0)] {
        let e = nvrtc::target_for_device(&nv13, cc, Some((13, 0))).unwrap_err();
        match &e {
            CudaError::UnsupportedArch { arch, .. } => assert_eq!(*arch, cc.0 * 10 + cc.1),
            other => panic!("expected UnsupportedArch, got {other:?}"),
        }
        let msg = e.to_string();
        assert!(
            msg.contains("cannot target") && msg.contains("sm_75"),
            "{msg}"
        );
    }
}

/// Runs this test binary's test `name` in a child process with `env` changes; returns its
/// combined output and success.
fn child(name: &str, env: &[(&str, Option<&str>)]) -> (bool, String) {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--include-ignored"]);
    cmd.env("FLEXSN_TEST_CHILD", "1");
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// In the child: report what `nvrtc()` says, as a line the parent checks.
#[test]
#[ignore = "run as a child process by the tests below"]
fn child_report_nvrtc() {
    if std::env::var_os("FLEXSN_TEST_CHILD").is_none() {
        return;
    }
    match nvrtc::nvrtc() {
        Ok(n) => println!("CHILD: NVRTC OK {}.{}", n.version.0, n.version.1),
        Err(e @ CudaError::NoNvrtc { .. }) => println!("CHILD: NoNvrtc: {e}"),
        Err(e) => println!("CHILD: other error: {e}"),
    }
}

#[test]
fn missing_or_wrong_nvrtc_is_a_typed_error_and_ld_library_path_works() {
    let Some(nv) = require_nvrtc() else {
        return;
    };
    // Missing: nothing preloaded, nothing on the loader path.
    let (ok, out) = child(
        "child_report_nvrtc",
        &[
            ("FLEXSN_NVRTC_PATH", None),
            ("LD_LIBRARY_PATH", Some("/nonexistent")),
            ("CUDA_PATH", None),
            ("CUDA_HOME", None),
        ],
    );
    assert!(ok, "{out}");
    // (A system-wide NVRTC would be found by the loader; then this case cannot be staged.)
    assert!(
        out.contains("CHILD: NoNvrtc: NVRTC is not available") || out.contains("CHILD: NVRTC OK"),
        "{out}"
    );
    // A wrong FLEXSN_NVRTC_PATH says which file could not be loaded.
    let (ok, out) = child(
        "child_report_nvrtc",
        &[("FLEXSN_NVRTC_PATH", Some("/nonexistent/libnvrtc.so.12"))],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("CHILD: NoNvrtc") && out.contains("/nonexistent/libnvrtc.so.12"),
        "{out}"
    );
    // The library's folder on LD_LIBRARY_PATH (set before the process starts) works too.
    if nv.from_env {
        let path = std::path::Path::new(&nv.source);
        let dir = path.parent().unwrap().to_str().unwrap();
        let (ok, out) = child(
            "child_report_nvrtc",
            &[("FLEXSN_NVRTC_PATH", None), ("LD_LIBRARY_PATH", Some(dir))],
        );
        assert!(ok && out.contains("CHILD: NVRTC OK"), "{out}");
    }
}

#[test]
fn inspection_gives_forward_and_backward_source_and_ptx() {
    use flexsn_runtime::cuda::inspect;
    let g = samples::plif(1.0, 0.0).unwrap();
    let spec = GradSpec::outputs_only(&g);
    let opts = CudaOptions::new(StorageDtype::Bf16, MathMode::Fast);
    let text = inspect::cuda_text(&g, &spec, &opts, true).unwrap();
    assert!(text.contains("// ===== forward scan: flexsn_plif_fwd_bf16_fast_"));
    assert!(text.contains("// ===== backward scan: flexsn_plif_grad_bwd_bf16_fast_"));
    assert!(text.contains("flexsn_store_bf16") && text.contains("__expf("));
    let Some(_) = require_nvrtc() else {
        return;
    };
    let ptx = inspect::ptx_text(&g, &spec, &opts, true, 90).unwrap();
    assert_eq!(
        ptx.matches(".entry flexsn_plif_").count(),
        2,
        "{}",
        &ptx[..400]
    );
    assert!(ptx.contains(".target sm_90"));
}
