//! The PSN family's golden cases (`PSN`, `MaskedPSN`, `SlidingPSN`).
//!
//! - `SlidingPSN` is a scan: [`sliding_psn_case`] maps a case onto its step graph
//!   ([`SlidingPSNConfig::step_graph`]) and it runs on any backend's [`Jit`](flexsn_runtime::Jit),
//!   like the other built-ins. The case's `weight` `[k]` is the graph's params `weight_0..`.
//! - `PSN` and `MaskedPSN` mix whole sequences with a GEMM, not a scan: [`mixing_psn_case`] runs
//!   them on the time mixing of the harness's [`Jit`] ([`flexsn_runtime::Mixing`]: the plain
//!   reference loops for the interpreter, the blocked GEMM for the CPU, the generated kernels
//!   for CUDA).

use flexsn_compiler::ir::Surrogate;
use flexsn_neurons::node::StepMode;
use flexsn_neurons::psn::{
    MaskedPSNConfig, PSNConfig, SLIDING_BIAS, SlidingPSNConfig, sliding_weight_name,
};
use flexsn_runtime::Jit;
use serde_json::Value;

use super::case::Case;
use super::compare::{CompareSink, Expect};
use super::error::CaseError;
use super::harness::ScanCase;

/// The case's surrogate (`params.surrogate`), ATan when absent (SpikingJelly's default).
fn surrogate(case: &Case) -> Result<Surrogate, CaseError> {
    let Some(s) = case.get(&["params", "surrogate"]) else {
        return Ok(flexsn_neurons::psn::DEFAULT_SURROGATE);
    };
    let s = s
        .as_object()
        .ok_or_else(|| CaseError::invalid("params.surrogate", "is not an object"))?;
    let name = s
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| CaseError::Missing("params.surrogate.name".into()))?;
    let mut params = vec![];
    for (k, v) in s {
        match k.as_str() {
            "name" => {}
            "spiking" => {
                if v.as_bool() != Some(true) {
                    return Err(CaseError::invalid(
                        "params.surrogate.spiking",
                        "must be true: the PSN family is implemented with spiking surrogates only",
                    ));
                }
            }
            _ => params.push((
                k.as_str(),
                v.as_f64().ok_or_else(|| {
                    CaseError::invalid(
                        format!("params.surrogate.{k}"),
                        format!("= {v} is not a number"),
                    )
                })?,
            )),
        }
    }
    Ok(Surrogate::from_name_and_params(name, &params)?)
}

/// SlidingPSN: `x_seq`, `weight` `[k]`, `bias`; output `spike_seq` (exact); gradients `x_seq`,
/// `weight` (one param per tap) and `bias`. An exp-init case also checks the initialisation.
pub fn sliding_psn_case(case: &Case) -> Result<ScanCase, CaseError> {
    let (t, n) = case.t_n()?;
    let k = case.usize_param("k")?;
    let exp_init = case
        .get(&["params", "exp_init"])
        .map(|v| {
            v.as_bool()
                .ok_or_else(|| CaseError::invalid("params.exp_init", "is not a boolean"))
        })
        .transpose()?
        .unwrap_or(true);
    let config = SlidingPSNConfig::new(k)
        .exp_init(exp_init)
        .surrogate(surrogate(case)?);
    let g = config.step_graph()?;
    let mut sc = ScanCase::new(g, t, n);
    let seq = sc.seq_dims();
    sc.inputs[0] = case.required(&["inputs", "x_seq"], t * n)?;
    for s in sc.init_states.iter_mut() {
        *s = vec![0.0; n];
    }
    let weight = case.required(&["parameters", "weight"], k)?;
    let bias = case.required(&["parameters", "bias"], 1)?;
    if exp_init {
        sc.prechecks.push((
            Expect::new("parameters.weight", vec![k], weight.clone(), true),
            config.init_params().0,
        ));
    }
    let grad_w = case.tensor(&["grads", "weight"], k)?;
    for (i, &w) in weight.iter().enumerate() {
        let p = sc
            .graph
            .param_index(&sliding_weight_name(i))
            .ok_or_else(|| CaseError::invalid("parameters.weight", "has no param in the graph"))?;
        sc.params[p] = vec![w];
        sc.grad_params[p] = grad_w
            .as_ref()
            .map(|g| Expect::new(format!("grads.weight[{i}]"), vec![1], vec![g[i]], false));
    }
    let pb = sc
        .graph
        .param_index(SLIDING_BIAS)
        .ok_or_else(|| CaseError::invalid("parameters.bias", "has no param in the graph"))?;
    sc.params[pb] = bias;
    sc.grad_params[pb] = case
        .tensor(&["grads", "bias"], 1)?
        .map(|v| Expect::new("grads.bias", vec![1], v, false));
    sc.outputs[0] = case
        .tensor(&["outputs", "spike_seq"], t * n)?
        .map(|v| Expect::new("outputs.spike_seq", seq.clone(), v, true));
    sc.up_outputs[0] = case.tensor(&["grad_outputs", "spike_seq"], t * n)?;
    sc.grad_inputs[0] = case
        .tensor(&["grads", "x_seq"], t * n)?
        .map(|v| Expect::new("grads.x_seq", seq, v, false));
    Ok(sc)
}

/// PSN and MaskedPSN: `x_seq`, `weight` `[T, T]`, `bias` `[T]` (and MaskedPSN's `k`,
/// `lambda_init`, with `buffers.mask0` and `meta.masked_weight` checked exactly); output
/// `spike_seq` (exact); gradients `x_seq`, `weight`, `bias`; the mixing runs on `mix`.
pub fn mixing_psn_case(
    case: &Case,
    mix: &Jit,
    checker: &mut impl CompareSink,
) -> Result<(), CaseError> {
    let (t, n) = case.t_n()?;
    let seq = vec![t, n];
    let x = case.required(&["inputs", "x_seq"], t * n)?;
    let weight = case.required(&["parameters", "weight"], t * t)?;
    let bias = case.required(&["parameters", "bias"], t)?;
    let sg = surrogate(case)?;
    let expect = |path: [&str; 2], dims: Vec<usize>, len, exact| -> Result<_, CaseError> {
        Ok(case
            .tensor(&path, len)?
            .map(|v| Expect::new(path.join("."), dims, v, exact)))
    };
    let (spikes, gx, gw, gb) = match case.neuron.as_str() {
        "PSN" => {
            let t_param = case.usize_param("T")?;
            if t_param != t {
                return Err(CaseError::invalid(
                    "params.T",
                    format!("= {t_param} but the input has T = {t}"),
                ));
            }
            let mut m = PSNConfig::new(t).surrogate(sg).build_with_jit(mix)?;
            m.set_weight(&weight)?;
            m.set_bias(&bias)?;
            let s = m.forward(&x, n)?;
            let gs = case.tensor(&["grad_outputs", "spike_seq"], t * n)?;
            let gx = gs.map(|gs| m.backward(&gs)).transpose()?;
            (s, gx, m.weight_grad().to_vec(), m.bias_grad().to_vec())
        }
        "MaskedPSN" => {
            let k = case.usize_param("k")?;
            let lambda = case
                .get(&["params", "lambda_init"])
                .and_then(Value::as_f64)
                .unwrap_or(0.0) as f32;
            let mut m = MaskedPSNConfig::new(k, t)
                .lambda_init(lambda)
                .surrogate(sg)
                .step_mode(StepMode::Multi)
                .build_with_jit(mix)?;
            m.set_weight(&weight)?;
            m.set_bias(&bias)?;
            if let Some(e) = expect(["buffers", "mask0"], vec![t, t], t * t, true)? {
                checker.compare(&e, &m.mask0())?;
            }
            if let Some(e) = expect(["meta", "masked_weight"], vec![t, t], t * t, true)? {
                checker.compare(&e, &m.masked_weight())?;
            }
            let s = m.forward(&x, n)?;
            let gs = case.tensor(&["grad_outputs", "spike_seq"], t * n)?;
            let gx = gs.map(|gs| m.backward(&gs)).transpose()?;
            (s, gx, m.weight_grad().to_vec(), m.bias_grad().to_vec())
        }
        _ => return Err(CaseError::invalid("neuron", "is not a time-mixing PSN")),
    };
    if let Some(e) = expect(["outputs", "spike_seq"], seq.clone(), t * n, true)? {
        checker.compare(&e, &spikes)?;
    }
    if let Some(gx) = gx {
        if let Some(e) = expect(["grads", "x_seq"], seq, t * n, false)? {
            checker.compare(&e, &gx)?;
        }
        if let Some(e) = expect(["grads", "weight"], vec![t, t], t * t, false)? {
            checker.compare(&e, &gw)?;
        }
        if let Some(e) = expect(["grads", "bias"], vec![t], t, false)? {
            checker.compare(&e, &gb)?;
        }
    }
    Ok(())
}
