//! [`RuntimeError`]: everything that can go wrong compiling or running a kernel.

use flexsn_compiler::BuildError;
use flexsn_compiler::bptt::ExecError;
use flexsn_compiler::codegen::clif::CodegenError;
use flexsn_compiler::scan::ShapeError;

/// Why a compile or run failed. Shape problems name the argument, the expected and the actual
/// shape; nothing here is a panic.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Wrong argument counts or lengths.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// The neuron's step graph is invalid.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A forward/backward driver error (missing initial state or state sequences).
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// Cranelift code generation failed.
    #[error(transparent)]
    Codegen(#[from] CodegenError),
    /// The optimiser broke the graph (a compiler bug).
    #[error(transparent)]
    Optimize(#[from] flexsn_compiler::passes::OptimizeError),
    /// The JIT could not finalise or load the machine code.
    #[error("JIT compilation failed: {0}")]
    Jit(String),
    /// A param name the kernel does not have.
    #[error("no param named `{name}`; the kernel's params: {known}")]
    UnknownParam {
        /// The name given.
        name: String,
        /// The kernel's params, comma-separated.
        known: String,
    },
    /// A param passed twice.
    #[error("param `{0}` is given twice")]
    DuplicateParam(String),
    /// A param of the kernel not passed.
    #[error("param `{0}` is missing: pass every param of the kernel by name")]
    MissingParam(String),
    /// An ndarray argument of the wrong shape.
    #[error("`{name}`: expected shape {expected}, got {got}")]
    ArrayShape {
        /// The argument.
        name: String,
        /// The shape expected.
        expected: String,
        /// Its shape.
        got: String,
    },
    /// An ndarray argument that is not contiguous.
    #[error("`{0}` is not a contiguous row-major (standard layout) array")]
    NotContiguous(String),
    /// The backend cannot run on this machine (no GPU, driver, NVRTC or C++ compiler).
    #[error("backend `{backend}` is not available: {reason}")]
    BackendUnavailable {
        /// The backend's name.
        backend: &'static str,
        /// What is missing.
        reason: String,
    },
    /// A request the kernel or backend does not support.
    #[error("the kernel has no step graph to differentiate: {0}")]
    Unsupported(String),
    /// A backend's own error.
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}
