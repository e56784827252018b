//! Every SpikingJelly golden case (`tests/golden/*.json` at the repository root) through the
//! candle layers, forward and backward: each scan case through a [`ScanLayer`] (the layer the
//! built-in nodes wrap) with the case's params as `Var`s, the loss `Σ upstream · output` and
//! `loss.backward()`; `PSN`/`MaskedPSN` through [`psn::PSN`]/[`psn::MaskedPSN`] with their
//! `weight`/`bias` set in the `VarMap`; the zoo's cases through its modules in [`nodes`].
//! Spikes must be equal, everything else within rtol 1e-5, atol 1e-6 (the conformance
//! harness's tolerance).

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Module, VarBuilder, VarMap};
use flexsn::compiler::frontend::{Bindings, load_core_file_with, param_kind_from_shape};
use flexsn::compiler::ir::Surrogate;
use flexsn::conformance::{
    Case, CaseError, Cores, Expect, ScanCase, builtin_from_case, flexsn_case, load_cases,
    nonspiking_case, sliding_psn_case, spiking_case, zoo_case,
};
use flexsn::neurons::Builtin;
use flexsn::neurons::psn::{MaskedPSNConfig, PSNConfig};
use flexsn_candle::{ScanLayer, decode, default_jit, nodes, psn};

const RTOL: f64 = 1e-5;
const ATOL: f64 = 1e-6;

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

fn cases(file: &str) -> Vec<Case> {
    load_cases(repo(&format!("tests/golden/{file}"))).expect("golden file loads")
}

/// The comparisons of one case: labels compared, and the first failure.
#[derive(Default)]
struct Compare {
    compared: Vec<String>,
    failures: Vec<String>,
}

impl Compare {
    fn check(&mut self, e: &Expect, got: &Tensor) {
        let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        self.check_values(e, &got);
    }

    fn check_values(&mut self, e: &Expect, got: &[f32]) {
        self.compared.push(e.label.clone());
        if got.len() != e.values.len() {
            self.failures.push(format!(
                "{}: {} values, expected {}",
                e.label,
                got.len(),
                e.values.len()
            ));
            return;
        }
        for (i, (&g, &w)) in got.iter().zip(&e.values).enumerate() {
            let ok = if e.exact {
                g == w
            } else {
                (f64::from(g) - f64::from(w)).abs() <= ATOL + RTOL * f64::from(w).abs()
            };
            if !ok {
                self.failures
                    .push(format!("{}[{i}]: got {g}, want {w}", e.label));
                return;
            }
        }
    }
}

fn var(v: &[f32]) -> Var {
    Var::from_slice(v, v.len(), &Device::Cpu).unwrap()
}

/// `Σ up · x` (zero when `up` is absent).
fn dot(x: &Tensor, up: Option<&Vec<f32>>) -> Option<Tensor> {
    let up = Tensor::from_slice(up?, x.elem_count(), x.device()).unwrap();
    Some(
        x.flatten_all()
            .unwrap()
            .mul(&up)
            .unwrap()
            .sum_all()
            .unwrap(),
    )
}

/// The gradient of `v` in `grads` (zero when the loss does not depend on it).
fn grad_or_zero(grads: &GradStore, v: &Var) -> Tensor {
    grads
        .get(v.as_tensor())
        .cloned()
        .unwrap_or_else(|| v.as_tensor().zeros_like().unwrap())
}

/// Runs a scan case through a [`ScanLayer`] and compares everything it gives.
fn run_scan_case(sc: &ScanCase) -> Compare {
    let g = &sc.graph;
    let kernel = Arc::new(default_jit().unwrap().compile(g).unwrap());
    // Learnable params as Vars (they get gradients), the others as constants.
    let param_vars: Vec<Option<Var>> = sc
        .params
        .iter()
        .zip(g.params())
        .map(|(v, d)| d.learnable.then(|| var(v)))
        .collect();
    let params: Vec<Tensor> = sc
        .params
        .iter()
        .zip(&param_vars)
        .map(|(v, pv)| match pv {
            Some(pv) => pv.as_tensor().clone(),
            None => Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap(),
        })
        .collect();
    let layer = ScanLayer::from_kernel(kernel, params).unwrap();
    run_layer(sc, &layer, &param_vars)
}

/// Runs `sc` through `layer`, whose learnable params are `param_vars` (graph order; `None` for
/// the constants), and compares everything it gives.
fn run_layer(sc: &ScanCase, layer: &ScanLayer, param_vars: &[Option<Var>]) -> Compare {
    let (t, n) = (sc.t, sc.n);
    let xs: Vec<Var> = sc
        .inputs
        .iter()
        .map(|v| Var::from_slice(v, (t, n), &Device::Cpu).unwrap())
        .collect();
    let s0: Vec<Var> = sc.init_states.iter().map(|v| var(v)).collect();
    let xr: Vec<&Tensor> = xs.iter().map(Var::as_tensor).collect();
    let sr: Vec<&Tensor> = s0.iter().map(Var::as_tensor).collect();
    let out = layer.forward_all(&xr, Some(&sr)).unwrap();

    let mut cmp = Compare::default();
    let expected = [
        (&sc.outputs, &out.outputs),
        (&sc.state_seqs, &out.state_seqs),
        (&sc.final_states, &out.final_states),
    ];
    for (want, got) in expected {
        for (e, x) in want.iter().zip(got) {
            if let Some(e) = e {
                cmp.check(e, x);
            }
        }
    }
    let mut terms: Vec<Tensor> = vec![];
    for (x, up) in out.outputs.iter().zip(&sc.up_outputs) {
        terms.extend(dot(x, up.as_ref()));
    }
    for (x, up) in out.state_seqs.iter().zip(&sc.up_state_seqs) {
        terms.extend(dot(x, up.as_ref()));
    }
    for (x, up) in out.final_states.iter().zip(&sc.up_final_states) {
        terms.extend(dot(x, up.as_ref()));
    }
    if let Some(d) = &sc.decode {
        let decoded = decode(d.decode, &out.outputs[d.output]).unwrap();
        if let Some(want) = &d.want {
            cmp.check(want, &decoded);
        }
        terms.extend(dot(&decoded, d.upstream.as_ref()));
    }
    let wants_grads = sc
        .grad_inputs
        .iter()
        .chain(&sc.grad_init_states)
        .chain(&sc.grad_params)
        .any(Option::is_some);
    if !wants_grads {
        return cmp;
    }
    let loss = terms
        .into_iter()
        .reduce(|a, b| (a + b).unwrap())
        .expect("a case with gradients has upstream gradients");
    let grads = loss.backward().unwrap();
    let grad_of = |v: &Var| grad_or_zero(&grads, v);
    for (e, x) in sc.grad_inputs.iter().zip(&xs) {
        if let Some(e) = e {
            cmp.check(e, &grad_of(x));
        }
    }
    for (e, s) in sc.grad_init_states.iter().zip(&s0) {
        if let Some(e) = e {
            cmp.check(e, &grad_of(s));
        }
    }
    for (e, p) in sc.grad_params.iter().zip(param_vars) {
        if let Some(e) = e {
            match p {
                Some(p) => cmp.check(e, &grad_of(p)),
                None => cmp
                    .failures
                    .push(format!("{}: the param is not learnable", e.label)),
            }
        }
    }
    cmp
}

/// Asserts every case of `file` passes (mapped by `map`), comparing outputs and gradients.
fn assert_scan_file(file: &str, count: usize, map: impl Fn(&Case) -> Result<ScanCase, CaseError>) {
    let cases = cases(file);
    assert_eq!(cases.len(), count, "{file}: case count");
    let mut failed = vec![];
    for case in &cases {
        let sc = map(case).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        record(case, run_scan_case(&sc), &mut failed);
    }
    assert!(failed.is_empty(), "{file}:\n{}", failed.join("\n"));
}

/// Asserts that `cmp` compared outputs and gradients; keeps its failures in `failed`.
fn record(case: &Case, cmp: Compare, failed: &mut Vec<String>) {
    assert!(
        cmp.compared.iter().any(|l| l.starts_with("outputs.")),
        "{}: no output compared",
        case.name
    );
    assert!(
        cmp.compared.iter().any(|l| l.starts_with("grads.")),
        "{}: no gradient compared",
        case.name
    );
    if !cmp.failures.is_empty() {
        failed.push(format!("{}: {}", case.name, cmp.failures.join("; ")));
    }
}

#[test]
fn ifnode() {
    assert_scan_file("ifnode.json", 21, spiking_case);
}

#[test]
fn lifnode() {
    assert_scan_file("lifnode.json", 33, spiking_case);
}

#[test]
fn plif() {
    assert_scan_file("plif.json", 16, spiking_case);
}

#[test]
fn nonspiking() {
    assert_scan_file("nonspiking.json", 15, nonspiking_case);
}

#[test]
fn sliding_psn() {
    assert_scan_file("sliding_psn.json", 12, sliding_psn_case);
}

/// SlidingPSN's cases through [`nodes::SlidingPSN`], which runs only the newest `min(k, T)`
/// taps: its weights and bias set in the `VarMap`, the module's spikes, and the gradients of
/// the input and of every weight (0 for those the window leaves out).
#[test]
fn sliding_psn_module() {
    let cases = cases("sliding_psn.json");
    let mut failed = vec![];
    for case in &cases {
        let sc = sliding_psn_case(case).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let Builtin::SlidingPsn(config) = builtin_from_case(case).unwrap() else {
            panic!("{}: not a SlidingPSN case", case.name)
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let module = nodes::SlidingPSN::new(config, vb).unwrap();
        let vars = varmap.data().lock().unwrap().clone();
        let param_vars: Vec<&Var> = sc.graph.params().iter().map(|d| &vars[&d.name]).collect();
        for (v, value) in param_vars.iter().zip(&sc.params) {
            v.set(&Tensor::from_slice(value, 1, &Device::Cpu).unwrap())
                .unwrap();
        }
        let x = Var::from_slice(&sc.inputs[0], (sc.t, sc.n), &Device::Cpu).unwrap();
        let spikes = module.forward(x.as_tensor()).unwrap();
        let mut cmp = Compare::default();
        if let Some(e) = &sc.outputs[0] {
            cmp.check(e, &spikes);
        }
        let loss = dot(&spikes, sc.up_outputs[0].as_ref()).expect("an upstream gradient");
        let grads = loss.backward().unwrap();
        let grad_of = |v: &Var| grad_or_zero(&grads, v);
        if let Some(e) = &sc.grad_inputs[0] {
            cmp.check(e, &grad_of(&x));
        }
        for (e, v) in sc.grad_params.iter().zip(&param_vars) {
            if let Some(e) = e {
                cmp.check(e, &grad_of(v));
            }
        }
        record(case, cmp, &mut failed);
    }
    assert!(
        failed.is_empty(),
        "sliding_psn.json:\n{}",
        failed.join("\n")
    );
}

/// The candle module of a zoo neuron's config, and its scan layer.
fn zoo_module(b: Builtin, vb: VarBuilder) -> (Box<dyn Module>, ScanLayer) {
    macro_rules! node {
        ($t:ident, $c:expr) => {{
            let m = nodes::$t::new($c, vb).unwrap();
            let layer = m.layer().clone();
            (Box::new(m) as Box<dyn Module>, layer)
        }};
    }
    match b {
        Builtin::Qif(c) => node!(QIFNode, c),
        Builtin::Eif(c) => node!(EIFNode, c),
        Builtin::Izhikevich(c) => node!(IzhikevichNode, c),
        Builtin::Klif(c) => node!(KLIFNode, c),
        Builtin::CubaLif(c) => node!(CUBALIFNode, c),
        Builtin::Clif(c) => node!(ComplementaryLIFNode, c),
        Builtin::Ilif(c) => node!(ILIFNode, c),
        Builtin::HalfThresholdIf(c) => node!(HalfThresholdIFNode, c),
        Builtin::TernaryIf(c) => node!(TernaryIFNode, c),
        Builtin::TernaryLif(c) => node!(TernaryLIFNode, c),
        other => panic!("{} is not a zoo neuron", other.class_name()),
    }
}

/// The ten zoo neurons through their candle modules (`nodes::QIFNode` ...): the module's layer
/// with every memory's initial value as a `Var`, KLIF's `k` the module's own `Var` (set to the
/// case's value); without `state_init`, the module's `forward` too.
#[test]
fn zoo_modules() {
    let cases = cases("zoo.json");
    assert_eq!(cases.len(), 60, "zoo.json: case count");
    let mut failed = vec![];
    for case in &cases {
        let sc = zoo_case(case).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let (module, layer) = zoo_module(builtin_from_case(case).unwrap(), vb);
        let vars = varmap.data().lock().unwrap().clone();
        let param_vars: Vec<Option<Var>> = layer
            .graph()
            .params()
            .iter()
            .zip(&sc.params)
            .map(|(d, v)| {
                d.learnable.then(|| {
                    let var = vars[&d.name].clone();
                    var.set(&Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap())
                        .unwrap();
                    var
                })
            })
            .collect();
        assert_eq!(
            vars.len(),
            param_vars.iter().flatten().count(),
            "{}: one Var per learnable param",
            case.name
        );
        let mut cmp = run_layer(&sc, &layer, &param_vars);
        if case.get(&["state_init"]).is_none()
            && let Some(e) = &sc.outputs[0]
        {
            let x = Tensor::from_slice(&sc.inputs[0], (sc.t, sc.n), &Device::Cpu).unwrap();
            cmp.check(e, &module.forward(&x).unwrap());
        }
        record(case, cmp, &mut failed);
    }
    assert!(failed.is_empty(), "zoo.json:\n{}", failed.join("\n"));
}

/// The FlexSN cores, read by the text frontend from `tests/cores/NAME.rs`.
#[test]
fn flexsn_cores() {
    assert_scan_file("flexsn.json", 10, |case| {
        let core = case
            .neuron
            .strip_prefix("FlexSN:")
            .ok_or_else(|| CaseError::invalid("neuron", "is not a FlexSN case"))?
            .to_string();
        let path = repo(&format!("tests/cores/{core}.rs"));
        let mut cores = Cores::default();
        cores.bind(&core, move |args| {
            let mut b = Bindings {
                hyper: args.hyper.clone(),
                param_kinds: vec![],
            };
            let kind = args
                .param_shapes
                .iter()
                .find(|(n, _)| n == "inv_tau")
                .and_then(|(_, s)| param_kind_from_shape(s, args.t, args.n));
            if let Some(k) = kind {
                b.param_kinds.push(("inv_tau".into(), k));
            }
            load_core_file_with(&path, &b).map_err(|e| e.to_string())
        });
        flexsn_case(case, &core, &cores)
    });
}

// ---------------------------------------------------------------------------------------------
// PSN and MaskedPSN

fn floats(case: &Case, path: &[&str]) -> Vec<f32> {
    let v = case.get(path).unwrap_or_else(|| panic!("{path:?}"));
    match v {
        serde_json::Value::Array(a) => a.iter().map(|x| x.as_f64().unwrap() as f32).collect(),
        x => vec![x.as_f64().unwrap() as f32],
    }
}

fn usize_param(case: &Case, key: &str) -> usize {
    case.get(&["params", key]).unwrap().as_u64().unwrap() as usize
}

fn surrogate(case: &Case) -> Surrogate {
    let s = case.get(&["params", "surrogate"]).unwrap();
    let params: Vec<(&str, f64)> = s
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "name" && *k != "spiking")
        .map(|(k, v)| (k.as_str(), v.as_f64().unwrap()))
        .collect();
    Surrogate::from_name_and_params(s["name"].as_str().unwrap(), &params).unwrap()
}

fn expect(case: &Case, path: &[&str], exact: bool) -> Expect {
    Expect {
        label: path.join("."),
        dims: vec![],
        values: floats(case, path),
        exact,
    }
}

fn assert_mixing_file(file: &str, count: usize) {
    let cases = cases(file);
    assert_eq!(cases.len(), count, "{file}: case count");
    let mut failed = vec![];
    for case in &cases {
        let (t, n) = case.t_n().unwrap();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let layer: Box<dyn Module> = if case.neuron == "PSN" {
            let cfg = PSNConfig::new(t).surrogate(surrogate(case));
            Box::new(psn::PSN::new(cfg, vb).unwrap())
        } else {
            let lambda = floats(case, &["buffers", "_lambda_"])[0];
            let cfg = MaskedPSNConfig::new(usize_param(case, "k"), t)
                .surrogate(surrogate(case))
                .lambda_init(lambda);
            Box::new(psn::MaskedPSN::new(cfg, vb).unwrap())
        };
        let mut vm = varmap.clone();
        vm.set_one(
            "weight",
            Tensor::from_vec(
                floats(case, &["parameters", "weight"]),
                (t, t),
                &Device::Cpu,
            )
            .unwrap(),
        )
        .unwrap();
        vm.set_one(
            "bias",
            Tensor::from_vec(floats(case, &["parameters", "bias"]), t, &Device::Cpu).unwrap(),
        )
        .unwrap();
        let x = Var::from_vec(floats(case, &["inputs", "x_seq"]), (t, n), &Device::Cpu).unwrap();
        let s = layer.forward(x.as_tensor()).unwrap();
        let mut cmp = Compare::default();
        cmp.check(&expect(case, &["outputs", "spike_seq"], true), &s);
        let up = floats(case, &["grad_outputs", "spike_seq"]);
        let loss = dot(&s, Some(&up)).unwrap();
        let grads = loss.backward().unwrap();
        let data = varmap.data().lock().unwrap();
        for (label, v) in [
            ("x_seq", x.as_tensor()),
            ("weight", data["weight"].as_tensor()),
            ("bias", data["bias"].as_tensor()),
        ] {
            cmp.check(
                &expect(case, &["grads", label], false),
                grads.get(v).expect("gradient"),
            );
        }
        if !cmp.failures.is_empty() {
            failed.push(format!("{}: {}", case.name, cmp.failures.join("; ")));
        }
    }
    assert!(failed.is_empty(), "{file}:\n{}", failed.join("\n"));
}

#[test]
fn psn_cases() {
    assert_mixing_file("psn.json", 4);
}

#[test]
fn masked_psn_cases() {
    assert_mixing_file("masked_psn.json", 6);
}
