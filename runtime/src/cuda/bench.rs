//! CUDA benchmarks: forward (training) and backward scans of a neuron on device buffers, timed
//! with CUDA events, and compared with a device-to-device copy of the same number of bytes in
//! the same run.
//!
//! "Bytes it must move" is every buffer of the launch once: each input read (sequences in the
//! storage type, states and params in `f32`) and each output written. The copy reference moves
//! the same total (it reads and writes `bytes / 2`), so `ratio = copy_time / kernel_time` is the
//! fraction of the copy bandwidth the kernel reaches. With padded rows
//! ([`RowLayout::Padded`]) the bytes counted stay those of dense rows (the padding is never
//! read or written), so the two layouts' rows compare directly.

use std::sync::Arc;

use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaSlice, CudaStream};
use flexsn_compiler::autodiff::GradSpec;
use flexsn_compiler::codegen::cuda::checkpoint::{
    CheckpointSource, codegen_checkpoint_backward, codegen_checkpoint_forward,
};
use flexsn_compiler::codegen::cuda::mixing::MixingSpec;
use flexsn_compiler::codegen::cuda::{ArgRole, ArgType, CudaOptions, RowLayout, StorageDtype};
use flexsn_compiler::ir::StepGraph;
use flexsn_compiler::scan::ScanKernel;

use super::error::{driver_err, guard};
use super::host::{BufferSpec, HostBuf};
use super::{CudaDevice, CudaError, DeviceBuf};

/// One benchmark: a neuron's scans at one size and storage type.
#[derive(Clone, Debug)]
pub struct BenchCase {
    /// The row label (neuron name).
    pub label: String,
    /// The neuron's step graph.
    pub graph: StepGraph,
    /// Storage type and math mode.
    pub opts: CudaOptions,
    /// Time steps.
    pub t: usize,
    /// Neurons.
    pub n: usize,
    /// Timed repetitions (after one warm-up); the median is reported.
    pub reps: usize,
    /// How the rows of the `[T, N]` buffers are laid out (dense, or padded to 128 bytes).
    pub layout: RowLayout,
}

/// One measured scan (or the sum of forward and backward).
#[derive(Clone, Debug, PartialEq)]
pub struct BenchRow {
    /// The row label (neuron name).
    pub label: String,
    /// `forward`, `backward` or `fwd+bwd`.
    pub phase: &'static str,
    /// Storage type of the sequences.
    pub dtype: StorageDtype,
    /// Time steps.
    pub t: usize,
    /// Neurons.
    pub n: usize,
    /// Median kernel time.
    pub ms: f64,
    /// Bytes the scan must move (all buffers once).
    pub bytes: u64,
    /// Median time of a device-to-device copy moving the same bytes.
    pub copy_ms: f64,
    /// Floating-point operations of the time mixing (PSN rows; 0 for scans).
    pub flops: f64,
}

impl BenchRow {
    /// Effective bandwidth of the kernel in GB/s.
    pub fn gbps(&self) -> f64 {
        self.bytes as f64 / (self.ms * 1e-3) / 1e9
    }
    /// Bandwidth of the same-run copy in GB/s.
    pub fn copy_gbps(&self) -> f64 {
        self.bytes as f64 / (self.copy_ms * 1e-3) / 1e9
    }
    /// Fraction of the copy's bandwidth the kernel reaches.
    pub fn ratio(&self) -> f64 {
        self.copy_ms / self.ms
    }
    /// Achieved GFLOP/s of the time mixing (0 for scans).
    pub fn gflops(&self) -> f64 {
        self.flops / (self.ms * 1e-3) / 1e9
    }
}

/// Bytes of all buffers of a launch whose sequences are stored as `storage`.
fn launch_bytes(storage: StorageDtype, specs: &[BufferSpec]) -> u64 {
    specs
        .iter()
        .map(|s| (s.len * s.ty.elem_bytes(storage)) as u64)
        .sum()
}

/// `n` deterministic values spread over `[lo, lo + 3)`.
fn pattern_row(n: usize, lo: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (((i as u64).wrapping_mul(2654435761) % 3000) as f32) / 1000.0 + lo)
        .collect()
}

/// Fills every input buffer with a deterministic pattern in `[-1, 2)`: one row of `n` values
/// uploaded once, then copied into every time step on the device.
fn fill_inputs(
    stream: &Arc<CudaStream>,
    dtype: StorageDtype,
    writes: &dyn Fn(ArgRole) -> bool,
    bufs: &mut [DeviceBuf],
    specs: &[BufferSpec],
    t: usize,
    n: usize,
) -> Result<(), CudaError> {
    let row = pattern_row(n, -1.0);
    for (b, s) in bufs.iter_mut().zip(specs) {
        if writes(s.role) || s.len == 0 {
            continue;
        }
        let per_row = matches!(s.role, ArgRole::Input(_)).then(|| s.pitch_or(n));
        let src: Vec<f32> = if per_row.is_some() {
            row.clone()
        } else {
            row.iter().cycle().take(s.len).copied().collect()
        };
        let host = HostBuf::encode(s.ty, dtype, &src);
        match (b, host) {
            (DeviceBuf::F32(d), HostBuf::F32(h)) => copy_rows(stream, d, &h, per_row, t)?,
            (DeviceBuf::U16(d), HostBuf::U16(h)) => copy_rows(stream, d, &h, per_row, t)?,
            _ => {
                return Err(CudaError::Buffer {
                    name: s.name.clone(),
                    message: "buffer and host types disagree".into(),
                });
            }
        }
    }
    Ok(())
}

/// Copies `row` into the start of `dst`, or with `per_row = Some(pitch)` into each of `t` rows
/// `pitch` apart.
fn copy_rows<T: cudarc::driver::DeviceRepr>(
    stream: &Arc<CudaStream>,
    dst: &mut CudaSlice<T>,
    row: &[T],
    per_row: Option<usize>,
    t: usize,
) -> Result<(), CudaError> {
    let Some(pitch) = per_row else {
        stream
            .memcpy_htod(row, &mut dst.slice_mut(..row.len()))
            .map_err(driver_err("cuMemcpyHtoD"))?;
        return Ok(());
    };
    let n = row.len();
    let first = stream.clone_htod(row).map_err(driver_err("cuMemcpyHtoD"))?;
    for ti in 0..t {
        let mut view = dst.slice_mut(ti * pitch..ti * pitch + n);
        stream
            .memcpy_dtod(&first, &mut view)
            .map_err(driver_err("cuMemcpyDtoD"))?;
    }
    Ok(())
}

/// Median of the event times of `reps` runs of `f` (after one warm-up run).
fn time_ms(
    dev: &CudaDevice,
    reps: usize,
    mut f: impl FnMut() -> Result<(), CudaError>,
) -> Result<f64, CudaError> {
    f()?;
    let stream = dev.stream();
    let mut times = Vec::with_capacity(reps.max(1));
    for _ in 0..reps.max(1) {
        let start = stream
            .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(driver_err("cuEventRecord"))?;
        f()?;
        let end = stream
            .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(driver_err("cuEventRecord"))?;
        times.push(
            start
                .elapsed_ms(&end)
                .map_err(driver_err("cuEventElapsedTime"))? as f64,
        );
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[times.len() / 2])
}

/// Median time of a device-to-device copy that moves `bytes` in total (reads and writes half).
fn copy_ms(dev: &CudaDevice, bytes: u64, reps: usize) -> Result<f64, CudaError> {
    let half = (bytes / 2).max(1) as usize;
    let stream = dev.stream().clone();
    let src = stream
        .alloc_zeros::<u8>(half)
        .map_err(driver_err("cuMemAlloc"))?;
    let mut dst = stream
        .alloc_zeros::<u8>(half)
        .map_err(driver_err("cuMemAlloc"))?;
    time_ms(dev, reps, || {
        stream
            .memcpy_dtod(&src, &mut dst)
            .map_err(driver_err("cuMemcpyDtoD"))
    })
}

/// The row of a scan kernel of `case` that took `ms` to move `bytes`, beside a copy of as many
/// bytes timed now.
fn scan_row(
    dev: &CudaDevice,
    case: &BenchCase,
    phase: &'static str,
    ms: f64,
    bytes: u64,
) -> Result<BenchRow, CudaError> {
    Ok(BenchRow {
        label: case.label.clone(),
        phase,
        dtype: case.opts.dtype,
        t: case.t,
        n: case.n,
        ms,
        bytes,
        copy_ms: copy_ms(dev, bytes, case.reps)?,
        flops: 0.0,
    })
}

/// Times one compiled scan on device buffers filled with a pattern.
fn bench_scan(
    dev: &CudaDevice,
    kernel: &ScanKernel,
    case: &BenchCase,
    phase: &'static str,
) -> Result<BenchRow, CudaError> {
    let dk = dev.compile(kernel, &case.opts)?;
    let specs = dk.layout_specs(case.t, case.n, case.layout)?;
    let mut bufs = dk.alloc_buffers_with(case.t, case.n, case.layout)?;
    let writes = |r: ArgRole| r.is_output();
    let dtype = dk.source.dtype;
    fill_inputs(
        dev.stream(),
        dtype,
        &writes,
        &mut bufs,
        &specs,
        case.t,
        case.n,
    )?;
    // The useful bytes: those of dense rows, whatever the layout.
    let bytes = launch_bytes(dk.source.dtype, &dk.buffer_specs(case.t, case.n)?);
    let ms = time_ms(dev, case.reps, || {
        dk.launch_with(&mut bufs, case.t, case.n, case.layout)
    })?;
    // The kernel's buffers go before the copy's are allocated.
    drop(bufs);
    scan_row(dev, case, phase, ms, bytes)
}

/// Benchmarks a neuron's training forward scan and its backward scan (upstream gradients for
/// the outputs only), each against a same-run copy of its bytes, plus their sum.
pub fn bench_neuron(dev: &CudaDevice, case: &BenchCase) -> Result<Vec<BenchRow>, CudaError> {
    let (fwd, bwd) =
        super::inspect::scan_kernels(&case.graph, &GradSpec::outputs_only(&case.graph), true)?;
    guard("CUDA benchmark", || {
        let f = bench_scan(dev, &fwd, case, "forward")?;
        let b = bench_scan(dev, &bwd, case, "backward")?;
        Ok(with_sum(f, b))
    })
}

/// The forward and backward rows and their sum.
fn with_sum(f: BenchRow, b: BenchRow) -> Vec<BenchRow> {
    let both = BenchRow {
        phase: "fwd+bwd",
        ms: f.ms + b.ms,
        bytes: f.bytes + b.bytes,
        copy_ms: f.copy_ms + b.copy_ms,
        ..f.clone()
    };
    vec![f, b, both]
}

/// Times one fused `checkpoint:K` kernel on device buffers filled with a pattern (the
/// backward's checkpoints too: its time does not depend on their values' origin).
fn bench_checkpoint_kernel(
    dev: &CudaDevice,
    src: &CheckpointSource,
    kernel: &ScanKernel,
    case: &BenchCase,
    k: usize,
    phase: &'static str,
) -> Result<BenchRow, CudaError> {
    let (t, n) = (case.t, case.n);
    let f = super::checkpoint::device_function(dev, src)?;
    let specs = super::checkpoint::specs(src, kernel, t, n, k)?;
    let shape = super::checkpoint::Shape::new(src, t, n, k)?;
    let stream = dev.stream().clone();
    let _scope = dev.scope()?;
    let mut bufs = specs
        .iter()
        .map(|s| super::device::alloc(&stream, s.ty, src.dtype, s.len))
        .collect::<Result<Vec<_>, _>>()?;
    let writes = |r: ArgRole| src.writes(r);
    fill_inputs(&stream, src.dtype, &writes, &mut bufs, &specs, t, n)?;
    let bytes = launch_bytes(src.dtype, &specs);
    let ms = time_ms(dev, case.reps, || {
        let (ptrs, _order) = super::device::raw_ptrs(bufs.iter(), &stream);
        // SAFETY: one device buffer per kernel argument in order, each as long as the kernel
        // indexes for [T, N, K].
        unsafe { shape.launch(&stream, &f, &src.entry, &ptrs, dev.sync()) }
    })?;
    // The kernel's buffers go before the copy's are allocated.
    drop(bufs);
    scan_row(dev, case, phase, ms, bytes)
}

/// [`bench_neuron`] under `checkpoint:K`: the fused training forward (saving `⌈T/K⌉` rows per
/// state) and the fused backward (recomputing each segment in shared memory), plus their sum.
pub fn bench_neuron_checkpoint(
    dev: &CudaDevice,
    case: &BenchCase,
    k: usize,
) -> Result<Vec<BenchRow>, CudaError> {
    let (fwd, bwd) =
        super::inspect::scan_kernels(&case.graph, &GradSpec::outputs_only(&case.graph), true)?;
    let inference = ScanKernel::forward(fwd.graph.clone(), false);
    let fsrc = codegen_checkpoint_forward(&inference, &case.opts)?;
    let bsrc = codegen_checkpoint_backward(&fwd.graph, &bwd, &case.opts)?;
    guard("CUDA benchmark", || {
        let f = bench_checkpoint_kernel(dev, &fsrc, &inference, case, k, "forward")?;
        let b = bench_checkpoint_kernel(dev, &bsrc, &bwd, case, k, "backward")?;
        Ok(with_sum(f, b))
    })
}

/// Fills a storage buffer of `steps` rows of `n` with a deterministic pattern in `[lo, lo + 3)`:
/// one row uploaded, then copied into every step on the device.
fn fill_rows(
    stream: &Arc<CudaStream>,
    buf: &mut DeviceBuf,
    dtype: StorageDtype,
    steps: usize,
    n: usize,
    lo: f32,
) -> Result<(), CudaError> {
    let row = pattern_row(n, lo);
    match (buf, HostBuf::encode(ArgType::Storage, dtype, &row)) {
        (DeviceBuf::F32(d), HostBuf::F32(h)) => copy_rows(stream, d, &h, Some(n), steps),
        (DeviceBuf::U16(d), HostBuf::U16(h)) => copy_rows(stream, d, &h, Some(n), steps),
        _ => Err(CudaError::Buffer {
            name: "mixing input".into(),
            message: "buffer and host types disagree".into(),
        }),
    }
}

/// Benchmarks a PSN time mixing (`spec`) on `n` neurons: forward, backward (fused backward,
/// weight gradient and its reduction) and their sum, each against a same-run copy of its bytes,
/// with the achieved GFLOP/s.
///
/// Bytes: forward reads `X` `[C, N]` and writes `S` `[R, N]`; backward reads `X` and `gS`,
/// writes `gX`, and writes then reads `gH` (`f32` `[R, N]`); parameters once. Flops: forward
/// `2·R·C·N`; backward `6·R·C·N` (`H` recomputed, `gX = Wᵀ·gH`, `gW = gH·Xᵀ`).
pub fn bench_mixing(
    dev: &CudaDevice,
    label: &str,
    spec: &MixingSpec,
    opts: &CudaOptions,
    n: usize,
    reps: usize,
) -> Result<Vec<BenchRow>, CudaError> {
    guard("CUDA mixing benchmark", || {
        let m = dev.mixing(spec, opts)?;
        let (r, c) = (spec.rows, spec.cols);
        let bound = 1.0 / (c as f32).sqrt();
        let weight: Vec<f32> = (0..r * c)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * bound)
            .collect();
        let w = m.upload_f32(&weight)?;
        let b = m.upload_f32(&vec![-1.0; r])?;
        let stream = dev.stream();
        let mut x = m.alloc_storage(c * n)?;
        fill_rows(stream, &mut x, opts.dtype, c, n, -1.0)?;
        let mut gs = m.alloc_storage(r * n)?;
        fill_rows(stream, &mut gs, opts.dtype, r, n, -1.5)?;
        let mut s = m.alloc_storage(r * n)?;
        let mut gx = m.alloc_storage(c * n)?;
        let mut scratch = m.scratch(n)?;
        let e = opts.dtype.size_bytes() as u64;
        let (rn, cn, params) = ((r * n) as u64, (c * n) as u64, 4 * (r * c + r) as u64);
        let fwd_bytes = (cn + rn) * e + params;
        let bwd_bytes = (2 * cn + rn) * e + 8 * rn + 2 * params;
        let flops = 2.0 * (r * c) as f64 * n as f64;
        let fwd_ms = time_ms(dev, reps, || m.forward_device(&w, &b, &x, &mut s, n))?;
        let bwd_ms = time_ms(dev, reps, || {
            m.backward_device(&w, &b, &x, &gs, &mut gx, &mut scratch, n)
        })?;
        drop((x, gs, s, gx, scratch));
        let row = |phase, ms, bytes, copy_ms, flops| BenchRow {
            label: label.to_string(),
            phase,
            dtype: opts.dtype,
            t: r,
            n,
            ms,
            bytes,
            copy_ms,
            flops,
        };
        let f = row(
            "forward",
            fwd_ms,
            fwd_bytes,
            copy_ms(dev, fwd_bytes, reps)?,
            flops,
        );
        let bw = row(
            "backward",
            bwd_ms,
            bwd_bytes,
            copy_ms(dev, bwd_bytes, reps)?,
            3.0 * flops,
        );
        let both = row(
            "fwd+bwd",
            f.ms + bw.ms,
            f.bytes + bw.bytes,
            f.copy_ms + bw.copy_ms,
            4.0 * flops,
        );
        Ok(vec![f, bw, both])
    })
}

/// A short fixed-width table of rows.
pub fn format_table(rows: &[BenchRow]) -> String {
    let mut s = format!(
        "{:<10} {:<9} {:<5} {:>4} {:>10} {:>9} {:>9} {:>10} {:>10} {:>6} {:>8}\n",
        "neuron", "phase", "dtype", "T", "N", "ms", "GB", "GB/s", "copy GB/s", "ratio", "GFLOP/s"
    );
    for r in rows {
        let gflops = if r.flops > 0.0 {
            format!("{:.0}", r.gflops())
        } else {
            "-".to_string()
        };
        s.push_str(&format!(
            "{:<10} {:<9} {:<5} {:>4} {:>10} {:>9.3} {:>9.2} {:>10.0} {:>10.0} {:>6.2} {:>8}\n",
            r.label,
            r.phase,
            r.dtype.name(),
            r.t,
            r.n,
            r.ms,
            r.bytes as f64 / 1e9,
            r.gbps(),
            r.copy_gbps(),
            r.ratio(),
            gflops
        ));
    }
    s
}
