//! CUDA backends: real CUDA through `cudarc` (NVRTC + driver, loaded dynamically, so the crate
//! builds and runs where CUDA is absent) and the emulated backend that runs the same generated
//! source as host C++ on the CPU.

pub mod backend;
pub mod bench;
pub mod borrowed;
pub mod cache;
pub mod checkpoint;
pub mod compare;
pub mod device;
pub mod emulated;
mod error;
pub mod host;
pub mod inspect;
pub mod kernel_device;
pub mod launch;
pub mod mixing;
pub mod nvrtc;
pub mod probe;
pub mod ptxas;

pub use borrowed::{BorrowedBuf, CallerStream, ContextScope};
pub use checkpoint::CheckpointPhase;
pub use device::{CudaDevice, DeviceBuf, DeviceKernel};
pub use emulated::EmulatedCuda;
pub use error::CudaError;
pub use kernel_device::{DeviceArgument, DeviceBuffer, DeviceScan};
pub use mixing::{
    DeviceMixing, EmulatedMixing, MixGradients, MixingKernels, emulated_mixing_count,
    shared_device, shared_device_on, shared_emulated,
};
