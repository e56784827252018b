//! The PSN family against SpikingJelly's golden data (`tests/golden/{psn,masked_psn,
//! sliding_psn}.json`), forward and backward, on every backend the family runs on, in
//! multi-step mode and (where SpikingJelly allows it) one step at a time.
//!
//! Spikes must be exactly equal; every other value within rtol 1e-5, atol 1e-6 (f32).

use flexsn::compiler::ir::Surrogate;
use flexsn::neurons::node::{NodeBackend, StepMode};
use flexsn::neurons::psn::{MaskedPSNConfig, PSNConfig, SlidingPSN, SlidingPSNConfig};
use flexsn::runtime::{Backend, Jit};
use serde_json::Value;

const RTOL: f32 = 1e-5;
const ATOL: f32 = 1e-6;

fn load(file: &str) -> Vec<Value> {
    let path = format!("{}/tests/golden/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    match serde_json::from_str(&text).expect("golden JSON") {
        Value::Array(v) => v,
        _ => panic!("{path}: expected a list of cases"),
    }
}

fn floats(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_f64().expect("number") as f32)
            .collect(),
        Value::Number(x) => vec![x.as_f64().unwrap() as f32],
        _ => panic!("expected numbers, got {v}"),
    }
}

fn surrogate(case: &Value) -> Surrogate {
    let s = &case["params"]["surrogate"];
    let name = s["name"].as_str().unwrap();
    let params: Vec<(&str, f64)> = s
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "name" && *k != "spiking")
        .map(|(k, v)| (k.as_str(), v.as_f64().unwrap()))
        .collect();
    Surrogate::from_name_and_params(name, &params).unwrap()
}

/// `(T, N)` of a case: `x_seq` is `[T, *]`, flattened to `[T, N]`.
fn shape(case: &Value) -> (usize, usize) {
    let s: Vec<usize> = case["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    (s[0], s[1..].iter().product())
}

/// Worst `|a - b| - (atol + rtol |b|)` violation, as a message.
fn check_close(name: &str, what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: {what}: length");
    let mut worst: Option<(usize, f32)> = None;
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let excess = (a - b).abs() - (ATOL + RTOL * b.abs());
        if excess > 0.0 && worst.is_none_or(|(_, w)| excess > w) {
            worst = Some((i, excess));
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "{name}: {what}[{i}] = {} but SpikingJelly has {}",
            got[i], want[i]
        );
    }
}

fn check_exact(name: &str, what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: {what}: length");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "{name}: {what}[{i}] = {a} but SpikingJelly has {b}"
        );
    }
}

/// Where PSN and MaskedPSN run here: the reference loops, the CPU GEMM on one and two threads,
/// the generated CUDA kernels run as host C++, and the GPU where there is one. A missing C++
/// compiler fails under `FLEXSN_REQUIRE_CXX=1` or `CI`, a missing GPU under
/// `FLEXSN_REQUIRE_GPU=1`; otherwise they are skipped with a message.
fn mix_backends() -> Vec<Jit> {
    let cpu = |threads| {
        Jit::cpu(flexsn::runtime::cpu::CpuOptions {
            threads,
            ..Default::default()
        })
        .unwrap()
    };
    let mut v = vec![Jit::new(Backend::Interpreter).unwrap(), cpu(1), cpu(2)];
    use flexsn::runtime::cuda::probe::{Tool, present_or_skip};
    if present_or_skip(Tool::Cxx, flexsn::runtime::cuda::emulated::find_cxx()).is_some() {
        v.push(Jit::new(Backend::CudaEmulated).unwrap());
    }
    if present_or_skip(Tool::Gpu, flexsn::runtime::cuda::shared_device()).is_some() {
        v.push(Jit::new(Backend::Cuda).unwrap());
    }
    v
}

#[test]
fn psn_golden() {
    let cases = load("psn.json");
    assert_eq!(cases.len(), 4);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let (t, n) = shape(case);
        for backend in mix_backends() {
            let mut psn = PSNConfig::new(t)
                .surrogate(surrogate(case))
                .build_with_jit(&backend)
                .unwrap();
            psn.set_weight(&floats(&case["parameters"]["weight"]))
                .unwrap();
            psn.set_bias(&floats(&case["parameters"]["bias"])).unwrap();
            let s = psn.forward(&floats(&case["inputs"]["x_seq"]), n).unwrap();
            check_exact(
                name,
                "spike_seq",
                &s,
                &floats(&case["outputs"]["spike_seq"]),
            );
            let gx = psn
                .backward(&floats(&case["grad_outputs"]["spike_seq"]))
                .unwrap();
            check_close(name, "grad x_seq", &gx, &floats(&case["grads"]["x_seq"]));
            check_close(
                name,
                "grad weight",
                psn.weight_grad(),
                &floats(&case["grads"]["weight"]),
            );
            check_close(
                name,
                "grad bias",
                psn.bias_grad(),
                &floats(&case["grads"]["bias"]),
            );
        }
    }
}

#[test]
fn masked_psn_golden() {
    let cases = load("masked_psn.json");
    assert_eq!(cases.len(), 6);
    let backends = mix_backends();
    let mut single_step_cases = 0;
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let (t, n) = shape(case);
        let k = case["params"]["k"].as_u64().unwrap() as usize;
        let lambda = case["params"]["lambda_init"].as_f64().unwrap() as f32;
        let x = floats(&case["inputs"]["x_seq"]);
        let gs = floats(&case["grad_outputs"]["spike_seq"]);
        let want_s = floats(&case["outputs"]["spike_seq"]);
        for backend in &backends {
            for mode in [StepMode::Multi, StepMode::Single] {
                if mode == StepMode::Single && lambda < 1.0 {
                    continue;
                }
                let mut m = MaskedPSNConfig::new(k, t)
                    .lambda_init(lambda)
                    .surrogate(surrogate(case))
                    .step_mode(mode)
                    .build_with_jit(backend)
                    .unwrap();
                m.set_weight(&floats(&case["parameters"]["weight"]))
                    .unwrap();
                m.set_bias(&floats(&case["parameters"]["bias"])).unwrap();
                check_exact(
                    name,
                    "masked_weight",
                    &m.masked_weight(),
                    &floats(&case["meta"]["masked_weight"]),
                );
                check_exact(
                    name,
                    "mask0",
                    &m.mask0(),
                    &floats(&case["buffers"]["mask0"]),
                );
                let (s, gx) = match mode {
                    StepMode::Multi => {
                        let s = m.forward(&x, n).unwrap();
                        (s, m.backward(&gs).unwrap())
                    }
                    StepMode::Single => {
                        single_step_cases += 1;
                        let mut s = vec![];
                        for step in 0..t {
                            s.extend(m.forward(&x[step * n..(step + 1) * n], n).unwrap());
                        }
                        assert_eq!(m.time_step(), t);
                        (s, m.backward(&gs).unwrap())
                    }
                };
                let what = format!("{mode:?} on {backend:?}");
                check_exact(name, &format!("spike_seq ({what})"), &s, &want_s);
                check_close(
                    name,
                    &format!("grad x_seq ({what})"),
                    &gx,
                    &floats(&case["grads"]["x_seq"]),
                );
                check_close(
                    name,
                    &format!("grad weight ({what})"),
                    m.weight_grad(),
                    &floats(&case["grads"]["weight"]),
                );
                check_close(
                    name,
                    &format!("grad bias ({what})"),
                    m.bias_grad(),
                    &floats(&case["grads"]["bias"]),
                );
            }
        }
    }
    assert_eq!(single_step_cases, 2 * backends.len());
}

/// Builds a SlidingPSN from its config on one backend.
type SlidingBuilder = Box<dyn Fn(SlidingPSNConfig) -> SlidingPSN>;

/// The scan backends SlidingPSN runs on here: the interpreter, the CPU, and the CUDA source run
/// as host C++ (one shared `Jit`, so each kernel is compiled once).
fn node_backends() -> Vec<(String, SlidingBuilder)> {
    let mut v: Vec<(String, SlidingBuilder)> = vec![
        (
            "interpreter".into(),
            Box::new(|c: SlidingPSNConfig| c.build(NodeBackend::Interpreter).unwrap()),
        ),
        (
            "cpu".into(),
            Box::new(|c: SlidingPSNConfig| c.build(NodeBackend::Cpu).unwrap()),
        ),
    ];
    match Jit::new(Backend::CudaEmulated) {
        Ok(jit) => v.push((
            "cuda-emulated".into(),
            Box::new(move |c: SlidingPSNConfig| c.build_with_jit(&jit).unwrap()),
        )),
        // The emulated backend needs a C++ compiler; say so rather than pass silently.
        Err(e) => eprintln!("SlidingPSN golden cases not run on cuda-emulated: {e}"),
    }
    v
}

#[test]
fn sliding_psn_golden() {
    let cases = load("sliding_psn.json");
    assert_eq!(cases.len(), 12);
    let backends = node_backends();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let (t, n) = shape(case);
        let k = case["params"]["k"].as_u64().unwrap() as usize;
        let exp_init = case["params"]["exp_init"].as_bool().unwrap();
        let x = floats(&case["inputs"]["x_seq"]);
        let gs = floats(&case["grad_outputs"]["spike_seq"]);
        let weight = floats(&case["parameters"]["weight"]);
        let bias = floats(&case["parameters"]["bias"])[0];
        let config = SlidingPSNConfig::new(k)
            .exp_init(exp_init)
            .surrogate(surrogate(case));
        if exp_init {
            // The initialisation is deterministic: it must be SpikingJelly's.
            assert_eq!(config.init_params(), (weight.clone(), -1.0), "{name}");
        }
        for (backend, build) in &backends {
            for mode in [StepMode::Multi, StepMode::Single] {
                let mut m = build(config.step_mode(mode));
                m.set_weight(&weight).unwrap();
                m.set_bias(bias).unwrap();
                let s = match mode {
                    StepMode::Multi => m.forward(&x, n).unwrap(),
                    StepMode::Single => (0..t)
                        .flat_map(|step| m.forward(&x[step * n..(step + 1) * n], n).unwrap())
                        .collect(),
                };
                let gx = m.backward(&gs).unwrap();
                let what = format!("{mode:?} on {backend}");
                check_exact(
                    name,
                    &format!("spike_seq ({what})"),
                    &s,
                    &floats(&case["outputs"]["spike_seq"]),
                );
                check_close(
                    name,
                    &format!("grad x_seq ({what})"),
                    &gx,
                    &floats(&case["grads"]["x_seq"]),
                );
                check_close(
                    name,
                    &format!("grad weight ({what})"),
                    &m.weight_grad().unwrap(),
                    &floats(&case["grads"]["weight"]),
                );
                check_close(
                    name,
                    &format!("grad bias ({what})"),
                    &[m.bias_grad().unwrap()],
                    &floats(&case["grads"]["bias"]),
                );
            }
        }
    }
}
