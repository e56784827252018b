//! `Node::builtin` of a SlidingPSN runs the newest taps its steps can reach and grows them as
//! the steps add up: it gives what a node over the full `k`-tap graph gives (spikes, input and
//! parameter gradients, states by name), the older weights' gradient is exactly 0, and a huge
//! `k` costs what the steps cost.

use flexsn_neurons::Builtin;
use flexsn_neurons::node::{Node, NodeBackend, StepMode};
use flexsn_neurons::psn::rng::SplitMix64;
use flexsn_neurons::psn::{SLIDING_BIAS, SlidingPSNConfig, sliding_weight_name};

fn random(seed: u64, len: usize, scale: f32) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..len).map(|_| r.uniform_symmetric(scale)).collect()
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

/// Sets `weight` (`[k]`, by name) and the bias.
fn set_weights(node: &mut Node, weight: &[f32]) {
    for (i, &w) in weight.iter().enumerate() {
        node.set_param(&sliding_weight_name(i), &[w]).unwrap();
    }
    node.set_param(SLIDING_BIAS, &[-0.3]).unwrap();
}

/// A node over the full graph of `k` taps (no window), in single-step mode as the built-in.
fn full(k: usize, backend: NodeBackend, weight: &[f32]) -> Node {
    let mut node = Node::new(&SlidingPSNConfig::new(k).step_graph().unwrap(), backend).unwrap();
    node.set_step_mode(StepMode::Single).unwrap();
    set_weights(&mut node, weight);
    node
}

/// The built-in node of `k` taps.
fn windowed(k: usize, backend: NodeBackend, weight: &[f32]) -> Node {
    let b = Builtin::SlidingPsn(SlidingPSNConfig::new(k));
    let mut node = Node::builtin(&b, backend).unwrap();
    set_weights(&mut node, weight);
    node
}

/// Runs `calls` (a step count each: 1 is a single step, more a sequence), then backward;
/// returns the spikes and the input gradient.
fn run(node: &mut Node, x: &[f32], gs: &[f32], n: usize, calls: &[usize]) -> [Vec<f32>; 2] {
    let mut s = vec![];
    let mut at = 0;
    for &t in calls {
        let xs = &x[at * n..(at + t) * n];
        let out = if t == 1 {
            node.single_step(&[xs], n)
        } else {
            node.multi_step(&[xs], n)
        };
        s.extend(out.unwrap().remove(0));
        at += t;
    }
    let t: usize = calls.iter().sum();
    let g = node.backward(&[Some(&gs[..t * n])]).unwrap();
    [s, g.inputs[0].clone()]
}

fn grad(node: &Node, name: &str) -> Vec<f32> {
    node.param_grad(name).unwrap().unwrap().to_vec()
}

#[test]
fn a_growing_window_gives_the_full_graphs_results() {
    // 150 steps of k = 200 taps: single steps and sequences grow the window from 64 past 128.
    let (k, n) = (200, 3);
    let calls = [1, 1, 40, 1, 70, 37];
    let t: usize = calls.iter().sum();
    let x = random(1, t * n, 2.0);
    let gs = random(2, t * n, 1.0);
    let weight = random(3, k, 0.3);
    for backend in [NodeBackend::Interpreter, NodeBackend::Cpu] {
        let mut reference = full(k, backend, &weight);
        let mut node = windowed(k, backend, &weight);
        assert_eq!(node.window_taps(), Some(64));
        let [rs, rgx] = run(&mut reference, &x, &gs, n, &calls);
        let [s, gx] = run(&mut node, &x, &gs, n, &calls);
        assert_eq!(node.window_taps(), Some(k), "{backend:?}");
        assert_eq!(s, rs, "{backend:?}: spikes");
        close(&gx, &rgx, &format!("{backend:?}: grad x"));
        for name in (0..k).map(sliding_weight_name).chain([SLIDING_BIAS.into()]) {
            let what = format!("{backend:?}: {name}");
            close(&grad(&node, &name), &grad(&reference, &name), &what);
            assert_eq!(node.param(&name).unwrap(), reference.param(&name).unwrap());
        }
        for j in 1..k {
            let name = format!("x_prev{j}");
            assert_eq!(node.state(&name).unwrap(), reference.state(&name).unwrap());
        }
    }
}

#[test]
fn a_huge_k_costs_what_its_steps_cost() {
    // k = 100,000 over 16 steps: the window stays at 64 taps and the run equals the full graph
    // of the 16 newest weights; every older weight has gradient 0 and its value is kept.
    let (k, n, t) = (100_000, 8, 16);
    let x = random(4, t * n, 2.0);
    let gs = random(5, t * n, 1.0);
    let weight = random(6, k, 0.3);
    for backend in [NodeBackend::Interpreter, NodeBackend::Cpu] {
        let mut reference = full(t, backend, &weight[k - t..]);
        let mut node = windowed(k, backend, &weight);
        let calls = [1, 1, 14];
        let [rs, rgx] = run(&mut reference, &x, &gs, n, &calls);
        let [s, gx] = run(&mut node, &x, &gs, n, &calls);
        assert_eq!(node.window_taps(), Some(64));
        assert_eq!(node.graph().params().len(), 65);
        assert_eq!(s, rs, "{backend:?}: spikes");
        close(&gx, &rgx, &format!("{backend:?}: grad x"));
        for i in 0..t {
            let (big, small) = (sliding_weight_name(k - t + i), sliding_weight_name(i));
            close(&grad(&node, &big), &grad(&reference, &small), &big);
        }
        for i in [0, 1, k / 2, k - 64, k - t - 1] {
            let name = sliding_weight_name(i);
            assert_eq!(grad(&node, &name), [0.0], "{name}");
            assert_eq!(node.param(&name).unwrap(), Some(&weight[i..=i]));
        }
        assert_eq!(node.state("x_prev99999").unwrap(), Some(&[0.0; 8][..]));
        assert!(node.state("x_prev100000").is_err());
        assert!(node.param(&sliding_weight_name(k)).is_err());
    }
}

#[test]
fn registers_set_by_hand_are_carried_as_far_as_the_full_graph_carries_them() {
    // A value set in register 150 (beyond the initial window) reaches weight_{k-1-150-s} at
    // step s: the window grows to hold it, and later steps grow it further.
    let (k, n, t) = (300, 2, 20);
    let x = random(7, t * n, 2.0);
    let gs = random(8, t * n, 1.0);
    let weight = random(9, k, 0.3);
    let reg = random(10, n, 3.0);
    let mut reference = full(k, NodeBackend::Interpreter, &weight);
    let mut node = windowed(k, NodeBackend::Interpreter, &weight);
    for m in [&mut reference, &mut node] {
        m.single_step(&[&x[..n]], n).unwrap();
        m.set_state("x_prev150", &reg).unwrap();
    }
    let [rs, rgx] = run(&mut reference, &x[n..], &gs, n, &[t - 1]);
    let [s, gx] = run(&mut node, &x[n..], &gs, n, &[t - 1]);
    assert_eq!(s, rs, "spikes");
    close(&gx, &rgx, "grad x");
    for name in (0..k).map(sliding_weight_name) {
        close(&grad(&node, &name), &grad(&reference, &name), &name);
    }
    assert!(node.window_taps().unwrap() > 150 + t);
}
