//! The five FlexSN cores of the golden data (`flexsn.json`, `meta.core_source`), written with the
//! builder DSL, pass their golden cases forward and backward.
//!
//! Python float arithmetic in the cores' closures (e.g. `1 - 1 / tau`, `math.exp(-1 / tau_a)`)
//! happens in double precision before the value meets a tensor; it is done in `f64` here too and
//! rounded to `f32` once, as PyTorch does for a Python scalar operand.

use std::path::PathBuf;

use flexsn::compiler::dsl::CoreBuilder;
use flexsn::compiler::ir::{ParamKind, StateInit, StepGraph, Surrogate};
use flexsn::conformance::{BoxError, CaseError, CaseReport, CoreArgs, Cores, Harness, load_cases};
use flexsn::runtime::Backend;

const SIG4: Surrogate = Surrogate::Sigmoid { alpha: 4.0 };
const ATAN2: Surrogate = Surrogate::ATan { alpha: 2.0 };

fn finish(b: CoreBuilder) -> Result<StepGraph, BoxError> {
    Ok(b.build()?)
}

/// `h = (1 - 1/tau) * v + x; s = SIG4(h - v_th); v = h - s * v_th`.
fn lif_soft(a: &CoreArgs) -> Result<StepGraph, BoxError> {
    let (tau, v_th) = (a.hyper("tau")?, a.hyper("v_th")? as f32);
    let b = CoreBuilder::new("lif_soft");
    let x = b.input("x");
    let v = b.state("v", StateInit::Const(0.0));
    let h = (1.0 - 1.0 / tau) as f32 * v + x;
    let s = (h - v_th).spike(SIG4);
    b.output("s", s);
    b.set_state("v", h - s * v_th);
    finish(b)
}

/// Two inputs, two states, two outputs; threshold adaptation and a modulated reset.
fn complicated_lif_core(a: &CoreArgs) -> Result<StepGraph, BoxError> {
    let (beta, gamma) = (a.hyper("beta")? as f32, a.hyper("gamma")? as f32);
    let b = CoreBuilder::new("complicated_lif_core");
    let x = b.input("x");
    let y = b.input("y");
    let v = b.state("v", StateInit::Const(0.0));
    let rho = b.state("rho", StateInit::Const(0.0));
    let h = beta * v + x;
    let s1 = (h - (rho + 1.0)).spike(ATAN2);
    let s2 = (h - 1.0).spike(ATAN2);
    let rho_next = gamma * rho + s1;
    let v1 = h * (1.0 - s1);
    let v2 = h - s2;
    let yy = y.sigmoid();
    let v_next = v1 * yy + v2 * (1.0 - yy);
    b.output("s1", s1);
    b.output("s2", s2);
    b.set_state("v", v_next);
    b.set_state("rho", rho_next);
    finish(b)
}

/// Adaptive LIF: LIF charge, threshold `b0 + beta * a`, soft reset by it, `a` decays.
fn alif(a: &CoreArgs) -> Result<StepGraph, BoxError> {
    let tau = a.hyper("tau")? as f32;
    let (b0, beta) = (a.hyper("b0")? as f32, a.hyper("beta")? as f32);
    let decay_a = (-1.0 / a.hyper("tau_a")?).exp();
    let b = CoreBuilder::new("alif");
    let x = b.input("x");
    let v = b.state("v", StateInit::Const(0.0));
    let ad = b.state("a", StateInit::Const(0.0));
    let h = v + (x - v) / tau;
    let th = b0 + beta * ad;
    let s = (h - th).spike(SIG4);
    b.output("s", s);
    b.set_state("v", h - s * th);
    b.set_state("a", decay_a as f32 * ad + (1.0 - decay_a) as f32 * s);
    finish(b)
}

/// exp, tanh, maximum, minimum, clamp (one- and two-sided) and where. At t = 0 of
/// `FlexSN_006` the `w` clamp sits exactly on its lower bound: PyTorch 2.15 gives a scalar-bound
/// clamp no gradient there (pytorch/pytorch#191142), and so does `autodiff`'s `Clamp` rule.
fn exotic(a: &CoreArgs) -> Result<StepGraph, BoxError> {
    let v_th = a.hyper("v_th")? as f32;
    let b = CoreBuilder::new("exotic_exp_tanh_min_max_clamp_where");
    let x = b.input("x");
    let v = b.state("v", StateInit::Const(0.0));
    let w = b.state("w", StateInit::Const(0.0));
    // torch.clamp(v - 0.5, max=2.0): no lower bound.
    let dv = 0.1f32 * (v - 0.5).clamp(f32::NEG_INFINITY, 2.0).exp();
    let h = 0.8f32 * v + x.tanh() + dv - 0.2f32 * w;
    let h = h.max(-1.0);
    let s = (h - v_th).spike(ATAN2);
    let v_new = s.gt(0.5).select(0.0, h);
    let w_new = (0.9f32 * w + s).min(3.0);
    let w_new = w_new.clamp(0.0, 2.5);
    b.output("s", s);
    b.set_state("v", v_new);
    b.set_state("w", w_new);
    finish(b)
}

/// LIF whose `inv_tau` is a static input: a learnable param, shared or per neuron depending on
/// the shape of the value the case binds.
fn lif_static_inv_tau(a: &CoreArgs) -> Result<StepGraph, BoxError> {
    let shape = a
        .param_shapes
        .iter()
        .find(|(k, _)| k == "inv_tau")
        .map(|(_, s)| s.as_slice())
        .ok_or("no static input `inv_tau`")?;
    let kind = match *shape {
        [] | [1] => ParamKind::Shared,
        [len] if len == a.n => ParamKind::PerNeuron,
        _ => return Err(format!("inv_tau: unsupported shape {shape:?}").into()),
    };
    let b = CoreBuilder::new("lif_static_tau_core");
    let x = b.input("x");
    let v = b.state("v", StateInit::Const(0.0));
    let inv_tau = b.param("inv_tau", kind, true);
    let h = v + (x - v) * inv_tau;
    let s = (h - 1.0).spike(SIG4);
    b.output("s", s);
    b.set_state("v", h * (1.0 - s));
    finish(b)
}

/// The five cores, bound by the names the golden cases use.
pub fn dsl_cores() -> Cores {
    let mut c = Cores::default();
    c.bind("lif_soft", lif_soft);
    c.bind("complicated_lif_core", complicated_lif_core);
    c.bind("alif", alif);
    c.bind("exotic_exp_tanh_min_max_clamp_where", exotic);
    c.bind("lif_static_inv_tau", lif_static_inv_tau);
    c
}

fn golden(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file)
}

fn assert_flexsn_passes(backend: Backend) {
    let cores = dsl_cores();
    let mut h = Harness::new(backend, &cores).expect("backend available");
    let reports = h
        .run_file(golden("flexsn.json"))
        .expect("golden file loads");
    for r in &reports {
        println!("{r}");
    }
    assert_eq!(reports.len(), 10);
    let failed: Vec<&CaseReport> = reports.iter().filter(|r| !r.passed()).collect();
    assert!(
        failed.is_empty(),
        "{} FlexSN cases failed:\n{}",
        failed.len(),
        failed
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Forward outputs, state sequences, final states and gradients were all compared, and
    // every core's cases compared the gradients it has (inputs; initial states when given;
    // static inputs).
    for r in &reports {
        for prefix in ["outputs.", "state_seqs.", "final_states.", "grads."] {
            assert!(
                r.tensors.iter().any(|t| t.label.starts_with(prefix)),
                "{}: nothing under {prefix} compared",
                r.name
            );
        }
        if r.name.contains("_init") {
            assert!(
                r.tensors.iter().any(|t| t.label.ends_with("_init")),
                "{}: initial-state gradients not compared",
                r.name
            );
        }
        if r.name.contains("inv_tau") {
            assert!(
                r.tensors.iter().any(|t| t.label == "grads.inv_tau"),
                "{}",
                r.name
            );
        }
    }
}

macro_rules! flexsn_tests {
    ($module:ident, $backend:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn flexsn_cores_pass_golden() {
                assert_flexsn_passes($backend);
            }
        }
    };
}

flexsn_tests!(interp, Backend::Interpreter);
flexsn_tests!(cpu, Backend::Cpu);

/// Spike outputs are compared exactly (the harness detects them from the graph).
#[test]
fn spike_outputs_are_exact_comparisons() {
    let cores = dsl_cores();
    let mut h = Harness::new(Backend::Interpreter, &cores).unwrap();
    let case = &load_cases(golden("flexsn.json")).unwrap()[2];
    let r = h.run_case(case);
    for name in ["outputs.s1", "outputs.s2"] {
        let t = r.tensors.iter().find(|t| t.label == name).unwrap();
        assert!(t.exact, "{name}");
    }
    let t = r
        .tensors
        .iter()
        .find(|t| t.label == "state_seqs.v")
        .unwrap();
    assert!(!t.exact);
}

/// `complicated_lif_core` built from `lif_soft`'s hyperparameters: the wrong interface.
fn complicated_lif_core_with_lif_soft_hyper(a: &CoreArgs) -> Result<StepGraph, BoxError> {
    let b = CoreArgs {
        hyper: vec![("beta".into(), a.hyper("tau")?), ("gamma".into(), 0.5)],
        ..a.clone()
    };
    complicated_lif_core(&b)
}

/// A core whose interface does not match the case is a failure naming the difference.
#[test]
fn mismatched_core_fails_with_reason() {
    let mut cores = Cores::default();
    cores.bind("lif_soft", complicated_lif_core_with_lif_soft_hyper);
    let mut h = Harness::new(Backend::Interpreter, &cores).unwrap();
    let case = &load_cases(golden("flexsn.json")).unwrap()[0];
    let r = h.run_case(case);
    assert!(!r.passed());
    let why = r.failure.unwrap();
    assert!(
        matches!(&why, CaseError::Interface { what: "inputs", declared, .. }
            if declared.iter().any(|d| d == "y")),
        "{why}"
    );
    assert!(why.to_string().contains("declares inputs"), "{why}");
    // A missing hyperparameter is named too.
    let mut cores = Cores::default();
    cores.bind("lif_soft", alif);
    let mut h = Harness::new(Backend::Interpreter, &cores).unwrap();
    let why = h.run_case(case).failure.unwrap();
    assert!(matches!(why, CaseError::MissingHyper(_)), "{why}");
}
