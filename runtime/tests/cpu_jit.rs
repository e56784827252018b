//! The `Jit` / `Kernel` API on the CPU backend: forward and backward against the interpreter
//! backend, thread-count independence of gradients, shape and param errors, the cache, ndarray
//! views and inspection.
//!
//! Tolerance for gradients: `1e-4 * (1 + |want|)`. Forward spikes and the ops of these neurons
//! are exact except `exp`/`sigmoid` in the surrogate derivatives (≤ 3 ulp each, see
//! `codegen::clif::math`), carried through at most `T = 24` steps of the reverse recursion, whose
//! factors are bounded by 1 (decay `1 - 1/tau`, reset masks); the observed differences are a few
//! `1e-7`.

use std::sync::Arc;

use flexsn_compiler::dsl::CoreBuilder;
use flexsn_compiler::ir::{ParamKind, StateInit, StepGraph, Surrogate};
use flexsn_compiler::random::SplitMix64;
use flexsn_runtime::cpu::{CpuOptions, inspect_asm, inspect_clif};
use flexsn_runtime::{Backend, Jit, Kernel, RuntimeError, Upstream};

fn lif() -> StepGraph {
    let b = CoreBuilder::new("lif");
    let x = b.input("x");
    let v = b.state("v", StateInit::Const(0.0));
    let h = v + (x - v) / 2.0;
    let s = (h - 1.0).spike(Surrogate::Sigmoid { alpha: 4.0 });
    b.output("s", s);
    b.set_state("v", (1.0 - s) * h);
    b.build().unwrap()
}

/// Adaptive LIF with a learnable per-neuron decay and a shared threshold scale.
fn alif() -> StepGraph {
    let b = CoreBuilder::new("alif");
    let x = b.input("x");
    let v = b.state("v", StateInit::Const(0.0));
    let a = b.state("a", StateInit::Runtime);
    let w = b.param("w", ParamKind::PerNeuron, true);
    let th = b.param("th", ParamKind::Shared, true);
    let gain = b.param("gain", ParamKind::PerTime, true);
    let h = v + (x * gain - v) * w.sigmoid();
    let s = (h - (th + a)).spike(Surrogate::ATan { alpha: 2.0 });
    b.output("s", s);
    b.output("h", h);
    b.set_state("v", h * (1.0 - s));
    b.set_state("a", a * 0.9 + s * 0.2);
    b.build().unwrap()
}

fn rand_vec(rng: &mut SplitMix64, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..len).map(|_| rng.uniform(lo, hi)).collect()
}

fn close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
            "{what}[{i}]: cpu {a}, interpreter {b}"
        );
    }
}

fn cpu(threads: usize) -> Jit {
    Jit::cpu(CpuOptions {
        threads,
        ..CpuOptions::default()
    })
    .unwrap()
}

#[test]
fn lif_forward_backward_matches_the_interpreter() {
    let g = lif();
    let kc = cpu(0).compile(&g).unwrap();
    let ki = Jit::new(Backend::Interpreter).unwrap().compile(&g).unwrap();
    let mut rng = SplitMix64::new(1);
    for (t, n) in [(0, 3), (1, 1), (7, 5), (24, 1000)] {
        let x = rand_vec(&mut rng, t * n, -0.5, 2.5);
        let gs = rand_vec(&mut rng, t * n, -1.0, 1.0);
        let fc = kc.forward(t, n, &[&x], None, &[]).unwrap();
        let fi = ki.forward(t, n, &[&x], None, &[]).unwrap();
        // LIF's forward is exact: spikes and states equal bit for bit.
        assert_eq!(fc.outputs, fi.outputs);
        assert_eq!(fc.state_seqs(), fi.state_seqs());
        assert_eq!(fc.final_states, fi.final_states);
        let inf = kc.infer(t, n, &[&x], None, &[]).unwrap();
        assert_eq!(inf.outputs, fc.outputs);
        assert_eq!(inf.final_states, fc.final_states);
        let gc = kc.backward_outputs(&fc, &[Some(&gs)]).unwrap();
        let gi = ki.backward_outputs(&fi, &[Some(&gs)]).unwrap();
        close("grad x", &gc.inputs[0], &gi.inputs[0]);
        close("grad v0", &gc.init_states[0], &gi.init_states[0]);
    }
}

fn alif_run(k: &Kernel, t: usize, n: usize, seed: u64) -> flexsn_runtime::Gradients<f32> {
    let mut rng = SplitMix64::new(seed);
    let x = rand_vec(&mut rng, t * n, -1.0, 3.0);
    let a0 = rand_vec(&mut rng, n, 0.0, 0.5);
    let w = rand_vec(&mut rng, n, -1.0, 1.0);
    let th = [1.0f32];
    let gain = rand_vec(&mut rng, t, 0.5, 1.5);
    let v0 = vec![0.0f32; n];
    let gs = rand_vec(&mut rng, t * n, -1.0, 1.0);
    let gh = rand_vec(&mut rng, t * n, -1.0, 1.0);
    let gv = rand_vec(&mut rng, t * n, -1.0, 1.0);
    let ga = rand_vec(&mut rng, n, -1.0, 1.0);
    let f = k
        .forward(
            t,
            n,
            &[&x],
            Some(&[&v0, &a0]),
            &[("gain", &gain), ("w", &w), ("th", &th)],
        )
        .unwrap();
    let up = Upstream {
        outputs: vec![Some(&gs), Some(&gh)],
        state_seqs: vec![Some(&gv), None],
        final_states: vec![None, Some(&ga)],
    };
    k.backward(&f, &up).unwrap()
}

#[test]
fn alif_all_param_kinds_match_the_interpreter_and_are_thread_independent() {
    let g = alif();
    let ki = Jit::new(Backend::Interpreter).unwrap().compile(&g).unwrap();
    // T * N well above MIN_WORK_PER_THREAD per thread, so 2 and 3 threads really run.
    let (t, n) = (16, 20_011);
    assert!(t * n >= 3 * flexsn_runtime::cpu::MIN_WORK_PER_THREAD);
    let want = alif_run(&ki, t, n, 7);
    let one = alif_run(&cpu(1).compile(&g).unwrap(), t, n, 7);
    close("grad x", &one.inputs[0], &want.inputs[0]);
    for j in 0..2 {
        close("grad init", &one.init_states[j], &want.init_states[j]);
    }
    for p in 0..3 {
        close(
            "grad param",
            one.params[p].as_ref().unwrap(),
            want.params[p].as_ref().unwrap(),
        );
    }
    // The thread split changes nothing, not even the last bit of the reduced param gradients.
    for threads in [2, 3] {
        let k = cpu(threads).compile(&g).unwrap();
        let got = alif_run(&k, t, n, 7);
        assert_eq!(got, one, "threads = {threads}");
    }
}

#[test]
fn errors_name_the_argument_and_shape() {
    let k = cpu(0).compile(&alif()).unwrap();
    let (t, n) = (4, 10);
    let x = vec![0.0f32; t * n];
    let s0 = vec![0.0f32; n];
    let w = vec![0.0f32; n];
    let gain = vec![1.0f32; t];
    let th = [1.0f32];
    let ok_params = [("w", &w[..]), ("th", &th[..]), ("gain", &gain[..])];
    assert!(
        k.forward(t, n, &[&x], Some(&[&s0, &s0]), &ok_params)
            .is_ok()
    );
    // a runtime-initialised state without a value
    let e = k.forward(t, n, &[&x], None, &ok_params).unwrap_err();
    assert!(e.to_string().contains("`a`"), "{e}");
    // wrong input length
    let short = vec![0.0f32; t * n - 2];
    let e = k
        .forward(t, n, &[&short], Some(&[&s0, &s0]), &ok_params)
        .unwrap_err();
    assert!(matches!(e, RuntimeError::Shape(_)), "{e}");
    assert!(
        e.to_string().contains("`x`") && e.to_string().contains("[T=4, N=10]"),
        "{e}"
    );
    // wrong per-time param length
    let e = k
        .forward(
            t,
            n,
            &[&x],
            Some(&[&s0, &s0]),
            &[("w", &w), ("th", &th), ("gain", &th)],
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("`gain`") && e.to_string().contains("per time step"),
        "{e}"
    );
    // unknown, duplicate and missing params
    let e = k
        .forward(
            t,
            n,
            &[&x],
            Some(&[&s0, &s0]),
            &[("w", &w), ("th", &th), ("gain", &gain), ("tau", &th)],
        )
        .unwrap_err();
    assert!(matches!(e, RuntimeError::UnknownParam { .. }), "{e}");
    let e = k
        .forward(t, n, &[&x], Some(&[&s0, &s0]), &[("w", &w), ("th", &th)])
        .unwrap_err();
    assert!(
        matches!(e, RuntimeError::MissingParam(ref p) if p == "gain"),
        "{e}"
    );
    let e = k
        .forward(
            t,
            n,
            &[&x],
            Some(&[&s0, &s0]),
            &[("w", &w), ("w", &w), ("gain", &gain), ("th", &th)],
        )
        .unwrap_err();
    assert!(matches!(e, RuntimeError::DuplicateParam(_)), "{e}");
    // N = 0
    assert!(
        k.infer(0, 0, &[&[]], Some(&[&[], &[]]), &ok_params)
            .is_err()
    );
    // upstream gradient of the wrong length
    let f = k
        .forward(t, n, &[&x], Some(&[&s0, &s0]), &ok_params)
        .unwrap();
    let e = k.backward_outputs(&f, &[Some(&s0), None]).unwrap_err();
    assert!(e.to_string().contains("grad of s"), "{e}");
}

#[test]
fn kernels_are_cached_shared_and_send_sync() {
    let jit = cpu(0);
    let k1 = jit.compile(&lif()).unwrap();
    let before = jit.cached_scans();
    let k2 = jit.compile(&lif()).unwrap();
    assert_eq!(jit.cached_scans(), before);
    assert_eq!(k1.hash(), k2.hash());
    assert!(Arc::ptr_eq(k1.inference_scan(), k2.inference_scan()));
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    assert_send_sync(&k1);
    let k = Arc::new(k1);
    let x = vec![1.5f32; 8 * 100];
    let want = k.infer(8, 100, &[&x], None, &[]).unwrap();
    std::thread::scope(|s| {
        for _ in 0..3 {
            let k = k.clone();
            let (x, want) = (&x, &want);
            s.spawn(move || assert_eq!(&k.infer(8, 100, &[x], None, &[]).unwrap(), want));
        }
    });
}

#[test]
fn ndarray_views_and_buffer_reuse() {
    let k = cpu(0).compile(&lif()).unwrap();
    let x = ndarray::Array2::from_shape_fn((5, 7), |(t, n)| (t * 7 + n) as f32 / 10.0);
    let f = k.forward_nd(&[x.view()], None, &[]).unwrap();
    let flat = x.as_slice().unwrap();
    let f2 = k.forward(5, 7, &[flat], None, &[]).unwrap();
    assert_eq!(f.outputs, f2.outputs);
    let xt = x.t();
    let e = k.forward_nd(&[xt], None, &[]).unwrap_err();
    assert!(
        matches!(
            e,
            RuntimeError::NotContiguous(_) | RuntimeError::ArrayShape { .. }
        ),
        "{e}"
    );
    let mut inf = k.infer_nd(&[x.view()], None, &[]).unwrap();
    let x2 = vec![2.0f32; 35];
    k.infer_into(5, 7, &[&x2], None, &[], &mut inf).unwrap();
    assert_eq!(inf, k.infer(5, 7, &[&x2], None, &[]).unwrap());
}

#[test]
fn inspection_shows_annotated_clif_and_assembly() {
    let jit = cpu(0);
    let k = jit.compile(&lif()).unwrap();
    let spec = flexsn_runtime::GradSpec::outputs_only(k.graph());
    let bwd = k.backward_scan_kernel(&spec).unwrap();
    for sk in [k.inference_scan().kernel().clone(), bwd] {
        let clif = inspect_clif(&sk, &CpuOptions::default()).unwrap();
        assert!(clif.contains("function"), "{clif}");
        assert!(clif.contains("; %"), "{clif}");
        assert!(clif.contains("f32x4"), "{clif}");
        let asm = inspect_asm(&sk, &CpuOptions::default()).unwrap();
        assert!(asm.contains("ret"), "{asm}");
        assert!(asm.contains("; %"), "{asm}");
        assert!(asm.contains("xmm"), "{asm}");
    }
}

#[test]
fn backend_names_have_one_parser() {
    for (name, b) in [
        ("interp", Backend::Interpreter),
        ("interpreter", Backend::Interpreter),
        ("cpu", Backend::Cpu),
        ("cuda", Backend::Cuda),
        ("cuda-emulated", Backend::CudaEmulated),
    ] {
        assert_eq!(Backend::from_name(name), Ok(b), "{name}");
        assert!(Backend::NAMES.contains(&name), "{name}");
    }
    for b in Backend::ALL {
        assert_eq!(Backend::from_name(b.name()), Ok(b));
        assert_eq!(b.to_string().parse::<Backend>(), Ok(b));
    }
    let e = Backend::from_name("gpu").unwrap_err();
    assert!(
        e.to_string().contains("`gpu`") && e.to_string().contains("interp"),
        "{e}"
    );
}
