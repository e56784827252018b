//! [`Error`]: why a flexsn operation on candle tensors was refused.

use candle_core::DType;
use flexsn_runtime::RuntimeError;

/// What is wrong with the tensors handed to a flexsn operation, or what the kernel reported.
/// Every variant names the argument; it reaches the caller as a [`candle_core::Error`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// flexsn kernels compute in float32.
    #[error("`{what}`: flexsn kernels take float32 tensors, got {got:?}")]
    DType {
        /// The argument.
        what: String,
        /// Its dtype.
        got: DType,
    },
    /// A tensor of the wrong shape.
    #[error("`{what}`: expected shape {expected}, got {got:?}")]
    Shape {
        /// The argument.
        what: String,
        /// The shape it must have, in words.
        expected: String,
        /// The shape it has.
        got: Vec<usize>,
    },
    /// The wrong number of inputs, initial states or params.
    #[error("{what}: expected {expected}, got {got}")]
    Count {
        /// What was counted.
        what: &'static str,
        /// How many the core takes.
        expected: usize,
        /// How many were given.
        got: usize,
    },
    /// A `Var` was given for a param the core does not differentiate.
    #[error(
        "param `{0}` is not learnable in this core: pass a plain tensor (a Var would never get a gradient)"
    )]
    NotLearnable(String),
    /// A param has no value: neither given nor a built-in default.
    #[error("param `{param}` has no initial value; give one (the core's params: {known})")]
    MissingParam {
        /// The param without a value.
        param: String,
        /// The core's params, listed.
        known: String,
    },
    /// A value given for a param the core does not have.
    #[error("the core has no param `{param}`; its params: {known}")]
    UnknownParam {
        /// The name given.
        param: String,
        /// The core's params, listed.
        known: String,
    },
    /// Tensors on different devices, or a device without a flexsn path.
    #[error("{0}")]
    Device(String),
    /// The neuron cannot run as this layer (e.g. a mixing neuron given to the scan layer).
    #[error("{0}")]
    Neuron(String),
    /// The runtime refused the call or the kernel failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl From<Error> for candle_core::Error {
    fn from(e: Error) -> Self {
        candle_core::Error::wrap(e)
    }
}

/// Checks that `t` holds float32.
pub(crate) fn check_f32(what: &str, t: &candle_core::Tensor) -> Result<(), Error> {
    if t.dtype() == DType::F32 {
        Ok(())
    } else {
        Err(Error::DType {
            what: what.to_string(),
            got: t.dtype(),
        })
    }
}
