//! Errors of the CUDA backends (real and emulated). Every failure is one of these; nothing panics.

use flexsn_compiler::bptt::ExecError;
use flexsn_compiler::codegen::cuda::CodegenError;
use flexsn_compiler::scan::ShapeError;

/// Why a CUDA (or emulated CUDA) operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// `libcuda.so` could not be loaded: no NVIDIA driver on this machine.
    #[error(
        "no CUDA driver: libcuda.so could not be loaded (is an NVIDIA driver installed? its folder must be on the loader path, e.g. LD_LIBRARY_PATH)"
    )]
    NoDriver,
    /// The driver loaded but reports no device (or the requested ordinal does not exist).
    #[error("no CUDA device{}", if *.count == 0 { String::new() } else { format!(" with ordinal {} (this machine has {})", .ordinal, .count) })]
    NoDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// The devices the driver reports.
        count: usize,
    },
    /// A kernel launch was rejected by the driver.
    #[error("launching CUDA kernel `{kernel}` failed: {message}")]
    Launch {
        /// The kernel's entry name.
        kernel: String,
        /// The driver's error.
        message: String,
    },
    /// A kernel failed while running (seen by the check after the launch in synchronous mode,
    /// `FLEXSN_CUDA_SYNC=1`).
    #[error("CUDA kernel `{kernel}` failed on the device: {message}")]
    KernelFault {
        /// The kernel's entry name.
        kernel: String,
        /// The driver's error.
        message: String,
    },
    /// A call made for one device was given a stream of another.
    #[error("the stream is on CUDA device {got}, but the kernel is loaded on device {expected}")]
    WrongDevice {
        /// The kernel's device.
        expected: usize,
        /// The stream's device.
        got: usize,
    },
    /// The NVRTC found cannot produce code the installed driver loads.
    #[error(
        "NVRTC {}.{} ({nvrtc_source}) is newer than the CUDA driver (supports CUDA {}.{}): {detail}. Install the NVRTC of the driver's CUDA major version (e.g. `pip install nvidia-cuda-nvrtc-cu{}`) and point FLEXSN_NVRTC_PATH at it, or update the driver",
        .nvrtc.0, .nvrtc.1, .driver.0, .driver.1, .driver.0
    )]
    NvrtcNewerThanDriver {
        /// NVRTC's `(major, minor)`.
        nvrtc: (i32, i32),
        /// Where NVRTC was loaded from.
        nvrtc_source: String,
        /// The CUDA version the driver supports.
        driver: (i32, i32),
        /// Why that cannot work.
        detail: String,
    },
    /// NVRTC cannot compile for the device's architecture.
    #[error(
        "NVRTC {}.{} cannot target sm_{arch} (it supports sm_{}); use an NVRTC release that supports this GPU",
        .nvrtc.0, .nvrtc.1, supported.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", sm_")
    )]
    UnsupportedArch {
        /// The device's `sm_XY` as `XY`.
        arch: i32,
        /// NVRTC's `(major, minor)`.
        nvrtc: (i32, i32),
        /// The architectures NVRTC supports.
        supported: Vec<i32>,
    },
    /// A driver call failed.
    #[error("CUDA driver call `{call}` failed: {message}")]
    Driver {
        /// The driver function.
        call: &'static str,
        /// The driver's error.
        message: String,
    },
    /// NVRTC (`libnvrtc.so`) could not be loaded.
    #[error(
        "NVRTC is not available: {detail}. Install it (e.g. `pip install nvidia-cuda-nvrtc-cu12`) and set FLEXSN_NVRTC_PATH to the library file (site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.12), or put its folder on LD_LIBRARY_PATH before starting the program"
    )]
    NoNvrtc {
        /// Where it was looked for and why loading failed.
        detail: String,
    },
    /// NVRTC rejected the generated source. Carries NVRTC's log and the numbered source.
    #[error(
        "NVRTC failed to compile `{entry}` (options {options:?}):\n{log}\n--- source ---\n{numbered_source}"
    )]
    Compile {
        /// The kernel's entry name.
        entry: String,
        /// The NVRTC options used.
        options: Vec<String>,
        /// NVRTC's log.
        log: String,
        /// The source with line numbers.
        numbered_source: String,
    },
    /// `ptxas` (for the static register and spill checks) was not found.
    #[error(
        "ptxas is not available: {detail}. Install it (e.g. `pip install nvidia-cuda-nvcc-cu12`, or `source scripts/ci-ptxas.sh`) and set FLEXSN_PTXAS to site-packages/nvidia/cuda_nvcc/bin/ptxas"
    )]
    NoPtxas {
        /// Where it was looked for.
        detail: String,
    },
    /// `ptxas` failed to assemble a kernel's PTX.
    #[error("ptxas failed: {message}")]
    Ptxas {
        /// What went wrong, with ptxas's output.
        message: String,
    },
    /// An NVRTC call other than compilation failed.
    #[error("NVRTC call `{call}` failed: {message}")]
    Nvrtc {
        /// The NVRTC function.
        call: &'static str,
        /// NVRTC's error.
        message: String,
    },
    /// No host C++ compiler for the emulated backend.
    #[error(
        "no C++ compiler found (tried {tried}): the cuda-emulated backend compiles the generated CUDA source as host C++ and needs one; install g++ or set CXX"
    )]
    NoCxx {
        /// The compilers tried.
        tried: String,
    },
    /// The host C++ compiler rejected the emulation translation unit.
    #[error(
        "the host C++ compiler `{compiler}` failed on the emulated CUDA source:\n{log}\n--- source ---\n{numbered_source}"
    )]
    CxxCompile {
        /// The compiler run.
        compiler: String,
        /// Its output.
        log: String,
        /// The source with line numbers.
        numbered_source: String,
    },
    /// The emulation library could not be loaded or lacks its entry points.
    #[error("could not load the emulated kernel library {path}: {message}")]
    EmuLoad {
        /// The library file.
        path: String,
        /// The loader's error.
        message: String,
    },
    /// The emulated kernel reported a failure of the emulation itself.
    #[error("the emulated kernel `{entry}` failed with code {code} ({})", emu_code_meaning(*.code))]
    EmuRun {
        /// The kernel's entry name.
        entry: String,
        /// The emulation's status code.
        code: i32,
    },
    /// Source generation failed.
    #[error(transparent)]
    Codegen(#[from] CodegenError),
    /// Source generation of a PSN time mixing failed (unsupported shape, ...).
    #[error(transparent)]
    MixingCodegen(#[from] flexsn_compiler::codegen::cuda::mixing::MixingCodegenError),
    /// The optimiser broke the graph (a compiler bug).
    #[error(transparent)]
    Optimize(#[from] flexsn_compiler::passes::OptimizeError),
    /// Wrong argument counts or lengths.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// A forward/backward driver error (missing initial state, missing state sequences, ...).
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// A buffer does not match what the kernel needs.
    #[error("buffer `{name}`: {message}")]
    Buffer {
        /// The buffer.
        name: String,
        /// What does not match.
        message: String,
    },
    /// The problem is too large for one launch (grid or index limits).
    #[error("{0}")]
    TooLarge(String),
    /// A panic inside a CUDA library binding was caught (should not happen; reported, not raised).
    #[error("a CUDA library call panicked: {0}")]
    Panicked(String),
}

fn emu_code_meaning(code: i32) -> &'static str {
    match code {
        2 => "__syncthreads() in a kernel emulated without threads",
        3 => "could not start the threads of an emulated block",
        _ => "unknown",
    }
}

impl From<flexsn_compiler::BuildError> for CudaError {
    fn from(e: flexsn_compiler::BuildError) -> Self {
        CudaError::Codegen(CodegenError::Invalid(e))
    }
}

/// Maps a driver error of `call` to [`CudaError::Driver`] (for `map_err`).
pub(crate) fn driver_err(
    call: &'static str,
) -> impl FnOnce(cudarc::driver::DriverError) -> CudaError {
    move |e| CudaError::Driver {
        call,
        message: format!("{e:?}"),
    }
}

/// Runs `f`, turning a panic (cudarc panics when a library symbol is missing) into an error.
pub(crate) fn guard<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, CudaError>,
) -> Result<T, CudaError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = if let Some(s) = p.downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = p.downcast_ref::<String>() {
                s.clone()
            } else {
                "unknown panic payload".to_string()
            };
            Err(CudaError::Panicked(format!("{what}: {msg}")))
        }
    }
}

/// An error with its chain of sources (`libloading` keeps the `dlerror` text in the source).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
