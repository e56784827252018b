//! CPU compile time grows near-linearly with the step graph: long chains of approximated ops and
//! many states (forward and backward scans), checked as a ratio per size step, not as absolute
//! times. Each kernel is also checked against the interpreter on a small run.

use std::time::{Duration, Instant};

use flexsn_compiler::autodiff::GradSpec;
use flexsn_compiler::checkpoint::SavePolicy;
use flexsn_compiler::dsl::CoreBuilder;
use flexsn_compiler::ir::{StateInit, StepGraph};
use flexsn_runtime::{Backend, Jit};

/// `h = tanh(tanh(… tanh(v + x)))` (`n` times), output and next state `h`.
fn tanh_chain(n: usize) -> StepGraph {
    let b = CoreBuilder::new("tanh_chain");
    let (x, v) = (b.input("x"), b.state("v", StateInit::Const(0.0)));
    let mut h = v + x;
    for _ in 0..n {
        h = h.tanh();
    }
    b.output("h", h);
    b.set_state("v", h);
    b.build().unwrap()
}

/// `n` states `s_i' = s_i / 2 + x`, output `x + Σ s_i`.
fn many_states(n: usize) -> StepGraph {
    let b = CoreBuilder::new("many_states");
    let x = b.input("x");
    let states: Vec<_> = (0..n)
        .map(|i| b.state(&format!("s{i}"), StateInit::Const(0.5)))
        .collect();
    let mut y = x;
    for s in &states {
        y = y + *s;
    }
    b.output("y", y);
    for (i, s) in states.iter().enumerate() {
        b.set_state(&format!("s{i}"), *s * 0.5 + x);
    }
    b.build().unwrap()
}

/// Compiles `g`'s forward scans and its backward scan on a fresh CPU JIT.
fn compile_time(g: &StepGraph) -> Duration {
    let jit = Jit::new(Backend::Cpu).unwrap();
    let start = Instant::now();
    let kernel = jit.compile(g).unwrap();
    kernel.prepare_backward(&GradSpec::outputs_only(g)).unwrap();
    start.elapsed()
}

/// A graph of a given size.
type MakeGraph = fn(usize) -> StepGraph;

/// The best of three compile times of `make(n)` (so that a busy machine does not make a linear
/// compiler look quadratic).
fn best_of_three(make: MakeGraph, n: usize) -> Duration {
    let g = make(n);
    (0..3).map(|_| compile_time(&g)).min().unwrap()
}

#[test]
fn cpu_compile_time_is_near_linear() {
    // (what, graph of size n, n): 4x the graph must take at most about 4x the time (linear is
    // 4, quadratic 16). Before: 400 tanh took 8 s (backtracking register allocation of
    // ~150,000 instructions per scan), 2,000 states 40 s (a copy loop per state, every live
    // value crossing each).
    let cases: [(&str, MakeGraph, usize); 2] = [
        ("chained tanh", tanh_chain, 100),
        ("states", many_states, 500),
    ];
    for (what, make, n) in cases {
        let small = best_of_three(make, n).as_secs_f64();
        let large = best_of_three(make, 4 * n).as_secs_f64();
        assert!(
            large < 9.0 * small.max(1e-6),
            "{what}: size {n} compiles in {small:.3} s, size {} in {large:.3} s (over 9x)",
            4 * n
        );
    }
}

#[test]
fn big_kernels_agree_with_the_interpreter() {
    for g in [tanh_chain(150), many_states(300)] {
        let (t, n) = (3, 21);
        let xs: Vec<f32> = (0..t * n).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |backend| {
            let k = Jit::new(backend).unwrap().compile(&g).unwrap();
            let f = k.forward(t, n, &[&xs], None, &[]).unwrap();
            let ones = vec![1.0f32; t * n];
            let grads = k.backward_outputs(&f, &[Some(&ones)]).unwrap();
            (f.outputs, f.final_states, grads.inputs, grads.init_states)
        };
        let (want, got) = (run(Backend::Interpreter), run(Backend::Cpu));
        let close = |a: &[Vec<f32>], b: &[Vec<f32>]| {
            a.iter()
                .flatten()
                .zip(b.iter().flatten())
                .all(|(a, b)| (a - b).abs() <= 1e-4 * (1.0 + a.abs()))
        };
        assert!(close(&want.0, &got.0), "{}: outputs", g.name());
        assert!(close(&want.1, &got.1), "{}: final states", g.name());
        assert!(close(&want.2, &got.2), "{}: input gradients", g.name());
        assert!(
            close(&want.3, &got.3),
            "{}: initial-state gradients",
            g.name()
        );
        // The checkpointed backward runs these kernels per chunk and segment, on threads with
        // their big stacks and scratch memory: bit-identical to `states`.
        let mut k = Jit::new(Backend::Cpu).unwrap().compile(&g).unwrap();
        k.set_save_policy(SavePolicy::Checkpoint(2)).unwrap();
        let f = k.forward(t, n, &[&xs], None, &[]).unwrap();
        let ones = vec![1.0f32; t * n];
        let grads = k.backward_outputs(&f, &[Some(&ones)]).unwrap();
        assert_eq!(
            grads.inputs,
            got.2,
            "{}: checkpointed input gradients",
            g.name()
        );
        assert_eq!(
            grads.init_states,
            got.3,
            "{}: checkpointed state gradients",
            g.name()
        );
    }
}
