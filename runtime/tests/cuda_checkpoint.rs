//! The fused `checkpoint:K` CUDA kernels, emulated as host C++: the raw launches of
//! `Kernel::launch_checkpointed` (what the Python bridge calls on CUDA tensors) against the
//! `states` policy, bit for bit, on LIF, PLIF (a shared learnable param), and a 2-state core
//! with a per-neuron learnable param; K in {1, 3, T, T + 5} with T = 7 (not a multiple of 3).

use flexsn_compiler::autodiff;
use flexsn_compiler::bptt;
use flexsn_compiler::codegen::cuda::checkpoint::{
    checkpoint_block, codegen_checkpoint_backward, codegen_checkpoint_forward,
};
use flexsn_compiler::codegen::cuda::{ArgRole, CudaOptions, StorageDtype, samples};
use flexsn_compiler::dsl::CoreBuilder;
use flexsn_compiler::ir::{ParamKind, StateInit, StepGraph, Surrogate};
use flexsn_compiler::random::{random_inputs, random_upstream};
use flexsn_compiler::scan::{ScanKernel, ScanResult};
use flexsn_runtime::cuda::CheckpointPhase;
use flexsn_runtime::cuda::emulated::find_cxx;
use flexsn_runtime::{Backend, Jit, Kernel, SavePolicy};

mod common;
use common::{same, same_grads};

/// Two states (membrane and adaptation) and a per-neuron learnable time constant.
fn adaptive() -> StepGraph {
    let b = CoreBuilder::new("adaptive");
    let x = b.input("x");
    let v = b.state("v", StateInit::Const(0.0));
    let a = b.state("a", StateInit::Const(0.1));
    let w = b.param("w", ParamKind::PerNeuron, true);
    let h = v + (x - v) * w.sigmoid();
    let s = (h - a - 1.0).spike(Surrogate::Sigmoid { alpha: 4.0 });
    b.output("spike", s);
    b.set_state("v", h * (1.0 - s));
    b.set_state("a", a * 0.9 + s * 0.5);
    b.build().unwrap()
}

fn graphs() -> Vec<StepGraph> {
    vec![
        samples::lif(2.0, 1.0, 0.0).unwrap(),
        samples::plif(1.0, 0.0).unwrap(),
        adaptive(),
    ]
}

/// Buffers for a raw launch of `phase`: each read from `read`, each write zeroed.
fn launch(
    kernel: &Kernel,
    phase: CheckpointPhase<'_>,
    (t, n, k): (usize, usize, usize),
    read: &dyn Fn(ArgRole) -> Option<Vec<f32>>,
) -> Vec<(ArgRole, Vec<f32>)> {
    let args = kernel.checkpoint_arguments(phase, t, n, k).unwrap();
    let mut bufs: Vec<(ArgRole, Vec<f32>)> = args
        .iter()
        .map(|a| {
            assert_eq!(a.dtype, StorageDtype::F32);
            let b = read(a.role).unwrap_or_else(|| vec![0.0; a.len]);
            assert_eq!(b.len(), a.len, "{}", a.name);
            (a.role, b)
        })
        .collect();
    let raw: Vec<(u64, usize)> = bufs
        .iter_mut()
        .map(|(_, b)| (b.as_mut_ptr() as u64, b.len()))
        .collect();
    // SAFETY: host buffers of the listed lengths, alive for the call (emulated backend).
    unsafe { kernel.launch_checkpointed(phase, 0, 0, t, n, k, &raw) }.unwrap();
    bufs
}

#[test]
fn raw_launches_equal_the_states_policy() {
    if find_cxx().is_err() {
        eprintln!("skipped: no C++ compiler");
        return;
    }
    let jit = Jit::new(Backend::CudaEmulated).unwrap();
    let (t, n) = (7, 45);
    for (gi, g) in graphs().iter().enumerate() {
        let mut kernel = jit.compile(g).unwrap();
        kernel.set_save_policy(SavePolicy::States).unwrap();
        let fwd = kernel.graph().clone();
        let (ni, ns) = (fwd.inputs().len(), fwd.states().len());
        let (xs, s0, ps) = random_inputs(gi as u64 + 5, &fwd, t, n);
        let xr: Vec<&[f32]> = xs.iter().map(Vec::as_slice).collect();
        let sr: Vec<&[f32]> = s0.iter().map(Vec::as_slice).collect();
        let pr: Vec<(&str, &[f32])> = fwd
            .params()
            .iter()
            .zip(&ps)
            .map(|(d, p)| (d.name.as_str(), p.as_slice()))
            .collect();
        let fs = kernel.forward(t, n, &xr, Some(&sr), &pr).unwrap();
        let drawn = random_upstream(gi as u64 + 11, &fwd, t, n);
        let up = drawn.upstream();
        let want = kernel.backward(&fs, &up).unwrap();
        let spec = up.spec();
        let bwd = autodiff::backward(&fwd, &spec).unwrap();
        let present: Vec<Vec<f32>> = up
            .outputs
            .iter()
            .chain(&up.state_seqs)
            .flatten()
            .map(|x| x.to_vec())
            .collect();
        for k in [1, 3, t, t + 5] {
            let what = format!("{} K={k}", g.name());
            let out = launch(&kernel, CheckpointPhase::Forward, (t, n, k), &|r| match r {
                ArgRole::Input(i) => Some(xs[i].clone()),
                ArgRole::InitState(j) => Some(s0[j].clone()),
                ArgRole::Param(p) => Some(ps[p].clone()),
                _ => None,
            });
            let mut cps = vec![vec![]; ns];
            for (role, b) in out {
                match role {
                    ArgRole::Output(o) => same(&format!("{what}: output {o}"), &b, &fs.outputs[o]),
                    ArgRole::FinalState(j) => {
                        same(&format!("{what}: final {j}"), &b, &fs.final_states[j])
                    }
                    ArgRole::Checkpoint(j) => cps[j] = b,
                    _ => {}
                }
            }
            for (j, cp) in cps.iter().enumerate() {
                assert_eq!(cp.len(), t.div_ceil(k) * n, "{what}");
                // Row r is the state before step r·K: row 0 the initial state, then the
                // sequence's row r·K - 1.
                for (r, row) in cp.chunks(n).enumerate() {
                    let expect = match r {
                        0 => &s0[j][..],
                        _ => &fs.state_seq(j).unwrap()[(r * k - 1) * n..r * k * n],
                    };
                    same(&format!("{what}: checkpoint {j} row {r}"), row, expect);
                }
            }
            let out = launch(
                &kernel,
                CheckpointPhase::Backward(&spec),
                (t, n, k),
                &|r| match r {
                    ArgRole::Input(i) if i < ni => Some(xs[i].clone()),
                    ArgRole::Input(i) => Some(present[i - ni - ns].clone()),
                    ArgRole::Checkpoint(j) => Some(cps[j].clone()),
                    ArgRole::InitState(j) => {
                        Some(up.final_states[j].map_or(vec![0.0; n], <[f32]>::to_vec))
                    }
                    ArgRole::Param(p) => Some(ps[p].clone()),
                    _ => None,
                },
            );
            let mut r = ScanResult {
                outputs: vec![vec![]; bwd.kernel.graph.outputs().len()],
                state_seqs: vec![],
                final_states: vec![vec![]; ns],
            };
            for (role, b) in out {
                match role {
                    ArgRole::Output(o) => r.outputs[o] = b,
                    ArgRole::FinalState(j) => r.final_states[j] = b,
                    _ => {}
                }
            }
            let got = bptt::collect_gradients(&fwd, &bwd, r, t, n);
            same_grads(&what, &got, &want);
        }
    }
}

#[test]
fn block_size_follows_shared_memory_and_large_k_is_refused() {
    assert_eq!(checkpoint_block(32, 1, StorageDtype::F32), Some(256));
    // 64 · 2 · 4 = 512 bytes a thread: 96 threads in 48 KiB.
    assert_eq!(checkpoint_block(64, 2, StorageDtype::F32), Some(96));
    assert_eq!(checkpoint_block(64, 2, StorageDtype::F16), Some(192));
    assert_eq!(checkpoint_block(385, 1, StorageDtype::F32), None);
    assert_eq!(checkpoint_block(5, 0, StorageDtype::F32), Some(256));
    if find_cxx().is_err() {
        return;
    }
    let jit = Jit::new(Backend::CudaEmulated).unwrap();
    let kernel = jit.compile(&samples::lif(2.0, 1.0, 0.0).unwrap()).unwrap();
    // K = 1000 fits while T = 20 (20 rows), not for T = 2000.
    kernel
        .checkpoint_arguments(CheckpointPhase::Forward, 20, 8, 1000)
        .unwrap();
    let err = kernel
        .checkpoint_arguments(CheckpointPhase::Forward, 2000, 8, 1000)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checkpoint:1000") && err.contains("smaller K"),
        "{err}"
    );
    assert!(
        kernel
            .checkpoint_arguments(CheckpointPhase::Forward, 20, 8, 0)
            .is_err()
    );
}

/// A K too large for shared memory still trains through `Kernel::forward`/`backward`: the
/// backward recomputes the segments through memory instead, with the same results.
#[test]
fn too_large_k_falls_back_with_the_same_results() {
    if find_cxx().is_err() {
        return;
    }
    let jit = Jit::new(Backend::CudaEmulated).unwrap();
    let g = samples::lif(2.0, 1.0, 0.0).unwrap();
    let mut kernel = jit.compile(&g).unwrap();
    let (t, n) = (400, 3);
    let (xs, _, _) = random_inputs(3, &g, t, n);
    let xr: Vec<&[f32]> = xs.iter().map(Vec::as_slice).collect();
    let grad = vec![1.0f32; t * n];
    let fs = kernel.forward(t, n, &xr, None, &[]).unwrap();
    let want = kernel.backward_outputs(&fs, &[Some(&grad)]).unwrap();
    kernel.set_save_policy(SavePolicy::Checkpoint(390)).unwrap();
    let fc = kernel.forward(t, n, &xr, None, &[]).unwrap();
    let got = kernel.backward_outputs(&fc, &[Some(&grad)]).unwrap();
    same_grads("K = 390", &got, &want);
}

#[test]
fn generated_kernels_name_their_arguments() {
    let g = adaptive();
    let opts = CudaOptions::default();
    let f = codegen_checkpoint_forward(&ScanKernel::forward(g.clone(), false), &opts).unwrap();
    let roles: Vec<ArgRole> = f.args.iter().map(|a| a.role).collect();
    use ArgRole::*;
    assert_eq!(
        roles,
        [
            Input(0),
            InitState(0),
            InitState(1),
            Param(0),
            Output(0),
            Checkpoint(0),
            Checkpoint(1),
            FinalState(0),
            FinalState(1)
        ]
    );
    assert!(f.writes(Checkpoint(0)));
    let spec = autodiff::GradSpec::outputs_only(&g);
    let bwd = autodiff::backward(&g, &spec).unwrap();
    let b = codegen_checkpoint_backward(&g, &bwd.kernel, &opts).unwrap();
    assert!(!b.writes(Checkpoint(0)));
    assert_eq!(b.args[1].role, Checkpoint(0));
    assert_eq!(b.args[2].role, Checkpoint(1));
    // A backward scan of another graph is refused.
    let lif = samples::lif(2.0, 1.0, 0.0).unwrap();
    let other = autodiff::backward(&lif, &autodiff::GradSpec::outputs_only(&lif)).unwrap();
    assert!(codegen_checkpoint_backward(&g, &other.kernel, &opts).is_err());
}

/// 16-bit storage: the fused backward rounds its recomputed states to the storage type as the
/// `states` policy's saved sequences are rounded, so `Kernel::forward`/`backward` still agree
/// bit for bit.
#[test]
fn half_storage_checkpoint_equals_states() {
    if find_cxx().is_err() {
        return;
    }
    for dtype in [StorageDtype::F16, StorageDtype::Bf16] {
        let opts = CudaOptions::new(dtype, flexsn_compiler::codegen::cuda::MathMode::Precise);
        let jit = flexsn_runtime::cuda::backend::emulated_jit(opts).unwrap();
        for (gi, g) in graphs().iter().enumerate() {
            let mut kernel = jit.compile(g).unwrap();
            let (t, n) = (9, 40);
            let (xs, s0, ps) = random_inputs(gi as u64 + 21, g, t, n);
            let xr: Vec<&[f32]> = xs.iter().map(Vec::as_slice).collect();
            let sr: Vec<&[f32]> = s0.iter().map(Vec::as_slice).collect();
            let pr: Vec<(&str, &[f32])> = g
                .params()
                .iter()
                .zip(&ps)
                .map(|(d, p)| (d.name.as_str(), p.as_slice()))
                .collect();
            let drawn = random_upstream(gi as u64 + 3, g, t, n);
            let up = drawn.upstream();
            let fs = kernel.forward(t, n, &xr, Some(&sr), &pr).unwrap();
            let want = kernel.backward(&fs, &up).unwrap();
            for k in [2, 4, 9] {
                kernel.set_save_policy(SavePolicy::Checkpoint(k)).unwrap();
                let fc = kernel.forward(t, n, &xr, Some(&sr), &pr).unwrap();
                let what = format!("{} {} K={k}", dtype.name(), g.name());
                for (o, (a, b)) in fc.outputs.iter().zip(&fs.outputs).enumerate() {
                    same(&format!("{what}: output {o}"), a, b);
                }
                let got = kernel.backward(&fc, &up).unwrap();
                same_grads(&what, &got, &want);
            }
            kernel.set_save_policy(SavePolicy::States).unwrap();
        }
    }
}
