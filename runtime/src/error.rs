//! [`RuntimeError`]: everything that can go wrong compiling or running a kernel.

use flexsn_compiler::BuildError;
use flexsn_compiler::bptt::ExecError;
use flexsn_compiler::codegen::clif::CodegenError;
use flexsn_compiler::scan::ShapeError;

/// Why a compile or run failed. Shape problems name the argument, the expected and the actual
/// shape; nothing here is a panic.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Codegen(#[from] CodegenError),
    #[error(transparent)]
    Optimize(#[from] flexsn_compiler::passes::OptimizeError),
    #[error(transparent)]
    Memory(#[from] crate::memory::MemoryError),
    #[error("JIT compilation failed: {0}")]
    Jit(String),
    #[error("no param named `{name}`; the kernel's params: {known}")]
    UnknownParam { name: String, known: String },
    #[error("param `{0}` is given twice")]
    DuplicateParam(String),
    #[error("param `{0}` is missing: pass every param of the kernel by name")]
    MissingParam(String),
    #[error("`{name}`: expected shape {expected}, got {got}")]
    ArrayShape {
        name: String,
        expected: String,
        got: String,
    },
    #[error("`{0}` is not a contiguous row-major (standard layout) array")]
    NotContiguous(String),
    #[error("backend `{backend}` is not available: {reason}")]
    BackendUnavailable {
        backend: &'static str,
        reason: String,
    },
    #[error("the kernel has no step graph to differentiate: {0}")]
    Unsupported(String),
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}
