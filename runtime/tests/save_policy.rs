//! `checkpoint:K` against `states` on every backend that runs here: forward outputs, final
//! states and every gradient bit-identical, for T a multiple of K or not, K = 1 and K >= T, on
//! the sample neurons and on random graphs.

use flexsn_compiler::codegen::cuda::samples;
use flexsn_compiler::ir::StepGraph;
use flexsn_compiler::random::{RandomGraphConfig, SplitMix64, random_graph, random_inputs};
use flexsn_runtime::cpu::CpuOptions;
use flexsn_runtime::cuda::emulated::find_cxx;
use flexsn_runtime::{Backend, Gradients, Jit, SavePolicy, Upstream};

fn graphs() -> Vec<StepGraph> {
    let mut gs = vec![
        samples::lif(2.0, 1.0, 0.0).unwrap(),
        samples::if_soft(1.0).unwrap(),
        samples::plif(1.0, 0.0).unwrap(),
        samples::all_ops().unwrap(),
    ];
    gs.extend((0..10).map(|s| random_graph(s, &RandomGraphConfig::all())));
    gs
}

fn same(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
            "{what}[{i}]: checkpoint {x}, states {y}"
        );
    }
}

fn same_grads(what: &str, a: &Gradients<f32>, b: &Gradients<f32>) {
    for (i, (x, y)) in a.inputs.iter().zip(&b.inputs).enumerate() {
        same(&format!("{what}: grad input {i}"), x, y);
    }
    for (j, (x, y)) in a.init_states.iter().zip(&b.init_states).enumerate() {
        same(&format!("{what}: grad init state {j}"), x, y);
    }
    assert_eq!(a.params.len(), b.params.len());
    for (k, (x, y)) in a.params.iter().zip(&b.params).enumerate() {
        match (x, y) {
            (Some(x), Some(y)) => same(&format!("{what}: grad param {k}"), x, y),
            (None, None) => {}
            _ => panic!("{what}: grad param {k} present in one only"),
        }
    }
}

/// `graphs` of [`graphs`] on `backend`, `T` in `ts`, `K` in `ks`.
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
            let mut rng = SplitMix64::new(gi as u64 ^ (t as u64) << 8);
            let mut draw = |len: usize| -> Option<Vec<f32>> {
                rng.chance(0.7)
                    .then(|| (0..len).map(|_| rng.uniform_symmetric(1.0)).collect())
            };
            let gy: Vec<_> = g.outputs().iter().map(|_| draw(t * n)).collect();
            let gseq: Vec<_> = g.states().iter().map(|_| draw(t * n)).collect();
            let gfin: Vec<_> = g.states().iter().map(|_| draw(n)).collect();
            let up = Upstream {
                outputs: gy.iter().map(Option::as_deref).collect(),
                state_seqs: gseq.iter().map(Option::as_deref).collect(),
                final_states: gfin.iter().map(Option::as_deref).collect(),
            };
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
    check_backend(
        Backend::Interpreter,
        &graphs(),
        &[0, 1, 5, 7],
        &[1, 2, 3, 7, 8],
    );
}

#[test]
fn checkpoint_equals_states_on_the_cpu() {
    check_backend(Backend::Cpu, &graphs(), &[0, 1, 5, 7], &[1, 2, 3, 7, 8]);
}

/// Enough neurons for two threads of several chunks each (the CPU recomputes each segment one
/// chunk of neurons at a time, in cache), and a last chunk shorter than the others.
#[test]
fn checkpoint_equals_states_on_the_cpu_over_threads_and_chunks() {
    let jit = Jit::cpu(CpuOptions {
        threads: 2,
        ..CpuOptions::default()
    })
    .unwrap();
    check_jit(&jit, 20_011, &graphs()[..6], &[7], &[3, 7]);
}

#[test]
fn checkpoint_equals_states_on_emulated_cuda() {
    if find_cxx().is_err() {
        eprintln!("skipped: no C++ compiler");
        return;
    }
    // Each kernel is a C++ compile here: fewer graphs and cases.
    check_backend(Backend::CudaEmulated, &graphs()[..6], &[7], &[1, 3, 8]);
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
