//! Kernels on memory and streams the caller owns ([`BorrowedBuf`], [`CallerStream`]): what a
//! framework bridge (PyTorch's `data_ptr()` and current stream) calls.
//!
//! The checks of a borrowed buffer run everywhere; the launches need a GPU (skipped without one,
//! failed when `FLEXSN_REQUIRE_GPU=1`, as `scripts/gpu-check.sh` sets). The smoke test
//! (allocation, copies, one launch) is what `gpu-check.sh` runs first.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, sys};
use flexsn_compiler::codegen::cuda::mixing::MixingSpec;
use flexsn_compiler::codegen::cuda::{
    ArgRole, ArgType, CudaOptions, MathMode, StorageDtype, samples,
};
use flexsn_compiler::ir::Surrogate;
use flexsn_compiler::random::{random_inputs, scan_args};
use flexsn_compiler::scan::ScanKernel;
use flexsn_runtime::cuda::host::{
    BufferSpec, HostBuf, collect_result, input_buffers, pitched_specs,
};
use flexsn_runtime::cuda::probe::{Tool, present_or_skip};
use flexsn_runtime::cuda::{
    BorrowedBuf, CallerStream, CudaDevice, CudaError, DeviceBuf, MixingKernels,
};

fn gpu() -> Option<CudaDevice> {
    present_or_skip(Tool::Gpu, CudaDevice::new(0))
}

#[test]
fn borrowed_buffers_are_checked_before_use() {
    // SAFETY (all): these buffers are only checked, never handed to a kernel.
    let ok = unsafe { BorrowedBuf::from_raw(0x1000, 64, StorageDtype::F32) };
    ok.check("x", StorageDtype::F32, 64).unwrap();
    let err = |b: BorrowedBuf, elem, len| match b.check("x", elem, len) {
        Err(CudaError::Buffer { name, message }) => {
            assert_eq!(name, "x");
            message
        }
        other => panic!("expected a buffer error, got {other:?}"),
    };
    assert!(err(ok, StorageDtype::Bf16, 64).contains("element type"));
    assert!(err(ok, StorageDtype::F32, 65).contains("needs 65"));
    let null = unsafe { BorrowedBuf::from_raw(0, 4, StorageDtype::F32) };
    assert!(err(null, StorageDtype::F32, 4).contains("null"));
    let odd = unsafe { BorrowedBuf::from_raw(0x1002, 4, StorageDtype::F32) };
    assert!(err(odd, StorageDtype::F32, 4).contains("aligned"));
    let half = unsafe { BorrowedBuf::from_raw(0x1002, 4, StorageDtype::F16) };
    half.check("x", StorageDtype::F16, 4).unwrap();
}

/// A borrowed view of an owned device slice (what a framework's tensor looks like to flexsn).
fn borrow<T>(s: &CudaSlice<T>, stream: &Arc<CudaStream>, dtype: StorageDtype) -> BorrowedBuf {
    let (ptr, _sync) = s.device_ptr(stream);
    // SAFETY: `s` is a live allocation of `s.len()` elements on this device; the tests keep it
    // alive until the stream is synchronized.
    unsafe { BorrowedBuf::from_raw(ptr, s.len(), dtype) }
}

/// `host` uploaded on `stream`, and borrowed views of the uploads for the kernel arguments
/// `specs` (with their row pitches when `pitched`).
fn upload_borrowed(
    host: &[HostBuf],
    specs: &[BufferSpec],
    dtype: StorageDtype,
    stream: &Arc<CudaStream>,
    pitched: bool,
) -> (Vec<DeviceBuf>, Vec<BorrowedBuf>) {
    let dev: Vec<DeviceBuf> = host
        .iter()
        .map(|h| match h {
            HostBuf::F32(v) => DeviceBuf::F32(stream.clone_htod(v).unwrap()),
            HostBuf::U16(v) => DeviceBuf::U16(stream.clone_htod(v).unwrap()),
        })
        .collect();
    let bufs = dev
        .iter()
        .zip(specs)
        .map(|(b, s)| {
            let elem = if s.ty == ArgType::Storage {
                dtype
            } else {
                StorageDtype::F32
            };
            let raw = match b {
                DeviceBuf::F32(x) => borrow(x, stream, elem),
                DeviceBuf::U16(x) => borrow(x, stream, elem),
            };
            match s.pitch {
                Some(p) if pitched => raw.with_pitch(p),
                _ => raw,
            }
        })
        .collect();
    (dev, bufs)
}

/// The thread's current context (null: none).
fn current_context() -> sys::CUcontext {
    let mut c: sys::CUcontext = std::ptr::null_mut();
    // SAFETY: writes one handle.
    unsafe { sys::cuCtxGetCurrent(&mut c) };
    c
}

#[test]
fn smoke_allocation_copy_and_launch() {
    let Some(d) = gpu() else { return };
    let stream = d.stream();
    let xs: Vec<f32> = (0..1 << 20).map(|i| i as f32).collect();
    let buf = stream.clone_htod(&xs).unwrap();
    assert_eq!(stream.clone_dtoh(&buf).unwrap(), xs);
    let k = ScanKernel::forward(samples::lif(2.0, 1.0, 0.0).unwrap(), false);
    let dk = d.compile(&k, &CudaOptions::default()).unwrap();
    let data = random_inputs(1, &k.graph, 4, 1000);
    dk.run_host(&scan_args(4, 1000, &data)).unwrap();
    d.synchronize().unwrap();
}

#[test]
fn scan_on_borrowed_memory_and_a_caller_stream_matches_host_runs() {
    let Some(d) = gpu() else { return };
    let ctx = d.context().clone();
    let g = samples::plif(1.0, 0.0).unwrap();
    let k = ScanKernel::forward(g.clone(), true);
    let (t, n) = (9, 3001);
    let data = random_inputs(3, &g, t, n);
    let args = scan_args(t, n, &data);
    for dtype in StorageDtype::ALL {
        let dk = d
            .compile(&k, &CudaOptions::new(dtype, MathMode::Precise))
            .unwrap();
        let want = dk.run_host(&args).unwrap();
        // The caller's own non-blocking stream and allocations.
        let side = ctx.new_stream().unwrap();
        let specs = dk.buffer_specs(t, n).unwrap();
        let mut owned = Vec::new();
        for s in &specs {
            let src: Option<&[f32]> = match s.role {
                ArgRole::Input(i) => Some(args.inputs[i]),
                ArgRole::InitState(j) => Some(args.init_states[j]),
                ArgRole::Param(p) => Some(args.params[p]),
                _ => None,
            };
            let host = match src {
                Some(v) => HostBuf::encode(s.ty, dtype, v),
                None => HostBuf::zeros(s.ty, dtype, s.len),
            };
            owned.push(host);
        }
        let (dev, bufs) = upload_borrowed(&owned, &specs, dtype, &side, false);
        // SAFETY: `side` is a live stream of device 0's primary context, alive for the call.
        let caller = unsafe { CallerStream::from_raw(0, side.cu_stream() as usize as u64) };
        // The caller's thread has no current context: it must have none afterwards either.
        // SAFETY: clearing the current context of this test thread.
        unsafe { sys::cuCtxSetCurrent(std::ptr::null_mut()) };
        dk.launch_on(&caller, &bufs, t, n).unwrap();
        assert!(
            current_context().is_null(),
            "the call left a context current"
        );
        side.synchronize().unwrap();
        let pos = specs
            .iter()
            .position(|s| s.role == ArgRole::Output(0))
            .unwrap();
        let got = match &dev[pos] {
            DeviceBuf::F32(x) => side.clone_dtoh(x).unwrap(),
            DeviceBuf::U16(x) => HostBuf::U16(side.clone_dtoh(x).unwrap()).decode(dtype),
        };
        assert_eq!(got, want.outputs[0], "{}", dtype.name());
        // Wrong device, short buffers, wrong element types: typed errors before any launch.
        let other = CallerStream::legacy_default(7);
        assert!(matches!(
            dk.launch_on(&other, &bufs, t, n),
            Err(CudaError::WrongDevice { .. })
        ));
        assert!(matches!(
            dk.launch_on(&caller, &bufs, t, n + 1),
            Err(CudaError::Buffer { .. })
        ));
        assert!(matches!(
            dk.launch_on(&caller, &bufs[1..], t, n),
            Err(CudaError::Buffer { .. })
        ));
        // A host address is not device memory.
        let host = [0f32; 64];
        let mut bad = bufs.clone();
        // SAFETY: only checked (the driver rejects it before any launch).
        bad[0] =
            unsafe { BorrowedBuf::from_raw(host.as_ptr() as u64, usize::MAX / 8, bufs[0].dtype()) };
        assert!(matches!(
            dk.launch_on(&caller, &bad, t, n),
            Err(CudaError::Buffer { .. })
        ));
    }
}

#[test]
fn scan_on_borrowed_memory_with_caller_pitches_matches_dense_rows() {
    let Some(d) = gpu() else { return };
    d.set_sync(true);
    let g = samples::all_ops().unwrap();
    let k = ScanKernel::forward(g.clone(), true);
    let (t, n) = (5, 1001);
    let data = random_inputs(4, &g, t, n);
    let args = scan_args(t, n, &data);
    let stream = d.stream();
    for dtype in StorageDtype::ALL {
        let dk = d
            .compile(&k, &CudaOptions::new(dtype, MathMode::Precise))
            .unwrap();
        let want = dk.run_host(&args).unwrap();
        // A different pitch per sequence (padded, and odd ones), as a caller may have them.
        let mut extra = 0;
        let pitches: Vec<Option<usize>> = dk
            .source
            .args
            .iter()
            .map(|a| {
                a.is_sequence().then(|| {
                    extra += 3;
                    n + extra
                })
            })
            .collect();
        let specs = pitched_specs(&dk.source, dk.kernel(), t, n, &pitches).unwrap();
        let host = input_buffers(&dk.source, &specs, &args);
        let (dev, bufs) = upload_borrowed(&host, &specs, dtype, stream, true);
        let caller = CallerStream::legacy_default(0);
        dk.launch_on(&caller, &bufs, t, n).unwrap();
        d.synchronize().unwrap();
        let out: Vec<HostBuf> = dev
            .iter()
            .map(|b| match b {
                DeviceBuf::F32(x) => HostBuf::F32(stream.clone_dtoh(x).unwrap()),
                DeviceBuf::U16(x) => HostBuf::U16(stream.clone_dtoh(x).unwrap()),
            })
            .collect();
        let got = collect_result(&dk.source, dk.kernel(), &specs, &out, n);
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "{}", dtype.name());
        // A pitch below N, or on a buffer that is not [T, N]: typed errors before the launch.
        let seq = specs.iter().position(|s| s.pitch.is_some()).unwrap();
        let mut bad = bufs.clone();
        bad[seq] = bad[seq].with_pitch(n - 1);
        assert!(matches!(
            dk.launch_on(&caller, &bad, t, n),
            Err(CudaError::Buffer { .. })
        ));
        let other = specs.iter().position(|s| s.pitch.is_none()).unwrap();
        let mut bad = bufs.clone();
        bad[other] = bad[other].with_pitch(n);
        assert!(matches!(
            dk.launch_on(&caller, &bad, t, n),
            Err(CudaError::Buffer { .. })
        ));
    }
}

#[test]
fn mixing_on_borrowed_memory_matches_host_runs_in_sync_mode() {
    let Some(d) = gpu() else { return };
    d.set_sync(true);
    let spec = MixingSpec {
        rows: 8,
        cols: 8,
        surrogate: Surrogate::ATan { alpha: 2.0 },
    };
    let m = d.mixing(&spec, &CudaOptions::default()).unwrap();
    let n = 5000;
    let w: Vec<f32> = (0..64)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) / 16.0)
        .collect();
    let b: Vec<f32> = (0..8).map(|i| i as f32 / 10.0 - 0.3).collect();
    let x: Vec<f32> = (0..8 * n)
        .map(|i| ((i * 7919 % 1000) as f32) / 500.0 - 1.0)
        .collect();
    let gs: Vec<f32> = (0..8 * n)
        .map(|i| ((i * 104729 % 1000) as f32) / 1000.0)
        .collect();
    let want_s = m.forward(&w, &b, &x, n).unwrap();
    let want_g = m.backward(&w, &b, &x, &gs, n).unwrap();
    let side = d.context().new_stream().unwrap();
    let up = |v: &[f32]| side.clone_htod(v).unwrap();
    let (wd, bd, xd, gsd) = (up(&w), up(&b), up(&x), up(&gs));
    let spike = side.alloc_zeros::<f32>(8 * n).unwrap();
    let gx = side.alloc_zeros::<f32>(8 * n).unwrap();
    let gw = side.alloc_zeros::<f32>(64).unwrap();
    let gb = side.alloc_zeros::<f32>(8).unwrap();
    let ws = side
        .alloc_zeros::<f32>(m.workspace_len(n).unwrap())
        .unwrap();
    let f = StorageDtype::F32;
    // SAFETY: `side` is a live stream of device 0's primary context.
    let caller = unsafe { CallerStream::from_raw(0, side.cu_stream() as usize as u64) };
    m.forward_on(
        &caller,
        &borrow(&wd, &side, f),
        &borrow(&bd, &side, f),
        &borrow(&xd, &side, f),
        &borrow(&spike, &side, f),
        n,
    )
    .unwrap();
    let backward = |workspace: &CudaSlice<f32>| {
        m.backward_on(
            &caller,
            &borrow(&wd, &side, f),
            &borrow(&bd, &side, f),
            &borrow(&xd, &side, f),
            &borrow(&gsd, &side, f),
            &borrow(&gx, &side, f),
            &borrow(&gw, &side, f),
            &borrow(&gb, &side, f),
            &borrow(workspace, &side, f),
            n,
        )
    };
    backward(&ws).unwrap();
    side.synchronize().unwrap();
    assert_eq!(side.clone_dtoh(&spike).unwrap(), want_s);
    assert_eq!(side.clone_dtoh(&gx).unwrap(), want_g.x);
    assert_eq!(side.clone_dtoh(&gw).unwrap(), want_g.weight);
    assert_eq!(side.clone_dtoh(&gb).unwrap(), want_g.bias);
    // A too-small workspace is refused before anything runs.
    let small = side.alloc_zeros::<f32>(16).unwrap();
    assert!(matches!(backward(&small), Err(CudaError::Buffer { .. })));
    d.set_sync(false);
}
