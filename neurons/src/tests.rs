use super::*;
use flexsn_compiler::interp::run_scan;
use flexsn_compiler::ir::{ParamKind, StateInit, Surrogate};
use flexsn_compiler::scan::{ScanArgs, ScanKernel};

fn heaviside(x: f32) -> f32 {
    if x >= 0.0 { 1.0 } else { 0.0 }
}

/// Runs a built-in's graph over `x` (`[T, N]`) from `v0`, with `params`.
fn run(
    b: &Builtin,
    t: usize,
    n: usize,
    x: &[f32],
    v0: &[f32],
    params: &[&[f32]],
) -> (Vec<f32>, Vec<f32>) {
    let k = ScanKernel::forward(b.step_graph().unwrap(), true);
    let r = run_scan(
        &k,
        &ScanArgs {
            t,
            n,
            inputs: vec![x],
            init_states: vec![v0],
            params: params.to_vec(),
        },
    )
    .unwrap();
    (r.outputs[0].clone(), r.state_seqs[0].clone())
}

fn inputs(t: usize, n: usize) -> Vec<f32> {
    (0..t * n)
        .map(|i| (i as f32 * 0.7311).sin() * 3.0 + 0.8)
        .collect()
}

/// Hand-written SpikingJelly step (Appendix A), f32.
fn reference(
    charge: impl Fn(f32, f32) -> f32,
    fire: FireReset,
    x: &[f32],
    v0: f32,
    t: usize,
    n: usize,
    i: usize,
) -> (Vec<f32>, Vec<f32>) {
    let (mut s_seq, mut v_seq) = (vec![], vec![]);
    let mut v = v0;
    for k in 0..t {
        let h = charge(x[k * n + i], v);
        let s = heaviside(h - fire.v_threshold);
        v = match fire.v_reset {
            None => h - s * fire.v_threshold,
            Some(vr) => s * vr + (1.0 - s) * h,
        };
        s_seq.push(s);
        v_seq.push(v);
    }
    (s_seq, v_seq)
}

fn check_bits(
    b: &Builtin,
    charge: impl Fn(f32, f32) -> f32 + Copy,
    fire: FireReset,
    params: &[&[f32]],
) {
    let (t, n) = (9, 4);
    let x = inputs(t, n);
    let v0 = vec![fire.initial_v(); n];
    let (s, v) = run(b, t, n, &x, &v0, params);
    for i in 0..n {
        let (rs, rv) = reference(charge, fire, &x, v0[i], t, n, i);
        for k in 0..t {
            assert_eq!(s[k * n + i].to_bits(), rs[k].to_bits(), "spike t={k} n={i}");
            assert_eq!(v[k * n + i].to_bits(), rv[k].to_bits(), "v t={k} n={i}");
        }
    }
    assert!(s.contains(&1.0) && s.contains(&0.0));
}

#[test]
fn if_matches_spikingjelly_order_bitwise() {
    for v_reset in [Some(0.0), Some(-0.1), None] {
        let n = IFNode::new().v_threshold(0.7).v_reset(v_reset);
        check_bits(&Builtin::If(n), |x, v| v + x, n.fire, &[]);
    }
}

#[test]
fn lif_matches_spikingjelly_order_bitwise() {
    for v_reset in [Some(0.0), Some(-0.1), None] {
        for decay_input in [true, false] {
            let n = LIFNode::new()
                .tau(3.5)
                .decay_input(decay_input)
                .v_reset(v_reset);
            let vr = v_reset.unwrap_or(0.0);
            let charge = move |x: f32, v: f32| {
                if decay_input {
                    v + (x - (v - vr)) / 3.5
                } else {
                    v - (v - vr) / 3.5 + x
                }
            };
            check_bits(&Builtin::Lif(n), charge, n.fire, &[]);
        }
    }
}

#[test]
fn plif_matches_spikingjelly_order_bitwise() {
    for v_reset in [Some(0.0), None] {
        for decay_input in [true, false] {
            let n = ParametricLIFNode::new()
                .init_tau(5.0)
                .decay_input(decay_input)
                .v_reset(v_reset);
            let w = n.initial_w();
            let r = 1.0 / (1.0 + (-w).exp());
            let vr = v_reset.unwrap_or(0.0);
            let charge = move |x: f32, v: f32| {
                if decay_input {
                    v + (x - (v - vr)) * r
                } else {
                    v - (v - vr) * r + x
                }
            };
            check_bits(&Builtin::Plif(n), charge, n.fire, &[&[w]]);
        }
    }
}

#[test]
fn plif_initial_w_gives_one_over_init_tau() {
    assert_eq!(ParametricLIFNode::new().initial_w(), 0.0);
    let w = ParametricLIFNode::new().init_tau(5.0).initial_w();
    assert_eq!(w, (-(4.0f64).ln()) as f32);
    let r = 1.0 / (1.0 + (-(w as f64)).exp());
    assert!((r - 0.2).abs() < 1e-7);
    let b = Builtin::Plif(ParametricLIFNode::new().init_tau(5.0));
    assert_eq!(b.initial_params(), vec![("w".to_string(), vec![w])]);
    let g = b.step_graph().unwrap();
    assert_eq!(g.params().len(), 1);
    assert_eq!(g.params()[0].kind, ParamKind::Shared);
    assert!(g.params()[0].learnable);
}

#[test]
fn initial_v_rule() {
    let g = IFNode::new().v_reset(Some(-0.1)).step_graph().unwrap();
    assert_eq!(g.states()[0].init, StateInit::Const(-0.1));
    let g = LIFNode::new().v_reset(None).step_graph().unwrap();
    assert_eq!(g.states()[0].init, StateInit::Const(0.0));
    let g = NonSpikingLIFNode::new().step_graph().unwrap();
    assert_eq!(g.states()[0].init, StateInit::Const(0.0));
}

#[test]
fn defaults_are_spikingjelly_defaults() {
    let f = FireReset::default();
    assert_eq!(f.v_threshold, 1.0);
    assert_eq!(f.v_reset, Some(0.0));
    assert!(!f.detach_reset);
    assert_eq!(f.surrogate, Surrogate::Sigmoid { alpha: 4.0 });
    assert!(f.spiking);
    assert_eq!(LIFNode::new().tau, 2.0);
    assert!(LIFNode::new().decay_input);
    assert_eq!(ParametricLIFNode::new().init_tau, 2.0);
    assert_eq!(NonSpikingLIFNode::new().tau, 2.0);
    assert_eq!(NonSpikingLIFNode::new().decode, Decode::Sequence);
}

#[test]
fn detach_reset_detaches_only_the_reset() {
    let g = LIFNode::new().detach_reset(true).step_graph().unwrap();
    let text = flexsn_compiler::text::print(&g);
    assert_eq!(text.matches("= detach %").count(), 1, "{text}");
    // The output is the spike itself, not its detached copy.
    let out = g.outputs()[0].value;
    assert!(matches!(g.node(out).op, flexsn_compiler::ir::Op::Spike(_)));
}

#[test]
fn non_spiking_surrogate_uses_the_primitive() {
    let g = IFNode::new()
        .surrogate(Surrogate::ATan { alpha: 2.0 })
        .spiking(false)
        .step_graph()
        .unwrap();
    assert!(!g.has_spikes());
    assert!(
        IFNode::new()
            .surrogate(Surrogate::SuperSpike { alpha: 1.0 })
            .spiking(false)
            .step_graph()
            .is_err()
    );
    let mut b = Builtin::from_name("if").unwrap();
    b.set("surrogate", "SuperSpike").unwrap();
    let e = b.set("surrogate.spiking", "false").unwrap_err();
    assert!(e.to_string().contains("no smooth primitive"), "{e}");
}

#[test]
fn names_and_settings() {
    for info in BUILTINS {
        let a = Builtin::from_name(info.cli_name).unwrap();
        let b = Builtin::from_name(info.class_name).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.info(), info);
        match a.step_graph() {
            // PSN and MaskedPSN mix the whole sequence: no step graph, and they say so.
            Err(NeuronError::NotAScan { .. }) => {
                assert!(matches!(a, Builtin::Psn(_) | Builtin::MaskedPsn(_)))
            }
            r => drop(r.unwrap()),
        }
        assert!(!a.param_values().is_empty());
    }
    let b = Builtin::from_settings(
        "LIFNode",
        [
            "surrogate.alpha=3",
            "surrogate=ATan",
            "tau=3.5",
            "v_reset=none",
            "detach_reset=true",
        ],
    )
    .unwrap();
    assert_eq!(
        b,
        Builtin::Lif(
            LIFNode::new()
                .tau(3.5)
                .v_reset(None)
                .detach_reset(true)
                .surrogate(Surrogate::ATan { alpha: 3.0 })
        )
    );
    let b = Builtin::from_settings("nonspiking-lif", ["decode=max-abs-mem", "tau=3.5"]).unwrap();
    assert_eq!(b.decode(), Some(Decode::MaxAbsMem));
}

#[test]
fn clear_errors() {
    let e = Builtin::from_name("lifx").unwrap_err();
    assert!(
        e.to_string().contains("unknown neuron `lifx`") && e.to_string().contains("lif (LIFNode)"),
        "{e}"
    );
    let e = Builtin::from_settings("lif", ["taux=2"]).unwrap_err();
    assert!(
        e.to_string().contains("no parameter `taux`") && e.to_string().contains("tau"),
        "{e}"
    );
    let e = Builtin::from_settings("lif", ["tau=abc"]).unwrap_err();
    assert!(e.to_string().contains("expected a number"), "{e}");
    let e = Builtin::from_settings("lif", ["tau=1.0"]).unwrap_err();
    assert!(e.to_string().contains("> 1"), "{e}");
    let e = Builtin::from_settings("lif", ["tau"]).unwrap_err();
    assert_eq!(e, NeuronError::MalformedSetting("tau".into()));
    let e = Builtin::from_settings("if", ["surrogate=Nope"]).unwrap_err();
    assert!(
        e.to_string().contains("unknown surrogate") && e.to_string().contains("ATan"),
        "{e}"
    );
    let e = Builtin::from_settings("if", ["surrogate.beta=1"]).unwrap_err();
    assert!(e.to_string().contains("no parameter `beta`"), "{e}");
    let e = Builtin::from_settings("if", ["surrogate=SoftSign", "surrogate.alpha=-1"]).unwrap_err();
    assert!(e.to_string().contains("must be > 0"), "{e}");
    let e = Builtin::from_settings("if", ["v_reset=inf"]).unwrap_err();
    assert!(e.to_string().contains("v_reset"), "{e}");
    let e = Builtin::from_settings("if", ["detach_reset=maybe"]).unwrap_err();
    assert!(e.to_string().contains("true or false"), "{e}");
    let e = Builtin::from_settings("nonspiking-if", ["decode=median"]).unwrap_err();
    assert!(e.to_string().contains("max-mem"), "{e}");
    let e = Builtin::from_settings("nonspiking-if", ["tau=2"]).unwrap_err();
    assert!(e.to_string().contains("no parameter `tau`"), "{e}");
}

#[test]
fn nonspiking_graphs() {
    let (t, n) = (5, 3);
    let x = inputs(t, n);
    let (mem, _) = run(
        &Builtin::NonSpikingLif(NonSpikingLIFNode::new().tau(3.5)),
        t,
        n,
        &x,
        &[0.0; 3],
        &[],
    );
    for i in 0..n {
        let mut v = 0.0f32;
        for k in 0..t {
            v = v + (x[k * n + i] - v) / 3.5;
            assert_eq!(mem[k * n + i].to_bits(), v.to_bits());
        }
    }
    let (mem, _) = run(
        &Builtin::NonSpikingIf(NonSpikingIFNode::new()),
        t,
        n,
        &x,
        &[0.0; 3],
        &[],
    );
    assert_eq!(mem[n], x[0] + x[n]);
}

#[test]
fn decode_forward_and_backward() {
    // T = 4, N = 3: column 0 has a tie for the max (first wins), column 1 |min| > |max|,
    // column 2 |max| == |min| (ties pick the min).
    let seq = [
        1.0f32, -3.0, 2.0, //
        5.0, 1.0, -1.0, //
        5.0, 2.0, -2.0, //
        -2.0, 0.5, 0.0,
    ];
    let (t, n) = (4, 3);
    let g = [10.0f32, 20.0, 30.0];
    let max = Decode::MaxMem.forward(&seq, t, n).unwrap();
    assert_eq!(max, vec![5.0, 2.0, 2.0]);
    let gm = Decode::MaxMem.backward(&seq, &g, t, n).unwrap();
    assert_eq!(
        gm,
        vec![
            0.0, 0.0, 30.0, 10.0, 0.0, 0.0, 0.0, 20.0, 0.0, 0.0, 0.0, 0.0
        ]
    );
    let ma = Decode::MaxAbsMem.forward(&seq, t, n).unwrap();
    assert_eq!(ma, vec![5.0, -3.0, -2.0]);
    let ga = Decode::MaxAbsMem.backward(&seq, &g, t, n).unwrap();
    assert_eq!(
        ga,
        vec![
            0.0, 20.0, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0, 30.0, 0.0, 0.0, 0.0
        ]
    );
    let mean = Decode::MeanMem.forward(&seq, t, n).unwrap();
    assert_eq!(mean, vec![9.0 / 4.0, 0.5 / 4.0, -1.0 / 4.0]);
    let gmean = Decode::MeanMem.backward(&seq, &g, t, n).unwrap();
    assert!(gmean.chunks(3).all(|r| r == [2.5, 5.0, 7.5]));
    let last = Decode::LastMem.forward(&seq, t, n).unwrap();
    assert_eq!(last, vec![-2.0, 0.5, 0.0]);
    let gl = Decode::LastMem.backward(&seq, &g, t, n).unwrap();
    assert_eq!(&gl[9..], &g);
    assert!(gl[..9].iter().all(|&v| v == 0.0));
    assert_eq!(Decode::Sequence.forward(&seq, t, n).unwrap(), seq.to_vec());
    // T = 1: max and min are the same element; max-abs sends the gradient there once.
    let one = [3.0f32, -1.0];
    assert_eq!(
        Decode::MaxAbsMem.backward(&one, &[1.0, 2.0], 1, 2).unwrap(),
        vec![1.0, 2.0]
    );
    // NaN is selected by max, like torch.
    let nan = [1.0f32, f32::NAN, 3.0];
    assert!(Decode::MaxMem.forward(&nan, 3, 1).unwrap()[0].is_nan());
    assert_eq!(
        Decode::MaxMem.backward(&nan, &[1.0], 3, 1).unwrap(),
        vec![0.0, 1.0, 0.0]
    );
    // Errors.
    assert!(matches!(
        Decode::MaxMem.forward::<f32>(&[], 0, 2),
        Err(DecodeError::EmptyTime { .. })
    ));
    assert!(matches!(
        Decode::MeanMem.forward(&seq, 3, 3),
        Err(DecodeError::Len { .. })
    ));
    assert!(matches!(
        Decode::MeanMem.backward(&seq, &[1.0], 4, 3),
        Err(DecodeError::Len { .. })
    ));
}

#[test]
fn scan_neurons_are_runtime_neurons() {
    fn graph_of(n: &dyn flexsn_runtime::Neuron) -> flexsn_compiler::ir::StepGraph {
        n.step_graph().unwrap()
    }
    let lif = LIFNode::new().tau(3.5);
    assert_eq!(
        flexsn_compiler::text::print(&graph_of(&lif)),
        flexsn_compiler::text::print(&lif.step_graph().unwrap())
    );
    for n in [
        &IFNode::new() as &dyn flexsn_runtime::Neuron,
        &ParametricLIFNode::new(),
        &NonSpikingIFNode::new(),
        &NonSpikingLIFNode::new(),
    ] {
        assert!(!graph_of(n).states().is_empty());
    }
}

#[test]
fn a_node_checks_the_memory_limit_of_its_jit_before_allocating() {
    use crate::node::{Node, StepMode};
    use flexsn_runtime::memory::MemoryLimit;
    use flexsn_runtime::{Backend, Jit};
    let mut jit = Jit::new(Backend::Interpreter).unwrap();
    jit.set_memory_limit(MemoryLimit(16 << 10));
    let mut node = Node::with_jit(&LIFNode::new(), &jit).unwrap();
    node.set_step_mode(StepMode::Multi).unwrap();
    // 8 steps of 1,024 neurons: outputs and the recorded sequences alone exceed 16 KiB.
    let x = vec![0.5f32; 8 * 1024];
    let err = node.forward(&[&x], 1024).unwrap_err().to_string();
    assert!(err.contains("more than the limit of 16.0 KiB"), "{err}");
    // Nothing was materialised by the refused call; a small one fits.
    assert!(node.states().is_none());
    assert_eq!(node.forward(&[&x[..2 * 64]], 64).unwrap()[0].len(), 128);
}
