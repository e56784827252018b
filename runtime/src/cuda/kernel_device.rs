//! The device entry of [`Kernel`] for frameworks (PyTorch, candle): one of the kernel's scans on
//! device memory and a stream the caller owns, given as plain numbers (device ordinal, `CUstream`
//! handle, raw addresses and lengths), so a bridge needs nothing of the CUDA backend's insides.
//!
//! [`Kernel::device_arguments`] lists the buffers a call takes, in order, with their element
//! type and length; [`Kernel::launch_device`] checks them all (count, type, length, alignment,
//! the device that owns each address, the stream's device) before it queues the scan. The kernel
//! must come from a CUDA [`Jit`](crate::Jit); a caller's ordinal other than the `Jit`'s device
//! loads the same compiled module on that device (once, then cached).

use std::sync::Arc;

use flexsn_compiler::autodiff::GradSpec;
use flexsn_compiler::codegen::cuda::{ArgRole, ArgType, StorageDtype};

use super::backend::{CudaScan, EmulatedScan};
use super::host::{BufferSpec, buffer_specs};
use super::{BorrowedBuf, CallerStream, CudaError, DeviceKernel, shared_device_on};
use crate::{Kernel, RuntimeError, ScanExecutor};

/// Which of a kernel's scans a device call runs.
#[derive(Clone, Copy, Debug)]
pub enum DeviceScan<'a> {
    /// The inference forward: outputs and final states.
    Inference,
    /// The training forward: outputs, state sequences and final states.
    Training,
    /// The backward scan for upstream gradients `spec` (see [`Kernel::prepare_backward`]). Its
    /// per-neuron param contributions are outputs the caller sums.
    Backward(&'a GradSpec),
}

/// One buffer of a device call: its argument name, element type and length in elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceArgument {
    /// The kernel argument's name.
    pub name: String,
    /// What the buffer is: an input, initial state or param the scan reads, or an output,
    /// state sequence or final state it writes (with its index in the graph).
    pub role: ArgRole,
    /// Element type (the storage type for sequences, `f32` otherwise).
    pub dtype: StorageDtype,
    /// Elements the kernel indexes for this `[T, N]` (`T * pitch` for a sequence).
    pub len: usize,
    /// For a `[T, N]` sequence its row pitch in elements (listed as `N`: dense rows; a caller
    /// may give another, at least `N`, in [`DeviceBuffer::pitch`]); `None` for other buffers.
    pub pitch: Option<usize>,
}

impl DeviceArgument {
    /// The argument `spec` describes, for kernels whose sequences are stored as `storage`.
    pub(crate) fn of(spec: BufferSpec, storage: StorageDtype) -> Self {
        DeviceArgument {
            dtype: match spec.ty {
                ArgType::Storage => storage,
                ArgType::F32 => StorageDtype::F32,
            },
            name: spec.name,
            role: spec.role,
            len: spec.len,
            pitch: spec.pitch,
        }
    }
}

/// One buffer of a [`Kernel::launch_device_pitched`] call: a device address, its length in
/// elements and, for a `[T, N]` sequence, the row pitch when it is not `N`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceBuffer {
    /// The device address of the first element.
    pub addr: u64,
    /// Elements at `addr` (at least `T * pitch` for a sequence).
    pub len: usize,
    /// Row `t` of a sequence starts at `t * pitch` (`None`: `N`, dense rows).
    pub pitch: Option<usize>,
}

impl From<(u64, usize)> for DeviceBuffer {
    fn from((addr, len): (u64, usize)) -> Self {
        DeviceBuffer {
            addr,
            len,
            pitch: None,
        }
    }
}

impl Kernel {
    fn device_exec(&self, scan: DeviceScan<'_>) -> Result<Arc<dyn ScanExecutor>, RuntimeError> {
        Ok(match scan {
            DeviceScan::Inference => self.inference_scan().clone(),
            DeviceScan::Training => self.training_scan().clone(),
            DeviceScan::Backward(spec) => self.prepare_backward(spec)?,
        })
    }

    /// The buffers a [`Kernel::launch_device`] call of `scan` takes for `[t, n]`, in order
    /// (inputs, initial states, params, then what the scan writes). Works on the CUDA backend
    /// and on the emulated one (same generated source), so a bridge can be tested without a GPU.
    pub fn device_arguments(
        &self,
        scan: DeviceScan<'_>,
        t: usize,
        n: usize,
    ) -> Result<Vec<DeviceArgument>, RuntimeError> {
        let exec = self.device_exec(scan)?;
        let any = exec.as_any();
        let (source, kernel) = if let Some(c) = any.downcast_ref::<CudaScan>() {
            (&c.device_kernel().source, c.device_kernel().kernel())
        } else if let Some(e) = any.downcast_ref::<EmulatedScan>() {
            (&e.compiled().source, exec.kernel())
        } else {
            return Err(not_cuda(self));
        };
        let specs = buffer_specs(source, kernel, t, n)?;
        Ok(specs
            .into_iter()
            .map(|s| DeviceArgument::of(s, source.dtype))
            .collect())
    }

    /// Runs `scan` for `[t, n]` on device `ordinal` and the caller's `stream` (a `CUstream`
    /// handle; 0 is the legacy default stream), on `buffers`: one `(device address, elements)`
    /// per [`Kernel::device_arguments`] entry, in that order. Asynchronous on `stream`
    /// (synchronous under `FLEXSN_CUDA_SYNC=1`); the device's context is pushed for the call and
    /// popped after. Everything is checked before the launch; a wrong count, length, alignment or
    /// device is an error naming the buffer.
    ///
    /// # Safety
    /// `stream` must be a live stream of device `ordinal` (or 0), and each address the start of
    /// that many elements of the listed type in memory of that device, alive until the work on
    /// `stream` finishes; buffers the scan writes must not overlap any other buffer.
    pub unsafe fn launch_device(
        &self,
        scan: DeviceScan<'_>,
        ordinal: usize,
        stream: u64,
        t: usize,
        n: usize,
        buffers: &[(u64, usize)],
    ) -> Result<(), RuntimeError> {
        let buffers: Vec<DeviceBuffer> = buffers.iter().map(|&b| b.into()).collect();
        // SAFETY: forwarded to the caller (this function's contract, dense rows).
        unsafe { self.launch_device_pitched(scan, ordinal, stream, t, n, &buffers) }
    }

    /// [`Kernel::launch_device`] where `[T, N]` buffers may have padded rows: each
    /// [`DeviceBuffer`] with a `pitch` holds row `t` at `t * pitch` (a pitch of `N` rounded up to
    /// 128 bytes makes every warp access sector-aligned). Pitches are checked with the rest: only
    /// sequences take one, at least `N`, and the buffer must hold `T * pitch` elements.
    ///
    /// # Safety
    /// As [`Kernel::launch_device`], each address the start of at least `len` elements.
    pub unsafe fn launch_device_pitched(
        &self,
        scan: DeviceScan<'_>,
        ordinal: usize,
        stream: u64,
        t: usize,
        n: usize,
        buffers: &[DeviceBuffer],
    ) -> Result<(), RuntimeError> {
        let exec = self.device_exec(scan)?;
        let Some(c) = exec.as_any().downcast_ref::<CudaScan>() else {
            return Err(not_cuda(self));
        };
        let dk = on_ordinal(c.device_kernel(), ordinal)?;
        let want = dk.arguments(t, n)?;
        if want.len() != buffers.len() {
            return Err(CudaError::Buffer {
                name: dk.source.entry.clone(),
                message: format!("expected {} buffers, got {}", want.len(), buffers.len()),
            }
            .into());
        }
        // SAFETY: the caller vouches for the addresses and the stream (this function's contract);
        // `launch_on` checks type, length, alignment and owning device of each before launching.
        let (bufs, caller): (Vec<BorrowedBuf>, CallerStream) = unsafe {
            (
                buffers
                    .iter()
                    .zip(&want)
                    .map(|(b, (_, dtype, _))| {
                        let raw = BorrowedBuf::from_raw(b.addr, b.len, *dtype);
                        match b.pitch {
                            Some(p) => raw.with_pitch(p),
                            None => raw,
                        }
                    })
                    .collect(),
                CallerStream::from_raw(ordinal, stream),
            )
        };
        Ok(dk.launch_on(&caller, &bufs, t, n)?)
    }
}

/// `dk`, or the same module loaded on device `ordinal`.
fn on_ordinal(dk: &Arc<DeviceKernel>, ordinal: usize) -> Result<Arc<DeviceKernel>, CudaError> {
    if dk.ordinal() == ordinal {
        return Ok(dk.clone());
    }
    shared_device_on(ordinal)?.load(dk.kernel(), dk.source.clone())
}

fn not_cuda(k: &Kernel) -> RuntimeError {
    RuntimeError::BackendUnavailable {
        backend: "cuda",
        reason: format!(
            "device calls need a kernel compiled by a CUDA Jit; this one runs on {}",
            k.jit().backend_name()
        ),
    }
}
