//! The PSN family checks the memory limit of its [`Jit`] before it allocates: at construction
//! (the parameters), and before every forward and backward (outputs, what backward keeps, the
//! mixing's working memory). Over the limit a call is a typed `RuntimeError::Memory` that
//! changes nothing; raising the limit lets the same call run.

use flexsn_neurons::node::{NodeError, StepMode};
use flexsn_neurons::psn::{MaskedPSNConfig, PSNConfig, PsnError, SlidingPSNConfig};
use flexsn_runtime::memory::{MemoryError, MemoryLimit};
use flexsn_runtime::{Backend, Jit, RuntimeError};

fn jit(backend: Backend, limit: u64) -> Jit {
    let mut j = Jit::new(backend).unwrap();
    j.set_memory_limit(MemoryLimit(limit));
    j
}

/// The error is the runtime's memory error, saying how much is needed.
fn too_large<T: std::fmt::Debug>(r: Result<T, PsnError>) -> u64 {
    let e = r.unwrap_err();
    let memory = match &e {
        PsnError::Runtime(b) => match b.as_ref() {
            RuntimeError::Memory(m) => m,
            other => panic!("{other:?}"),
        },
        PsnError::Node(b) => match b.as_ref() {
            NodeError::Runtime(RuntimeError::Memory(m)) => m,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    assert!(e.to_string().contains("set_memory_limit"), "{e}");
    match memory {
        MemoryError::TooLarge { needed, .. } => *needed,
        other => panic!("{other:?}"),
    }
}

#[test]
fn construction_checks_the_parameters() {
    let small = |b| jit(b, 4096);
    // 2 x [64, 64] floats are 32 KiB.
    too_large(PSNConfig::new(64).build_with_jit(&small(Backend::Cpu)));
    too_large(
        MaskedPSNConfig::new(2, 64)
            .step_mode(StepMode::Multi)
            .build_with_jit(&small(Backend::Cpu)),
    );
    // 2 x [2^31] floats (16 GiB) under the default 8 GiB: refused before allocating.
    let needed = too_large(
        SlidingPSNConfig::new(1 << 31).build_with_jit(&Jit::new(Backend::Interpreter).unwrap()),
    );
    assert_eq!(needed, 16 << 30);
    assert!(
        PSNConfig::new(4)
            .build_with_jit(&small(Backend::Cpu))
            .is_ok()
    );
}

#[test]
fn psn_forward_and_backward_check_before_allocating() {
    for backend in [Backend::Interpreter, Backend::Cpu] {
        let (t, n) = (32, 2000);
        let x = vec![1.5f32; t * n];
        let mut m = PSNConfig::new(t)
            .build_with_jit(&jit(backend, 64 << 10))
            .unwrap();
        // The spikes alone are 250 KiB.
        too_large(m.forward(&x, n));
        let mut s = vec![0.0; t * n];
        too_large(m.forward_into(&x, n, &mut s));
        m.set_jit(jit(backend, 1 << 30));
        let spikes = m.forward(&x, n).unwrap();
        // Backward: the input gradient and the mixing's working memory.
        m.set_jit(jit(backend, 200 << 10));
        too_large(m.backward(&spikes));
        assert!(m.weight_grad().iter().all(|&g| g == 0.0));
        // What forward kept is still there: with room, the same backward runs.
        m.set_jit(jit(backend, 1 << 30));
        m.backward(&spikes).unwrap();
    }
}

#[test]
fn masked_psn_checks_its_masks_and_single_steps() {
    let (t, n) = (64, 8);
    // The parameters fit (32 KiB), the three [T, T] masks of a call do not.
    let mut m = MaskedPSNConfig::new(2, t)
        .step_mode(StepMode::Multi)
        .build_with_jit(&jit(Backend::Cpu, 48 << 10))
        .unwrap();
    too_large(m.forward(&vec![1.0; t * n], n));
    m.set_lambda(1.0).unwrap();
    m.set_step_mode(StepMode::Single).unwrap();
    too_large(m.forward(&vec![1.0; n], n));
    m.set_jit(jit(Backend::Cpu, 1 << 20));
    m.forward(&vec![1.0; n], n).unwrap();
    m.set_jit(jit(Backend::Cpu, 48 << 10));
    too_large(m.backward(&vec![1.0; n]));
    m.set_jit(jit(Backend::Cpu, 1 << 20));
    assert_eq!(m.backward(&vec![1.0; n]).unwrap().len(), n);
}

#[test]
fn sliding_psn_checks_through_its_node() {
    let mut m = SlidingPSNConfig::new(8)
        .step_mode(StepMode::Multi)
        .build_with_jit(&jit(Backend::Cpu, 64 << 10))
        .unwrap();
    let n = 4096;
    too_large(m.forward(&vec![1.0; 4 * n], n));
    assert_eq!(m.node().time_step(), 0);
}
