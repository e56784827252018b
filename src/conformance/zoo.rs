//! The neuron zoo's golden cases (`zoo.json`: QIF, EIF, Izhikevich, KLIF, CUBA-LIF, CLIF,
//! ILIF, half-threshold IF, ternary IF/LIF).
//!
//! Each case maps onto the built-in's step graph with every memory matched by name: its
//! initial value from `state_init.<memory>` (the built-in's own initial value when
//! `state_init` is null), `outputs.final_states.<memory>`, the upstream
//! `grad_outputs.final_states.<memory>` and, when `state_init` is given, the gradient
//! `grads.<memory>_init`. `outputs.v_seq` is the `v` state's sequence; KLIF's `k` comes from
//! `parameters.k` with gradient `grads.k`.

use serde_json::Value;

use super::builtin::{bind_params, builtin_from_case, default_init};
use super::case::Case;
use super::compare::Expect;
use super::error::CaseError;
use super::harness::ScanCase;

/// The SpikingJelly classes this family runs.
pub const CLASSES: &[&str] = &[
    "QIFNode",
    "EIFNode",
    "IzhikevichNode",
    "KLIFNode",
    "CUBALIFNode",
    "ComplementaryLIFNode",
    "ILIFNode",
    "HalfThresholdIFNode",
    "TernaryIFNode",
    "TernaryLIFNode",
];

/// Maps a zoo case onto a scan of its built-in's step graph.
pub fn zoo_case(case: &Case) -> Result<ScanCase, CaseError> {
    let b = builtin_from_case(case)?;
    let g = b.step_graph()?;
    let (t, n) = case.t_n()?;
    let mut sc = ScanCase::new(g, t, n);
    let names: Vec<String> = sc.graph.states().iter().map(|s| s.name.clone()).collect();
    check_memories(case, &names)?;
    let seq = vec![t, n];
    let vec_n = vec![n];
    sc.inputs[0] = case.required(&["inputs", "x_seq"], t * n)?;
    let state_init = case.get(&["state_init"]).is_some();
    for (j, name) in names.iter().enumerate() {
        let name = name.as_str();
        sc.init_states[j] = match case.tensor(&["state_init", name], n)? {
            Some(v) => v,
            None if state_init => return Err(CaseError::Missing(format!("state_init.{name}"))),
            None => default_init(&sc.graph, j, n)?,
        };
        sc.final_states[j] = case
            .tensor(&["outputs", "final_states", name], n)?
            .map(|v| {
                Expect::new(
                    format!("outputs.final_states.{name}"),
                    vec_n.clone(),
                    v,
                    false,
                )
            });
        sc.up_final_states[j] = case.tensor(&["grad_outputs", "final_states", name], n)?;
        if state_init {
            let key = format!("{name}_init");
            sc.grad_init_states[j] = case
                .tensor(&["grads", &key], n)?
                .map(|v| Expect::new(format!("grads.{key}"), vec_n.clone(), v, false));
        }
    }
    bind_params(case, &b, &mut sc)?;
    let v = sc
        .graph
        .state_index(flexsn_neurons::V_STATE)
        .ok_or_else(|| CaseError::invalid("outputs.v_seq", "names no state `v` of the graph"))?;
    sc.state_seqs[v] = case
        .tensor(&["outputs", "v_seq"], t * n)?
        .map(|x| Expect::new("outputs.v_seq", seq.clone(), x, false));
    sc.up_state_seqs[v] = case.tensor(&["grad_outputs", "v_seq"], t * n)?;
    sc.outputs[0] = case
        .tensor(&["outputs", "spike_seq"], t * n)?
        .map(|x| Expect::new("outputs.spike_seq", seq.clone(), x, true));
    sc.up_outputs[0] = case.tensor(&["grad_outputs", "spike_seq"], t * n)?;
    sc.grad_inputs[0] = case
        .tensor(&["grads", "x_seq"], t * n)?
        .map(|x| Expect::new("grads.x_seq", seq, x, false));
    Ok(sc)
}

/// `meta.memories`, when the case lists them, must be the graph's states.
fn check_memories(case: &Case, states: &[String]) -> Result<(), CaseError> {
    let Some(Value::Array(listed)) = case.get(&["meta", "memories"]) else {
        return Ok(());
    };
    let mut listed: Vec<&str> = listed.iter().filter_map(Value::as_str).collect();
    let mut ours: Vec<&str> = states.iter().map(String::as_str).collect();
    listed.sort_unstable();
    ours.sort_unstable();
    if listed == ours {
        Ok(())
    } else {
        Err(CaseError::invalid(
            "meta.memories",
            format!("{listed:?} are not the graph's states {ours:?}"),
        ))
    }
}
