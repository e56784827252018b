//! The built-in scan neurons' golden cases: IF, LIF, PLIF (spiking) and the non-spiking IF and
//! LIF, and what the zoo's cases share with them (settings from `params`, params from
//! `parameters`, default initial states).

use serde_json::Value;

use flexsn_compiler::ir::{StateInit, StepGraph};
use flexsn_compiler::scan::param_len;
use flexsn_neurons::{Builtin, Decode};

use super::case::Case;
use super::compare::Expect;
use super::error::CaseError;
use super::harness::{DecodeCheck, ScanCase};

/// The built-in of the case's `neuron` with the case's `params` as `key=value` settings
/// (skipping keys that do not change the numbers: `store_v_seq`, `step_mode`).
pub fn builtin_from_case(case: &Case) -> Result<Builtin, CaseError> {
    let mut settings: Vec<(String, String)> = vec![];
    if let Some(params) = case.get(&["params"]) {
        let params = params
            .as_object()
            .ok_or_else(|| CaseError::invalid("params", "is not an object"))?;
        for (k, v) in params {
            match (k.as_str(), v) {
                ("store_v_seq" | "step_mode", _) => {}
                ("surrogate", Value::Object(s)) => {
                    let name = s
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| CaseError::Missing("params.surrogate.name".into()))?;
                    settings.push(("surrogate".into(), name.into()));
                    for (sk, sv) in s {
                        if sk != "name" {
                            settings.push((format!("surrogate.{sk}"), scalar(sk, sv)?));
                        }
                    }
                }
                _ => settings.push((k.clone(), scalar(k, v)?)),
            }
        }
    }
    let mut b = Builtin::from_name(&case.neuron)?;
    b.set_all(&settings)?;
    Ok(b)
}

/// A JSON scalar as a setting's value text.
fn scalar(key: &str, v: &Value) -> Result<String, CaseError> {
    Ok(match v {
        Value::Null => "none".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(x) => x
            .as_f64()
            .map(|x| format!("{x}"))
            .ok_or_else(|| CaseError::invalid(key, format!("= {x} is not a number")))?,
        Value::String(s) => s.clone(),
        other => {
            return Err(CaseError::invalid(
                key,
                format!("= {other} is not a scalar"),
            ));
        }
    })
}

/// State `j`'s declared initial value for `n` neurons.
pub(crate) fn default_init(g: &StepGraph, j: usize, n: usize) -> Result<Vec<f32>, CaseError> {
    match g.states()[j].init {
        StateInit::Const(c) => Ok(vec![c; n]),
        StateInit::Runtime => Err(CaseError::Missing(format!(
            "state_init.{} (the state has no declared initial value)",
            g.states()[j].name
        ))),
    }
}

/// IF, LIF, PLIF: `x_seq`, optional `v_init`, PLIF `w`; outputs `spike_seq` (exact), `v_seq`,
/// `v_final`; gradients `x_seq`, `v_init`, `w`.
pub fn spiking_case(case: &Case) -> Result<ScanCase, CaseError> {
    let b = builtin_from_case(case)?;
    let g = b.step_graph()?;
    let (t, n) = case.t_n()?;
    let mut sc = ScanCase::new(g, t, n);
    let seq = sc.seq_dims();
    let vec_n = vec![n];
    sc.inputs[0] = case.required(&["inputs", "x_seq"], t * n)?;
    let v_init = case.tensor(&["v_init"], n)?;
    let has_v_init = v_init.is_some();
    sc.init_states[0] = match v_init {
        Some(v) => v,
        None => default_init(&sc.graph, 0, n)?,
    };
    // The initial-v rule, checked against what the library reports.
    if let Some(rule) = case.tensor(&["meta", "initial_v_when_v_init_null"], 1)? {
        let ours = default_init(&sc.graph, 0, 1)?;
        sc.prechecks.push((
            Expect::new("meta.initial_v_when_v_init_null", vec![], rule, true),
            ours,
        ));
    }
    bind_params(case, &b, &mut sc)?;
    let exp = |key: &str, dims: &Vec<usize>, len, exact| -> Result<Option<Expect>, CaseError> {
        Ok(case
            .tensor(&["outputs", key], len)?
            .map(|v| Expect::new(format!("outputs.{key}"), dims.clone(), v, exact)))
    };
    sc.outputs[0] = exp("spike_seq", &seq, t * n, true)?;
    sc.state_seqs[0] = exp("v_seq", &seq, t * n, false)?;
    sc.final_states[0] = exp("v_final", &vec_n, n, false)?;
    sc.up_outputs[0] = case.tensor(&["grad_outputs", "spike_seq"], t * n)?;
    sc.up_state_seqs[0] = case.tensor(&["grad_outputs", "v_seq"], t * n)?;
    sc.up_final_states[0] = case.tensor(&["grad_outputs", "v_final"], n)?;
    sc.grad_inputs[0] = case
        .tensor(&["grads", "x_seq"], t * n)?
        .map(|v| Expect::new("grads.x_seq", seq.clone(), v, false));
    if has_v_init {
        sc.grad_init_states[0] = case
            .tensor(&["grads", "v_init"], n)?
            .map(|v| Expect::new("grads.v_init", vec_n.clone(), v, false));
    }
    Ok(sc)
}

/// The built-in's params from `parameters.<name>` (checked against the built-in's own initial
/// values) and their expected gradients `grads.<name>`.
pub(crate) fn bind_params(case: &Case, b: &Builtin, sc: &mut ScanCase) -> Result<(), CaseError> {
    for (name, init) in b.initial_params() {
        let k = sc.graph.param_index(&name).ok_or_else(|| {
            CaseError::invalid(format!("parameters.{name}"), "is not a param of the graph")
        })?;
        let len = param_len(sc.graph.params()[k].kind, sc.t, sc.n);
        let given = case.required(&["parameters", &name], len)?;
        sc.prechecks.push((
            Expect::new(format!("parameters.{name}"), vec![], given.clone(), false),
            init,
        ));
        sc.params[k] = given;
        if case.get(&["grads", &name]).is_some() {
            sc.grad_params[k] = Some(Expect::new(
                format!("grads.{name}"),
                vec![],
                case.required(&["grads", &name], len)?,
                false,
            ));
        }
    }
    Ok(())
}

/// NonSpikingIF/LIF: `x_seq`, v from 0; `output` = the decoded voltage sequence; gradient
/// `x_seq` from `grad_outputs.output` through the decode's backward.
pub fn nonspiking_case(case: &Case) -> Result<ScanCase, CaseError> {
    let b = builtin_from_case(case)?;
    let decode = b
        .decode()
        .ok_or_else(|| CaseError::invalid("neuron", "is not a non-spiking neuron"))?;
    let g = b.step_graph()?;
    let (t, n) = case.t_n()?;
    let mut sc = ScanCase::new(g, t, n);
    let seq = sc.seq_dims();
    sc.inputs[0] = case.required(&["inputs", "x_seq"], t * n)?;
    sc.init_states[0] = default_init(&sc.graph, 0, n)?;
    let out_len = decode.output_len(t, n);
    let out_dims = if decode == Decode::Sequence {
        seq.clone()
    } else {
        vec![n]
    };
    sc.decode = Some(DecodeCheck {
        output: 0,
        decode,
        want: case
            .tensor(&["outputs", "output"], out_len)?
            .map(|v| Expect::new("outputs.output", out_dims, v, false)),
        upstream: case.tensor(&["grad_outputs", "output"], out_len)?,
    });
    sc.grad_inputs[0] = case
        .tensor(&["grads", "x_seq"], t * n)?
        .map(|v| Expect::new("grads.x_seq", seq, v, false));
    Ok(sc)
}
