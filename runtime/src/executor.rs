//! How backends plug in: a [`BackendCompiler`] turns a [`ScanKernel`] into a [`ScanExecutor`].

use std::any::Any;
use std::sync::Arc;

use flexsn_compiler::interp;
use flexsn_compiler::scan::{ScanArgs, ScanKernel, ScanResult};

use crate::RuntimeError;

/// A compiled scan kernel: runs the kernel ABI of [`flexsn_compiler::scan`] for any `T`, `N`.
/// Implementations check `args` against the kernel before running generated code.
pub trait ScanExecutor: Send + Sync {
    fn run(&self, args: &ScanArgs<'_, f32>) -> Result<ScanResult<f32>, RuntimeError>;
    /// The kernel this executor runs.
    fn kernel(&self) -> &ScanKernel;
    /// For downcasting to the backend's type (e.g. `CpuScan` for its machine code).
    fn as_any(&self) -> &dyn Any;
}

/// A backend: compiles scan kernels.
pub trait BackendCompiler: Send + Sync {
    /// Identifies the backend and its options; part of the kernel-cache key.
    fn name(&self) -> String;
    fn compile_scan(&self, kernel: &ScanKernel) -> Result<Arc<dyn ScanExecutor>, RuntimeError>;
}

/// The interpreter as an executor (the oracle; slow).
#[derive(Clone, Debug)]
pub struct InterpreterScan {
    kernel: ScanKernel,
}

impl ScanExecutor for InterpreterScan {
    fn run(&self, args: &ScanArgs<'_, f32>) -> Result<ScanResult<f32>, RuntimeError> {
        Ok(interp::run_scan(&self.kernel, args)?)
    }
    fn kernel(&self) -> &ScanKernel {
        &self.kernel
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The interpreter backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct InterpreterCompiler;

impl BackendCompiler for InterpreterCompiler {
    fn name(&self) -> String {
        "interpreter".into()
    }
    fn compile_scan(&self, kernel: &ScanKernel) -> Result<Arc<dyn ScanExecutor>, RuntimeError> {
        flexsn_compiler::verify::verify(&kernel.graph)?;
        Ok(Arc::new(InterpreterScan {
            kernel: kernel.clone(),
        }))
    }
}
