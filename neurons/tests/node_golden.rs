//! Stateful nodes against SpikingJelly's golden IF/LIF/PLIF data: one multi-step call, and the
//! same sequence fed one step at a time, forward and backward (BPTT through the recorded single
//! steps), with `v_init` set as `node.v = v_init`, `store_v_seq`, and PLIF's `w` held by the node.

use flexsn_compiler::ir::Surrogate;
use flexsn_neurons::node::{Node, NodeBackend, NodeUpstream, StepMode};
use flexsn_neurons::{Builtin, PLIF_W, V_STATE};
use serde_json::Value;

const RTOL: f32 = 1e-5;
const ATOL: f32 = 1e-6;

fn load(file: &str) -> Vec<Value> {
    let path = format!("{}/../tests/golden/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str::<Vec<Value>>(&text).expect("golden JSON")
}

fn floats(v: &Value) -> Option<Vec<f32>> {
    match v {
        Value::Null => None,
        Value::Array(a) => Some(a.iter().map(|x| x.as_f64().unwrap() as f32).collect()),
        Value::Number(x) => Some(vec![x.as_f64().unwrap() as f32]),
        _ => panic!("expected numbers, got {v}"),
    }
}

/// The neuron a case describes, built by name from its params as `key=value` settings.
fn neuron(case: &Value) -> Builtin {
    let p = case["params"].as_object().unwrap();
    let mut settings = vec![];
    for (k, v) in p {
        match k.as_str() {
            "store_v_seq" | "step_mode" | "backend" => {}
            "surrogate" => {
                let s = v.as_object().unwrap();
                settings.push(format!("surrogate={}", s["name"].as_str().unwrap()));
                for (sk, sv) in s {
                    match sk.as_str() {
                        "name" => {}
                        "spiking" => settings.push(format!("surrogate.spiking={sv}")),
                        _ => settings.push(format!("surrogate.{sk}={sv}")),
                    }
                }
            }
            _ => settings.push(format!(
                "{k}={}",
                if v.is_null() {
                    "none".to_string()
                } else {
                    v.to_string()
                }
            )),
        }
    }
    Builtin::from_settings(case["neuron"].as_str().unwrap(), &settings)
        .unwrap_or_else(|e| panic!("{}: {e}", case["name"]))
}

fn close(name: &str, what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: {what}: length");
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= ATOL + RTOL * b.abs(),
            "{name}: {what}[{i}] = {a}, SpikingJelly {b}"
        );
    }
}

struct Run {
    spikes: Vec<f32>,
    v_seq: Option<Vec<f32>>,
    v_final: Vec<f32>,
    grad_x: Vec<f32>,
    grad_v_init: Vec<f32>,
    grad_w: Option<Vec<f32>>,
}

fn run(case: &Value, mode: StepMode, backend: NodeBackend) -> Run {
    let b = neuron(case);
    let store = case["params"]["store_v_seq"].as_bool().unwrap_or(false);
    let shape: Vec<usize> = case["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let (t, n) = (shape[0], shape[1..].iter().product::<usize>());
    let mut node = Node::builtin(&b, backend).unwrap();
    node.set_step_mode(mode).unwrap();
    node.set_store_state_seqs(store);
    if let Some(w) = floats(&case["parameters"]["w"]) {
        node.set_param(PLIF_W, &w).unwrap();
    }
    if let Some(v0) = floats(&case["v_init"]) {
        node.set_state(V_STATE, &v0).unwrap();
    }
    let x = floats(&case["inputs"]["x_seq"]).unwrap();
    let spikes: Vec<f32> = match mode {
        StepMode::Multi => node.forward(&[&x], n).unwrap().remove(0),
        StepMode::Single => (0..t)
            .flat_map(|k| {
                node.forward(&[&x[k * n..(k + 1) * n]], n)
                    .unwrap()
                    .remove(0)
            })
            .collect(),
    };
    let v_seq = node.v_seq().unwrap().map(<[f32]>::to_vec);
    let v_final = node.state(V_STATE).unwrap().unwrap().to_vec();
    let go = &case["grad_outputs"];
    let (gs, gv, gvf) = (
        floats(&go["spike_seq"]),
        floats(&go["v_seq"]),
        floats(&go["v_final"]),
    );
    let grads = node
        .backward_with(&NodeUpstream {
            outputs: vec![gs.as_deref()],
            state_seqs: vec![gv.as_deref()],
            final_states: vec![gvf.as_deref()],
        })
        .unwrap();
    Run {
        spikes,
        v_seq,
        v_final,
        grad_x: grads.inputs[0].clone(),
        grad_v_init: grads.init_states[0].clone(),
        grad_w: node.param_grad(PLIF_W).ok().flatten().map(<[f32]>::to_vec),
    }
}

fn check_file(file: &str, backends: &[NodeBackend]) -> usize {
    let mut checked = 0;
    for case in load(file) {
        let name = case["name"].as_str().unwrap();
        let out = &case["outputs"];
        for &backend in backends {
            for mode in [StepMode::Multi, StepMode::Single] {
                let r = run(&case, mode, backend);
                let what = format!("{mode:?}/{backend:?}");
                assert_eq!(
                    r.spikes,
                    floats(&out["spike_seq"]).unwrap(),
                    "{name} ({what}): spikes"
                );
                if let Some(v) = floats(&out["v_seq"]) {
                    close(name, &format!("v_seq ({what})"), &r.v_seq.unwrap(), &v);
                }
                close(
                    name,
                    &format!("v_final ({what})"),
                    &r.v_final,
                    &floats(&out["v_final"]).unwrap(),
                );
                let g = &case["grads"];
                close(
                    name,
                    &format!("grad x ({what})"),
                    &r.grad_x,
                    &floats(&g["x_seq"]).unwrap(),
                );
                if let Some(gv) = floats(&g["v_init"]) {
                    close(name, &format!("grad v_init ({what})"), &r.grad_v_init, &gv);
                }
                if let Some(gw) = floats(&g["w"]) {
                    close(name, &format!("grad w ({what})"), &r.grad_w.unwrap(), &gw);
                }
                checked += 1;
            }
        }
    }
    checked
}

fn backends() -> Vec<NodeBackend> {
    vec![NodeBackend::Interpreter, NodeBackend::Cpu]
}

#[test]
fn if_nodes_match_spikingjelly_in_both_step_modes() {
    assert_eq!(
        check_file("ifnode.json", &backends()),
        21 * 2 * backends().len()
    );
}

#[test]
fn lif_nodes_match_spikingjelly_in_both_step_modes() {
    assert_eq!(
        check_file("lifnode.json", &backends()),
        33 * 2 * backends().len()
    );
}

#[test]
fn plif_nodes_match_spikingjelly_in_both_step_modes() {
    assert_eq!(
        check_file("plif.json", &backends()),
        16 * 2 * backends().len()
    );
}

#[test]
fn surrogate_parsing_matches_the_case() {
    // The helper above must build what the case says (guards the test itself).
    let case = &load("lifnode.json")[0];
    let b = neuron(case);
    let g = b.step_graph().unwrap();
    let name = case["params"]["surrogate"]["name"].as_str().unwrap();
    assert!(Surrogate::default_for(name).is_some());
    assert!(g.has_spikes());
}
