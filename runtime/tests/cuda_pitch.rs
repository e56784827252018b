//! Row pitches of `[T, N]` buffers: the generated CUDA source (emulated as host C++) with rows
//! padded to 128 bytes gives bit for bit what it gives with dense rows, for N that is and is not a
//! multiple of the padding, forward and backward, in every storage type; both agree with the
//! interpreter. Caller pitches (a different one per buffer) are honoured and checked.
//!
//! These tests need a host C++ compiler. Without one they fail when `FLEXSN_REQUIRE_CXX=1` or
//! `CI` is set and skip with a message otherwise.

use std::ffi::c_void;

use flexsn_compiler::autodiff::{GradSpec, backward};
use flexsn_compiler::codegen::cuda::{
    ArgType, CudaOptions, MathMode, RowLayout, StorageDtype, padded_pitch, samples,
};
use flexsn_compiler::ir::StepGraph;
use flexsn_compiler::random::{random_inputs, scan_args};
use flexsn_compiler::scan::ScanKernel;
use flexsn_runtime::cuda::CudaError;
use flexsn_runtime::cuda::compare::{Tolerance, compare_results, interpreter_reference};
use flexsn_runtime::cuda::emulated::{EmulatedCuda, find_cxx};
use flexsn_runtime::cuda::host::{HostBuf, collect_result, input_buffers, pitched_specs};
use flexsn_runtime::cuda::probe::{Tool, present_or_skip};

fn emu(dtype: StorageDtype) -> Option<EmulatedCuda> {
    present_or_skip(Tool::Cxx, find_cxx())?;
    Some(EmulatedCuda::with_options(CudaOptions::new(dtype, MathMode::Precise)).unwrap())
}

/// LIF, PLIF (a learnable per-neuron param) and a core with two inputs and two states.
fn cores() -> Vec<StepGraph> {
    vec![
        samples::lif(2.0, 1.0, 0.0).unwrap(),
        samples::plif(1.0, 0.0).unwrap(),
        samples::all_ops().unwrap(),
    ]
}

/// The training forward and the backward scan of `g`.
fn kernels(g: &StepGraph) -> [ScanKernel; 2] {
    [
        ScanKernel::forward(g.clone(), true),
        backward(g, &GradSpec::all(g)).unwrap().kernel,
    ]
}

#[test]
fn padded_rows_give_what_dense_rows_give() {
    for dtype in StorageDtype::ALL {
        let Some(e) = emu(dtype) else { return };
        let tol = Tolerance::emulated(dtype);
        for (ci, g) in cores().iter().enumerate() {
            for k in kernels(g) {
                let ek = e.kernel(&k).unwrap();
                for n in [1, 31, 33, 1000, 4097] {
                    let t = 3;
                    let d = random_inputs(ci as u64 * 7 + n as u64, &k.graph, t, n);
                    let args = scan_args(t, n, &d);
                    let what = format!("{} {} N={n}", k.graph.name(), dtype.name());
                    let dense = ek.run_with(&k, &args, RowLayout::Dense).unwrap();
                    let padded = ek.run_with(&k, &args, RowLayout::Padded).unwrap();
                    assert_eq!(
                        format!("{padded:?}"),
                        format!("{dense:?}"),
                        "{what}: padded rows differ from dense rows"
                    );
                    let want = interpreter_reference(&k, &args, dtype).unwrap();
                    if let Err(ms) = compare_results(&padded, &want, tol) {
                        panic!("{what}: differs from the interpreter: {}", ms[0]);
                    }
                }
            }
        }
    }
}

/// A sentinel the kernel must neither read (it would reach the results) nor overwrite.
const GAP: f32 = f32::NAN;

#[test]
fn caller_pitches_differ_per_buffer_and_padding_is_untouched() {
    let dtype = StorageDtype::F32;
    let Some(e) = emu(dtype) else { return };
    let g = samples::all_ops().unwrap();
    let (t, n) = (4, 37);
    for k in kernels(&g) {
        let ek = e.kernel(&k).unwrap();
        let d = random_inputs(3, &k.graph, t, n);
        let args = scan_args(t, n, &d);
        // Every sequence gets its own pitch: N, N + 1, N + 2, ... (odd ones included).
        let mut extra = 0;
        let pitches: Vec<Option<usize>> = ek
            .source
            .args
            .iter()
            .map(|a| {
                a.is_sequence().then(|| {
                    extra += 1;
                    n + extra - 1
                })
            })
            .collect();
        let specs = pitched_specs(&ek.source, &k, t, n, &pitches).unwrap();
        let mut bufs = input_buffers(&ek.source, &specs, &args);
        for (s, b) in specs.iter().zip(&mut bufs) {
            if let (Some(p), HostBuf::F32(v)) = (s.pitch, b) {
                assert_eq!(v.len(), t * p, "{}", s.name);
                v.chunks_exact_mut(p).for_each(|r| r[n..].fill(GAP));
            }
        }
        let ptrs: Vec<*mut c_void> = bufs.iter_mut().map(|b| b.as_mut_ptr()).collect();
        // SAFETY: each buffer holds its spec's length of f32 values (checked above for the
        // sequences; `input_buffers` sizes the others) and lives through the call.
        unsafe { ek.launch(&specs, &ptrs, t, n) }.unwrap();
        for (s, b) in specs.iter().zip(&bufs) {
            if let (Some(p), HostBuf::F32(v)) = (s.pitch, b) {
                for r in v.chunks_exact(p) {
                    assert!(
                        r[n..].iter().all(|x| x.is_nan()),
                        "{}: padding written",
                        s.name
                    );
                }
            }
        }
        let got = collect_result(&ek.source, &k, &specs, &bufs, n);
        let dense = ek.run_with(&k, &args, RowLayout::Dense).unwrap();
        assert_eq!(
            format!("{got:?}"),
            format!("{dense:?}"),
            "{}",
            k.graph.name()
        );
    }
}

#[test]
fn bad_pitches_are_typed_errors() {
    let Some(e) = emu(StorageDtype::F32) else {
        return;
    };
    let k = ScanKernel::forward(samples::lif(2.0, 1.0, 0.0).unwrap(), true);
    let src = &e.kernel(&k).unwrap().source;
    let (t, n) = (4, 10);
    let with = |i: usize, p: usize| {
        let mut v = vec![None; src.args.len()];
        v[i] = Some(p);
        pitched_specs(src, &k, t, n, &v)
    };
    let seq = src.args.iter().position(|a| a.is_sequence()).unwrap();
    let other = src.args.iter().position(|a| !a.is_sequence()).unwrap();
    let msg = |r: Result<_, CudaError>| r.unwrap_err().to_string();
    assert!(msg(with(seq, n - 1)).contains("less than N"));
    assert!(msg(with(other, n)).contains("not [T, N]"));
    assert!(msg(with(seq, usize::MAX)).contains("overflows"));
    assert!(msg(pitched_specs(src, &k, t, n, &[Some(n)])).contains("row pitches"));
    // A good pitch sizes the buffer T * pitch; the others keep their lengths.
    let ok = with(seq, 16).unwrap();
    assert_eq!((ok[seq].len, ok[seq].pitch), (t * 16, Some(16)));
    assert_eq!(ok[other].pitch, None);
    assert!(
        src.args
            .iter()
            .all(|a| a.is_sequence() == (a.ty == ArgType::Storage))
    );
}

#[test]
fn padded_pitch_rounds_to_128_bytes() {
    for (n, f32p, f16p) in [
        (1, 32, 64),
        (31, 32, 64),
        (32, 32, 64),
        (33, 64, 64),
        (65, 96, 128),
    ] {
        assert_eq!(padded_pitch(n, StorageDtype::F32), Some(f32p), "{n}");
        assert_eq!(padded_pitch(n, StorageDtype::F16), Some(f16p), "{n}");
        assert_eq!(padded_pitch(n, StorageDtype::Bf16), Some(f16p), "{n}");
    }
    assert_eq!(
        padded_pitch((1 << 20) + 1, StorageDtype::F32),
        Some((1 << 20) + 32)
    );
    assert_eq!(padded_pitch(usize::MAX, StorageDtype::F32), None);
}
