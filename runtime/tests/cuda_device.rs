//! Real CUDA: conformance and differential tests against the interpreter.
//!
//! Without a GPU these tests check that the backend reports it with a typed error and skip the
//! rest with a message; `scripts/gpu-check.sh` sets `FLEXSN_REQUIRE_GPU=1`, so that on a GPU
//! machine a missing device, driver or NVRTC fails them instead.

use flexsn_compiler::autodiff::{GradSpec, backward};
use flexsn_compiler::bptt::{ExecError, Upstream};
use flexsn_compiler::codegen::cuda::{
    CudaOptions, MathMode, REDUCE_BLOCK, REDUCE_CHUNK, REDUCE_ITEMS, StorageDtype, samples,
};
use flexsn_compiler::interp;
use flexsn_compiler::ir::StepGraph;
use flexsn_compiler::random::{RandomGraphConfig, random_graph, random_inputs, scan_args};
use flexsn_compiler::scan::ScanKernel;
use flexsn_runtime::cuda::compare::{Tolerance, compare, compare_results, interpreter_reference};
use flexsn_runtime::cuda::device::{device_count, driver_present};
use flexsn_runtime::cuda::host::HostBuf;
use flexsn_runtime::cuda::probe::{Tool, present_or_skip};
use flexsn_runtime::cuda::{CudaDevice, CudaError, DeviceBuf};

/// Device 0 (its name printed), or `None` (skip, with the reason) where there is none and none
/// is required.
fn gpu() -> Option<CudaDevice> {
    let d = present_or_skip(Tool::Gpu, CudaDevice::new(0))?;
    eprintln!(
        "CUDA device: {} (sm_{}{}), target {:?}",
        d.name(),
        d.compute_capability().0,
        d.compute_capability().1,
        d.target()
    );
    Some(d)
}

#[test]
fn without_a_gpu_the_backend_says_so_with_a_typed_error() {
    match CudaDevice::new(0) {
        Ok(_) => assert!(driver_present()),
        Err(CudaError::NoDriver) => {
            assert!(!driver_present());
            assert!(matches!(device_count(), Err(CudaError::NoDriver)));
            let msg = CudaError::NoDriver.to_string();
            assert!(msg.contains("no CUDA driver"), "{msg}");
        }
        Err(CudaError::NoDevice { .. }) => assert_eq!(device_count().unwrap(), 0),
        Err(CudaError::NoNvrtc { .. }) => {}
        Err(e) => panic!("unexpected error kind: {e}"),
    }
    // An ordinal past the last device is a typed error too (where a driver exists).
    if let Ok(count) = device_count() {
        assert!(matches!(
            CudaDevice::new(count + 3),
            Err(CudaError::NoDevice { .. }) | Err(CudaError::NoNvrtc { .. })
        ));
    }
}

fn cores() -> Vec<StepGraph> {
    vec![
        samples::lif(2.0, 1.0, 0.0).unwrap(),
        samples::if_soft(1.0).unwrap(),
        samples::plif(1.0, 0.0).unwrap(),
        samples::all_ops().unwrap(),
    ]
}

/// Runs `k` on the GPU and compares with the interpreter. `lenient`: device libm differs from
/// the host's by an ulp or two, which can flip a spike (or a floor, a comparison) and with it the
/// rest of that neuron's sequence; then up to 1% of a buffer's elements may differ. Without it
/// (cores made of IEEE-exact operations only), every element must be within tolerance.
#[allow(clippy::too_many_arguments)]
fn check(
    d: &CudaDevice,
    k: &ScanKernel,
    opts: CudaOptions,
    seed: u64,
    t: usize,
    n: usize,
    what: &str,
    lenient: bool,
) {
    let data = random_inputs(seed, &k.graph, t, n);
    let args = scan_args(t, n, &data);
    let dk = d
        .compile(k, &opts)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let got = dk.run_host(&args).unwrap_or_else(|e| panic!("{what}: {e}"));
    let want = interpreter_reference(k, &args, opts.dtype).unwrap();
    if let Err(ms) = compare_results(&got, &want, Tolerance::device(opts.dtype, opts.math)) {
        if lenient
            && ms
                .iter()
                .all(|m| m.len_differs.is_none() && m.count * 100 <= m.len)
        {
            eprintln!(
                "{what}: {} buffers with a few flipped elements (allowed)",
                ms.len()
            );
            return;
        }
        let lines: Vec<String> = ms.iter().map(ToString::to_string).collect();
        panic!(
            "{what} ({} {}): CUDA differs from the interpreter:\n{}",
            opts.dtype.name(),
            opts.math.name(),
            lines.join("\n")
        );
    }
}

#[test]
fn sample_cores_match_the_interpreter_on_the_gpu() {
    let Some(d) = gpu() else {
        return;
    };
    for dtype in StorageDtype::ALL {
        // Fast math is checked on the spiking-free smooth parts by the coarser tolerance; the
        // all-ops graph's discontinuous ops (floor, spike, comparisons) can flip on a 1-ulp
        // difference, so fast math runs on the neuron cores only.
        for math in MathMode::ALL {
            for (ci, g) in cores().into_iter().enumerate() {
                if math == MathMode::Fast && g.name() == "all_ops" {
                    continue;
                }
                let opts = CudaOptions::new(dtype, math);
                // LIF and IF in precise math use only IEEE-exact operations (no FMA
                // contraction): they must match everywhere.
                let lenient = !(math == MathMode::Precise && matches!(g.name(), "lif" | "if_soft"));
                for seqs in [false, true] {
                    let k = ScanKernel::forward(g.clone(), seqs);
                    check(
                        &d,
                        &k,
                        opts,
                        ci as u64,
                        16,
                        1000,
                        &format!("{} forward", g.name()),
                        lenient,
                    );
                }
                let bk = backward(&g, &GradSpec::all(&g)).unwrap().kernel;
                check(
                    &d,
                    &bk,
                    opts,
                    50 + ci as u64,
                    16,
                    1000,
                    &format!("{} backward", g.name()),
                    lenient,
                );
            }
        }
    }
}

#[test]
fn random_graphs_match_the_interpreter_on_the_gpu() {
    let Some(d) = gpu() else {
        return;
    };
    let cfg = RandomGraphConfig::smooth();
    for seed in 0..16u64 {
        let g = random_graph(seed, &cfg);
        let opts = CudaOptions::new(StorageDtype::ALL[seed as usize % 3], MathMode::Precise);
        let k = ScanKernel::forward(g.clone(), true);
        check(
            &d,
            &k,
            opts,
            seed,
            8,
            777,
            &format!("random smooth graph {seed} forward"),
            false,
        );
        let bk = backward(&g, &GradSpec::all(&g)).unwrap().kernel;
        check(
            &d,
            &bk,
            opts,
            seed + 99,
            8,
            777,
            &format!("random smooth graph {seed} backward"),
            false,
        );
    }
    // Every op and surrogate: discontinuities make single elements flip on 1-ulp differences of
    // device libm, so allow a small fraction of differing elements per buffer.
    let cfg = RandomGraphConfig::all();
    for seed in 0..16u64 {
        let g = random_graph(seed, &cfg);
        let k = ScanKernel::forward(g.clone(), true);
        let data = random_inputs(seed, &g, 8, 513);
        let args = scan_args(8, 513, &data);
        let got = d
            .compile(&k, &CudaOptions::default())
            .unwrap()
            .run_host(&args)
            .unwrap();
        let want = interp::run_scan(&k, &args).unwrap();
        if let Err(ms) = compare_results(
            &got,
            &want,
            Tolerance::device(StorageDtype::F32, MathMode::Precise),
        ) {
            for m in ms {
                assert!(
                    m.len_differs.is_none() && m.count * 100 <= m.len,
                    "random graph {seed}: {m}"
                );
            }
        }
    }
}

#[test]
fn device_buffers_and_host_slices_give_the_same_results() {
    let Some(d) = gpu() else {
        return;
    };
    let g = samples::plif(1.0, 0.0).unwrap();
    let k = ScanKernel::forward(g.clone(), true);
    for dtype in StorageDtype::ALL {
        let opts = CudaOptions::new(dtype, MathMode::Precise);
        let dk = d.compile(&k, &opts).unwrap();
        let (t, n) = (12, 4099);
        let data = random_inputs(7, &g, t, n);
        let args = scan_args(t, n, &data);
        let host = dk.run_host(&args).unwrap();
        // The same through device buffers built by hand.
        let mut bufs = dk.alloc_buffers(t, n).unwrap();
        let specs = dk.buffer_specs(t, n).unwrap();
        let stream = d.stream();
        for (b, s) in bufs.iter_mut().zip(&specs) {
            use flexsn_compiler::codegen::cuda::ArgRole::*;
            let src: &[f32] = match s.role {
                Input(i) => args.inputs[i],
                InitState(j) => args.init_states[j],
                Param(p) => args.params[p],
                _ => continue,
            };
            match (b, HostBuf::encode(s.ty, dtype, src)) {
                (DeviceBuf::F32(x), HostBuf::F32(h)) => stream.memcpy_htod(&h, x).unwrap(),
                (DeviceBuf::U16(x), HostBuf::U16(h)) => stream.memcpy_htod(&h, x).unwrap(),
                _ => panic!("buffer types disagree"),
            }
        }
        dk.launch(&mut bufs, t, n).unwrap();
        d.synchronize().unwrap();
        let out_pos = specs
            .iter()
            .position(|s| s.role == flexsn_compiler::codegen::cuda::ArgRole::Output(0))
            .unwrap();
        let spikes = match &bufs[out_pos] {
            DeviceBuf::F32(x) => stream.clone_dtoh(x).unwrap(),
            DeviceBuf::U16(x) => HostBuf::U16(stream.clone_dtoh(x).unwrap()).decode(dtype),
        };
        assert_eq!(spikes, host.outputs[0]);
        // Wrong buffers are typed errors.
        let mut short = dk.alloc_buffers(t, n - 1).unwrap();
        assert!(matches!(
            dk.launch(&mut short, t, n),
            Err(CudaError::Buffer { .. })
        ));
        let mut few = dk.alloc_buffers(t, n).unwrap();
        few.pop();
        assert!(matches!(
            dk.launch(&mut few, t, n),
            Err(CudaError::Buffer { .. })
        ));
    }
}

/// The reduction kernel's order of additions, in Rust.
fn reduce_reference(values: &[f32]) -> f32 {
    let mut cur = values.to_vec();
    while cur.len() > 1 {
        let blocks = (cur.len() as u64).div_ceil(REDUCE_CHUNK) as usize;
        let block = REDUCE_BLOCK as usize;
        cur = (0..blocks)
            .map(|b| {
                let mut buf: Vec<f32> = (0..block)
                    .map(|tid| {
                        let mut acc = 0.0f32;
                        for k in 0..REDUCE_ITEMS as usize {
                            let i = b * REDUCE_CHUNK as usize + k * block + tid;
                            if i < cur.len() {
                                acc += cur[i];
                            }
                        }
                        acc
                    })
                    .collect();
                let mut s = block / 2;
                while s > 0 {
                    for tid in 0..s {
                        buf[tid] += buf[tid + s];
                    }
                    s /= 2;
                }
                buf[0]
            })
            .collect();
    }
    cur.first().copied().unwrap_or(0.0)
}

#[test]
fn device_reduction_is_deterministic_and_bitwise_equal_to_its_reference() {
    let Some(d) = gpu() else {
        return;
    };
    let k = ScanKernel::forward(samples::lif(2.0, 1.0, 0.0).unwrap(), false);
    let dk = d.compile(&k, &CudaOptions::default()).unwrap();
    for len in [1usize, 4096, 4097, 1 << 20, 3_000_001] {
        let xs: Vec<f32> = (0..len)
            .map(|i| ((i as f32) * 0.37).sin() * 10f32.powi((i % 7) as i32 - 3))
            .collect();
        let buf = d.upload_f32(&xs).unwrap();
        let a = dk.reduce_sum(&buf, len).unwrap();
        let b = dk.reduce_sum(&buf, len).unwrap();
        assert_eq!(a.to_bits(), b.to_bits(), "len {len}: not deterministic");
        assert_eq!(a.to_bits(), reduce_reference(&xs).to_bits(), "len {len}");
    }
    // Shorter again: the kernel's pass workspace (grown to the largest) is reused.
    let xs: Vec<f32> = (0..4097).map(|i| (i as f32 * 0.11).cos()).collect();
    let buf = d.upload_f32(&xs).unwrap();
    let a = dk.reduce_sum(&buf, xs.len()).unwrap();
    assert_eq!(a.to_bits(), reduce_reference(&xs).to_bits());
}

#[test]
fn host_runs_reuse_their_device_buffers_across_shapes() {
    let Some(d) = gpu() else {
        return;
    };
    let g = samples::plif(1.0, 0.0).unwrap();
    let k = ScanKernel::forward(g.clone(), true);
    let dk = d.compile(&k, &CudaOptions::default()).unwrap();
    let small = random_inputs(3, &g, 4, 1000);
    let big = random_inputs(4, &g, 9, 5000);
    let first = dk.run_host(&scan_args(4, 1000, &small)).unwrap();
    let big_a = dk.run_host(&scan_args(9, 5000, &big)).unwrap();
    // Smaller after larger: the same buffers, and no stale values in the results.
    let again = dk.run_host(&scan_args(4, 1000, &small)).unwrap();
    let big_b = dk.run_host(&scan_args(9, 5000, &big)).unwrap();
    assert_eq!(first, again);
    assert_eq!(big_a, big_b);
}

#[test]
fn bptt_with_the_gpu_runner_matches_the_interpreter() {
    let Some(d) = gpu() else {
        return;
    };
    let g = samples::plif(1.0, 0.0).unwrap();
    let (t, n) = (10, 2000);
    let data = random_inputs(11, &g, t, n);
    let args = scan_args(t, n, &data);
    let fwd = ScanKernel::forward(g.clone(), true);
    let f = d
        .compile(&fwd, &CudaOptions::default())
        .unwrap()
        .run_host(&args)
        .unwrap();
    let gy: Vec<f32> = (0..t * n)
        .map(|i| ((i * 7) % 13) as f32 / 13.0 - 0.5)
        .collect();
    let up = Upstream {
        outputs: vec![Some(&gy[..])],
        state_seqs: vec![None],
        final_states: vec![None],
    };
    let bwd = backward(&g, &up.spec()).unwrap();
    let seqs: Vec<&[f32]> = f.state_seqs.iter().map(Vec::as_slice).collect();
    let got = flexsn_compiler::bptt::backward(&g, &bwd, &args, &seqs, &up, |k, a| {
        d.compile(k, &CudaOptions::default())?.run_host(a)
    })
    .unwrap();
    let want = flexsn_compiler::bptt::backward(&g, &bwd, &args, &seqs, &up, |k, a| {
        interp::run_scan(k, a).map_err(ExecError::from)
    })
    .unwrap();
    let tol = Tolerance::device(StorageDtype::F32, MathMode::Precise);
    compare("grad x", &got.inputs[0], &want.inputs[0], tol).unwrap();
    let (gw, ww) = (
        got.params[0].as_ref().unwrap(),
        want.params[0].as_ref().unwrap(),
    );
    compare(
        "grad w",
        gw,
        ww,
        Tolerance {
            atol: 1e-3,
            rtol: 1e-3,
        },
    )
    .unwrap();
}

#[test]
fn modules_are_cached_across_devices_handles() {
    let Some(d) = gpu() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("flexsn-gpu-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let k = ScanKernel::forward(samples::lif(2.0, 1.0, 0.0).unwrap(), true);
    let d1 = CudaDevice::with_cache(
        0,
        flexsn_runtime::cuda::nvrtc::ModuleCache::with_dir(Some(dir.clone())),
    )
    .unwrap();
    d1.compile(&k, &CudaOptions::default()).unwrap();
    assert_eq!(d1.module_cache().stats().compiles, 1);
    let d2 = CudaDevice::with_cache(
        0,
        flexsn_runtime::cuda::nvrtc::ModuleCache::with_dir(Some(dir.clone())),
    )
    .unwrap();
    let dk = d2.compile(&k, &CudaOptions::default()).unwrap();
    assert_eq!(d2.module_cache().stats().disk_hits, 1);
    assert_eq!(d2.module_cache().stats().compiles, 0);
    // The cached module runs.
    let data = random_inputs(1, &k.graph, 4, 100);
    dk.run_host(&scan_args(4, 100, &data)).unwrap();
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
