//! # flexsn-compiler
//!
//! The compiler half of flexsn: a neuron's single time step as a [`StepGraph`](ir::StepGraph),
//! passes over it, automatic differentiation into a backward step graph, an interpreter that
//! runs both as scans (the oracle every backend is tested against), and code generation for
//! Cranelift and CUDA. It has no CUDA dependency: generating CUDA text works anywhere.
//!
//! ```
//! use flexsn_compiler::dsl::CoreBuilder;
//! use flexsn_compiler::interp::run_scan;
//! use flexsn_compiler::ir::{StateInit, Surrogate};
//! use flexsn_compiler::scan::{ScanArgs, ScanKernel};
//!
//! // IF neuron with soft reset: h = v + x; s = Θ(h - 1); v' = h - s.
//! let b = CoreBuilder::new("if_soft");
//! let (x, v) = (b.input("x"), b.state("v", StateInit::Const(0.0)));
//! let h = v + x;
//! let s = (h - 1.0).spike(Surrogate::ATan { alpha: 2.0 });
//! b.output("s", s);
//! b.set_state("v", h - s);
//! let kernel = ScanKernel::forward(b.build()?, true);
//!
//! // T = 3 steps, N = 1 neuron.
//! let xs = [0.6f32, 0.6, 0.6];
//! let v0 = [0.0f32];
//! let r = run_scan(&kernel, &ScanArgs { t: 3, n: 1, inputs: vec![&xs], init_states: vec![&v0], params: vec![] })?;
//! assert_eq!(r.outputs[0], vec![0.0, 1.0, 0.0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod autodiff;
pub mod bptt;
pub mod checkpoint;
pub mod codegen;
pub mod dot;
pub mod dsl;
pub mod interp;
pub mod oracle;
pub mod passes;
#[cfg(any(test, feature = "testing"))]
pub mod random;
pub mod rng;
pub mod scan;

/// The Rust-syntax frontend (the `flexsn-frontend` crate).
pub use flexsn_frontend as frontend;
/// The IR layer (the `flexsn-ir` crate): graph, ops, builder, text form, verifier, op semantics.
pub use flexsn_ir as ir;
pub use flexsn_ir::{error, num, text, verify};

pub use error::BuildError;
