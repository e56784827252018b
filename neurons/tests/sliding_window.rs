//! SlidingPSN with a window far longer than the steps run: only the newest taps the steps can
//! reach run (work bounded by the steps, not by `k`), the results are those of the full scan,
//! and the gradient of every older weight is exactly 0.

use flexsn_neurons::node::{NodeBackend, StepMode};
use flexsn_neurons::psn::rng::SplitMix64;
use flexsn_neurons::psn::{SlidingPSN, SlidingPSNConfig};
use flexsn_runtime::{Backend, Jit, SavePolicy};

fn random(seed: u64, len: usize, scale: f32) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..len).map(|_| r.uniform_symmetric(scale)).collect()
}

fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what} [{i}] {x} vs {y}"
        );
    }
}

/// Builds a module from its config on one backend.
type Builder = Box<dyn Fn(SlidingPSNConfig) -> SlidingPSN>;

/// Runs `calls` (step counts; single-step mode runs them one step at a time), then backward.
fn run(m: &mut SlidingPSN, x: &[f32], gs: &[f32], n: usize, calls: &[usize]) -> [Vec<f32>; 3] {
    let mut s = vec![];
    let mut at = 0;
    for &t in calls {
        let xs = &x[at * n..(at + t) * n];
        match m.step_mode() {
            StepMode::Multi => s.extend(m.forward(xs, n).unwrap()),
            StepMode::Single => {
                for row in xs.chunks(n) {
                    s.extend(m.forward(row, n).unwrap());
                }
            }
        }
        at += t;
    }
    let gx = m.backward(gs).unwrap();
    [s, gx, m.weight_grad().unwrap()]
}

/// The module with `weight` and bias -0.3 on `backend`.
fn module(
    k: usize,
    mode: StepMode,
    weight: &[f32],
    build: &dyn Fn(SlidingPSNConfig) -> SlidingPSN,
) -> SlidingPSN {
    let mut m = build(SlidingPSNConfig::new(k).step_mode(mode));
    m.set_weight(weight).unwrap();
    m.set_bias(-0.3).unwrap();
    m
}

/// Checks a run of `k` taps against the interpreter's full scan of the `t` newest taps.
fn check_against_reachable_part(
    k: usize,
    n: usize,
    calls: &[usize],
    build: &dyn Fn(SlidingPSNConfig) -> SlidingPSN,
    setup: &dyn Fn(&mut SlidingPSN),
    what: &str,
) -> usize {
    let t: usize = calls.iter().sum();
    let x = random(11, t * n, 2.0);
    let gs = random(12, t * n, 1.0);
    let weight = random(13, k, 0.3);
    let mut window = 0;
    for mode in [StepMode::Multi, StepMode::Single] {
        let interp = |c: SlidingPSNConfig| c.build(NodeBackend::Interpreter).unwrap();
        let mut reference = module(t, mode, &weight[k - t..], &interp);
        let [rs, rgx, rgw] = run(&mut reference, &x, &gs, n, calls);
        let mut m = module(k, mode, &weight, build);
        setup(&mut m);
        let [s, gx, gw] = run(&mut m, &x, &gs, n, calls);
        assert_eq!(s, rs, "{what} {mode:?}: spikes");
        close(&gx, &rgx, 1e-5, &format!("{what} {mode:?}: grad x"));
        assert!(gw[..k - t].iter().all(|&g| g == 0.0), "{what} {mode:?}");
        close(
            &gw[k - t..],
            &rgw,
            1e-5,
            &format!("{what} {mode:?}: grad weight"),
        );
        assert_eq!(m.weight().unwrap(), weight, "{what} {mode:?}");
        // The node runs a window bounded by the steps, not by k.
        assert!(
            m.window() < 4 * t.max(64),
            "{what} {mode:?}: window {}",
            m.window()
        );
        assert_eq!(m.node().graph().states().len(), m.window() - 1);
        window = window.max(m.window());
    }
    window
}

#[test]
fn a_huge_window_runs_like_its_reachable_part_on_every_backend() {
    let k = 100_000;
    let mut backends: Vec<(&str, Builder)> = vec![
        (
            "interpreter",
            Box::new(|c| c.build(NodeBackend::Interpreter).unwrap()),
        ),
        ("cpu", Box::new(|c| c.build(NodeBackend::Cpu).unwrap())),
    ];
    match Jit::new(Backend::CudaEmulated) {
        Ok(jit) => backends.push((
            "cuda-emulated",
            Box::new(move |c| c.build_with_jit(&jit).unwrap()),
        )),
        // The emulated backend needs a C++ compiler; say so rather than pass silently.
        Err(e) => eprintln!("not run on cuda-emulated: {e}"),
    }
    for (name, build) in &backends {
        let w = check_against_reachable_part(k, 33, &[16], build.as_ref(), &|_| {}, name);
        assert_eq!(w, 64, "{name}");
    }
}

#[test]
fn the_window_grows_while_steps_are_recorded() {
    // 150 steps in two calls: the second grows the window past the initial 64 with the first
    // call's steps on the tape (single steps grow it twice), under both save policies.
    let k = 1000;
    for (name, backend) in [
        ("interpreter", NodeBackend::Interpreter),
        ("cpu", NodeBackend::Cpu),
    ] {
        let build = move |c: SlidingPSNConfig| c.build(backend).unwrap();
        let w = check_against_reachable_part(k, 5, &[40, 110], &build, &|_| {}, name);
        assert_eq!(w, 256, "{name}");
        let checkpointed = |m: &mut SlidingPSN| {
            m.node_mut()
                .set_save_policy(SavePolicy::Checkpoint(7))
                .unwrap();
            m.node_mut().set_store_state_seqs(true);
        };
        check_against_reachable_part(k, 5, &[40, 110], &build, &checkpointed, name);
    }
}

#[test]
fn gradients_accumulate_across_resets_and_windows() {
    let (k, n, t) = (500, 3, 70);
    let x = random(21, t * n, 2.0);
    let gs = random(22, t * n, 1.0);
    let mut m = SlidingPSNConfig::new(k)
        .step_mode(StepMode::Multi)
        .build(NodeBackend::Interpreter)
        .unwrap();
    // 10 steps with the initial window, then 70 that grow it: the first gradients are kept.
    m.forward(&x[..10 * n], n).unwrap();
    m.backward(&gs[..10 * n]).unwrap();
    let first = m.weight_grad().unwrap();
    m.reset();
    m.forward(&x, n).unwrap();
    m.backward(&gs).unwrap();
    assert_eq!(m.window(), 128);
    let both = m.weight_grad().unwrap();
    m.zero_grad();
    m.reset();
    m.forward(&x, n).unwrap();
    m.backward(&gs).unwrap();
    let second = m.weight_grad().unwrap();
    let sum: Vec<f32> = first.iter().zip(&second).map(|(a, b)| a + b).collect();
    close(&both, &sum, 1e-6, "accumulated");
    assert!(both[..k - t].iter().all(|&g| g == 0.0));
}
