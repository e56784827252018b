//! Gradients through the candle op: bit-identical to the runtime's `Kernel::backward` (the same
//! kernels), and equal to finite differences on a smooth core.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Module, VarBuilder, VarMap};
use flexsn_candle::nodes::{LIFNode, ParametricLIFNode};
use flexsn_candle::{ParamDims, ScanLayer, default_jit, scan};
use flexsn_compiler::dsl::CoreBuilder;
use flexsn_compiler::ir::{ParamKind, StateInit, StepGraph, Surrogate};
use flexsn_neurons::Builtin;
use flexsn_runtime::{Kernel, SavePolicy, Upstream};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn values(rng: &mut StdRng, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Two inputs, two states, a learnable shared param, a learnable per-neuron param and a
/// constant param; spikes with a surrogate.
fn two_state_core() -> StepGraph {
    let b = CoreBuilder::new("two_state");
    let (x, y) = (b.input("x"), b.input("y"));
    let v = b.state("v", StateInit::Const(0.0));
    let a = b.state("a", StateInit::Const(0.0));
    let decay = b.param("decay", ParamKind::Shared, true);
    let gain = b.param("gain", ParamKind::PerNeuron, true);
    let bias = b.param("bias", ParamKind::PerNeuron, false);
    let h = v * decay + x * gain + y * 0.5 - a;
    let s = (h - 1.0).spike(Surrogate::ATan { alpha: 2.0 });
    b.output("spike", s);
    b.output("h", h);
    b.set_state("v", h - s);
    b.set_state("a", a * 0.9 + s * 0.1 + bias);
    b.build().unwrap()
}

/// `sum(x * w)`, `w` shaped like `x`.
fn weighted(x: &Tensor, w: &[f32]) -> Tensor {
    let w = Tensor::from_slice(w, x.shape(), x.device()).unwrap();
    x.mul(&w).unwrap().sum_all().unwrap()
}

/// Random arguments of a [`two_state_core`] call: `x`, `y`, `v0`, `a0`, `decay`, `gain`,
/// `bias`.
fn call_values(rng: &mut StdRng, t: usize, n: usize) -> [Vec<f32>; 7] {
    [
        values(rng, t * n, -0.5, 1.5),
        values(rng, t * n, -0.5, 1.5),
        values(rng, n, 0.0, 0.5),
        values(rng, n, 0.0, 0.2),
        vec![0.7f32],
        values(rng, n, 0.5, 1.5),
        values(rng, n, -0.1, 0.1),
    ]
}

/// The candle op and `Kernel::backward` on the same call give the same bits for every
/// gradient: inputs, initial states, learnable params; upstreams on outputs, state sequences
/// and final states.
#[test]
fn gradients_equal_the_runtime_bit_for_bit() {
    let g = two_state_core();
    let kernel: Arc<Kernel> = Arc::new(default_jit().unwrap().compile(&g).unwrap());
    let (t, n) = (9, 6);
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(7);
    let [x, y, v0, a0, decay, gain, bias] = call_values(&mut rng, t, n);
    let up_s = values(&mut rng, t * n, -1.0, 1.0);
    let up_h = values(&mut rng, t * n, -1.0, 1.0);
    let up_v = values(&mut rng, t * n, -1.0, 1.0);
    let up_a_final = values(&mut rng, n, -1.0, 1.0);

    // candle: shape [T, 2, 3] for N = 6, to exercise trailing shapes.
    let var = |v: &[f32], shape: &[usize]| Var::from_slice(v, shape, &dev).unwrap();
    let (xv, yv) = (var(&x, &[t, 2, 3]), var(&y, &[t, 2, 3]));
    let (v0v, a0v) = (var(&v0, &[2, 3]), var(&a0, &[2, 3]));
    let (dv, gv) = (var(&decay, &[1]), var(&gain, &[n]));
    let bt = Tensor::from_slice(&bias, n, &dev).unwrap();
    let out = scan(
        &kernel,
        &[xv.as_tensor(), yv.as_tensor()],
        Some(&[v0v.as_tensor(), a0v.as_tensor()]),
        &[dv.as_tensor(), gv.as_tensor(), &bt],
    )
    .unwrap();
    assert_eq!(out.outputs[0].dims(), &[t, 2, 3]);
    assert_eq!(out.final_states[1].dims(), &[2, 3]);
    let up = |v: &[f32], like: &Tensor| Tensor::from_slice(v, like.shape(), &dev).unwrap();
    let loss = (out.outputs[0]
        .mul(&up(&up_s, &out.outputs[0]))
        .unwrap()
        .sum_all()
        .unwrap()
        + out.outputs[1]
            .mul(&up(&up_h, &out.outputs[1]))
            .unwrap()
            .sum_all()
            .unwrap()
        + out.state_seqs[0]
            .mul(&up(&up_v, &out.state_seqs[0]))
            .unwrap()
            .sum_all()
            .unwrap()
        + out.final_states[1]
            .mul(&up(&up_a_final, &out.final_states[1]))
            .unwrap()
            .sum_all()
            .unwrap())
    .unwrap();
    let grads = loss.backward().unwrap();
    let got = |v: &Var| flat(grads.get(v.as_tensor()).expect("a gradient"));

    // The runtime: same call; the final-state gradient of `a` is the last row of its
    // state-sequence gradient (the op reads final states from that row).
    let fwd = kernel
        .forward(
            t,
            n,
            &[&x, &y],
            Some(&[&v0, &a0]),
            &[("decay", &decay), ("gain", &gain), ("bias", &bias)],
        )
        .unwrap();
    assert_eq!(bits(fwd.output(0)), bits(&flat(&out.outputs[0])));
    assert_eq!(bits(fwd.output(1)), bits(&flat(&out.outputs[1])));
    assert_eq!(
        bits(fwd.state_seq(0).unwrap()),
        bits(&flat(&out.state_seqs[0]))
    );
    assert_eq!(
        bits(&fwd.final_states[1]),
        bits(&flat(&out.final_states[1]))
    );
    let mut up_a_seq = vec![0f32; t * n];
    up_a_seq[(t - 1) * n..].copy_from_slice(&up_a_final);
    let upstream = Upstream {
        outputs: vec![Some(&up_s), Some(&up_h)],
        state_seqs: vec![Some(&up_v), Some(&up_a_seq)],
        final_states: vec![None, None],
    };
    let want = kernel.backward(&fwd, &upstream).unwrap();
    assert_eq!(bits(&got(&xv)), bits(&want.inputs[0]));
    assert_eq!(bits(&got(&yv)), bits(&want.inputs[1]));
    assert_eq!(bits(&got(&v0v)), bits(&want.init_states[0]));
    assert_eq!(bits(&got(&a0v)), bits(&want.init_states[1]));
    assert_eq!(bits(&got(&dv)), bits(want.params[0].as_ref().unwrap()));
    assert_eq!(bits(&got(&gv)), bits(want.params[1].as_ref().unwrap()));
    assert!(want.params[2].is_none(), "bias is not learnable");

    // And the runtime with a separate final-state upstream agrees within rounding.
    let separate = Upstream {
        outputs: vec![Some(&up_s), Some(&up_h)],
        state_seqs: vec![Some(&up_v), None],
        final_states: vec![None, Some(&up_a_final)],
    };
    let sep = kernel.backward(&fwd, &separate).unwrap();
    for (a, b) in got(&xv).iter().zip(&sep.inputs[0]) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

/// The built-in nodes: PLIF's `w` gradient and the input gradient equal the runtime's bits.
#[test]
fn plif_node_gradients_equal_the_runtime() {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let cfg = flexsn_neurons::ParametricLIFNode::new().init_tau(3.0);
    let plif = ParametricLIFNode::new(cfg, vb.pp("p")).unwrap();
    let (t, n) = (7, 5);
    let mut rng = StdRng::seed_from_u64(3);
    let x = values(&mut rng, t * n, 0.0, 2.5);
    let xv = Var::from_slice(&x, (t, n), &dev).unwrap();
    let s = plif.forward(xv.as_tensor()).unwrap();
    let grads = s.sum_all().unwrap().backward().unwrap();
    let w = varmap.data().lock().unwrap()["p.w"].clone();
    assert_eq!(flat(w.as_tensor()), vec![cfg.initial_w()]);

    let kernel = default_jit()
        .unwrap()
        .compile(&Builtin::Plif(cfg).step_graph().unwrap())
        .unwrap();
    let w0 = [cfg.initial_w()];
    let fwd = kernel.forward(t, n, &[&x], None, &[("w", &w0)]).unwrap();
    assert_eq!(bits(fwd.output(0)), bits(&flat(&s)));
    let ones = vec![1f32; t * n];
    let want = kernel.backward_outputs(&fwd, &[Some(&ones)]).unwrap();
    assert_eq!(
        bits(&flat(grads.get(xv.as_tensor()).unwrap())),
        bits(&want.inputs[0])
    );
    assert_eq!(
        bits(&flat(grads.get(w.as_tensor()).unwrap())),
        bits(want.params[0].as_ref().unwrap())
    );
}

/// A LIF layer has no learnable params and puts nothing in the map; its spikes equal the
/// runtime's.
#[test]
fn lif_node_has_no_vars() {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let lif = LIFNode::new(Default::default(), vb).unwrap();
    assert!(varmap.all_vars().is_empty());
    let x = Tensor::full(0.9f32, (4, 3), &dev).unwrap();
    let s = flat(&lif.forward(&x).unwrap());
    let kernel = default_jit()
        .unwrap()
        .compile(&flexsn_neurons::LIFNode::new())
        .unwrap();
    let inf = kernel.infer(4, 3, &[&[0.9; 12]], None, &[]).unwrap();
    assert_eq!(bits(&s), bits(&inf.outputs[0]));
}

/// A smooth core (no spikes): every gradient matches central finite differences in f64 of the
/// f32 forward.
#[test]
fn gradients_match_finite_differences() {
    let b = CoreBuilder::new("smooth");
    let x = b.input("x");
    let v = b.state("v", StateInit::Const(0.1));
    let a = b.param("a", ParamKind::Shared, true);
    let k = b.param("k", ParamKind::PerNeuron, true);
    let h = v * a.sigmoid() + (x * k).tanh();
    b.output("y", h * h);
    b.set_state("v", h);
    let g = b.build().unwrap();

    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let (t, n) = (5, 3);
    let layer = ScanLayer::new(
        &default_jit().unwrap(),
        &g,
        vb,
        &[
            ("a", candle_nn::Init::Const(0.3)),
            ("k", candle_nn::Init::Const(0.8)),
        ],
        ParamDims {
            n: Some(n),
            t: None,
        },
    )
    .unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let x0 = values(&mut rng, t * n, -1.0, 1.0);
    let w = values(&mut rng, t * n, -1.0, 1.0);
    let wt = Tensor::from_slice(&w, (t, n), &dev).unwrap();
    let xv = Var::from_slice(&x0, (t, n), &dev).unwrap();
    let loss_of = |x: &Tensor| -> f64 {
        let y = layer.forward(x).unwrap();
        f64::from(
            y.mul(&wt)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
        )
    };
    let y = layer.forward(xv.as_tensor()).unwrap();
    let grads = y.mul(&wt).unwrap().sum_all().unwrap().backward().unwrap();
    let gx = flat(grads.get(xv.as_tensor()).unwrap());
    let eps = 1e-2f32;
    for i in 0..t * n {
        let shifted = |d: f32| {
            let mut v = x0.clone();
            v[i] += d;
            loss_of(&Tensor::from_slice(&v, (t, n), &dev).unwrap())
        };
        let fd = (shifted(eps) - shifted(-eps)) / (2.0 * f64::from(eps));
        let got = f64::from(gx[i]);
        assert!(
            (fd - got).abs() <= 2e-3 * (1.0 + fd.abs()),
            "x[{i}]: autograd {got}, finite differences {fd}"
        );
    }
    // The params: shift the Var's value in place.
    for name in ["a", "k"] {
        let p = varmap.data().lock().unwrap()[name].clone();
        let p0 = flat(p.as_tensor());
        let gp = flat(grads.get(p.as_tensor()).unwrap());
        for i in 0..p0.len() {
            let at = |d: f32| {
                let mut v = p0.clone();
                v[i] += d;
                p.set(&Tensor::from_slice(&v, p0.len(), &dev).unwrap())
                    .unwrap();
                loss_of(xv.as_tensor())
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * f64::from(eps));
            at(0.0);
            let got = f64::from(gp[i]);
            assert!(
                (fd - got).abs() <= 2e-3 * (1.0 + fd.abs()),
                "{name}[{i}]: autograd {got}, finite differences {fd}"
            );
        }
    }
}

/// Under `checkpoint:K` the op keeps `⌈T/K⌉` state rows (plus the final states) and its
/// gradients are the runtime's, bit for bit, with the final-state gradient as an upstream of
/// the final states; no state sequences are returned.
#[test]
fn checkpoint_policy_gradients_equal_the_runtime_bit_for_bit() {
    let g = two_state_core();
    let kernel: Arc<Kernel> = Arc::new(default_jit().unwrap().compile(&g).unwrap());
    let (t, n) = (9, 6);
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(11);
    let [x, y, v0, a0, decay, gain, bias] = call_values(&mut rng, t, n);
    let up_s = values(&mut rng, t * n, -1.0, 1.0);
    let up_a_final = values(&mut rng, n, -1.0, 1.0);
    let var = |v: &[f32], shape: &[usize]| Var::from_slice(v, shape, &dev).unwrap();
    let (xv, yv) = (var(&x, &[t, n]), var(&y, &[t, n]));
    let (v0v, a0v) = (var(&v0, &[n]), var(&a0, &[n]));
    let (dv, gv) = (var(&decay, &[1]), var(&gain, &[n]));
    let bt = Tensor::from_slice(&bias, n, &dev).unwrap();
    let fwd = kernel
        .forward(
            t,
            n,
            &[&x, &y],
            Some(&[&v0, &a0]),
            &[("decay", &decay), ("gain", &gain), ("bias", &bias)],
        )
        .unwrap();
    let upstream = Upstream {
        outputs: vec![Some(&up_s), None],
        state_seqs: vec![None, None],
        final_states: vec![None, Some(&up_a_final)],
    };
    let want = kernel.backward(&fwd, &upstream).unwrap();
    for k in [1, 4, 9, 20] {
        let out = flexsn_candle::scan_with(
            &kernel,
            &[xv.as_tensor(), yv.as_tensor()],
            Some(&[v0v.as_tensor(), a0v.as_tensor()]),
            &[dv.as_tensor(), gv.as_tensor(), &bt],
            SavePolicy::Checkpoint(k),
        )
        .unwrap();
        assert!(out.state_seqs.is_empty());
        assert_eq!(bits(fwd.output(0)), bits(&flat(&out.outputs[0])));
        assert_eq!(
            bits(&fwd.final_states[1]),
            bits(&flat(&out.final_states[1]))
        );
        let loss = (weighted(&out.outputs[0], &up_s) + weighted(&out.final_states[1], &up_a_final))
            .unwrap();
        let grads = loss.backward().unwrap();
        let got = |v: &Var| bits(&flat(grads.get(v.as_tensor()).expect("a gradient")));
        let what = format!("checkpoint:{k}");
        assert_eq!(got(&xv), bits(&want.inputs[0]), "{what}");
        assert_eq!(got(&yv), bits(&want.inputs[1]), "{what}");
        assert_eq!(got(&v0v), bits(&want.init_states[0]), "{what}");
        assert_eq!(got(&a0v), bits(&want.init_states[1]), "{what}");
        assert_eq!(got(&dv), bits(want.params[0].as_ref().unwrap()), "{what}");
        assert_eq!(got(&gv), bits(want.params[1].as_ref().unwrap()), "{what}");
    }
    // The node modules take the policy too; K = 0 is an error.
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let lif = LIFNode::new(Default::default(), vb.clone())
        .unwrap()
        .with_save_policy(SavePolicy::Checkpoint(4))
        .unwrap();
    assert_eq!(lif.layer().save_policy(), SavePolicy::Checkpoint(4));
    let xs = Tensor::from_slice(&x, (t, n), &dev).unwrap();
    let plain = LIFNode::new(Default::default(), vb.clone()).unwrap();
    assert_eq!(
        bits(&flat(&lif.forward(&xs).unwrap())),
        bits(&flat(&plain.forward(&xs).unwrap()))
    );
    assert!(
        LIFNode::new(Default::default(), vb)
            .unwrap()
            .with_save_policy(SavePolicy::Checkpoint(0))
            .is_err()
    );
}
