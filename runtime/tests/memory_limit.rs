//! The memory limit of the library API: every entry point estimates what it allocates before
//! allocating, and refuses past the limit with how much it needs; NaN initial states passed at
//! run time are data.

use std::time::Instant;

use flexsn_compiler::dsl::CoreBuilder;
use flexsn_compiler::ir::{StateInit, StepGraph};
use flexsn_runtime::memory::MemoryLimit;
use flexsn_runtime::{
    Backend, InferenceBuffers, Jit, KernelArgs, RuntimeError, SavePolicy, Upstream,
};

/// A leaky integrator: `v' = v / 2 + x`, output `v'`.
fn leaky() -> StepGraph {
    let b = CoreBuilder::new("leaky");
    let (x, v) = (b.input("x"), b.state("v", StateInit::Const(0.0)));
    let next = v * 0.5 + x;
    b.output("y", next);
    b.set_state("v", next);
    b.build().unwrap()
}

fn is_memory_error(r: Result<impl std::fmt::Debug, RuntimeError>, needed: &str) {
    match r {
        Err(e @ RuntimeError::Memory(_)) => {
            let m = e.to_string();
            assert!(m.contains(needed) && m.contains("set_memory_limit"), "{m}");
        }
        other => panic!("expected a memory error, got {other:?}"),
    }
}

#[test]
fn owned_and_host_entry_points_check_the_limit() {
    let mut jit = Jit::new(Backend::Cpu).unwrap();
    jit.set_memory_limit(MemoryLimit(64 << 10));
    let k = jit.compile(&leaky()).unwrap();
    let (t, n) = (16, 1024);
    let x = vec![0.7f32; t * n];
    // Outputs and states of 16 x 1024 neurons: about 72 KiB, over 64 KiB.
    is_memory_error(k.infer(t, n, &[&x], None, &[]), "KiB");
    is_memory_error(k.forward(t, n, &[&x], None, &[]), "KiB");
    // Caller-owned outputs: only the default initial states are allocated (4 KiB), which fits.
    let (mut s, mut v) = (vec![0.0f32; t * n], vec![0.0f32; n]);
    let args = KernelArgs::new(t, n).input(&x);
    let mut out = InferenceBuffers {
        outputs: vec![&mut s],
        final_states: vec![&mut v],
    };
    k.infer_host(&args, &mut out).unwrap();
    // Raising the limit lets the same call through.
    let mut k = k;
    k.set_memory_limit(MemoryLimit(1 << 30));
    let f = k.forward(t, n, &[&x], None, &[]).unwrap();
    assert_eq!(f.outputs[0], s);
}

#[test]
fn checkpointed_backward_checks_the_limit_like_the_states_backward() {
    let mut k = Jit::new(Backend::Cpu).unwrap().compile(&leaky()).unwrap();
    let (t, n) = (16, 1024);
    let x = vec![0.7f32; t * n];
    let up = Upstream::none(k.graph());
    for policy in [SavePolicy::States, SavePolicy::Checkpoint(4)] {
        k.set_save_policy(policy).unwrap();
        k.set_memory_limit(MemoryLimit(1 << 30));
        let f = k.forward(t, n, &[&x], None, &[]).unwrap();
        // The input gradient and the initial-state gradient: about 68 KiB, over 64 KiB.
        k.set_memory_limit(MemoryLimit(64 << 10));
        is_memory_error(k.backward(&f, &up), "KiB");
    }
}

#[test]
fn zero_steps_over_ten_billion_neurons_is_refused_at_once() {
    let k = Jit::new(Backend::Cpu).unwrap().compile(&leaky()).unwrap();
    let start = Instant::now();
    // T = 0: no input values, but 10^10 initial and final states (40 GB each).
    is_memory_error(k.infer(0, 10_000_000_000, &[&[]], None, &[]), "GiB");
    is_memory_error(k.forward(0, 10_000_000_000, &[&[]], None, &[]), "GiB");
    assert!(start.elapsed().as_secs() < 5);
    // Within the limit, zero steps is an empty result with the initial states as final states.
    let r = k.infer(0, 3, &[&[]], None, &[]).unwrap();
    assert!(r.outputs[0].is_empty());
    assert_eq!(r.final_states, vec![vec![0.0; 3]]);
}

#[test]
fn nan_initial_states_given_at_run_time_propagate_alike() {
    let g = leaky();
    let (t, n) = (3, 5);
    let x = vec![0.4f32; t * n];
    let v0 = [0.0, f32::NAN, 0.5, f32::NAN, 0.0];
    let run = |backend| {
        let k = Jit::new(backend).unwrap().compile(&g).unwrap();
        k.infer(t, n, &[&x], Some(&[&v0]), &[]).unwrap()
    };
    let (want, got) = (run(Backend::Interpreter), run(Backend::Cpu));
    let bits = |v: &[f32]| {
        v.iter()
            .map(|x| (x.is_nan(), x.to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&want.final_states[0]), bits(&got.final_states[0]));
    assert_eq!(bits(&want.outputs[0]), bits(&got.outputs[0]));
    // NaN stays in the neurons that started with it and nowhere else.
    let f = &got.final_states[0];
    assert!(f[1].is_nan() && f[3].is_nan());
    assert!(!f[0].is_nan() && !f[2].is_nan() && !f[4].is_nan());
}
