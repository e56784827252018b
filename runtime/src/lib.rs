//! # flexsn-runtime
//!
//! Compiles neuron cores for a backend and runs them.
//!
//! ```no_run
//! use flexsn_compiler::dsl::CoreBuilder;
//! use flexsn_compiler::ir::{StateInit, Surrogate};
//! use flexsn_runtime::{Backend, Jit};
//!
//! let b = CoreBuilder::new("if_soft");
//! let (x, v) = (b.input("x"), b.state("v", StateInit::Const(0.0)));
//! let h = v + x;
//! let s = (h - 1.0).spike(Surrogate::ATan { alpha: 2.0 });
//! b.output("s", s);
//! b.set_state("v", h - s);
//! let graph = b.build()?;
//!
//! let kernel = Jit::new(Backend::Cpu)?.compile(&graph)?;
//! let (t, n) = (3, 2);
//! let xs = vec![0.6f32; t * n];
//! let fwd = kernel.forward(t, n, &[&xs], None, &[])?;
//! let ones = vec![1.0f32; t * n];
//! let grads = kernel.backward_outputs(&fwd, &[Some(&ones)])?;
//! assert_eq!(grads.inputs[0].len(), t * n);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - [`Neuron`]: what can be compiled (built-in neurons, `#[neuron]` types, step graphs).
//! - [`Jit`], [`Kernel`], [`Forward`]: compile once, run forward and backward for any `T`, `N`.
//! - [`KernelArgs`], [`Kernel::forward_host`], [`Kernel::backward_host`]: caller-owned host
//!   buffers for frameworks (no per-call copies).
//! - [`ScanExecutor`], [`BackendCompiler`]: how a backend plugs in.
//! - [`cpu`]: the Cranelift backend ([`cpu::CpuScan`]), and inspection of its CLIF and assembly.

mod checkpoint;
pub mod cpu;
pub mod cuda;
mod error;
mod executor;
mod host;
mod jit;
pub mod memory;
mod neuron;

pub use error::RuntimeError;
pub use executor::{
    BackendCompiler, InterpreterCompiler, InterpreterScan, ScanExecutor, ScanOutputs,
};
pub use flexsn_compiler::autodiff::GradSpec;
pub use flexsn_compiler::bptt::{Gradients, Upstream};
pub use flexsn_compiler::checkpoint::SavePolicy;
pub use host::{
    CheckpointBuffers, GradBuffers, InferenceBuffers, KernelArgs, ParamGrads, TrainingBuffers,
};
pub use jit::{Backend, Forward, Inference, Jit, Kernel, UnknownBackend};
pub use neuron::Neuron;
