//! The five FlexSN cores of the golden data, written once as `#[neuron]` fns in
//! `tests/cores/*.rs`: compiled here by the macro (`include!`) and read at run time by the text
//! frontend from the same files. Both must give the same IR, and both pass every golden case
//! (forward and backward) on the interpreter.

use std::path::PathBuf;

use flexsn::compiler::frontend::{
    Bindings, load_core_file, load_core_file_with, param_kind_from_shape, parse_core,
};
use flexsn::compiler::interp::run_scan;
use flexsn::compiler::ir::{ParamKind, StepGraph};
use flexsn::compiler::scan::{ScanArgs, ScanKernel};
use flexsn::compiler::text::print;
use flexsn::conformance::{Case, CaseReport, CoreArgs, Cores, Harness, load_cases};
use flexsn::neuron;
use flexsn::runtime::{Backend, Jit};

include!("cores/lif_soft.rs");
include!("cores/complicated_lif_core.rs");
include!("cores/alif.rs");
include!("cores/exotic_exp_tanh_min_max_clamp_where.rs");
include!("cores/lif_static_inv_tau.rs");

fn path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn core_file(name: &str) -> PathBuf {
    path(&format!("tests/cores/{name}.rs"))
}

fn hyper(h: &[(String, f64)], name: &str) -> Result<f32, String> {
    h.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v as f32)
        .ok_or_else(|| format!("no value for hyperparameter `{name}`"))
}

/// The macro-built graph of core `name` with the case's hyperparameters and dynamic kind.
fn macro_core(
    name: &str,
    h: &[(String, f64)],
    kind: Option<ParamKind>,
) -> Result<StepGraph, String> {
    let g = match name {
        "lif_soft" => lif_soft(hyper(h, "tau")?, hyper(h, "v_th")?).step_graph(),
        "complicated_lif_core" => {
            complicated_lif_core(hyper(h, "beta")?, hyper(h, "gamma")?).step_graph()
        }
        "alif" => alif(
            hyper(h, "tau")?,
            hyper(h, "tau_a")?,
            hyper(h, "b0")?,
            hyper(h, "beta")?,
        )
        .step_graph(),
        "exotic_exp_tanh_min_max_clamp_where" => {
            exotic_exp_tanh_min_max_clamp_where(hyper(h, "v_th")?).step_graph()
        }
        "lif_static_inv_tau" => {
            let mut n = lif_static_inv_tau();
            if let Some(k) = kind {
                n = n.with_param_kind("inv_tau", k).map_err(|e| e.to_string())?;
            }
            n.step_graph()
        }
        other => return Err(format!("unknown core {other}")),
    };
    g.map_err(|e| e.to_string())
}

/// The text-frontend graph of core `name` read from `tests/cores/NAME.rs`.
fn text_core(
    name: &str,
    h: &[(String, f64)],
    kind: Option<ParamKind>,
) -> Result<StepGraph, String> {
    let mut b = Bindings {
        hyper: h.to_vec(),
        param_kinds: vec![],
    };
    if let Some(k) = kind {
        b.param_kinds.push(("inv_tau".into(), k));
    }
    load_core_file_with(core_file(name), &b).map_err(|e| e.to_string())
}

const CORES: [&str; 5] = [
    "lif_soft",
    "complicated_lif_core",
    "alif",
    "exotic_exp_tanh_min_max_clamp_where",
    "lif_static_inv_tau",
];

/// The kind of the `Param<Dynamic>` `inv_tau` from the shape of the case's value.
fn static_kind(args: &CoreArgs) -> Option<ParamKind> {
    let (_, shape) = args.param_shapes.iter().find(|(n, _)| n == "inv_tau")?;
    param_kind_from_shape(shape, args.t, args.n)
}

type Factory = fn(&str, &[(String, f64)], Option<ParamKind>) -> Result<StepGraph, String>;

fn golden_cases_pass(make: Factory, backend: Backend) {
    // One JIT (and kernel cache) for every case.
    let jit = Jit::new(backend).expect("backend available");
    let cases = load_cases(path("tests/golden/flexsn.json")).expect("golden file loads");
    let mut reports: Vec<CaseReport> = vec![];
    for core in CORES {
        let mine: Vec<&Case> = cases
            .iter()
            .filter(|c| c.neuron == format!("FlexSN:{core}"))
            .collect();
        assert_eq!(mine.len(), 2, "{core}: case count");
        for case in mine {
            let mut cores = Cores::default();
            cores.bind(core, move |args| make(core, &args.hyper, static_kind(args)));
            let mut harness = Harness::with_jit(jit.clone(), &cores);
            let r = harness.run_case(case);
            println!("{r}");
            assert!(
                r.tensors.iter().any(|t| t.label.starts_with("grads.")),
                "{}: no gradient compared",
                r.name
            );
            reports.push(r);
        }
    }
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.to_string())
        .collect();
    assert!(failed.is_empty(), "failed:\n{}", failed.join("\n"));
    assert_eq!(reports.len(), 10);
}

/// Golden tests of the macro cores and the text cores on one backend. Other backends add one
/// line each: `golden_core_tests!(cpu, Backend::Cpu);`.
macro_rules! golden_core_tests {
    ($module:ident, $backend:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn macro_cores_pass_the_golden_cases() {
                golden_cases_pass(macro_core, $backend);
            }

            #[test]
            fn text_cores_pass_the_golden_cases() {
                golden_cases_pass(text_core, $backend);
            }
        }
    };
}

golden_core_tests!(interp, Backend::Interpreter);
golden_core_tests!(cpu, Backend::Cpu);
golden_core_tests!(cuda_emulated, Backend::CudaEmulated);

#[test]
fn macro_and_text_frontends_give_the_same_ir() {
    let h = |pairs: &[(&str, f64)]| -> Vec<(String, f64)> {
        pairs.iter().map(|&(n, v)| (n.to_string(), v)).collect()
    };
    let settings = [
        ("lif_soft", h(&[("tau", 2.0), ("v_th", 1.0)])),
        ("complicated_lif_core", h(&[("beta", 0.5), ("gamma", 0.9)])),
        (
            "alif",
            h(&[("tau", 3.0), ("tau_a", 10.0), ("b0", 0.8), ("beta", 0.3)]),
        ),
        ("exotic_exp_tanh_min_max_clamp_where", h(&[("v_th", 0.7)])),
        ("lif_static_inv_tau", vec![]),
    ];
    for (core, hy) in &settings {
        for kind in [None, Some(ParamKind::PerNeuron)] {
            if kind.is_some() && *core != "lif_static_inv_tau" {
                continue;
            }
            let m = macro_core(core, hy, kind).unwrap();
            let t = text_core(core, hy, kind).unwrap();
            assert_eq!(print(&m), print(&t), "{core}");
        }
    }
    // The macro's `SOURCE` (the fn as tokens) reads back to the same graph too.
    let n = alif(2.0, 5.0, 1.0, 0.3);
    let from_source = parse_core(AlifNeuron::SOURCE, &n.hyperparameters()).unwrap();
    assert_eq!(print(&from_source), print(&n.step_graph().unwrap()));
    // Hyperparameters fold: no `exp` node remains from `(-1.0 / tau_a).exp()`.
    assert!(print(&from_source).lines().all(|l| !l.contains("= exp")));
}

#[test]
fn generated_types_describe_the_neuron() {
    let n = alif(2.0, 5.0, 1.0, 0.3);
    assert_eq!(n.tau_a, 5.0);
    assert_eq!(AlifNeuron::NAME, "alif");
    assert_eq!(AlifNeuron::HYPERPARAMETERS, &["tau", "tau_a", "b0", "beta"]);
    assert_eq!(LifStaticInvTauNeuron::DYNAMIC_PARAMS, &["inv_tau"]);
    let g = n.step_graph().unwrap();
    assert!(g.description().starts_with("FlexSN golden core `alif`"));
    assert!(
        lif_static_inv_tau()
            .with_param_kind("tau", ParamKind::Shared)
            .is_err()
    );
    assert!(n.with_param_kind("inv_tau", ParamKind::Shared).is_err());
    // `Jit::compile` takes anything that implements `Neuron`.
    fn graph_of(n: &dyn flexsn::runtime::Neuron) -> StepGraph {
        n.step_graph().unwrap()
    }
    assert_eq!(print(&graph_of(&n)), print(&g));
    let g = lif_static_inv_tau()
        .with_param_kind("inv_tau", ParamKind::PerNeuron)
        .unwrap()
        .step_graph()
        .unwrap();
    assert_eq!(g.params()[0].kind, ParamKind::PerNeuron);
    assert!(g.params()[0].learnable);
}

/// `reference_step` agrees bit for bit with the interpreter running the macro's graph.
#[test]
fn reference_steps_match_the_interpreter() {
    let (t, n) = (12, 9);
    let mut seed = 0x1234_5678_u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 * 6.0 - 2.0
    };
    let x: Vec<f32> = (0..t * n).map(|_| rand()).collect();
    let y: Vec<f32> = (0..t * n).map(|_| rand()).collect();
    let p: Vec<f32> = (0..n).map(|_| rand().abs() / 4.0).collect();
    let s0: Vec<f32> = (0..n).map(|_| rand()).collect();
    let s1: Vec<f32> = (0..n).map(|_| rand()).collect();

    let scan = |g: StepGraph, inputs: Vec<&[f32]>, states: Vec<&[f32]>, params: Vec<&[f32]>| {
        let k = ScanKernel::forward(g, true);
        run_scan(
            &k,
            &ScanArgs {
                t,
                n,
                inputs,
                init_states: states,
                params,
            },
        )
        .unwrap()
    };
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();

    // alif: one output, two states.
    let a = alif(3.0, 10.0, 0.8, 0.5);
    let r = scan(a.step_graph().unwrap(), vec![&x], vec![&s0, &s1], vec![]);
    let mut out = vec![0.0; t * n];
    for j in 0..n {
        let (mut v, mut w) = (s0[j], s1[j]);
        for i in 0..t {
            let (s, v2, w2) = a.reference_step(x[i * n + j], v, w);
            (v, w) = (v2, w2);
            out[i * n + j] = s;
        }
        assert_eq!(v.to_bits(), r.final_states[0][j].to_bits());
        assert_eq!(w.to_bits(), r.final_states[1][j].to_bits());
    }
    assert_eq!(bits(&out), bits(&r.outputs[0]));

    // complicated_lif_core: two inputs, two outputs.
    let c = complicated_lif_core(0.5, 0.9);
    let r = scan(
        c.step_graph().unwrap(),
        vec![&x, &y],
        vec![&s0, &s1],
        vec![],
    );
    for j in 0..n {
        let (mut v, mut rho) = (s0[j], s1[j]);
        for i in 0..t {
            let (o1, o2, v2, r2) = c.reference_step(x[i * n + j], y[i * n + j], v, rho);
            assert_eq!(o1.to_bits(), r.outputs[0][i * n + j].to_bits());
            assert_eq!(o2.to_bits(), r.outputs[1][i * n + j].to_bits());
            (v, rho) = (v2, r2);
        }
        assert_eq!(v.to_bits(), r.final_states[0][j].to_bits());
    }

    // exotic (select, clamps) and the per-neuron static input.
    let e = exotic_exp_tanh_min_max_clamp_where(0.8);
    let r = scan(e.step_graph().unwrap(), vec![&x], vec![&s0, &s1], vec![]);
    for j in 0..n {
        let (mut v, mut w) = (s0[j], s1[j]);
        for i in 0..t {
            let (s, v2, w2) = e.reference_step(x[i * n + j], v, w);
            assert_eq!(s.to_bits(), r.outputs[0][i * n + j].to_bits());
            (v, w) = (v2, w2);
        }
        assert_eq!(
            bits(&[v, w]),
            bits(&[r.final_states[0][j], r.final_states[1][j]])
        );
    }
    let l = lif_static_inv_tau()
        .with_param_kind("inv_tau", ParamKind::PerNeuron)
        .unwrap();
    let r = scan(l.step_graph().unwrap(), vec![&x], vec![&s0], vec![&p]);
    for j in 0..n {
        let mut v = s0[j];
        for i in 0..t {
            let (s, v2) = l.reference_step(x[i * n + j], v, p[j]);
            assert_eq!(s.to_bits(), r.outputs[0][i * n + j].to_bits());
            v = v2;
        }
        assert_eq!(v.to_bits(), r.final_states[0][j].to_bits());
    }
}

#[test]
fn core_files_report_errors_with_their_path() {
    let e = load_core_file(core_file("alif"), &[("tau", 2.0)]).unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.contains("hyperparameter `tau_a` has no value"),
        "{shown}"
    );
    assert!(shown.contains("tests/cores/alif.rs:4:"), "{shown}");
    let e = load_core_file(core_file("no_such_core"), &[]).unwrap_err();
    assert!(e.to_string().contains("cannot read"), "{e}");
}

/// ILIF's charge and multi-level spike count as a `#[neuron]` core.
#[neuron]
fn count_core(x: Input, v: State, tau: f32) -> (Output, State) {
    let h = (1.0 - 1.0 / tau) * v + x;
    let s = spike(h, Surrogate::MultiLevelSpikeCount { max_spike_count: 4 });
    (s, h - s)
}

/// The macro knows `MultiLevelSpikeCount`: its graph emits counts, and `reference_step` agrees
/// with the interpreter bit for bit.
#[test]
fn multi_level_spike_counts_through_the_macro() {
    let c = count_core(2.0);
    let x: Vec<f32> = (0..40)
        .map(|i| (i as f32 * 0.61).sin() * 4.0 + 1.0)
        .collect();
    let k = ScanKernel::forward(c.step_graph().unwrap(), true);
    let r = run_scan(
        &k,
        &ScanArgs {
            t: 40,
            n: 1,
            inputs: vec![&x],
            init_states: vec![&[0.0]],
            params: vec![],
        },
    )
    .unwrap();
    let mut v = 0.0f32;
    let mut levels = std::collections::BTreeSet::new();
    for (i, &xi) in x.iter().enumerate() {
        let (s, v2) = c.reference_step(xi, v);
        assert_eq!(s.to_bits(), r.outputs[0][i].to_bits(), "step {i}");
        assert!(s.fract() == 0.0 && (0.0..=4.0).contains(&s), "{s}");
        levels.insert(s as u32);
        v = v2;
    }
    assert_eq!(v.to_bits(), r.final_states[0][0].to_bits());
    assert!(levels.len() >= 3, "{levels:?}");
}
