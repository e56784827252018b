//! The native half of the `flexsn` Python package (`flexsn._flexsn`).
//!
//! Python hands it a core (a built-in neuron by name and settings, or the node list that
//! `flexsn.torch` traced from a Python function) and gets a compiled `core::Core`; it then runs
//! forward and backward scans directly on the memory of torch tensors (address and length, see
//! the `host` module), without the GIL. Errors arrive in Python as the classes of `flexsn.errors`.

mod core;
mod errors;
mod graph;
mod host;
mod launch;
mod memory;
mod pool;

use pyo3::prelude::*;

/// The module `flexsn._flexsn`.
#[pymodule]
fn _flexsn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<core::Core>()?;
    m.add_function(wrap_pyfunction!(core::surrogate_names, m)?)?;
    m.add_function(wrap_pyfunction!(core::builtin_states, m)?)?;
    m.add_function(wrap_pyfunction!(core::builtin_initial_params, m)?)?;
    m.add_function(wrap_pyfunction!(core::save_policy_interval, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(pool::host_empty, m)?)?;
    m.add_function(wrap_pyfunction!(pool::host_cache_info, m)?)?;
    m.add_function(wrap_pyfunction!(pool::empty_host_cache, m)?)?;
    m.add_function(wrap_pyfunction!(pool::set_host_cache_limit, m)?)?;
    Ok(())
}
