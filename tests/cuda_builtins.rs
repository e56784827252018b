//! Every built-in scan neuron (and variants of its settings) through the CUDA code generator:
//! the generated source run as host C++ (emulated) against the interpreter, forward (inference
//! and training) and backward, in f32, f16 and bf16 storage; and compiled to PTX by real NVRTC for
//! every storage type and math mode.
//!
//! Needs a C++ compiler (fails without one when `FLEXSN_REQUIRE_CXX=1` or `CI` is set) and NVRTC
//! for the PTX part (fails without it when `FLEXSN_REQUIRE_NVRTC=1`; `scripts/ci-nvrtc.sh`).

use flexsn::compiler::autodiff::{GradSpec, backward};
use flexsn::compiler::codegen::cuda::{CudaOptions, MathMode, StorageDtype, codegen_scan};
use flexsn::compiler::ir::StepGraph;
use flexsn::compiler::random::{random_inputs, scan_args};
use flexsn::compiler::scan::ScanKernel;
use flexsn::neurons::{BUILTINS, Builtin, NeuronError};
use flexsn::runtime::cuda::compare::{Tolerance, compare_results, interpreter_reference};
use flexsn::runtime::cuda::emulated::find_cxx;
use flexsn::runtime::cuda::probe::{Tool, present_or_skip};
use flexsn::runtime::cuda::{EmulatedCuda, nvrtc};

/// Every scan built-in with its defaults, plus variants of the settings that change the graph.
fn builtins() -> Vec<(String, StepGraph)> {
    let mut out = Vec::new();
    let variants: &[(&str, &[&str])] = &[
        ("lif", &["v_reset=none"]),
        ("lif", &["decay_input=false", "detach_reset=true"]),
        ("lif", &["surrogate=ATan", "tau=3.5", "v_threshold=0.5"]),
        ("if", &["v_reset=none", "surrogate=PiecewiseQuadratic"]),
        ("plif", &["v_reset=none", "decay_input=false"]),
        ("plif", &["detach_reset=true", "surrogate=Erf"]),
    ];
    for info in BUILTINS {
        match Builtin::from_name(info.cli_name).unwrap().step_graph() {
            Ok(g) => out.push((info.cli_name.to_string(), g)),
            // PSN and masked PSN mix the whole sequence at once: no scan, no scan kernel.
            Err(NeuronError::NotAScan { .. }) => {}
            Err(e) => panic!("{}: {e}", info.cli_name),
        }
    }
    for (name, sets) in variants {
        let b = Builtin::from_settings(name, sets.iter().copied()).unwrap();
        out.push((
            format!("{name} {}", sets.join(" ")),
            b.step_graph().unwrap(),
        ));
    }
    out
}

fn kernels(g: &StepGraph) -> Vec<(&'static str, ScanKernel)> {
    vec![
        ("inference", ScanKernel::forward(g.clone(), false)),
        ("training", ScanKernel::forward(g.clone(), true)),
        (
            "backward (outputs)",
            backward(g, &GradSpec::outputs_only(g)).unwrap().kernel,
        ),
        (
            "backward (all)",
            backward(g, &GradSpec::all(g)).unwrap().kernel,
        ),
    ]
}

#[test]
fn every_builtin_matches_the_interpreter_in_emulation() {
    let mut checked = 0;
    for dtype in StorageDtype::ALL {
        if present_or_skip(Tool::Cxx, find_cxx()).is_none() {
            return;
        }
        let e = EmulatedCuda::with_options(CudaOptions::new(dtype, MathMode::Precise)).unwrap();
        for (name, g) in builtins() {
            for (what, k) in kernels(&g) {
                let (t, n) = (11, 131);
                let data = random_inputs(checked as u64, &k.graph, t, n);
                let args = scan_args(t, n, &data);
                let got = e
                    .run_scan(&k, &args)
                    .unwrap_or_else(|err| panic!("{name} {what}: {err}"));
                let want = interpreter_reference(&k, &args, dtype).unwrap();
                if let Err(ms) = compare_results(&got, &want, Tolerance::emulated(dtype)) {
                    let lines: Vec<String> = ms.iter().map(ToString::to_string).collect();
                    panic!("{name} {what} {}: {}", dtype.name(), lines.join("\n"));
                }
                checked += 1;
            }
        }
    }
    eprintln!("{checked} built-in kernels matched the interpreter");
}

#[test]
fn every_builtin_kernel_compiles_to_ptx_with_nvrtc() {
    let Some(nv) = present_or_skip(Tool::Nvrtc, nvrtc::nvrtc()) else {
        return;
    };
    let mut count = 0;
    for (name, g) in builtins() {
        for (what, k) in kernels(&g) {
            for dtype in StorageDtype::ALL {
                for math in MathMode::ALL {
                    let src = codegen_scan(&k, &CudaOptions::new(dtype, math)).unwrap();
                    let ptx = nvrtc::ptx(&src, 90)
                        .unwrap_or_else(|e| panic!("{name} {what} {dtype:?} {math:?}: {e}"));
                    assert!(ptx.contains(&format!(".entry {}(", src.entry)));
                    count += 1;
                }
            }
        }
    }
    eprintln!(
        "{count} built-in kernels compiled to PTX by NVRTC {}.{} ({})",
        nv.version.0, nv.version.1, nv.source
    );
}
