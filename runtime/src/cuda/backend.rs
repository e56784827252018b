//! The CUDA backends behind the runtime's [`BackendCompiler`] / [`ScanExecutor`] traits, so that
//! `Jit::new(Backend::Cuda)` and `Jit::new(Backend::CudaEmulated)` work like the CPU backend.
//! Host slices go in and come out; f16/bf16 storage rounds sequences on the way in and out.

use std::any::Any;
use std::sync::Arc;

use crate::mixing::MixTarget;

use flexsn_compiler::codegen::cuda::CudaOptions;
use flexsn_compiler::scan::{ScanArgs, ScanKernel, ScanResult};

use super::emulated::EmulatedKernel;
use super::{CudaDevice, CudaError, DeviceKernel, EmulatedCuda};
use crate::{BackendCompiler, Jit, RuntimeError, ScanExecutor};

/// A [`Jit`] on CUDA device 0 with `opts` (what `Jit::new(Backend::Cuda)` gives with defaults).
pub fn cuda_jit(opts: CudaOptions) -> Result<Jit, RuntimeError> {
    Ok(Jit::with_compiler(Arc::new(CudaCompiler::new(opts)?)).with_mix_target(MixTarget::Cuda))
}

/// A [`Jit`] on the emulated CUDA backend with `opts` (`Jit::new(Backend::CudaEmulated)`).
pub fn emulated_jit(opts: CudaOptions) -> Result<Jit, RuntimeError> {
    Ok(
        Jit::with_compiler(Arc::new(EmulatedCudaCompiler::new(opts)?))
            .with_mix_target(MixTarget::CudaEmulated),
    )
}

impl From<CudaError> for RuntimeError {
    fn from(e: CudaError) -> Self {
        match e {
            CudaError::Shape(s) => RuntimeError::Shape(s),
            CudaError::Exec(x) => RuntimeError::Exec(x),
            CudaError::NoDriver | CudaError::NoDevice { .. } | CudaError::NoNvrtc { .. } => {
                RuntimeError::BackendUnavailable {
                    backend: "cuda",
                    reason: e.to_string(),
                }
            }
            CudaError::NoCxx { .. } => RuntimeError::BackendUnavailable {
                backend: "cuda-emulated",
                reason: e.to_string(),
            },
            other => RuntimeError::Backend(Box::new(other)),
        }
    }
}

/// Real CUDA on one device.
#[derive(Debug, Clone)]
pub struct CudaCompiler {
    device: Arc<CudaDevice>,
    opts: CudaOptions,
}

impl CudaCompiler {
    /// Device 0 with `opts`. Typed errors when there is no driver, device or NVRTC.
    pub fn new(opts: CudaOptions) -> Result<Self, CudaError> {
        Ok(CudaCompiler {
            device: Arc::new(CudaDevice::new(0)?),
            opts,
        })
    }

    /// A compiler on an already opened device.
    pub fn with_device(device: Arc<CudaDevice>, opts: CudaOptions) -> Self {
        CudaCompiler { device, opts }
    }

    /// The device kernels are compiled for.
    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.device
    }
}

impl BackendCompiler for CudaCompiler {
    fn name(&self) -> String {
        format!(
            "cuda[{} sm_{}{} {} {}]",
            self.device.name(),
            self.device.compute_capability().0,
            self.device.compute_capability().1,
            self.opts.dtype.name(),
            self.opts.math.name()
        )
    }

    fn compile_scan(&self, kernel: &ScanKernel) -> Result<Arc<dyn ScanExecutor>, RuntimeError> {
        let k = self.device.compile(kernel, &self.opts)?;
        Ok(Arc::new(CudaScan {
            kernel: k,
            device: self.device.clone(),
            opts: self.opts,
        }))
    }
}

/// A scan compiled for a CUDA device.
#[derive(Debug)]
pub struct CudaScan {
    kernel: Arc<DeviceKernel>,
    device: Arc<CudaDevice>,
    opts: CudaOptions,
}

impl CudaScan {
    /// The device it was compiled for.
    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.device
    }

    /// The options it was generated with.
    pub fn options(&self) -> &CudaOptions {
        &self.opts
    }

    /// The loaded kernel (for launches on device buffers).
    pub fn device_kernel(&self) -> &Arc<DeviceKernel> {
        &self.kernel
    }
}

impl ScanExecutor for CudaScan {
    fn run(&self, args: &ScanArgs<'_, f32>) -> Result<ScanResult<f32>, RuntimeError> {
        Ok(self.kernel.run_host(args)?)
    }
    fn kernel(&self) -> &ScanKernel {
        self.kernel.kernel()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The generated CUDA source run as host C++ (no GPU needed).
#[derive(Debug, Clone)]
pub struct EmulatedCudaCompiler {
    emu: Arc<EmulatedCuda>,
}

impl EmulatedCudaCompiler {
    /// Typed error (saying so plainly) when no C++ compiler is found.
    pub fn new(opts: CudaOptions) -> Result<Self, CudaError> {
        Ok(EmulatedCudaCompiler {
            emu: Arc::new(EmulatedCuda::with_options(opts)?),
        })
    }
}

impl BackendCompiler for EmulatedCudaCompiler {
    fn name(&self) -> String {
        let o = self.emu.options();
        format!("cuda-emulated[{} {}]", o.dtype.name(), o.math.name())
    }

    fn compile_scan(&self, kernel: &ScanKernel) -> Result<Arc<dyn ScanExecutor>, RuntimeError> {
        let k = self.emu.kernel(kernel)?;
        Ok(Arc::new(EmulatedScan {
            kernel: kernel.clone(),
            compiled: k,
            emu: self.emu.clone(),
        }))
    }
}

/// A scan compiled for the emulated backend.
#[derive(Debug)]
pub struct EmulatedScan {
    kernel: ScanKernel,
    compiled: Arc<EmulatedKernel>,
    emu: Arc<EmulatedCuda>,
}

impl EmulatedScan {
    /// The emulated backend it was compiled by.
    pub fn backend(&self) -> &Arc<EmulatedCuda> {
        &self.emu
    }

    /// The generated source and loaded host library.
    pub fn compiled(&self) -> &Arc<EmulatedKernel> {
        &self.compiled
    }
}

impl ScanExecutor for EmulatedScan {
    fn run(&self, args: &ScanArgs<'_, f32>) -> Result<ScanResult<f32>, RuntimeError> {
        Ok(self.compiled.run(&self.kernel, args)?)
    }
    fn kernel(&self) -> &ScanKernel {
        &self.kernel
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
