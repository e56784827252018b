//! `nodes::SlidingPSN` runs only the newest `min(k, T)` taps: the spikes and gradients of the
//! full `k`-tap scan, the older weights out of the loss's graph (gradient 0), and a huge `k`
//! that costs what its steps cost.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Module, VarBuilder, VarMap};
use flexsn_candle::{ScanLayer, default_jit, nodes};
use flexsn_neurons::psn::rng::SplitMix64;
use flexsn_neurons::psn::{SlidingPSNConfig, sliding_weight_name};
use flexsn_runtime::SavePolicy;

fn random(seed: u64, len: usize, scale: f32) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..len).map(|_| r.uniform_symmetric(scale)).collect()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
            "{what} [{i}] {x} vs {y}"
        );
    }
}

/// Spikes, the input gradient and each weight's gradient (`None`: not in the loss's graph) of
/// `forward` on `x` `[T, N]` with the loss `Σ gs · spikes`.
fn run(
    forward: &dyn Fn(&Tensor) -> Tensor,
    weights: &[Tensor],
    x: &[f32],
    gs: &[f32],
    (t, n): (usize, usize),
) -> (Vec<f32>, Vec<f32>, Vec<Option<f32>>) {
    let x = Var::from_slice(x, (t, n), &Device::Cpu).unwrap();
    let s = forward(x.as_tensor());
    let up = Tensor::from_slice(gs, (t, n), &Device::Cpu).unwrap();
    let grads = s.mul(&up).unwrap().sum_all().unwrap().backward().unwrap();
    let gw = weights
        .iter()
        .map(|w| grads.get(w).map(|g| values(g)[0]))
        .collect();
    (values(&s), values(grads.get(x.as_tensor()).unwrap()), gw)
}

/// The module of `k` taps with `weight` and bias -0.3, and its weight `Var`s.
fn module(k: usize, weight: &[f32], policy: SavePolicy) -> (nodes::SlidingPSN, Vec<Tensor>) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let m = nodes::SlidingPSN::new(SlidingPSNConfig::new(k), vb)
        .unwrap()
        .with_save_policy(policy)
        .unwrap();
    let vars = varmap.data().lock().unwrap().clone();
    for (i, &w) in weight.iter().enumerate() {
        let v = &vars[&sliding_weight_name(i)];
        v.set(&Tensor::new(&[w], &Device::Cpu).unwrap()).unwrap();
    }
    vars["bias"]
        .set(&Tensor::new(&[-0.3f32], &Device::Cpu).unwrap())
        .unwrap();
    let weights = m.params().0.to_vec();
    (m, weights)
}

/// A scan layer over the full graph of `weight.len()` taps (bias -0.3), and its weights.
fn full(weight: &[f32]) -> (ScanLayer, Vec<Tensor>) {
    let k = weight.len();
    let g = SlidingPSNConfig::new(k).step_graph().unwrap();
    let kernel = Arc::new(default_jit().unwrap().compile(&g).unwrap());
    let params: Vec<Tensor> = kernel
        .graph()
        .params()
        .iter()
        .map(|d| {
            let v = match d.name.strip_prefix("weight_") {
                Some(i) => weight[i.parse::<usize>().unwrap()],
                None => -0.3,
            };
            Var::new(&[v], &Device::Cpu).unwrap().as_tensor().clone()
        })
        .collect();
    let weights = (0..k)
        .map(|i| {
            let name = sliding_weight_name(i);
            let j = kernel.graph().param_index(&name).unwrap();
            params[j].clone()
        })
        .collect();
    (ScanLayer::from_kernel(kernel, params).unwrap(), weights)
}

#[test]
fn the_window_gives_the_full_scans_results() {
    // k = 60 taps over T = 37 and T = 90 steps (a window of 37, then all 60), both policies.
    let (k, n) = (60, 5);
    let weight = random(1, k, 0.3);
    for t in [37, 90] {
        let x = random(2, t * n, 2.0);
        let gs = random(3, t * n, 1.0);
        let (layer, full_w) = full(&weight);
        let (rs, rgx, rgw) = run(&|x| layer.forward(x).unwrap(), &full_w, &x, &gs, (t, n));
        for policy in [SavePolicy::States, SavePolicy::Checkpoint(4)] {
            let (m, w) = module(k, &weight, policy);
            let (s, gx, gw) = run(&|x| m.forward(x).unwrap(), &w, &x, &gs, (t, n));
            let what = format!("T = {t}, {policy:?}");
            assert_eq!(s, rs, "{what}: spikes");
            close(&gx, &rgx, &format!("{what}: grad x"));
            let reached = k.min(t);
            assert!(gw[..k - reached].iter().all(Option::is_none), "{what}");
            let gw: Vec<f32> = gw.iter().map(|g| g.unwrap_or(0.0)).collect();
            let rgw: Vec<f32> = rgw.iter().map(|g| g.unwrap()).collect();
            close(&gw, &rgw, &format!("{what}: grad weight"));
            assert!(rgw[..k - reached].iter().all(|&g| g == 0.0), "{what}");
        }
    }
}

#[test]
fn a_huge_k_costs_what_its_steps_cost() {
    // k = 100,000 over 16 steps: the scan of the 16 newest weights, nothing older in the graph.
    let (k, n, t) = (100_000, 8, 16);
    let weight = random(4, k, 0.3);
    let x = random(5, t * n, 2.0);
    let gs = random(6, t * n, 1.0);
    let (layer, full_w) = full(&weight[k - t..]);
    let (rs, rgx, rgw) = run(&|x| layer.forward(x).unwrap(), &full_w, &x, &gs, (t, n));
    let (m, w) = module(k, &weight, SavePolicy::States);
    assert_eq!(m.layer(t).unwrap().graph().params().len(), t + 1);
    let (s, gx, gw) = run(&|x| m.forward(x).unwrap(), &w, &x, &gs, (t, n));
    assert_eq!(s, rs, "spikes");
    close(&gx, &rgx, "grad x");
    assert!(gw[..k - t].iter().all(Option::is_none));
    let gw: Vec<f32> = gw[k - t..].iter().map(|g| g.unwrap()).collect();
    let rgw: Vec<f32> = rgw.iter().map(|g| g.unwrap()).collect();
    close(&gw, &rgw, "grad weight");
}

#[test]
fn zero_taps_is_an_error() {
    let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
    let err = nodes::SlidingPSN::new(SlidingPSNConfig::new(0), vb).unwrap_err();
    assert!(err.to_string().contains("k >= 1"), "{err}");
}
