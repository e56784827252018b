//! # flexsn-runtime
//!
//! Compiles neuron cores for a backend and runs them: [`Neuron`] is what can be compiled.

pub mod cuda;
mod neuron;

pub use neuron::Neuron;
