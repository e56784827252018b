//! Every kernel launch of the real CUDA backend goes through `launch_raw`: pointer arguments
//! then `long long` scalars, the launch error named after the kernel, and in synchronous mode a
//! stream synchronization right after, so that a fault inside the kernel is reported as that
//! kernel's error instead of surfacing at some later call under another name.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cudarc::driver::{CudaFunction, CudaStream, LaunchConfig, PushKernelArg};

use super::CudaError;
use super::error::guard;

/// Environment variable that turns synchronous mode on for every device opened afterwards
/// (`FLEXSN_CUDA_SYNC=1`).
pub const SYNC_ENV: &str = "FLEXSN_CUDA_SYNC";

/// Whether launches wait for the kernel and check its result (shared by a device and the kernels
/// loaded on it, so [`super::CudaDevice::set_sync`] applies to all of them).
#[derive(Debug, Default)]
pub struct SyncMode(AtomicBool);

impl SyncMode {
    /// Initial mode from [`SYNC_ENV`] (`1`, `true` or `yes` turn it on).
    pub fn from_env() -> Arc<Self> {
        let on = std::env::var(SYNC_ENV)
            .map(|v| matches!(v.trim(), "1" | "true" | "yes"))
            .unwrap_or(false);
        Arc::new(SyncMode(AtomicBool::new(on)))
    }

    /// Whether synchronous mode is on.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Turns synchronous mode on or off.
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed)
    }
}

/// Launches `func` (named `kernel` in errors) on `stream` with the device addresses `ptrs`
/// followed by the `long long` values `scalars`; with `sync`, waits and checks the result.
///
/// # Safety
/// `func`'s parameters must be exactly `ptrs.len()` pointers followed by `scalars.len()`
/// `long long`s; every pointer must address memory of the stream's device that is large enough
/// for what the kernel indexes under `cfg` and the scalars, and stays allocated until the kernel
/// has finished.
pub(crate) unsafe fn launch_raw(
    stream: &Arc<CudaStream>,
    func: &CudaFunction,
    kernel: &str,
    cfg: LaunchConfig,
    ptrs: &[u64],
    scalars: &[i64],
    sync: bool,
) -> Result<(), CudaError> {
    let named = |message: String| CudaError::Launch {
        kernel: kernel.to_string(),
        message,
    };
    guard("cuLaunchKernel", || {
        let mut b = stream.launch_builder(func);
        for p in ptrs {
            b.arg(p);
        }
        for s in scalars {
            b.arg(s);
        }
        // SAFETY: forwarded to the caller (argument list, sizes, lifetimes).
        unsafe { b.launch(cfg) }.map_err(|e| named(format!("{e:?}")))?;
        if sync {
            stream.synchronize().map_err(|e| CudaError::KernelFault {
                kernel: kernel.to_string(),
                message: format!("{e:?}"),
            })?;
        }
        Ok(())
    })
}
