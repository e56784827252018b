//! [`Layer`]: what every stateful neuron layer offers a network, whatever runs it: [`Node`] (any
//! scan neuron) and the PSN family ([`PSN`], [`MaskedPSN`], [`SlidingPSN`]).
//!
//! ```
//! use flexsn_neurons::layer::Layer;
//! use flexsn_neurons::node::{Node, StepMode};
//! use flexsn_neurons::psn::PSN;
//! use flexsn_neurons::LIFNode;
//! use flexsn_runtime::Backend;
//!
//! /// Forward and backward of any layer with one input and one output.
//! fn step<L: Layer>(layer: &mut L, x: &[f32], n: usize) -> Result<Vec<f32>, L::Error> {
//!     let y = layer.forward(&[x], n)?;
//!     let gx = layer.backward(&[Some(&vec![1.0; y[0].len()])])?;
//!     layer.reset();
//!     Ok(gx.into_iter().next().unwrap_or_default())
//! }
//!
//! let (t, n) = (4, 3);
//! let x = vec![1.5f32; t * n];
//! let mut lif = Node::builtin(&LIFNode::new().into(), Backend::Interpreter)?;
//! lif.set_step_mode(StepMode::Multi)?;
//! assert_eq!(step(&mut lif, &x, n)?.len(), t * n);
//! assert_eq!(step(&mut PSN::new(t)?, &x, n)?.len(), t * n);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::node::{Node, NodeError};
use crate::psn::{MaskedPSN, PSN, PsnError, SlidingPSN};

/// A stateful layer: sequences in, sequences out, backward through what forward recorded.
pub trait Layer {
    /// Why a call failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// One call in the layer's step mode: one slice per input (`[N]` single-step, `[T, N]`
    /// multi-step) for `n` neurons; one vector per output.
    fn forward(&mut self, inputs: &[&[f32]], n: usize) -> Result<Vec<Vec<f32>>, Self::Error>;

    /// Backward through the calls recorded since the last reset, backward or detach: the
    /// upstream gradient of each output over those calls (`None`: zero where the layer allows
    /// it); returns the gradient of each input. Param gradients accumulate in the layer.
    fn backward(&mut self, grad_outputs: &[Option<&[f32]>]) -> Result<Vec<Vec<f32>>, Self::Error>;

    /// Back to the start: states and recorded calls are dropped, params kept.
    fn reset(&mut self);
}

impl Layer for Node {
    type Error = NodeError;
    fn forward(&mut self, inputs: &[&[f32]], n: usize) -> Result<Vec<Vec<f32>>, NodeError> {
        Node::forward(self, inputs, n)
    }
    fn backward(&mut self, grad_outputs: &[Option<&[f32]>]) -> Result<Vec<Vec<f32>>, NodeError> {
        Ok(Node::backward(self, grad_outputs)?.inputs)
    }
    fn reset(&mut self) {
        Node::reset(self)
    }
}

/// The one input of a PSN-family module.
fn single<'a>(inputs: &[&'a [f32]]) -> Result<&'a [f32], PsnError> {
    match inputs {
        [x] => Ok(x),
        _ => Err(PsnError::Len {
            what: "input sequences",
            expected: 1,
            got: inputs.len(),
        }),
    }
}

/// The gradient of the one output (the spikes) of a PSN-family module: required, since the
/// module does not keep the length of what it recorded apart from its input.
fn single_grad<'a>(grads: &[Option<&'a [f32]>]) -> Result<&'a [f32], PsnError> {
    match grads {
        [Some(g)] => Ok(g),
        _ => Err(PsnError::Len {
            what: "spike gradients (one, present)",
            expected: 1,
            got: grads.iter().flatten().count(),
        }),
    }
}

macro_rules! psn_layer {
    ($($t:ty),*) => {
        $(
            impl Layer for $t {
                type Error = PsnError;
                fn forward(
                    &mut self,
                    inputs: &[&[f32]],
                    n: usize,
                ) -> Result<Vec<Vec<f32>>, PsnError> {
                    Ok(vec![<$t>::forward(self, single(inputs)?, n)?])
                }
                fn backward(
                    &mut self,
                    grad_outputs: &[Option<&[f32]>],
                ) -> Result<Vec<Vec<f32>>, PsnError> {
                    Ok(vec![<$t>::backward(self, single_grad(grad_outputs)?)?])
                }
                fn reset(&mut self) {
                    <$t>::reset(self)
                }
            }
        )*
    };
}

psn_layer!(PSN, MaskedPSN, SlidingPSN);
