//! `FlexSN:<core>` golden cases: a core bound in [`Cores`], built from the case's
//! `core_kwargs`, with its inputs, states, static inputs (params) and outputs matched by name.

use serde_json::Value;

use flexsn_compiler::ir::Op;
use flexsn_compiler::scan::param_len;

use super::case::Case;
use super::compare::Expect;
use super::cores::{CoreArgs, Cores};
use super::error::CaseError;
use super::harness::ScanCase;

/// The case's `meta.<key>` names must be the core's `declared` names (in any order).
fn same_names(
    case: &Case,
    core: &str,
    what: &'static str,
    key: &str,
    mut declared: Vec<String>,
) -> Result<(), CaseError> {
    let mut listed = case.names(&["meta", key])?;
    listed.sort_unstable();
    declared.sort_unstable();
    if listed == declared {
        Ok(())
    } else {
        Err(CaseError::Interface {
            core: core.to_string(),
            what,
            declared,
            listed,
        })
    }
}

/// The factory's arguments: `params.core_kwargs` and the shapes of the static inputs.
fn core_args(case: &Case) -> Result<CoreArgs, CaseError> {
    let mut hyper: Vec<(String, f64)> = vec![];
    if let Some(kw) = case.get(&["params", "core_kwargs"]) {
        let kw = kw
            .as_object()
            .ok_or_else(|| CaseError::invalid("params.core_kwargs", "is not an object"))?;
        for (k, v) in kw {
            let x = v.as_f64().ok_or_else(|| {
                CaseError::invalid(
                    format!("params.core_kwargs.{k}"),
                    format!("= {v} is not a number"),
                )
            })?;
            hyper.push((k.clone(), x));
        }
    }
    let (t, n) = case.t_n()?;
    let mut param_shapes = vec![];
    for name in case.names(&["meta", "static_input_names"])? {
        let shape = case
            .get(&["tensor_shapes", &name])
            .and_then(Value::as_array)
            .and_then(|dims| {
                dims.iter()
                    .map(|d| d.as_u64().map(|d| d as usize))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| CaseError::Missing(format!("tensor_shapes.{name} (a shape)")))?;
        param_shapes.push((name, shape));
    }
    Ok(CoreArgs {
        hyper,
        param_shapes,
        t,
        n,
    })
}

/// `FlexSN:<core>`: the core bound in `cores`, built from `params.core_kwargs`; inputs, states,
/// static inputs (params) and outputs matched by name with `meta.*_names`.
pub fn flexsn_case(case: &Case, core: &str, cores: &Cores) -> Result<ScanCase, CaseError> {
    let factory = cores
        .get(core)
        .ok_or_else(|| CaseError::UnboundCore(core.to_string()))?;
    let args = core_args(case)?;
    let (t, n) = (args.t, args.n);
    let g = factory(&args).map_err(|source| match source.downcast::<CaseError>() {
        // A missing hyperparameter is the case's fault, not the core's.
        Ok(e) if matches!(*e, CaseError::MissingHyper(_)) => *e,
        Ok(e) => CaseError::Core {
            core: core.to_string(),
            source: e,
        },
        Err(source) => CaseError::Core {
            core: core.to_string(),
            source,
        },
    })?;
    let mut sc = ScanCase::new(g, t, n);
    let g = sc.graph.clone();
    let seq = sc.seq_dims();
    let vec_n = vec![n];

    let checks = [
        (
            "inputs",
            "input_names",
            g.inputs()
                .iter()
                .map(|d| d.name.clone())
                .collect::<Vec<_>>(),
        ),
        (
            "states",
            "state_names",
            g.states()
                .iter()
                .map(|d| d.name.clone())
                .collect::<Vec<_>>(),
        ),
        (
            "outputs",
            "output_names",
            g.outputs()
                .iter()
                .map(|d| d.name.clone())
                .collect::<Vec<_>>(),
        ),
        (
            "params (static inputs)",
            "static_input_names",
            g.params()
                .iter()
                .map(|d| d.name.clone())
                .collect::<Vec<_>>(),
        ),
    ];
    for (what, key, declared) in checks {
        same_names(case, core, what, key, declared)?;
    }

    for (i, d) in g.inputs().iter().enumerate() {
        sc.inputs[i] = case.required(&["inputs", &d.name], t * n)?;
        sc.grad_inputs[i] = case
            .tensor(&["grads", &d.name], t * n)?
            .map(|v| Expect::new(format!("grads.{}", d.name), seq.clone(), v, false));
    }
    for (j, d) in g.states().iter().enumerate() {
        // FlexSN starts every state at zero unless `state_init` gives it.
        let init = case.tensor(&["state_init", &d.name], n)?;
        let given = init.is_some();
        sc.init_states[j] = init.unwrap_or_else(|| vec![0.0; n]);
        sc.state_seqs[j] = case
            .tensor(&["state_seqs", &d.name], t * n)?
            .map(|v| Expect::new(format!("state_seqs.{}", d.name), seq.clone(), v, false));
        sc.final_states[j] = case
            .tensor(&["final_states", &d.name], n)?
            .map(|v| Expect::new(format!("final_states.{}", d.name), vec_n.clone(), v, false));
        sc.up_state_seqs[j] = case.tensor(&["grad_outputs", "state_seqs", &d.name], t * n)?;
        let key = format!("{}_init", d.name);
        if given {
            sc.grad_init_states[j] = case
                .tensor(&["grads", &key], n)?
                .map(|v| Expect::new(format!("grads.{key}"), vec_n.clone(), v, false));
        }
    }
    for (k, d) in g.params().iter().enumerate() {
        let len = param_len(d.kind, t, n);
        sc.params[k] = case.required(&["parameters", &d.name], len)?;
        let dims = if len == 1 { vec![] } else { vec![len] };
        sc.grad_params[k] = case
            .tensor(&["grads", &d.name], len)?
            .map(|v| Expect::new(format!("grads.{}", d.name), dims, v, false));
    }
    for (o, d) in g.outputs().iter().enumerate() {
        let exact = matches!(g.node(d.value).op, Op::Spike(_));
        sc.outputs[o] = case
            .tensor(&["outputs", &d.name], t * n)?
            .map(|v| Expect::new(format!("outputs.{}", d.name), seq.clone(), v, exact));
        sc.up_outputs[o] = case.tensor(&["grad_outputs", &d.name], t * n)?;
    }
    Ok(sc)
}
