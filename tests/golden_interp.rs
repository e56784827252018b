//! Every golden case of the built-in scan neurons (IF, LIF, PLIF, non-spiking, and the zoo:
//! QIF, EIF, Izhikevich, KLIF, CUBA-LIF, CLIF, ILIF, half-threshold IF, ternary IF/LIF) passes on the
//! interpreter, forward and backward: spikes exactly equal, everything else within rtol 1e-5,
//! atol 1e-6 (f32).
//!
//! The same checks run on any backend: `golden_tests!(module, backend-expression)` instantiates
//! them; the CPU and CUDA-emulated backends add one line each.

use std::path::PathBuf;

use flexsn::conformance::{CaseReport, Cores, Harness, load_cases};
use flexsn::runtime::Backend;

fn golden(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file)
}

/// Runs every case of `file` on `backend` and asserts they all pass, printing each report.
pub fn assert_file_passes(file: &str, backend: Backend, expected_cases: usize) {
    let cores = Cores::default();
    let mut h = Harness::new(backend, &cores).expect("backend available");
    let reports = h.run_file(golden(file)).expect("golden file loads");
    for r in &reports {
        println!("{r}");
    }
    assert_eq!(reports.len(), expected_cases, "{file}: case count");
    let failed: Vec<&CaseReport> = reports.iter().filter(|r| !r.passed()).collect();
    assert!(
        failed.is_empty(),
        "{file}: {} of {} cases failed:\n{}",
        failed.len(),
        reports.len(),
        failed
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Every case compared forward outputs and gradients.
    for r in &reports {
        assert!(
            r.tensors.iter().any(|t| t.label.starts_with("outputs.")),
            "{}: no output compared",
            r.name
        );
        assert!(
            r.tensors.iter().any(|t| t.label.starts_with("grads.")),
            "{}: no gradient compared",
            r.name
        );
    }
}

macro_rules! golden_tests {
    ($module:ident, $backend:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn ifnode() {
                assert_file_passes("ifnode.json", $backend, 21);
            }

            #[test]
            fn lifnode() {
                assert_file_passes("lifnode.json", $backend, 33);
            }

            #[test]
            fn plif() {
                assert_file_passes("plif.json", $backend, 16);
            }

            #[test]
            fn nonspiking() {
                assert_file_passes("nonspiking.json", $backend, 15);
            }

            #[test]
            fn zoo() {
                assert_file_passes("zoo.json", $backend, 60);
            }
        }
    };
}

golden_tests!(interp, Backend::Interpreter);
golden_tests!(cpu, Backend::Cpu);
golden_tests!(cuda_emulated, Backend::CudaEmulated);

/// FlexSN cases with no core bound are reported as failures that name the missing core, not
/// skipped.
#[test]
fn unbound_flexsn_cases_fail_naming_the_core() {
    let cores = Cores::default();
    let mut h = Harness::new(Backend::Interpreter, &cores).unwrap();
    let reports = h.run_file(golden("flexsn.json")).unwrap();
    assert_eq!(reports.len(), 10);
    for r in reports {
        assert!(!r.passed());
        let core = r.neuron.strip_prefix("FlexSN:").unwrap();
        assert!(
            r.failure
                .as_ref()
                .unwrap()
                .to_string()
                .contains(&format!("no core bound for FlexSN core `{core}`")),
            "{r}"
        );
    }
}

/// PLIF's `w` and the initial-v rule are checked against the library's values in every case.
#[test]
fn initialisation_rules_are_checked() {
    let cores = Cores::default();
    let mut h = Harness::new(Backend::Interpreter, &cores).unwrap();
    for case in load_cases(golden("plif.json")).unwrap() {
        let r = h.run_case(&case);
        assert!(r.tensors.iter().any(|t| t.label == "parameters.w"), "{r}");
        assert!(r.tensors.iter().any(|t| t.label == "grads.w"), "{r}");
    }
    for case in load_cases(golden("ifnode.json")).unwrap() {
        let r = h.run_case(&case);
        assert!(
            r.tensors
                .iter()
                .any(|t| t.label == "meta.initial_v_when_v_init_null"),
            "{r}"
        );
    }
}

/// Zoo cases compare every memory's final value, every memory's initial-value gradient when the
/// case sets `state_init`, and KLIF's `k` and its gradient.
#[test]
fn zoo_cases_check_every_memory_and_k() {
    let cores = Cores::default();
    let mut h = Harness::new(Backend::Interpreter, &cores).unwrap();
    let mut memories_checked = 0;
    for case in load_cases(golden("zoo.json")).unwrap() {
        let r = h.run_case(&case);
        let has = |label: &str| r.tensors.iter().any(|t| t.label == label);
        let memories = case.get(&["meta", "memories"]).unwrap().as_array().unwrap();
        for m in memories {
            let m = m.as_str().unwrap();
            assert!(has(&format!("outputs.final_states.{m}")), "{m}: {r}");
            if case.get(&["state_init"]).is_some() {
                assert!(has(&format!("grads.{m}_init")), "{m}: {r}");
                memories_checked += 1;
            }
        }
        if case.neuron == "KLIFNode" {
            assert!(has("parameters.k") && has("grads.k"), "{r}");
        }
    }
    // Two-memory neurons (Izhikevich, CUBA-LIF, CLIF) with state_init: 3 cases each.
    assert_eq!(
        memories_checked,
        30 + 3 * 3,
        "initial-value gradients compared"
    );
}
