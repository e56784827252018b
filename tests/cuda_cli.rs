//! The CLI's CUDA commands: `inspect --emit cuda|ptx`, `conformance --backend cuda-emulated`,
//! and their plain errors where a C++ compiler, NVRTC or a GPU is missing.

use std::process::{Command, Output};

fn flexsn(args: &[&str], env: &[(&str, Option<&str>)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_flexsn"));
    c.args(args);
    for (k, v) in env {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn inspect_emits_forward_and_backward_cuda() {
    let o = flexsn(
        &[
            "inspect", "lif", "--emit", "cuda", "--dtype", "bf16", "--math", "fast",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("// ===== forward scan: flexsn_LIFNode_fwd_bf16_fast_"),
        "{s}"
    );
    assert!(s.contains("// ===== backward scan: flexsn_LIFNode_grad_bwd_bf16_fast_"));
    assert!(s.contains("flexsn_store_bf16("));
    assert_eq!(s.matches("extern \"C\" __global__").count(), 4);
    assert!(!s.contains("#include"));
}

#[test]
fn inspect_ptx_needs_nvrtc_and_says_so() {
    // Without NVRTC: a clear message, exit code 1.
    let o = flexsn(
        &["inspect", "lif", "--emit", "ptx"],
        &[
            ("FLEXSN_NVRTC_PATH", Some("/nonexistent/libnvrtc.so.12")),
            ("LD_LIBRARY_PATH", Some("/nonexistent")),
        ],
    );
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("NVRTC is not available"), "{t}");
    assert!(t.contains("FLEXSN_NVRTC_PATH"), "{t}");
    // With NVRTC (when this environment has it): PTX for both scans.
    if flexsn_runtime::cuda::nvrtc::nvrtc().is_ok() {
        let o = flexsn(&["inspect", "plif", "--emit", "ptx", "--arch", "80"], &[]);
        assert!(o.status.success(), "{}", text(&o));
        let s = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            s.matches(".visible .entry flexsn_ParametricLIFNode_")
                .count(),
            2
        );
        assert!(s.contains(".target sm_80"));
    } else {
        assert!(
            std::env::var("FLEXSN_REQUIRE_NVRTC").as_deref() != Ok("1"),
            "FLEXSN_REQUIRE_NVRTC=1 but NVRTC is missing"
        );
    }
}

#[test]
fn conformance_on_the_emulated_backend_passes_and_missing_cxx_is_plain() {
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/ifnode.json");
    let o = flexsn(&["conformance", golden, "--backend", "cuda-emulated"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("21 passed, 0 failed"));
    let o = flexsn(
        &["conformance", golden, "--backend", "cuda-emulated"],
        &[("PATH", Some("")), ("CXX", Some("/nonexistent/c++"))],
    );
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("no C++ compiler found"), "{t}");
}

#[test]
fn the_cuda_backend_without_a_gpu_says_what_is_missing() {
    if flexsn_runtime::cuda::device::device_count().is_ok_and(|c| c > 0) {
        return; // a GPU machine: the GPU tests cover this backend
    }
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/ifnode.json");
    let o = flexsn(&["conformance", golden, "--backend", "cuda"], &[]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("no CUDA driver") || t.contains("no CUDA device") || t.contains("NVRTC"),
        "{t}"
    );
}

#[test]
fn bench_on_cuda_without_a_gpu_says_what_is_missing() {
    if flexsn_runtime::cuda::device::device_count().is_ok_and(|c| c > 0) {
        return; // scripts/gpu-check.sh runs the benchmark on GPU machines
    }
    let o = flexsn(
        &[
            "bench",
            "--backend",
            "cuda",
            "--neuron",
            "lif",
            "--t",
            "4",
            "--n",
            "64",
        ],
        &[],
    );
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("no CUDA driver") || t.contains("no CUDA device") || t.contains("NVRTC"),
        "{t}"
    );
}

#[test]
fn psn_runs_on_the_emulated_backend_and_inspect_prints_its_mixing_kernels() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/");
    let (psn, masked) = (format!("{dir}psn.json"), format!("{dir}masked_psn.json"));
    let o = flexsn(
        &["conformance", &psn, &masked, "--backend", "cuda-emulated"],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("10 passed, 0 failed"),
        "{}",
        text(&o)
    );
    let o = flexsn(
        &[
            "inspect",
            "masked-psn",
            "--emit",
            "cuda",
            "--set",
            "T=8",
            "--dtype",
            "bf16",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    for kernel in ["fwd", "bwd", "wgrad", "reduce"] {
        assert!(
            s.contains(&format!(
                "flexsn_mix_{kernel}_r8c8_ATan_40000000_bf16_precise("
            )),
            "{kernel}: {s}"
        );
    }
}

#[test]
fn run_psn_gives_the_same_spikes_on_every_mixing_backend() {
    let rate = |backend: &str| {
        let o = flexsn(
            &[
                "run",
                "psn",
                "--t",
                "8",
                "--n",
                "300",
                "--backward",
                "--backend",
                backend,
            ],
            &[],
        );
        assert!(o.status.success(), "{backend}: {}", text(&o));
        let s = String::from_utf8_lossy(&o.stdout).into_owned();
        let line = s.lines().find(|l| l.contains("firing rate")).unwrap();
        assert!(s.contains("grad weight"), "{s}");
        line.to_string()
    };
    let want = rate("interp");
    assert_eq!(rate("cpu"), want);
    assert_eq!(rate("cuda-emulated"), want);
}
