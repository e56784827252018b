//! Raw launches of a core's scans on caller memory, in the kernels' own argument order: inputs,
//! initial states, params, then the outputs, state sequences and final states they write.
//!
//! This is how `flexsn.torch` runs CUDA tensors: it asks for the argument list of a scan
//! ([`arguments`]: name, element type, length), allocates what the scan writes on the tensors'
//! device, and hands every address with torch's current stream to [`launch`], which queues the
//! kernel there through the runtime's borrowed-memory entry point (`DeviceKernel::launch_on`:
//! element types, lengths, alignment and the owning device are checked before anything is
//! queued). Host backends (`cpu`, `interp`, `cuda-emulated:*`) take the same list on host
//! memory, which is how the CUDA argument handling is tested on machines without a GPU.
//!
//! A `[T, N]` buffer may come with a row pitch (row `t` at `t * pitch`, `T * pitch` elements):
//! `flexsn.torch` allocates the state buffers it keeps between forward and backward with
//! [`owned_pitch`] (N rounded up to 128 bytes on CUDA, so every warp access is sector-aligned).
//! Host scans read and write such buffers row by row, as the device kernels do.

use std::sync::Arc;

use flexsn_compiler::codegen::cuda::{RowLayout, StorageDtype};
use flexsn_compiler::scan::{OutputMode, ScanArgs, ScanKernel, param_len};
use flexsn_runtime::cuda::backend::{CudaScan, EmulatedScan};
use flexsn_runtime::cuda::{BorrowedBuf, CallerStream, CheckpointPhase};
use flexsn_runtime::{GradSpec, Kernel, RuntimeError, ScanExecutor, ScanOutputs};
use pyo3::prelude::*;

use crate::errors::{self, Kind, raise};
use crate::host::{Call, HostBuf};

/// One buffer of a raw launch: `(address, element count, element type name)`.
pub type RawBuf = (u64, usize, String);

/// The scan of a core that a raw launch runs: `infer` (outputs and final states), `train`
/// (also the state sequences) or `backward` (for the upstream gradients present: one flag per
/// output, one per state sequence).
pub fn executor(
    py: Python<'_>,
    kernel: &Kernel,
    which: &str,
    grad_outputs: Option<Vec<bool>>,
    grad_state_seqs: Option<Vec<bool>>,
) -> PyResult<Arc<dyn ScanExecutor>> {
    match which {
        "infer" => Ok(kernel.inference_scan().clone()),
        "train" => Ok(kernel.training_scan().clone()),
        "backward" => {
            let spec = grad_spec(py, kernel, grad_outputs, grad_state_seqs)?;
            py.detach(|| kernel.prepare_backward(&spec))
                .map_err(|e| errors::runtime(py, e))
        }
        other => Err(raise(
            py,
            Kind::Value,
            format!("unknown scan `{other}` (infer, train, backward)"),
        )),
    }
}

/// The upstream gradients a backward scan takes: one flag per output (default: all), one per
/// state sequence (default: none).
fn grad_spec(
    py: Python<'_>,
    kernel: &Kernel,
    grad_outputs: Option<Vec<bool>>,
    grad_state_seqs: Option<Vec<bool>>,
) -> PyResult<GradSpec> {
    let g = kernel.graph();
    let spec = GradSpec {
        output_grads: grad_outputs.unwrap_or_else(|| vec![true; g.outputs().len()]),
        state_seq_grads: grad_state_seqs.unwrap_or_else(|| vec![false; g.states().len()]),
    };
    if spec.output_grads.len() != g.outputs().len()
        || spec.state_seq_grads.len() != g.states().len()
    {
        return Err(raise(
            py,
            Kind::Value,
            format!(
                "backward: expected {} output and {} state-sequence gradient flags",
                g.outputs().len(),
                g.states().len()
            ),
        ));
    }
    Ok(spec)
}

/// What a checkpointed raw launch runs: `train` (the forward) or `backward` (for the flagged
/// upstream gradients), with the interval `k`.
pub struct CheckpointCall {
    which: &'static str,
    spec: Option<GradSpec>,
    k: usize,
}

impl CheckpointCall {
    /// Checks `which` and the flags.
    pub fn new(
        py: Python<'_>,
        kernel: &Kernel,
        which: &str,
        k: usize,
        grad_outputs: Option<Vec<bool>>,
        grad_state_seqs: Option<Vec<bool>>,
    ) -> PyResult<Self> {
        let (which, spec) = match which {
            "train" => ("train", None),
            "backward" => (
                "backward",
                Some(grad_spec(py, kernel, grad_outputs, grad_state_seqs)?),
            ),
            other => {
                return Err(raise(
                    py,
                    Kind::Value,
                    format!("unknown checkpointed scan `{other}` (train, backward)"),
                ));
            }
        };
        Ok(CheckpointCall { which, spec, k })
    }

    fn phase(&self) -> CheckpointPhase<'_> {
        match &self.spec {
            Some(s) => CheckpointPhase::Backward(s),
            None => CheckpointPhase::Forward,
        }
    }

    /// The argument list of a `[t, n]` launch: `(name, element type, length)` in order.
    pub fn arguments(
        &self,
        py: Python<'_>,
        kernel: &Kernel,
        t: usize,
        n: usize,
    ) -> PyResult<Vec<(String, &'static str, usize)>> {
        let args = py
            .detach(|| kernel.checkpoint_arguments(self.phase(), t, n, self.k))
            .map_err(|e| errors::runtime(py, e))?;
        Ok(args
            .into_iter()
            .map(|a| (a.name, a.dtype.name(), a.len))
            .collect())
    }

    /// Runs it over `[t, n]` on `bufs` (the order of [`CheckpointCall::arguments`]): on the
    /// device the kernel was compiled for with the caller's `stream` for CUDA cores, now on host
    /// memory for emulated ones.
    pub fn launch(
        &self,
        py: Python<'_>,
        kernel: &Kernel,
        t: usize,
        n: usize,
        stream: u64,
        bufs: &[RawBuf],
    ) -> PyResult<()> {
        let want = self.arguments(py, kernel, t, n)?;
        if want.len() != bufs.len() {
            return Err(raise(
                py,
                Kind::Value,
                format!(
                    "checkpointed {}: expected {} buffers, got {}",
                    self.which,
                    want.len(),
                    bufs.len()
                ),
            ));
        }
        for ((name, dtype, _), (_, _, got)) in want.iter().zip(bufs) {
            if dtype != got {
                return Err(raise(
                    py,
                    Kind::Value,
                    format!("`{name}`: expected {dtype} elements, got {got}"),
                ));
            }
        }
        let raw: Vec<(u64, usize)> = bufs.iter().map(|(p, l, _)| (*p, *l)).collect();
        // The device the scans were compiled for (emulated cores ignore the ordinal).
        let ordinal = kernel
            .training_scan()
            .as_any()
            .downcast_ref::<CudaScan>()
            .map_or(0, |c| c.device_kernel().ordinal());
        // SAFETY: flexsn.torch passes the data of contiguous tensors it holds for the call (on
        // the core's device with torch's current stream of it for CUDA cores; host tensors for
        // emulated ones), written buffers allocated for this call; element types were checked
        // above and `launch_checkpointed` checks lengths (and for CUDA the owning device).
        py.detach(|| unsafe {
            kernel.launch_checkpointed(self.phase(), ordinal, stream, t, n, self.k, &raw)
        })
        .map_err(|e| errors::runtime(py, e))
    }
}

/// The argument list of a `[t, n]` run of `exec`: `(name, element type, length)` in order.
pub fn arguments(
    exec: &dyn ScanExecutor,
    t: usize,
    n: usize,
) -> Result<Vec<(String, &'static str, usize)>, RuntimeError> {
    if let Some(c) = exec.as_any().downcast_ref::<CudaScan>() {
        let args = c.device_kernel().arguments(t, n)?;
        return Ok(args.into_iter().map(|(s, d, l)| (s, d.name(), l)).collect());
    }
    Ok(host_arguments(exec.kernel(), t, n)
        .into_iter()
        .map(|a| (a.name, StorageDtype::F32.name(), a.len))
        .collect())
}

/// The row pitch of the `[T, N]` buffers a caller allocates for itself with scan `exec` over
/// `n` neurons of element type `dtype`: `n` rounded up to 128 bytes for the CUDA backends (and
/// the emulated one, which stands in for them), `n` for the others.
pub fn owned_pitch(exec: &dyn ScanExecutor, n: usize, dtype: StorageDtype) -> Option<usize> {
    let any = exec.as_any();
    let cuda = any.is::<CudaScan>() || any.is::<EmulatedScan>();
    let layout = if cuda {
        RowLayout::Padded
    } else {
        RowLayout::Dense
    };
    layout.pitch(n, dtype)
}

/// One buffer of a host scan: its name, length for dense rows, and whether it is `[T, N]`.
struct HostArg {
    name: String,
    len: usize,
    sequence: bool,
}

/// The argument order of a scan on the host (float32 throughout): what the CUDA kernels take.
fn host_arguments(k: &ScanKernel, t: usize, n: usize) -> Vec<HostArg> {
    let g = &k.graph;
    let tn = t.saturating_mul(n);
    let arg = |name: String, len: usize, sequence: bool| HostArg {
        name,
        len,
        sequence,
    };
    let mut v = vec![];
    v.extend(g.inputs().iter().map(|d| arg(d.name.clone(), tn, true)));
    v.extend(
        g.states()
            .iter()
            .map(|d| arg(format!("initial {}", d.name), n, false)),
    );
    v.extend(
        g.params()
            .iter()
            .map(|d| arg(d.name.clone(), param_len(d.kind, t, n), false)),
    );
    v.extend(g.outputs().iter().enumerate().map(|(o, d)| {
        let seq = k.output_modes[o] == OutputMode::Sequence;
        arg(d.name.clone(), k.output_len(o, t, n), seq)
    }));
    if k.state_seqs {
        v.extend(
            g.states()
                .iter()
                .map(|d| arg(format!("{} sequence", d.name), tn, true)),
        );
    }
    v.extend(
        g.states()
            .iter()
            .map(|d| arg(format!("final {}", d.name), n, false)),
    );
    v
}

/// The first `n` of each `pitch`-long row of `xs`, dense.
fn gather_rows(xs: &[f32], n: usize, pitch: usize) -> Vec<f32> {
    if pitch == 0 {
        return Vec::new();
    }
    xs.chunks_exact(pitch)
        .flat_map(|r| &r[..n])
        .copied()
        .collect()
}

/// Runs `exec` over `[t, n]` on `bufs` (argument order of [`arguments`]), with the row pitch
/// of each buffer in `pitches` (`None`, or no list: dense rows). CUDA scans launch
/// asynchronously on the caller's `stream` of their device; host scans run here, without the
/// GIL.
pub fn launch(
    py: Python<'_>,
    exec: &dyn ScanExecutor,
    t: usize,
    n: usize,
    stream: u64,
    bufs: &[RawBuf],
    pitches: Option<Vec<Option<usize>>>,
) -> PyResult<()> {
    let pitches = pitches.unwrap_or_else(|| vec![None; bufs.len()]);
    if pitches.len() != bufs.len() {
        return Err(raise(
            py,
            Kind::Value,
            format!(
                "{} row pitches for {} buffers: give one per buffer (None for dense rows)",
                pitches.len(),
                bufs.len()
            ),
        ));
    }
    let dtypes = bufs
        .iter()
        .map(|(_, _, d)| {
            StorageDtype::from_name(d).ok_or_else(|| {
                raise(
                    py,
                    Kind::Value,
                    format!("unknown element type `{d}` (f32, f16, bf16)"),
                )
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    if let Some(c) = exec.as_any().downcast_ref::<CudaScan>() {
        let dk = c.device_kernel();
        // SAFETY: flexsn.torch passes `torch.cuda.current_stream(device).cuda_stream` of the
        // kernel's device, a stream torch keeps alive; the driver checks it belongs to the
        // device's primary context before anything is queued.
        let caller = unsafe { CallerStream::from_raw(dk.ordinal(), stream) };
        let borrowed: Vec<BorrowedBuf> = bufs
            .iter()
            .zip(&dtypes)
            .zip(&pitches)
            .map(|(((p, l, _), d), pitch)| {
                // SAFETY: the addresses are the data of contiguous CUDA tensors that
                // flexsn.torch holds (and torch's caching allocator keeps until the stream's
                // work is done); written buffers are tensors allocated for this call.
                // `launch_on` checks element type, length (with the pitch), alignment and the
                // owning device of each before queuing.
                let b = unsafe { BorrowedBuf::from_raw(*p, *l, *d) };
                pitch.map_or(b, |p| b.with_pitch(p))
            })
            .collect();
        return py
            .detach(|| dk.launch_on(&caller, &borrowed, t, n))
            .map_err(|e| errors::runtime(py, e.into()));
    }
    launch_host(py, exec, t, n, bufs, &dtypes, &pitches)
}

/// [`launch`] for host scans: float32 buffers, checked and sliced like the host entry points.
fn launch_host(
    py: Python<'_>,
    exec: &dyn ScanExecutor,
    t: usize,
    n: usize,
    bufs: &[RawBuf],
    dtypes: &[StorageDtype],
    pitches: &[Option<usize>],
) -> PyResult<()> {
    let k = exec.kernel();
    let g = &k.graph;
    let want = host_arguments(k, t, n);
    if want.len() != bufs.len() {
        return Err(raise(
            py,
            Kind::Value,
            format!(
                "`{}`: expected {} buffers, got {}",
                g.name(),
                want.len(),
                bufs.len()
            ),
        ));
    }
    let (ni, ns, np) = (g.inputs().len(), g.states().len(), g.params().len());
    let nread = ni + ns + np;
    let mut call = Call::new();
    let mut rows = vec![None; want.len()];
    for (i, ((a, (addr, got, _)), d)) in want.iter().zip(bufs).zip(dtypes).enumerate() {
        let name = &a.name;
        let mut len = a.len;
        if let Some(p) = pitches[i] {
            let bad = |m: String| Err(raise(py, Kind::Value, format!("`{name}`: {m}")));
            if !a.sequence {
                return bad(format!(
                    "row pitch {p} given for a buffer that is not [T, N]"
                ));
            }
            if p < n {
                return bad(format!("row pitch {p} is less than N = {n}"));
            }
            let Some(l) = t.checked_mul(p) else {
                return bad(format!("T * pitch = {t} * {p} overflows"));
            };
            (len, rows[i]) = (l, Some(p));
        }
        if *d != StorageDtype::F32 {
            return Err(raise(
                py,
                Kind::Value,
                format!("`{name}`: host backends take f32 buffers, got {}", d.name()),
            ));
        }
        let b = HostBuf {
            addr: *addr as usize,
            len: *got,
        };
        if i < nread {
            call.read(py, name, b, len)?;
        } else {
            call.write(py, name, b, len)?;
        }
    }
    // SAFETY: the buffers are the data of tensors that flexsn.torch holds for this call.
    let (reads, mut writes) = unsafe { call.slices(py)? };
    // Pitched buffers are read through dense copies of their rows and written through dense
    // buffers spread into their rows afterwards (the padding is left as it was).
    let gathered: Vec<Option<Vec<f32>>> = reads
        .iter()
        .zip(&rows)
        .map(|(r, p)| p.map(|p| gather_rows(r, n, p)))
        .collect();
    let reads: Vec<&[f32]> = reads
        .iter()
        .zip(&gathered)
        .map(|(r, g)| g.as_deref().unwrap_or(r))
        .collect();
    let write_rows = &rows[nread..];
    let mut dense: Vec<Option<Vec<f32>>> = write_rows
        .iter()
        .map(|p| p.map(|_| vec![0.0; t * n]))
        .collect();
    let run = || -> Result<(), RuntimeError> {
        let args = ScanArgs {
            t,
            n,
            inputs: reads[..ni].to_vec(),
            init_states: reads[ni..ni + ns].to_vec(),
            params: reads[ni + ns..nread].to_vec(),
        };
        let no = g.outputs().len();
        let nseq = if k.state_seqs { ns } else { 0 };
        let mut it = writes
            .iter_mut()
            .zip(dense.iter_mut())
            .map(|(w, d)| d.as_deref_mut().unwrap_or(&mut **w));
        let outputs = it.by_ref().take(no).collect();
        let state_seqs = it.by_ref().take(nseq).collect();
        let final_states = it.collect();
        let mut out = ScanOutputs {
            outputs,
            state_seqs,
            final_states,
        };
        args.check(g)?;
        exec.run_into(&args, &mut out)
    };
    py.detach(run).map_err(|e| errors::runtime(py, e))?;
    for ((w, d), p) in writes.iter_mut().zip(&dense).zip(write_rows) {
        if let (Some(d), Some(p)) = (d, p)
            && *p > 0
        {
            for (row, src) in w.chunks_exact_mut(*p).zip(d.chunks_exact(n.max(1))) {
                row[..n].copy_from_slice(src);
            }
        }
    }
    Ok(())
}
