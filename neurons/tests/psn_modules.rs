//! The PSN-family modules' behaviour beyond the golden cases: initialisation, step modes,
//! lambda, errors, single steps vs sequences (forward and backward), truncated backward, and the
//! fast paths against the reference ones on larger random problems.

use flexsn_compiler::ir::Surrogate;
use flexsn_neurons::node::{NodeBackend, StepMode};
use flexsn_neurons::psn::rng::SplitMix64;
use flexsn_neurons::psn::{
    MaskedPSN, MaskedPSNConfig, PSN, PSNConfig, PsnError, SlidingPSN, SlidingPSNConfig,
};
use flexsn_runtime::cpu::CpuOptions;
use flexsn_runtime::{Backend, Jit};

fn random(seed: u64, len: usize, scale: f32) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..len).map(|_| r.uniform_symmetric(scale)).collect()
}

fn close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "[{i}] {x} vs {y}");
    }
}

#[test]
fn initialisation_follows_spikingjelly_and_is_seedable() {
    let p = PSN::new(16).unwrap();
    let bound = 0.25;
    assert!(p.weight().iter().all(|w| w.abs() <= bound));
    assert!(p.weight().iter().any(|w| w.abs() > bound / 2.0));
    assert_eq!(p.bias(), &[-1.0; 16]);
    let a = PSNConfig::new(16).seed(5).build(Backend::Cpu).unwrap();
    let b = PSNConfig::new(16)
        .seed(5)
        .build(Backend::Interpreter)
        .unwrap();
    let c = PSNConfig::new(16).seed(6).build(Backend::Cpu).unwrap();
    assert_eq!(a.weight(), b.weight());
    assert_ne!(a.weight(), c.weight());
    let m = MaskedPSN::new(3, 8).unwrap();
    assert_eq!(m.weight(), PSNConfig::new(8).init_params().0.as_slice());
    assert_eq!(
        SlidingPSNConfig::new(4).init_params(),
        (vec![0.125, 0.25, 0.5, 1.0], -1.0)
    );
    let (w, b) = SlidingPSNConfig::new(4)
        .exp_init(false)
        .seed(1)
        .init_params();
    assert!(w.iter().all(|v| v.abs() <= 0.5) && b == -1.0);
}

#[test]
fn invalid_configurations_are_typed_errors() {
    assert!(matches!(PSN::new(0), Err(PsnError::ZeroT { .. })));
    assert!(matches!(MaskedPSN::new(0, 4), Err(PsnError::ZeroK { .. })));
    assert!(matches!(SlidingPSN::new(0), Err(PsnError::ZeroK { .. })));
    // SpikingJelly: single-step MaskedPSN needs lambda >= 1.
    assert!(matches!(
        MaskedPSNConfig::new(2, 4)
            .step_mode(StepMode::Single)
            .build(Backend::Cpu)
            .unwrap_err(),
        PsnError::SingleStepLambda { lambda: 0.0 }
    ));
    let mut p = PSN::new(4).unwrap();
    assert!(matches!(
        p.set_step_mode(StepMode::Single),
        Err(PsnError::MultiStepOnly { .. })
    ));
    assert!(matches!(
        p.forward(&[0.0; 10], 2),
        Err(PsnError::SeqShape { t: 4, n: 2, .. })
    ));
    assert!(matches!(p.forward(&[], 0), Err(PsnError::NoNeurons)));
    assert!(matches!(
        p.backward(&[0.0; 8]),
        Err(PsnError::NothingRecorded { .. })
    ));
    assert!(matches!(
        p.set_weight(&[0.0; 3]),
        Err(PsnError::Len { expected: 16, .. })
    ));
    assert!(matches!(
        p.set_bias(&[f32::NAN; 4]),
        Err(PsnError::NonFinite { .. })
    ));
    p.forward(&[0.0; 8], 2).unwrap();
    assert!(matches!(p.backward(&[0.0; 7]), Err(PsnError::Len { .. })));
    // The recorded forward survives a bad backward.
    assert!(p.backward(&[0.0; 8]).is_ok());
}

#[test]
fn psn_gradients_accumulate_until_zero_grad() {
    let (t, n) = (8, 5);
    let x = random(1, t * n, 3.0);
    let gs = random(2, t * n, 1.0);
    let mut p = PSN::new(t).unwrap();
    p.forward(&x, n).unwrap();
    let gx1 = p.backward(&gs).unwrap();
    let gw1 = p.weight_grad().to_vec();
    p.forward(&x, n).unwrap();
    let gx2 = p.backward(&gs).unwrap();
    assert_eq!(gx1, gx2);
    let doubled: Vec<f32> = gw1.iter().map(|g| g + g).collect();
    assert_eq!(p.weight_grad(), doubled.as_slice());
    p.zero_grad();
    assert!(p.weight_grad().iter().all(|&g| g == 0.0));
    // Eval mode keeps nothing for backward.
    p.set_training(false);
    p.forward(&x, n).unwrap();
    assert!(p.backward(&gs).is_err());
}

#[test]
fn masked_psn_single_steps_equal_the_sequence_and_stop_at_t() {
    let (k, t, n) = (3, 6, 4);
    let x = random(3, t * n, 3.0);
    let gs = random(4, t * n, 1.0);
    let build = |mode| {
        let mut m = MaskedPSNConfig::new(k, t)
            .lambda_init(1.0)
            .surrogate(Surrogate::Sigmoid { alpha: 4.0 })
            .step_mode(mode)
            .seed(9)
            .build(Backend::Cpu)
            .unwrap();
        m.set_bias(&[-0.2; 6]).unwrap();
        m
    };
    let mut multi = build(StepMode::Multi);
    let s_m = multi.forward(&x, n).unwrap();
    let gx_m = multi.backward(&gs).unwrap();

    let mut single = build(StepMode::Single);
    let mut s_s = vec![];
    for step in 0..t {
        s_s.extend(single.forward(&x[step * n..(step + 1) * n], n).unwrap());
    }
    assert_eq!(s_s, s_m);
    assert!(matches!(
        single.forward(&x[..n], n),
        Err(PsnError::PastT { step: 7, t: 6 })
    ));
    let gx_s = single.backward(&gs).unwrap();
    close(&gx_s, &gx_m, 1e-6);
    close(single.weight_grad(), multi.weight_grad(), 1e-6);
    close(single.bias_grad(), multi.bias_grad(), 1e-6);
    // Masked-out weights get no gradient when lambda >= 1.
    let mask = single.mask0();
    for (g, m) in single.weight_grad().iter().zip(&mask) {
        if *m == 0.0 {
            assert_eq!(*g, 0.0);
        }
    }
    // A different N mid-sequence is an error, not a silent restart.
    single.reset();
    single.forward(&x[..n], n).unwrap();
    assert!(matches!(
        single.forward(&x[..n - 1], n - 1),
        Err(PsnError::ShapeChanged {
            module: "MaskedPSN",
            expected,
            got
        }) if expected == n && got == n - 1
    ));
    assert_eq!(single.time_step(), 1);
    single.reset();
    assert_eq!(single.time_step(), 0);
    assert!(single.forward(&x[..n - 1], n - 1).is_ok());
}

#[test]
fn masked_psn_backward_in_two_segments_adds_up() {
    // Backward after steps 0..3, then after steps 3..6 (the earlier inputs stay in the window as
    // constants): the weight and bias gradients add up to one backward over all six steps when
    // the upstream gradients of the first segment's outputs do not depend on the second.
    let (k, t, n) = (2, 6, 3);
    let x = random(5, t * n, 3.0);
    let gs = random(6, t * n, 1.0);
    let build = || {
        MaskedPSNConfig::new(k, t)
            .lambda_init(1.5)
            .step_mode(StepMode::Single)
            .build(Backend::Interpreter)
            .unwrap()
    };
    let mut whole = build();
    let mut split = build();
    for step in 0..t {
        whole.forward(&x[step * n..(step + 1) * n], n).unwrap();
    }
    let gx = whole.backward(&gs).unwrap();
    for step in 0..3 {
        split.forward(&x[step * n..(step + 1) * n], n).unwrap();
    }
    let gx_a = split.backward(&gs[..3 * n]).unwrap();
    for step in 3..t {
        split.forward(&x[step * n..(step + 1) * n], n).unwrap();
    }
    let gx_b = split.backward(&gs[3 * n..]).unwrap();
    close(split.weight_grad(), whole.weight_grad(), 1e-6);
    close(split.bias_grad(), whole.bias_grad(), 1e-6);
    // The input gradient of step 2 misses what step 3 sends back (truncated).
    close(&gx_a[..2 * n], &gx[..2 * n], 1e-6);
    close(&gx_b, &gx[3 * n..], 1e-6);
}

#[test]
fn masked_psn_lambda_schedule() {
    let mut m = MaskedPSN::new(2, 4).unwrap();
    let w = m.weight().to_vec();
    assert_eq!(m.masked_weight(), w, "lambda 0: no mask");
    m.set_lambda(0.5).unwrap();
    let mask = m.mask0();
    for ((mw, w), mk) in m.masked_weight().iter().zip(&w).zip(&mask) {
        let f = if *mk == 1.0 { 1.0 } else { 0.5 };
        assert_eq!(*mw, f * w);
    }
    m.set_lambda(1.0).unwrap();
    m.set_step_mode(StepMode::Single).unwrap();
    assert!(matches!(
        m.set_lambda(0.9),
        Err(PsnError::SingleStepLambda { lambda: 0.9 })
    ));
    assert!(matches!(
        m.set_lambda(f32::INFINITY),
        Err(PsnError::NonFinite { .. })
    ));
}

#[test]
fn sliding_psn_single_steps_equal_the_sequence_on_every_backend() {
    let (k, t, n) = (4, 11, 9);
    let x = random(7, t * n, 2.0);
    let gs = random(8, t * n, 1.0);
    let mut reference: Option<(Vec<f32>, Vec<f32>, Vec<f32>)> = None;
    for backend in [NodeBackend::Interpreter, NodeBackend::Cpu] {
        for mode in [StepMode::Multi, StepMode::Single] {
            let mut m = SlidingPSNConfig::new(k)
                .exp_init(false)
                .seed(3)
                .step_mode(mode)
                .build(backend)
                .unwrap();
            m.set_bias(-0.3).unwrap();
            let s: Vec<f32> = match mode {
                StepMode::Multi => m.forward(&x, n).unwrap(),
                StepMode::Single => (0..t)
                    .flat_map(|i| m.forward(&x[i * n..(i + 1) * n], n).unwrap())
                    .collect(),
            };
            let gx = m.backward(&gs).unwrap();
            let gw = m.weight_grad().unwrap();
            match &reference {
                None => reference = Some((s, gx, gw)),
                Some((rs, rgx, rgw)) => {
                    assert_eq!(&s, rs, "{backend:?} {mode:?}");
                    close(&gx, rgx, 1e-5);
                    close(&gw, rgw, 1e-5);
                }
            }
        }
    }
}

#[test]
fn sliding_psn_with_a_window_of_one_has_no_state() {
    let mut m = SlidingPSNConfig::new(1)
        .step_mode(StepMode::Multi)
        .build(NodeBackend::Cpu)
        .unwrap();
    assert!(m.node().graph().states().is_empty());
    let s = m.forward(&[0.5, 1.5, 1.0, 0.0], 2).unwrap();
    assert_eq!(s, vec![0.0, 1.0, 1.0, 0.0]);
    let gx = m.backward(&[1.0; 4]).unwrap();
    // ATan'(x) = 1 / (1 + (pi x)^2), at h = x - 1.
    let d = |h: f32| 1.0 / (1.0 + (std::f32::consts::PI * h).powi(2));
    close(&gx, &[d(-0.5), d(0.5), d(0.0), d(-1.0)], 1e-6);
}

#[test]
fn cpu_mixing_matches_reference_on_psn_sized_problems() {
    for &(t, n) in &[(4usize, 4099usize), (16, 3000), (64, 777)] {
        let x = random(t as u64, t * n, 3.0);
        let gs = random(t as u64 + 1, t * n, 1.0);
        let mut a = PSNConfig::new(t)
            .seed(2)
            .build(Backend::Interpreter)
            .unwrap();
        let mut b = PSNConfig::new(t)
            .seed(2)
            .build_with_jit(
                &Jit::cpu(CpuOptions {
                    threads: 2,
                    ..CpuOptions::default()
                })
                .unwrap(),
            )
            .unwrap();
        let sa = a.forward(&x, n).unwrap();
        let sb = b.forward(&x, n).unwrap();
        let flips = sa.iter().zip(&sb).filter(|(p, q)| p != q).count();
        assert!(flips * 1000 <= t * n, "T={t}: {flips} spikes differ");
        let ga = a.backward(&gs).unwrap();
        let gb = b.backward(&gs).unwrap();
        close(&gb, &ga, 1e-4);
        close(b.weight_grad(), a.weight_grad(), 1e-3);
        close(b.bias_grad(), a.bias_grad(), 1e-3);
    }
}

#[test]
fn an_invalid_surrogate_is_refused_at_construction() {
    let bad = Surrogate::SoftSign { alpha: -1.0 };
    let e = PSNConfig::new(4)
        .surrogate(bad)
        .build(Backend::Interpreter)
        .unwrap_err();
    assert!(
        matches!(e, PsnError::Surrogate { module: "PSN", .. }),
        "{e}"
    );
    let e = MaskedPSNConfig::new(2, 4)
        .surrogate(bad)
        .build(Backend::Interpreter)
        .unwrap_err();
    assert!(
        matches!(
            e,
            PsnError::Surrogate {
                module: "MaskedPSN",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("alpha"), "{e}");
}
