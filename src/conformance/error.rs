//! [`CaseError`]: why a golden case failed, and [`LoadError`]: why a golden file could not be read.

use flexsn_compiler::BuildError;
use flexsn_compiler::ir::SurrogateError;
use flexsn_neurons::psn::PsnError;
use flexsn_neurons::{DecodeError, NeuronError};
use flexsn_runtime::RuntimeError;

use super::compare::Mismatch;

/// An error from a user-supplied core factory (any error type; `String` works too).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why one golden case failed: bad case data, a neuron that cannot be built, a backend error, or
/// a compared value out of tolerance. Printed as the reason in a failed
/// [`CaseReport`](super::CaseReport).
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// A required value is absent (or null).
    #[error("`{0}` is missing")]
    Missing(String),
    /// A value is present but not what the format allows (wrong JSON type, out of range).
    #[error("`{path}` {why}")]
    Invalid {
        /// The value's JSON path (`params.k`, `shape`).
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// A tensor's value count differs from what its shape asks.
    #[error("`{path}` has {got} values, expected {expected}")]
    Length {
        /// The tensor's JSON path.
        path: String,
        /// Values the shape asks for.
        expected: usize,
        /// Values the case holds.
        got: usize,
    },
    /// The case's `neuron` names no family the harness runs.
    #[error("unknown neuron kind `{kind}` (known: {known})")]
    UnknownKind {
        /// The case's `neuron`.
        kind: String,
        /// The kinds the harness runs, comma-separated.
        known: String,
    },
    /// A `FlexSN:<core>` case whose core is not bound in [`Cores`](super::Cores).
    #[error("no core bound for FlexSN core `{0}` (bind one with --core {0}=PATH)")]
    UnboundCore(String),
    /// A hyperparameter the core asks for is not in the case's `core_kwargs`.
    #[error("hyperparameter `{0}` is not given (core_kwargs)")]
    MissingHyper(String),
    /// The core's factory failed.
    #[error("core `{core}`: {source}")]
    Core {
        /// The core's name.
        core: String,
        /// The factory's error.
        source: BoxError,
    },
    /// The core's inputs, states, outputs or params differ from the case's `meta.*_names`.
    #[error("core `{core}` declares {what} {declared:?}, the case has {listed:?}")]
    Interface {
        /// The core's name.
        core: String,
        /// `inputs`, `states`, `outputs` or `params (static inputs)`.
        what: &'static str,
        /// The names the core declares (sorted).
        declared: Vec<String>,
        /// The names the case lists (sorted).
        listed: Vec<String>,
    },
    /// The case's settings do not fit its built-in neuron (unknown key, bad value).
    #[error(transparent)]
    Neuron(#[from] NeuronError),
    /// The case's neuron has no valid step graph.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The case's surrogate (`params.surrogate`) is unknown or has a bad parameter.
    #[error("params.surrogate: {0}")]
    Surrogate(#[from] SurrogateError),
    /// A PSN-family module rejected the case's data.
    #[error(transparent)]
    Psn(#[from] PsnError),
    /// A non-spiking neuron's decode rejected the voltage sequence or its gradient.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Compiling or running on the backend failed.
    #[error("{phase} on {backend}: {source}")]
    Run {
        /// `compile`, `forward` or `backward`.
        phase: &'static str,
        /// The backend's name.
        backend: String,
        /// The runtime's error (boxed: it is large).
        source: Box<RuntimeError>,
    },
    /// A compared tensor differs from the golden values.
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
    /// The case expects a gradient for a param the graph does not differentiate.
    #[error("{0}: the graph computes no gradient for it (param not learnable)")]
    NoGradient(String),
}

impl CaseError {
    /// [`CaseError::Invalid`] for the value at `path`.
    pub fn invalid(path: impl Into<String>, why: impl Into<String>) -> Self {
        CaseError::Invalid {
            path: path.into(),
            why: why.into(),
        }
    }
}

/// Why a golden file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("{path}: not valid JSON: {source}")]
    Json {
        /// The file.
        path: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The file is JSON but not a list.
    #[error("{path}: expected a JSON list of cases")]
    NotAList {
        /// The file.
        path: String,
    },
    /// The golden set's `manifest.json` (an object with `files`), not a list of cases.
    #[error("{path}: a manifest of golden files, not a list of cases")]
    Manifest {
        /// The file.
        path: String,
    },
    /// One entry of the list is not a case (no `name` or `neuron`).
    #[error("{path}: case {index}: {why}")]
    BadCase {
        /// The file.
        path: String,
        /// The entry's position in the list.
        index: usize,
        /// What is missing.
        why: &'static str,
    },
}
