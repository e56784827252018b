//! flexsn: a compiler for spiking-neuron kernels.
pub use flexsn_compiler as compiler;
pub use flexsn_macros::neuron;
pub use flexsn_neurons as neurons;
pub use flexsn_runtime as runtime;

pub mod bench;
pub mod conformance;
pub mod cuda;
