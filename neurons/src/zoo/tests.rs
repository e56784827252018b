use flexsn_compiler::interp::run_scan;
use flexsn_compiler::ir::{StateInit, Surrogate};
use flexsn_compiler::scan::{ScanArgs, ScanKernel};

use crate::node::{Node, NodeBackend, StepMode};
use crate::{BUILTINS, Builtin, NeuronError};

const ZOO: &[(&str, &str)] = &[
    ("qif", "QIFNode"),
    ("eif", "EIFNode"),
    ("izhikevich", "IzhikevichNode"),
    ("klif", "KLIFNode"),
    ("cuba-lif", "CUBALIFNode"),
    ("clif", "ComplementaryLIFNode"),
    ("ilif", "ILIFNode"),
    ("half-threshold-if", "HalfThresholdIFNode"),
    ("ternary-if", "TernaryIFNode"),
    ("ternary-lif", "TernaryLIFNode"),
];

fn value(b: &Builtin, key: &str) -> String {
    b.param_values()
        .into_iter()
        .find(|p| p.key == key)
        .unwrap_or_else(|| panic!("{} has no {key}", b.class_name()))
        .value
}

fn states(b: &Builtin) -> Vec<(String, StateInit)> {
    let g = b.step_graph().unwrap();
    g.states()
        .iter()
        .map(|s| (s.name.clone(), s.init))
        .collect()
}

#[test]
fn every_zoo_neuron_is_listed_by_both_names() {
    for (cli, class) in ZOO {
        let info = BUILTINS.iter().find(|i| i.cli_name == *cli).unwrap();
        assert_eq!(info.class_name, *class);
        assert_eq!(Builtin::from_name(cli), Builtin::from_name(class));
        let b = Builtin::from_name(cli).unwrap();
        assert_eq!(b.class_name(), *class);
        assert!(b.is_spiking());
        let g = b.step_graph().unwrap();
        assert_eq!(g.outputs()[0].name, "spike");
        assert!(g.description().contains(class), "{}", g.description());
    }
}

#[test]
fn defaults_are_spikingjellys() {
    let get = |n: &str| Builtin::from_name(n).unwrap();
    assert_eq!(value(&get("qif"), "v_reset"), "-0.1");
    assert_eq!(value(&get("eif"), "v_reset"), "-0.1");
    assert_eq!(value(&get("eif"), "theta_rh"), "0.8");
    assert_eq!(value(&get("izhikevich"), "v_rest"), "-0.1");
    assert_eq!(value(&get("cuba-lif"), "v_threshold"), "0.5");
    assert_eq!(value(&get("cuba-lif"), "surrogate"), "Rect");
    assert_eq!(value(&get("clif"), "surrogate"), "Rect");
    assert_eq!(value(&get("ilif"), "tau"), format!("{:?}", 4.0f64 / 3.0));
    assert_eq!(value(&get("ilif"), "surrogate.max_spike_count"), "4");
    assert_eq!(value(&get("ilif"), "surrogate.grad_max"), "4.0");
    // Memories and their initial values.
    let c = StateInit::Const;
    assert_eq!(
        states(&get("izhikevich")),
        [("v".into(), c(0.0)), ("w".into(), c(0.0))]
    );
    assert_eq!(
        states(&get("cuba-lif")),
        [("v".into(), c(0.0)), ("c".into(), c(0.0))]
    );
    assert_eq!(
        states(&get("clif")),
        [("v".into(), c(0.0)), ("m".into(), c(0.0))]
    );
    assert_eq!(states(&get("qif")), [("v".into(), c(-0.1))]);
    let half = Builtin::from_settings("half-threshold-if", ["v_threshold=0.6"]).unwrap();
    assert_eq!(states(&half), [("v".into(), c(0.3))]);
    let izh = Builtin::from_settings("izhikevich", ["w_rest=0.25"]).unwrap();
    assert_eq!(states(&izh)[1], ("w".into(), c(0.25)));
    assert_eq!(
        get("klif").initial_params(),
        vec![("k".to_string(), vec![1.0])]
    );
}

#[test]
fn constructor_checks_are_typed_errors_and_change_nothing() {
    let bad: &[(&str, &str)] = &[
        ("qif", "tau=1.0"),
        ("qif", "a0=0"),
        ("qif", "v_reset=1.5"),
        ("qif", "v_rest=-0.5"),
        ("eif", "delta_T=-1"),
        ("izhikevich", "a0=-1"),
        ("klif", "tau=0.5"),
        ("clif", "tau=1"),
        ("ilif", "tau=1"),
        ("ilif", "surrogate=Sigmoid"),
        ("ilif", "surrogate.spiking=false"),
        ("ilif", "surrogate.max_spike_count=2.5"),
        ("ilif", "surrogate.grad_min=5"),
        ("half-threshold-if", "v_threshold=0"),
        ("ternary-if", "v_threshold=-1"),
        ("ternary-if", "v_reset=1.0"),
        ("ternary-lif", "v_reset=-2"),
        ("ternary-lif", "tau=1"),
        ("qif", "tau=fast"),
        ("klif", "scale_reset=maybe"),
    ];
    for (name, set) in bad {
        let mut b = Builtin::from_name(name).unwrap();
        let before = b;
        let (k, v) = crate::split_setting(set).unwrap();
        let err = b.set(&k, &v).expect_err(set);
        assert!(
            matches!(
                err,
                NeuronError::InvalidValue { .. } | NeuronError::Surrogate { .. }
            ),
            "{name} {set}: {err:?}"
        );
        assert_eq!(b, before, "{name} {set} changed the neuron");
    }
    // Keys the constructor does not take.
    for (name, key) in [
        ("clif", "v_reset"),
        ("clif", "detach_reset"),
        ("ilif", "v_reset"),
        ("half-threshold-if", "v_reset"),
        ("cuba-lif", "tau"),
        ("qif", "decay_input"),
    ] {
        let err = Builtin::from_settings(name, [format!("{key}=1")]).unwrap_err();
        assert!(
            matches!(err, NeuronError::UnknownParam { .. }),
            "{name} {key}: {err:?}"
        );
        assert!(err.to_string().contains("its parameters:"), "{err}");
    }
}

#[test]
fn max_spike_count_moves_the_default_gradient_window() {
    let b = Builtin::from_settings("ilif", ["surrogate.max_spike_count=8"]).unwrap();
    assert_eq!(value(&b, "surrogate.grad_max"), "8.0");
    let b = Builtin::from_settings(
        "ilif",
        ["surrogate.grad_max=2", "surrogate.max_spike_count=8"],
    )
    .unwrap();
    assert_eq!(value(&b, "surrogate.grad_max"), "2.0");
}

fn run1(b: &Builtin, x: &[f32], init: &[&[f32]], params: &[&[f32]]) -> (Vec<f32>, Vec<f32>) {
    let k = ScanKernel::forward(b.step_graph().unwrap(), true);
    let r = run_scan(
        &k,
        &ScanArgs {
            t: x.len(),
            n: 1,
            inputs: vec![x],
            init_states: init.to_vec(),
            params: params.to_vec(),
        },
    )
    .unwrap();
    (r.outputs[0].clone(), r.state_seqs[0].clone())
}

/// ILIF's spikes are counts: `round(clamp(h / v_threshold, 0, 4))`, ties to even.
#[test]
fn ilif_emits_rounded_clamped_counts() {
    let b = Builtin::from_settings("ilif", ["tau=2.0", "v_threshold=0.5"]).unwrap();
    // h = 0.5 v + x from v = 0 after each reset.
    let x = [1.25, 0.0, 10.0, -6.0];
    let (s, v) = run1(&b, &x, &[&[0.0]], &[]);
    // 1.25 / 0.5 = 2.5 -> 2 (even), v = 0.25; h = 0.125: 0.25 -> 0; h = 10.0625 -> 4 (clamped).
    assert_eq!(s[..3], [2.0, 0.0, 4.0]);
    assert_eq!(v[0], 0.25);
    assert_eq!(v[1], 0.125);
    assert_eq!(v[2], 10.0625 - 2.0);
    // Negative h: no spike, the voltage is kept.
    assert_eq!(s[3], 0.0);
    assert_eq!(v[3], 4.03125 - 6.0);
}

/// Ternary neurons fire -1 below `-v_threshold`; hard reset follows either spike.
#[test]
fn ternary_spikes_are_signed() {
    let b = Builtin::from_name("ternary-if").unwrap();
    let (s, v) = run1(&b, &[-1.5, 0.5, 0.75], &[&[0.0]], &[]);
    assert_eq!(s, [-1.0, 0.0, 1.0]);
    assert_eq!(v, [0.0, 0.5, 0.0]);
    let b = Builtin::from_settings("ternary-if", ["v_reset=none"]).unwrap();
    let (s, v) = run1(&b, &[-1.5, 0.25], &[&[0.0]], &[]);
    assert_eq!(s, [-1.0, 0.0]);
    assert_eq!(v, [-0.5, -0.25]);
}

/// The zoo neurons run as stateful nodes: chunked calls continue from the kept memories, and
/// single-step and multi-step agree with one call over the whole sequence.
#[test]
fn zoo_neurons_run_as_stateful_nodes() {
    let (t, n) = (6, 5);
    let x: Vec<f32> = (0..t * n)
        .map(|i| (i as f32 * 0.37).sin() * 1.5 + 0.4)
        .collect();
    for (cli, _) in ZOO {
        let b = Builtin::from_name(cli).unwrap();
        let mut whole = Node::builtin(&b, NodeBackend::Interpreter).unwrap();
        whole.set_step_mode(StepMode::Multi).unwrap();
        let want = whole.forward(&[&x], n).unwrap();
        let mut chunked = Node::builtin(&b, NodeBackend::Interpreter).unwrap();
        chunked.set_step_mode(StepMode::Single).unwrap();
        let mut got = vec![];
        for k in 0..t {
            let out = chunked.forward(&[&x[k * n..(k + 1) * n]], n).unwrap();
            got.extend_from_slice(&out[0]);
        }
        assert_eq!(got, want[0], "{cli}");
        for s in whole.graph().states() {
            assert_eq!(
                chunked.state(&s.name).unwrap(),
                whole.state(&s.name).unwrap(),
                "{cli} state {}",
                s.name
            );
        }
    }
}

#[test]
fn klif_scale_reset_divides_by_k() {
    let b = Builtin::from_settings("klif", ["scale_reset=true", "v_reset=none"]).unwrap();
    // k = 2: h = relu(2 * (v + (x - v) / 2)); x = 1.5 from v = 0: h = 1.5, spike, v = 1.5/2 - 1/2.
    let (s, v) = run1(&b, &[1.5], &[&[0.0]], &[&[2.0]]);
    assert_eq!(s, [1.0]);
    assert_eq!(v, [0.25]);
    assert_eq!(
        Builtin::from_name("klif")
            .unwrap()
            .step_graph()
            .unwrap()
            .params()[0]
            .name,
        "k"
    );
    assert!(matches!(
        Builtin::from_name("ilif")
            .unwrap()
            .step_graph()
            .unwrap()
            .outputs()[0]
            .name
            .as_str(),
        "spike"
    ));
    let _ = Surrogate::default_for("MultiLevelSpikeCount").unwrap();
}

/// The PSN family's kernels fire 0/1: a counting surrogate is refused, not silently ignored.
#[test]
fn psn_family_refuses_spike_counts() {
    for name in ["psn", "masked-psn", "sliding-psn"] {
        let err = Builtin::from_settings(name, ["surrogate=MultiLevelSpikeCount"]).unwrap_err();
        assert!(err.to_string().contains("spike counts"), "{name}: {err}");
    }
}
