//! Device memory and streams owned by the caller (a framework such as PyTorch): kernels launch on
//! the caller's stream and device, on buffers flexsn never allocates or frees.
//!
//! - [`BorrowedBuf`]: a raw device pointer, a length and an element type. Made in one `unsafe`
//!   constructor (the caller vouches for the memory); checked against the kernel's shapes and the
//!   driver's pointer attributes before every launch; never freed by flexsn.
//! - [`CallerStream`]: the caller's device ordinal and `CUstream` (e.g. PyTorch's
//!   `torch.cuda.current_stream().cuda_stream`). Kernels are queued on it through cudarc's
//!   borrowed-stream wrapper, which never destroys the stream.
//! - [`ContextScope`]: pushes the device's (primary) context for the length of one call and pops
//!   it after, so the caller's thread keeps whatever context it had current (PyTorch working on
//!   `cuda:1` is not redirected to another device).

use std::sync::Arc;

use cudarc::driver::sys::{
    self, CUcontext, CUdeviceptr, CUmemorytype, CUpointer_attribute, cudaError_enum,
};
use cudarc::driver::{CudaContext, CudaStream};
use flexsn_compiler::codegen::cuda::StorageDtype;

use super::CudaError;
use super::error::guard;

/// A device buffer owned by someone else: `len` elements of `dtype` at device address `ptr`.
/// flexsn reads and writes it on the caller's stream and never frees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BorrowedBuf {
    ptr: CUdeviceptr,
    len: usize,
    dtype: StorageDtype,
    pitch: Option<usize>,
}

impl BorrowedBuf {
    /// Wraps a framework's device pointer (PyTorch: `tensor.data_ptr()`, `tensor.numel()`).
    ///
    /// # Safety
    /// `ptr` must be the address of `len` contiguous elements of `dtype` in device memory (or
    /// managed memory), allocated on the device of the [`CallerStream`] it is used with, and the
    /// memory must stay allocated until the work queued on that stream has finished. Buffers a
    /// kernel writes must not alias the ones it reads. What flexsn can check (null, alignment,
    /// element type, length against the kernel's shapes, the device that owns the address) it
    /// checks before each launch.
    pub unsafe fn from_raw(ptr: u64, len: usize, dtype: StorageDtype) -> Self {
        BorrowedBuf {
            ptr,
            len,
            dtype,
            pitch: None,
        }
    }

    /// The same buffer holding a `[T, N]` sequence whose rows are `pitch` elements apart (row
    /// `t` at `t * pitch`) instead of `N`. Checked before each launch: only sequence arguments
    /// take a pitch, it must be at least `N`, and the buffer must hold `T * pitch` elements.
    pub fn with_pitch(self, pitch: usize) -> Self {
        BorrowedBuf {
            pitch: Some(pitch),
            ..self
        }
    }

    /// The row pitch given with [`BorrowedBuf::with_pitch`] (`None`: dense rows, `N` apart).
    pub fn pitch(&self) -> Option<usize> {
        self.pitch
    }

    /// The device address.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The element type.
    pub fn dtype(&self) -> StorageDtype {
        self.dtype
    }

    /// Checks element type, length (at least `len`), null and alignment; `name` names the
    /// kernel argument in the error.
    pub fn check(&self, name: &str, elem: StorageDtype, len: usize) -> Result<(), CudaError> {
        let err = |message: String| CudaError::Buffer {
            name: name.to_string(),
            message,
        };
        if self.dtype != elem {
            return Err(err(format!(
                "element type: expected {}, got {}",
                elem.name(),
                self.dtype.name()
            )));
        }
        if self.len < len {
            return Err(err(format!("needs {len} elements, has {}", self.len)));
        }
        if self.ptr == 0 {
            return Err(err("null device pointer".into()));
        }
        let align = elem.size_bytes() as u64;
        if !self.ptr.is_multiple_of(align) {
            return Err(err(format!(
                "device address 0x{:x} is not aligned to {align} bytes",
                self.ptr
            )));
        }
        Ok(())
    }

    /// Asks the driver who owns the address: it must be device (or managed) memory of device
    /// `ordinal`. Run with the device's context current.
    pub(crate) fn check_owner(&self, name: &str, ordinal: usize) -> Result<(), CudaError> {
        let err = |message: String| CudaError::Buffer {
            name: name.to_string(),
            message,
        };
        let mut mem_type: u32 = 0;
        // SAFETY: the out-pointer is a live u32, the size the driver writes for MEMORY_TYPE; the
        // driver only inspects the address, it never dereferences it.
        let r = unsafe {
            sys::cuPointerGetAttribute(
                (&mut mem_type as *mut u32).cast(),
                CUpointer_attribute::CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                self.ptr,
            )
        };
        if r != cudaError_enum::CUDA_SUCCESS {
            return Err(err(format!(
                "0x{:x} is not a device address the driver knows ({r:?})",
                self.ptr
            )));
        }
        let device = CUmemorytype::CU_MEMORYTYPE_DEVICE as u32;
        let unified = CUmemorytype::CU_MEMORYTYPE_UNIFIED as u32;
        if mem_type != device && mem_type != unified {
            return Err(err(format!(
                "0x{:x} is host memory (memory type {mem_type}), not device memory",
                self.ptr
            )));
        }
        let mut owner: i32 = -1;
        // SAFETY: as above, DEVICE_ORDINAL writes one int.
        let r = unsafe {
            sys::cuPointerGetAttribute(
                (&mut owner as *mut i32).cast(),
                CUpointer_attribute::CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
                self.ptr,
            )
        };
        if r == cudaError_enum::CUDA_SUCCESS && mem_type == device && owner != ordinal as i32 {
            return Err(err(format!(
                "memory of device {owner}, but the call runs on device {ordinal}"
            )));
        }
        Ok(())
    }
}

/// The caller's device and stream for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallerStream {
    ordinal: usize,
    raw: u64,
}

impl CallerStream {
    /// The caller's stream `raw` (a `CUstream`/`cudaStream_t` as an integer; PyTorch:
    /// `torch.cuda.current_stream(device).cuda_stream`) on device `ordinal`.
    ///
    /// # Safety
    /// `raw` must be `0` (the legacy default stream), `2` (the per-thread default stream) or a
    /// stream created in the primary context of device `ordinal` that stays alive for every call
    /// made with this value.
    pub unsafe fn from_raw(ordinal: usize, raw: u64) -> Self {
        CallerStream { ordinal, raw }
    }

    /// The legacy default (NULL) stream of device `ordinal`.
    pub fn legacy_default(ordinal: usize) -> Self {
        CallerStream { ordinal, raw: 0 }
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// The raw stream handle.
    pub fn raw(&self) -> u64 {
        self.raw
    }

    /// A cudarc stream that queues on the caller's stream and never destroys it. Checks that
    /// the stream belongs to `ctx` (run with `ctx` current).
    pub(crate) fn wrap(&self, ctx: &Arc<CudaContext>) -> Result<Arc<CudaStream>, CudaError> {
        if self.ordinal != ctx.ordinal() {
            return Err(CudaError::WrongDevice {
                expected: ctx.ordinal(),
                got: self.ordinal,
            });
        }
        let handle = self.raw as usize as sys::CUstream;
        let mut owner: CUcontext = std::ptr::null_mut();
        // SAFETY: `handle` is a stream of this device's context or a default-stream handle
        // (`from_raw`'s contract); the driver writes one context handle.
        let r = unsafe { sys::cuStreamGetCtx(handle, &mut owner) };
        if r != cudaError_enum::CUDA_SUCCESS {
            return Err(CudaError::Driver {
                call: "cuStreamGetCtx",
                message: format!("stream 0x{:x}: {r:?}", self.raw),
            });
        }
        if owner != ctx.cu_ctx() {
            return Err(CudaError::Driver {
                call: "cuStreamGetCtx",
                message: format!(
                    "stream 0x{:x} belongs to another context than device {}'s primary context",
                    self.raw,
                    ctx.ordinal()
                ),
            });
        }
        // SAFETY: the stream belongs to `ctx` (checked above) and outlives the call
        // (`from_raw`'s contract); the wrapper is dropped at the end of the call and does not
        // destroy the stream.
        Ok(unsafe { ctx.wrap_borrowed_stream(handle) })
    }
}

/// The device's context pushed on the calling thread for one call; popped on drop, so the
/// thread's own current context (if any) is current again afterwards.
#[derive(Debug)]
pub struct ContextScope {
    _private: (),
}

impl ContextScope {
    /// Pushes `ctx` (cudarc's launches then find it current and do not switch contexts).
    pub fn push(ctx: &CudaContext) -> Result<Self, CudaError> {
        guard("cuCtxPushCurrent", || {
            // SAFETY: `ctx` is a live context (held by the Arc the caller has).
            let r = unsafe { sys::cuCtxPushCurrent_v2(ctx.cu_ctx()) };
            r.result()
                .map_err(super::error::driver_err("cuCtxPushCurrent"))?;
            Ok(ContextScope { _private: () })
        })
    }
}

impl Drop for ContextScope {
    fn drop(&mut self) {
        // SAFETY: pops the context this scope pushed (scopes nest on one thread); a failure
        // leaves nothing to undo.
        let _ = std::panic::catch_unwind(|| {
            let mut popped: CUcontext = std::ptr::null_mut();
            unsafe { sys::cuCtxPopCurrent_v2(&mut popped) }
        });
    }
}

/// Remembers the thread's current context and makes it current again on drop (for calls that
/// create contexts, which cudarc leaves current).
#[derive(Debug)]
pub(crate) struct KeepCurrent {
    saved: Option<CUcontext>,
}

impl KeepCurrent {
    pub(crate) fn new() -> Self {
        let saved = std::panic::catch_unwind(|| {
            let mut cur: CUcontext = std::ptr::null_mut();
            // SAFETY: writes one context handle (null when none is current).
            let r = unsafe { sys::cuCtxGetCurrent(&mut cur) };
            match r {
                cudaError_enum::CUDA_SUCCESS => Some(cur),
                // Before cuInit nothing can be current: restore "none".
                cudaError_enum::CUDA_ERROR_NOT_INITIALIZED => Some(std::ptr::null_mut()),
                _ => None,
            }
        })
        .ok()
        .flatten();
        KeepCurrent { saved }
    }
}

impl Drop for KeepCurrent {
    fn drop(&mut self) {
        if let Some(cur) = self.saved {
            // SAFETY: `cur` was current on this thread when the scope began (or null: none).
            let _ = std::panic::catch_unwind(|| unsafe { sys::cuCtxSetCurrent(cur) });
        }
    }
}
