//! `checkpoint:K` against `states` on every backend that runs here: forward outputs, final
//! states and every gradient bit-identical, for T a multiple of K or not, K = 1 and K >= T, on
//! the sample neurons and on random graphs (the compiler's proptest strategy: a failing graph
//! shrinks to a small one).

use flexsn_compiler::codegen::cuda::samples;
use flexsn_compiler::ir::StepGraph;
use flexsn_compiler::random::{RandomGraphConfig, graph_strategy, random_inputs, random_upstream};
use flexsn_runtime::cpu::CpuOptions;
use flexsn_runtime::cuda::emulated::find_cxx;
use flexsn_runtime::{
    Backend, CheckpointBuffers, GradBuffers, Jit, KernelArgs, SavePolicy, TrainingBuffers, Upstream,
};
use proptest::test_runner::{Config, TestRunner};

mod common;
use common::{same, same_grads};

fn graphs() -> Vec<StepGraph> {
    vec![
        samples::lif(2.0, 1.0, 0.0).unwrap(),
        samples::if_soft(1.0).unwrap(),
        samples::plif(1.0, 0.0).unwrap(),
        samples::all_ops().unwrap(),
    ]
}

/// [`check_backend`] on `cases` random graphs of the compiler's strategy.
fn check_random_graphs(backend: Backend, cases: u32, ts: &[usize], ks: &[usize]) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&graph_strategy(RandomGraphConfig::all()), |g| {
        check_backend(backend, &[g], ts, ks);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{}: {e}", backend.name());
    }
}

/// `graphs` on `backend`, `T` in `ts`, `K` in `ks`.
fn check_backend(backend: Backend, graphs: &[StepGraph], ts: &[usize], ks: &[usize]) {
    check_jit(&Jit::new(backend).unwrap(), 37, graphs, ts, ks);
}

/// `graphs` on `jit` with `n` neurons, `T` in `ts`, `K` in `ks`.
fn check_jit(jit: &Jit, n: usize, graphs: &[StepGraph], ts: &[usize], ks: &[usize]) {
    for (gi, g) in graphs.iter().enumerate() {
        let mut kernel = jit.compile(g).unwrap();
        for &t in ts {
            let (xs, s0, ps) = random_inputs(gi as u64 * 31 + t as u64, g, t, n);
            let xs: Vec<&[f32]> = xs.iter().map(Vec::as_slice).collect();
            let s0: Vec<&[f32]> = s0.iter().map(Vec::as_slice).collect();
            let ps: Vec<(&str, &[f32])> = g
                .params()
                .iter()
                .zip(&ps)
                .map(|(d, p)| (d.name.as_str(), p.as_slice()))
                .collect();
            let drawn = random_upstream(gi as u64 ^ (t as u64) << 8, g, t, n);
            let up = drawn.upstream();
            kernel.set_save_policy(SavePolicy::States).unwrap();
            let fs = kernel.forward(t, n, &xs, Some(&s0), &ps).unwrap();
            let want = kernel.backward(&fs, &up).unwrap();
            for &k in ks {
                let what = format!(
                    "{} graph {gi} ({}), N={n}, T={t}, K={k}",
                    jit.backend_name(),
                    g.name()
                );
                kernel.set_save_policy(SavePolicy::Checkpoint(k)).unwrap();
                let fc = kernel.forward(t, n, &xs, Some(&s0), &ps).unwrap();
                // Without states or steps there is nothing to save: `states` runs.
                let saving = !g.states().is_empty() && t > 0;
                let want_policy = if saving {
                    SavePolicy::Checkpoint(k)
                } else {
                    SavePolicy::States
                };
                assert_eq!(fc.save_policy(), want_policy, "{what}");
                for (o, (a, b)) in fc.outputs.iter().zip(&fs.outputs).enumerate() {
                    same(&format!("{what}: output {o}"), a, b);
                }
                for (j, (a, b)) in fc.final_states.iter().zip(&fs.final_states).enumerate() {
                    same(&format!("{what}: final state {j}"), a, b);
                }
                if saving {
                    assert_eq!(
                        fc.saved_bytes(),
                        4 * g.states().len() * n * t.div_ceil(k),
                        "{what}: saved bytes"
                    );
                    assert!(fc.state_seq(0).is_none());
                }
                let got = kernel.backward(&fc, &up).unwrap();
                same_grads(&what, &got, &want);
            }
        }
    }
}

#[test]
fn checkpoint_equals_states_on_the_interpreter() {
    let (ts, ks) = ([0, 1, 5, 7], [1, 2, 3, 7, 8]);
    check_backend(Backend::Interpreter, &graphs(), &ts, &ks);
    check_random_graphs(Backend::Interpreter, 10, &ts, &ks);
}

#[test]
fn checkpoint_equals_states_on_the_cpu() {
    let (ts, ks) = ([0, 1, 5, 7], [1, 2, 3, 7, 8]);
    check_backend(Backend::Cpu, &graphs(), &ts, &ks);
    check_random_graphs(Backend::Cpu, 10, &ts, &ks);
}

/// Enough neurons for two threads of several chunks each (the CPU recomputes each segment one
/// chunk of neurons at a time, in cache: at most 65,536, fewer on machines with less cache), and
/// a last chunk shorter than the others.
#[test]
fn checkpoint_equals_states_on_the_cpu_over_threads_and_chunks() {
    let jit = Jit::cpu(CpuOptions {
        threads: 2,
        ..CpuOptions::default()
    })
    .unwrap();
    check_jit(&jit, 2 * 65_536 + 2_011, &graphs(), &[7], &[3, 7]);
}

#[test]
fn checkpoint_equals_states_on_emulated_cuda() {
    if find_cxx().is_err() {
        eprintln!("skipped: no C++ compiler");
        return;
    }
    // Each kernel is a C++ compile here: fewer graphs and cases.
    check_backend(Backend::CudaEmulated, &graphs(), &[7], &[1, 3, 8]);
    check_random_graphs(Backend::CudaEmulated, 2, &[7], &[1, 3, 8]);
}

#[test]
fn saved_bytes_fall_with_k_and_zero_is_refused() {
    let g = samples::lif(2.0, 1.0, 0.0).unwrap();
    let mut kernel = Jit::new(Backend::Interpreter).unwrap().compile(&g).unwrap();
    let (t, n) = (64, 8);
    let x = vec![0.7f32; t * n];
    let states = kernel
        .forward(t, n, &[&x], None, &[])
        .unwrap()
        .saved_bytes();
    assert_eq!(states, 4 * (t + 1) * n);
    kernel.set_save_policy(SavePolicy::Checkpoint(16)).unwrap();
    let ck = kernel
        .forward(t, n, &[&x], None, &[])
        .unwrap()
        .saved_bytes();
    assert_eq!(ck, 4 * 4 * n);
    assert!(kernel.set_save_policy(SavePolicy::Checkpoint(0)).is_err());
    assert_eq!(kernel.save_policy(), SavePolicy::Checkpoint(16));
}

/// The host-buffer entry points of `checkpoint:K` (what the bridges and `Node` use) give what
/// `forward_host` / `backward_host` give, bit for bit; wrong checkpoint buffers and K = 0 are
/// errors.
#[test]
fn host_checkpoint_entry_points_equal_states() {
    check_host_entry_points(Backend::Cpu);
    // The CUDA backends run the fused checkpoint kernels here (emulated as host C++).
    if find_cxx().is_ok() {
        check_host_entry_points(Backend::CudaEmulated);
    }
}

/// The host entry points of `checkpoint:3` against those of `states` on `backend`.
fn check_host_entry_points(backend: Backend) {
    let g = samples::plif(1.0, 0.0).unwrap();
    let kernel = Jit::new(backend).unwrap().compile(&g).unwrap();
    let (t, n, k) = (7, 37, 3);
    let (xs, s0, ps) = random_inputs(5, &g, t, n);
    let mut args = KernelArgs::new(t, n);
    args.inputs = xs.iter().map(Vec::as_slice).collect();
    args.init_states = Some(s0.iter().map(Vec::as_slice).collect());
    args.params = g
        .params()
        .iter()
        .zip(&ps)
        .map(|(d, p)| (d.name.as_str(), p.as_slice()))
        .collect();
    let gy = vec![0.5f32; t * n];
    let mut up = Upstream::none(&g);
    up.outputs[0] = Some(&gy);
    let zeros = |len: usize, count: usize| vec![vec![0.0f32; len]; count];
    let (no, ns, ni) = (g.outputs().len(), g.states().len(), g.inputs().len());

    // states
    let (mut out_s, mut bufs, mut fin_s) = (zeros(t * n, no), zeros((t + 1) * n, ns), zeros(n, ns));
    kernel
        .forward_host(
            &args,
            &mut TrainingBuffers {
                outputs: out_s.iter_mut().map(Vec::as_mut_slice).collect(),
                state_bufs: bufs.iter_mut().map(Vec::as_mut_slice).collect(),
                final_states: fin_s.iter_mut().map(Vec::as_mut_slice).collect(),
            },
        )
        .unwrap();
    let (mut gx_s, mut gs_s) = (zeros(t * n, ni), zeros(n, ns));
    let bref: Vec<&[f32]> = bufs.iter().map(Vec::as_slice).collect();
    let gp_s = kernel
        .backward_host(
            &args,
            &bref,
            &up,
            &mut GradBuffers {
                inputs: gx_s.iter_mut().map(Vec::as_mut_slice).collect(),
                init_states: gs_s.iter_mut().map(Vec::as_mut_slice).collect(),
            },
        )
        .unwrap();

    // checkpoint:3
    let rows = t.div_ceil(k);
    let (mut out_c, mut cps, mut fin_c) = (zeros(t * n, no), zeros(rows * n, ns), zeros(n, ns));
    kernel
        .forward_checkpointed_host(
            &args,
            k,
            &mut CheckpointBuffers {
                outputs: out_c.iter_mut().map(Vec::as_mut_slice).collect(),
                checkpoints: cps.iter_mut().map(Vec::as_mut_slice).collect(),
                final_states: fin_c.iter_mut().map(Vec::as_mut_slice).collect(),
            },
        )
        .unwrap();
    for (a, b) in out_c.iter().zip(&out_s).chain(fin_c.iter().zip(&fin_s)) {
        same("host forward", a, b);
    }
    let (mut gx_c, mut gs_c) = (zeros(t * n, ni), zeros(n, ns));
    let cref: Vec<&[f32]> = cps.iter().map(Vec::as_slice).collect();
    let mut grads = GradBuffers {
        inputs: gx_c.iter_mut().map(Vec::as_mut_slice).collect(),
        init_states: gs_c.iter_mut().map(Vec::as_mut_slice).collect(),
    };
    let gp_c = kernel
        .backward_checkpointed_host(&args, k, &cref, &up, &mut grads)
        .unwrap();
    // Wrong buffers and K = 0 are errors, not panics.
    let short: Vec<&[f32]> = cps.iter().map(|c| &c[n..]).collect();
    let err = kernel
        .backward_checkpointed_host(&args, k, &short, &up, &mut grads)
        .unwrap_err();
    assert!(err.to_string().contains("checkpoint buffer"), "{err}");
    assert!(
        kernel
            .backward_checkpointed_host(&args, 0, &cref, &up, &mut grads)
            .is_err()
    );
    drop(grads);
    for (a, b) in gx_c.iter().zip(&gx_s).chain(gs_c.iter().zip(&gs_s)) {
        same("host backward", a, b);
    }
    for (a, b) in gp_c.iter().zip(&gp_s) {
        same(
            "host param grad",
            a.as_deref().unwrap_or(&[]),
            b.as_deref().unwrap_or(&[]),
        );
    }
}
