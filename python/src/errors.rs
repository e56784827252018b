//! Rust errors as Python exceptions of `flexsn.errors` (all subclasses of `FlexSNError`; shape,
//! argument and graph problems also subclass `ValueError`).

use flexsn_neurons::NeuronError;
use flexsn_runtime::RuntimeError;
use pyo3::prelude::*;

/// The `flexsn.errors` classes an error maps to.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// `FlexSNValueError` (bad shapes, counts, names, settings).
    Value,
    /// `FlexSNError` (the backend failed or is unavailable).
    Backend,
    /// `FlexSNMemoryError` (a call would allocate more than the memory limit).
    Memory,
}

/// Makes a `flexsn.errors` exception with `msg`.
pub fn raise(py: Python<'_>, kind: Kind, msg: impl Into<String>) -> PyErr {
    let class = match kind {
        Kind::Value => "FlexSNValueError",
        Kind::Backend => "FlexSNError",
        Kind::Memory => "FlexSNMemoryError",
    };
    let msg = msg.into();
    match py
        .import("flexsn.errors")
        .and_then(|m| m.getattr(class))
        .and_then(|c| c.call1((msg.clone(),)))
    {
        Ok(e) => PyErr::from_value(e),
        // Only when the package is broken: still an exception, never a crash.
        Err(_) => pyo3::exceptions::PyRuntimeError::new_err(msg),
    }
}

/// The class for a runtime error.
fn runtime_kind(e: &RuntimeError) -> Kind {
    match e {
        RuntimeError::Jit(_)
        | RuntimeError::Codegen(_)
        | RuntimeError::BackendUnavailable { .. }
        | RuntimeError::Backend(_) => Kind::Backend,
        RuntimeError::Memory(_) => Kind::Memory,
        _ => Kind::Value,
    }
}

/// A runtime error as a Python exception.
pub fn runtime(py: Python<'_>, e: RuntimeError) -> PyErr {
    raise(py, runtime_kind(&e), e.to_string())
}

/// A built-in neuron's settings error as a Python exception.
pub fn neuron(py: Python<'_>, e: NeuronError) -> PyErr {
    raise(py, Kind::Value, e.to_string())
}
