//! The stateful node's SpikingJelly-like behaviour: step modes agree (forward and backward),
//! states persist until reset, a shape change is an error, state sequences, parameters and
//! their accumulated gradients, truncated BPTT, custom cores with every kind of parameter, and
//! the non-spiking nodes' restart-and-decode rule.

use flexsn_compiler::dsl::CoreBuilder;
use flexsn_compiler::ir::{ParamKind, StateInit, StepGraph, Surrogate};
use flexsn_neurons::node::{Node, NodeBackend, NodeError, NodeUpstream, StateInitRule, StepMode};
use flexsn_neurons::{
    Builtin, Decode, IFNode, LIFNode, NonSpikingLIFNode, PLIF_W, ParametricLIFNode, V_STATE,
};
use flexsn_runtime::SavePolicy;

const B: NodeBackend = NodeBackend::Interpreter;

fn inputs(t: usize, n: usize, seed: f32) -> Vec<f32> {
    (0..t * n)
        .map(|i| (i as f32 * 0.7311 + seed).sin() * 1.7 + 0.6)
        .collect()
}

fn close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "[{i}] {x} vs {y}");
    }
}

/// A two-state adaptive LIF with a per-neuron threshold offset and a per-time gain: every kind
/// of parameter, two states, two outputs.
fn custom_core() -> StepGraph {
    let b = CoreBuilder::new("alif_pt");
    let x = b.input("x");
    let v = b.state("v", StateInit::Const(0.0));
    let a = b.state("a", StateInit::Const(0.0));
    let w = b.param("w", ParamKind::Shared, true);
    let th = b.param("th", ParamKind::PerNeuron, true);
    let gain = b.param("gain", ParamKind::PerTime, true);
    let h = v + (x * gain - v) * w.sigmoid();
    let s = (h - (th + a)).spike(Surrogate::ATan { alpha: 2.0 });
    b.output("spike", s);
    b.output("h", h);
    b.set_state("v", h * (1.0 - s));
    b.set_state("a", a * 0.9 + s);
    b.build().unwrap()
}

fn custom_node(n: usize, t_max: usize) -> Node {
    custom_node_on(B, n, t_max)
}

fn custom_node_on(backend: NodeBackend, n: usize, t_max: usize) -> Node {
    let mut node = Node::new(&custom_core(), backend).unwrap();
    node.set_param("w", &[0.3]).unwrap();
    let th: Vec<f32> = (0..n).map(|i| 0.8 + 0.05 * i as f32).collect();
    node.set_param("th", &th).unwrap();
    let gain: Vec<f32> = (0..t_max).map(|t| 1.0 + 0.1 * t as f32).collect();
    node.set_param("gain", &gain).unwrap();
    node
}

#[test]
fn single_steps_equal_one_multi_step_call_forward_and_backward() {
    let (t, n) = (9, 5);
    let x = inputs(t, n, 0.3);
    let gs = inputs(t, n, 1.1);
    let gh = inputs(t, n, 2.3);
    let gv_final: Vec<f32> = inputs(1, n, 4.0);

    let mut multi = custom_node(n, t);
    multi.set_store_state_seqs(true);
    let out_m = multi.forward(&[&x], n).unwrap();

    let mut single = custom_node(n, t);
    single.set_step_mode(StepMode::Single).unwrap();
    single.set_store_state_seqs(true);
    let mut out_s = vec![vec![]; 2];
    for k in 0..t {
        let o = single.forward(&[&x[k * n..(k + 1) * n]], n).unwrap();
        for (acc, v) in out_s.iter_mut().zip(o) {
            acc.extend(v);
        }
    }
    assert_eq!(out_m, out_s);
    assert_eq!(multi.states(), single.states());
    assert_eq!(
        multi.state_seq("a").unwrap(),
        single.state_seq("a").unwrap()
    );
    assert_eq!(single.time_step(), t);
    assert_eq!(single.recorded_steps(), t);

    let up = NodeUpstream {
        outputs: vec![Some(&gs), Some(&gh)],
        state_seqs: vec![None, None],
        final_states: vec![Some(&gv_final), None],
    };
    let gm = multi.backward_with(&up).unwrap();
    let gsg = single.backward_with(&up).unwrap();
    assert_eq!(gm, gsg);
    for p in ["w", "th", "gain"] {
        assert_eq!(multi.param_grad(p).unwrap(), single.param_grad(p).unwrap());
        assert!(
            multi
                .param_grad(p)
                .unwrap()
                .unwrap()
                .iter()
                .any(|&g| g != 0.0)
        );
    }
    assert_eq!(single.recorded_steps(), 0);
}

#[test]
fn a_sequence_split_into_calls_equals_one_call() {
    // Multi-step calls of 3 + 1 + 5 steps (and a single step in between) continue the dynamics
    // and backward runs over all of them, per-time params indexed by the absolute step.
    let (t, n) = (9, 4);
    let x = inputs(t, n, 0.9);
    let gs = inputs(t, n, 0.2);
    let mut one = custom_node(n, t);
    let out1 = one.forward(&[&x], n).unwrap();
    let g1 = one.backward(&[Some(&gs), None]).unwrap();

    let mut parts = custom_node(n, t);
    let mut spikes = vec![];
    for (a, b) in [(0, 3), (3, 4), (4, 9)] {
        if b - a == 1 {
            parts.set_step_mode(StepMode::Single).unwrap();
        } else {
            parts.set_step_mode(StepMode::Multi).unwrap();
        }
        spikes.extend(parts.forward(&[&x[a * n..b * n]], n).unwrap().remove(0));
    }
    assert_eq!(spikes, out1[0]);
    let g2 = parts.backward(&[Some(&gs), None]).unwrap();
    assert_eq!(g1, g2);
    assert_eq!(
        one.param_grad("gain").unwrap(),
        parts.param_grad("gain").unwrap()
    );
}

#[test]
fn states_persist_until_reset() {
    let n = 3;
    let mut node = Node::builtin(&Builtin::If(IFNode::new()), B).unwrap();
    assert_eq!(node.step_mode(), StepMode::Single, "SpikingJelly's default");
    node.forward(&[&[0.6, 0.2, 0.0]], n).unwrap();
    assert_eq!(node.state(V_STATE).unwrap().unwrap(), &[0.6, 0.2, 0.0]);
    let s = node.forward(&[&[0.6, 0.2, 0.0]], n).unwrap();
    assert_eq!(s[0], vec![1.0, 0.0, 0.0]);
    assert_eq!(node.state(V_STATE).unwrap().unwrap(), &[0.0, 0.4, 0.0]);
    node.reset();
    assert_eq!(node.states(), None);
    assert_eq!(node.time_step(), 0);
    node.forward(&[&[0.6, 0.2, 0.0]], n).unwrap();
    assert_eq!(node.state(V_STATE).unwrap().unwrap(), &[0.6, 0.2, 0.0]);
}

#[test]
fn initial_state_follows_the_neuron_and_can_be_overridden() {
    let n = 2;
    // Hard reset to -0.5: v starts at v_reset.
    let lif = LIFNode::new().v_reset(Some(-0.5));
    let mut node = Node::builtin(&Builtin::Lif(lif), B).unwrap();
    node.forward(&[&[0.0, 0.0]], n).unwrap();
    // h = v + (0 - (v - vr)) / 2 = -0.5 stays.
    assert_eq!(node.state(V_STATE).unwrap().unwrap(), &[-0.5, -0.5]);
    node.reset();
    node.set_state_init(V_STATE, StateInitRule::Values(vec![0.4, 0.8]))
        .unwrap();
    node.forward(&[&[0.0, 0.0]], n).unwrap();
    close(node.state(V_STATE).unwrap().unwrap(), &[-0.05, 0.15], 1e-6);
    node.reset();
    node.set_state_init(V_STATE, StateInitRule::Values(vec![0.4]))
        .unwrap();
    assert!(matches!(
        node.forward(&[&[0.0, 0.0]], n),
        Err(NodeError::StateLen {
            expected: 2,
            got: 1,
            ..
        })
    ));
    assert!(matches!(
        node.set_state_init("u", StateInitRule::Const(0.0)),
        Err(NodeError::UnknownState { .. })
    ));
}

#[test]
fn a_runtime_initial_state_must_be_supplied() {
    let b = CoreBuilder::new("needs_v0");
    let x = b.input("x");
    let v = b.state("v", StateInit::Runtime);
    b.output("y", v + x);
    b.set_state("v", v + x);
    let mut node = Node::new(&b.build().unwrap(), B).unwrap();
    let err = node.forward(&[&[1.0, 2.0]], 2).unwrap_err();
    assert!(err.to_string().contains("`v`"), "{err}");
    node.set_state_init("v", StateInitRule::Const(10.0))
        .unwrap();
    assert_eq!(
        node.forward(&[&[1.0, 2.0]], 2).unwrap()[0],
        vec![11.0, 12.0]
    );
}

#[test]
fn a_shape_change_without_reset_is_an_error() {
    let mut node = Node::builtin(&Builtin::Lif(LIFNode::new()), B).unwrap();
    node.forward(&[&[0.1; 4]], 4).unwrap();
    assert!(matches!(
        node.forward(&[&[0.1; 5]], 5),
        Err(NodeError::ShapeChanged {
            expected: 4,
            got: 5
        })
    ));
    // The state is untouched by the failed call.
    assert_eq!(node.time_step(), 1);
    node.reset();
    assert!(node.forward(&[&[0.1; 5]], 5).is_ok());
    // A multi-step input that is not [T, N].
    node.set_step_mode(StepMode::Multi).unwrap();
    assert!(matches!(
        node.forward(&[&[0.1; 7]], 5),
        Err(NodeError::InputLen { len: 7, n: 5, .. })
    ));
    assert!(matches!(
        node.forward(&[], 5),
        Err(NodeError::InputCount {
            expected: 1,
            got: 0,
            ..
        })
    ));
    assert!(matches!(node.forward(&[&[]], 0), Err(NodeError::NoNeurons)));
}

#[test]
fn store_v_seq_in_both_modes() {
    let n = 2;
    let x = [0.7, 0.3, 0.7, 0.3, 0.7, 0.3];
    let mut m = Node::builtin(&Builtin::If(IFNode::new()), B).unwrap();
    m.set_step_mode(StepMode::Multi).unwrap();
    m.forward(&[&x], n).unwrap();
    assert_eq!(m.v_seq().unwrap(), None, "off by default");
    m.reset();
    m.set_store_state_seqs(true);
    m.forward(&[&x], n).unwrap();
    let v_seq = m.v_seq().unwrap().unwrap().to_vec();
    // 0.7 -> 1.4 fires -> 0 -> 0.7; 0.3 -> 0.6 -> 0.9.
    close(&v_seq, &[0.7, 0.3, 0.0, 0.6, 0.7, 0.9], 1e-6);

    let mut s = Node::builtin(&Builtin::If(IFNode::new()), B).unwrap();
    s.set_store_state_seqs(true);
    for k in 0..3 {
        s.forward(&[&x[k * n..(k + 1) * n]], n).unwrap();
    }
    assert_eq!(s.v_seq().unwrap().unwrap(), v_seq.as_slice());
    s.reset();
    assert_eq!(s.v_seq().unwrap(), None);
}

#[test]
fn plif_w_is_held_and_its_gradient_accumulates() {
    let (t, n) = (6, 3);
    let x = inputs(t, n, 0.5);
    let gs = vec![1.0f32; t * n];
    let mut node =
        Node::builtin(&Builtin::Plif(ParametricLIFNode::new().init_tau(3.0)), B).unwrap();
    node.set_step_mode(StepMode::Multi).unwrap();
    let w0 = node.param(PLIF_W).unwrap().unwrap()[0];
    assert!((w0 - (-(2.0f64).ln()) as f32).abs() < 1e-7);
    node.forward(&[&x], n).unwrap();
    node.backward(&[Some(&gs)]).unwrap();
    let g1 = node.param_grad(PLIF_W).unwrap().unwrap()[0];
    assert!(g1 != 0.0);
    node.reset();
    node.forward(&[&x], n).unwrap();
    node.backward(&[Some(&gs)]).unwrap();
    let g2 = node.param_grad(PLIF_W).unwrap().unwrap()[0];
    assert_eq!(g2, g1 + g1);
    node.zero_grad();
    assert_eq!(node.param_grad(PLIF_W).unwrap().unwrap(), &[0.0]);
    // A new value changes the dynamics.
    node.reset();
    node.set_param(PLIF_W, &[3.0]).unwrap();
    assert!(matches!(
        node.set_param(PLIF_W, &[1.0, 2.0]),
        Err(NodeError::ParamLen {
            expected: 1,
            got: 2,
            ..
        })
    ));
    assert!(matches!(
        node.param("tau"),
        Err(NodeError::UnknownParam { .. })
    ));
}

#[test]
fn parameters_cannot_change_while_steps_are_recorded() {
    let mut node = Node::builtin(&Builtin::Plif(ParametricLIFNode::new()), B).unwrap();
    node.forward(&[&[0.5, 0.5]], 2).unwrap();
    assert!(matches!(
        node.set_param(PLIF_W, &[1.0]),
        Err(NodeError::TapeInProgress)
    ));
    node.backward(&[Some(&[1.0, 1.0])]).unwrap();
    node.set_param(PLIF_W, &[1.0]).unwrap();
}

#[test]
fn detach_truncates_backward_and_eval_records_nothing() {
    let (t, n) = (8, 3);
    let x = inputs(t, n, 0.1);
    let gs = inputs(t, n, 0.7);
    let lif = Builtin::Lif(LIFNode::new().surrogate(Surrogate::ATan { alpha: 2.0 }));
    let mut full = Node::builtin(&lif, B).unwrap();
    full.set_step_mode(StepMode::Multi).unwrap();
    full.forward(&[&x[..4 * n]], n).unwrap();
    let v_mid = full.state(V_STATE).unwrap().unwrap().to_vec();
    full.detach();
    full.forward(&[&x[4 * n..]], n).unwrap();
    assert_eq!(full.recorded_steps(), 4);
    let g = full.backward(&[Some(&gs[4 * n..])]).unwrap();

    // The same as a fresh node started from the mid state.
    let mut fresh = Node::builtin(&lif, B).unwrap();
    fresh.set_step_mode(StepMode::Multi).unwrap();
    fresh.set_state(V_STATE, &v_mid).unwrap();
    fresh.forward(&[&x[4 * n..]], n).unwrap();
    let g2 = fresh.backward(&[Some(&gs[4 * n..])]).unwrap();
    assert_eq!(g, g2);
    assert!(g.init_states[0].iter().any(|&v| v != 0.0));

    assert!(matches!(
        full.backward(&[Some(&gs)]),
        Err(NodeError::NothingRecorded)
    ));
    full.set_training(false);
    full.forward(&[&x], n).unwrap();
    assert_eq!(full.recorded_steps(), 0);
    assert!(matches!(
        full.backward(&[Some(&gs)]),
        Err(NodeError::NothingRecorded)
    ));
}

#[test]
fn backward_checks_gradient_shapes() {
    let mut node = Node::builtin(&Builtin::If(IFNode::new()), B).unwrap();
    node.forward(&[&[0.5, 0.5]], 2).unwrap();
    node.forward(&[&[0.5, 0.5]], 2).unwrap();
    assert!(
        node.backward(&[Some(&[1.0, 1.0])]).is_err(),
        "2 steps recorded"
    );
    assert!(matches!(node.backward(&[]), Err(NodeError::GradLen { .. })));
    assert!(node.backward(&[Some(&[1.0; 4])]).is_ok());
}

#[test]
fn non_spiking_nodes_restart_every_call_and_decode() {
    let (t, n) = (4, 2);
    let x = [1.0, -1.0, 1.0, -3.0, 1.0, 0.5, 1.0, 0.5];
    let mut node = Node::builtin(
        &Builtin::NonSpikingLif(NonSpikingLIFNode::new().decode(Decode::MaxMem)),
        B,
    )
    .unwrap();
    assert_eq!(node.step_mode(), StepMode::Multi);
    assert!(matches!(
        node.set_step_mode(StepMode::Single),
        Err(NodeError::MultiStepOnly(_))
    ));
    let y1 = node.forward(&[&x], n).unwrap();
    let y2 = node.forward(&[&x], n).unwrap();
    assert_eq!(y1, y2, "v restarts at 0 on every call");
    assert_eq!(y1[0].len(), n);
    // v: 0.5, 0.75, 0.875, 0.9375 and -0.5, -1.75, -0.625, -0.0625.
    close(&y1[0], &[0.9375, -0.0625], 1e-6);
    // Another N is fine: nothing persists.
    assert!(node.forward(&[&x[..t]], 1).is_ok());
    let y = node.forward(&[&x], n).unwrap();
    let g = node.backward(&[Some(&[1.0, 1.0])]).unwrap();
    assert_eq!(y[0].len(), 2);
    // d max / dx: the max is the last step; dv3/dx_k = 0.5^(4-k).
    close(
        &g.inputs[0],
        &[0.0625, 0.0625, 0.125, 0.125, 0.25, 0.25, 0.5, 0.5],
        1e-6,
    );
}

#[test]
fn cpu_nodes_match_interpreter_nodes_step_by_step() {
    // Every kind of param, two states, two outputs; N not a multiple of the vector width.
    let (t, n) = (7, 37);
    let x = inputs(t, n, 0.4);
    let gs = inputs(t, n, 1.9);
    let th: Vec<f32> = (0..n).map(|i| 0.8 + 0.01 * i as f32).collect();
    let gain: Vec<f32> = (0..t).map(|k| 1.0 + 0.1 * k as f32).collect();
    let run = |backend: NodeBackend, mode: StepMode| {
        let mut node = Node::new(&custom_core(), backend).unwrap();
        node.set_param("w", &[0.3]).unwrap();
        node.set_param("th", &th).unwrap();
        node.set_param("gain", &gain).unwrap();
        node.set_step_mode(mode).unwrap();
        let mut spikes = vec![];
        match mode {
            StepMode::Multi => spikes = node.forward(&[&x], n).unwrap().remove(0),
            StepMode::Single => {
                for k in 0..t {
                    spikes.extend(
                        node.forward(&[&x[k * n..(k + 1) * n]], n)
                            .unwrap()
                            .remove(0),
                    );
                }
            }
        }
        let g = node.backward(&[Some(&gs), None]).unwrap();
        let pg: Vec<Vec<f32>> = ["w", "th", "gain"]
            .iter()
            .map(|p| node.param_grad(p).unwrap().unwrap().to_vec())
            .collect();
        (spikes, node.states().unwrap().to_vec(), g, pg)
    };
    let reference = run(NodeBackend::Interpreter, StepMode::Multi);
    for mode in [StepMode::Multi, StepMode::Single] {
        let (s, st, g, pg) = run(NodeBackend::Cpu, mode);
        assert_eq!(s, reference.0, "{mode:?}: spikes");
        for (a, b) in st.iter().zip(&reference.1) {
            close(a, b, 1e-5);
        }
        close(&g.inputs[0], &reference.2.inputs[0], 1e-5);
        for (a, b) in pg.iter().zip(&reference.3) {
            close(a, b, 1e-4);
        }
    }
}

#[test]
fn an_unavailable_backend_is_a_typed_error() {
    // CUDA needs the runtime to wire it in (and a device); either way no panic.
    match Node::builtin(&Builtin::Lif(LIFNode::new()), NodeBackend::Cuda) {
        Ok(node) => assert_eq!(node.backend_name(), "cuda"),
        Err(e) => assert!(matches!(e, NodeError::Runtime(_)), "{e}"),
    }
}

/// Under `checkpoint:K` a node keeps only the state before every `K`-th recorded step, over
/// calls of any length (segments cross call boundaries) and single steps, and backward gives
/// the same gradients as `states`, bit for bit; the policy cannot change mid-recording.
#[test]
fn checkpoint_policy_equals_states_across_calls() {
    let (t, n) = (9, 4);
    let x = inputs(t, n, 0.4);
    let gs = inputs(t, n, 1.3);
    let gv_final = inputs(1, n, 2.0);
    let up = NodeUpstream {
        outputs: vec![Some(&gs), None],
        state_seqs: vec![None, None],
        final_states: vec![Some(&gv_final), None],
    };
    for backend in [NodeBackend::Interpreter, NodeBackend::Cpu] {
        let run = |policy: SavePolicy, calls: &[(usize, usize)]| {
            let mut node = custom_node_on(backend, n, t);
            node.set_save_policy(policy).unwrap();
            let mut spikes = vec![];
            for &(a, b) in calls {
                let mode = if b - a == 1 {
                    StepMode::Single
                } else {
                    StepMode::Multi
                };
                node.set_step_mode(mode).unwrap();
                spikes.extend(node.forward(&[&x[a * n..b * n]], n).unwrap().remove(0));
            }
            // Two states of N floats: T + 1 rows under states, ceil(T/K) under checkpoint:K.
            let rows = match policy {
                SavePolicy::States => t + 1,
                SavePolicy::Checkpoint(k) => t.div_ceil(k),
            };
            assert_eq!(node.saved_bytes(), 2 * rows * n * 4, "{policy} {calls:?}");
            if let SavePolicy::Checkpoint(_) = policy {
                let refused = node.set_save_policy(SavePolicy::States);
                assert!(matches!(refused, Err(NodeError::PolicyWhileRecording)));
            }
            let g = node.backward_with(&up).unwrap();
            let pg: Vec<_> = ["w", "th", "gain"]
                .iter()
                .map(|p| node.param_grad(p).unwrap().unwrap().to_vec())
                .collect();
            (spikes, g, pg)
        };
        let want = run(SavePolicy::States, &[(0, t)]);
        let split = [(0, 3), (3, 4), (4, 9)];
        let singles: Vec<(usize, usize)> = (0..t).map(|s| (s, s + 1)).collect();
        for k in [1, 2, 4, 9] {
            for calls in [&[(0, t)][..], &split, &singles] {
                let got = run(SavePolicy::Checkpoint(k), calls);
                assert_eq!(got, want, "{backend:?} checkpoint:{k} calls {calls:?}");
            }
        }
    }
    let mut node = custom_node(n, t);
    let e = node.set_save_policy(SavePolicy::Checkpoint(0)).unwrap_err();
    assert!(matches!(e, NodeError::ZeroCheckpointInterval(_)), "{e:?}");
    // The node's words around SavePolicy::check's.
    let msg = e.to_string();
    assert!(
        msg.contains("node") && msg.contains("checkpoint:0") && msg.contains("K >= 1"),
        "{msg}"
    );
    assert_eq!(node.save_policy(), SavePolicy::States);
}
