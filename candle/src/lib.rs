//! # flexsn-candle
//!
//! flexsn's fused spiking-neuron kernels as [candle](https://github.com/huggingface/candle)
//! operations with backward, and SpikingJelly's neurons as candle layers.
//!
//! - [`scan`]: any compiled core ([`flexsn_runtime::Kernel`]: built-ins, `#[neuron]` types,
//!   text cores) on candle tensors `[T, *shape]`, float32. It is a candle custom op, so
//!   `loss.backward()` reaches the inputs, the initial states and the learnable params. On the
//!   CPU the Cranelift kernels read candle's storage and write the op's result in place (no
//!   copies in or out); inputs that are not contiguous are made contiguous first.
//! - [`ScanLayer`]: a core as a [`candle_nn::Module`], each learnable param a `Var` of the
//!   `VarBuilder`'s map.
//! - [`nodes`]: `IFNode`, `LIFNode`, `ParametricLIFNode`, `NonSpikingIFNode`,
//!   `NonSpikingLIFNode`, `SlidingPSN`, `QIFNode`, `EIFNode`, `IzhikevichNode`, `KLIFNode`,
//!   `CUBALIFNode`, `ComplementaryLIFNode`, `ILIFNode`, `HalfThresholdIFNode`, `TernaryIFNode`,
//!   `TernaryLIFNode`; [`psn`]: `PSN`, `MaskedPSN` — SpikingJelly's defaults.
//!
//! ## How backward gets the state sequences
//!
//! Backpropagation through time needs every state before every step. The op's single result
//! holds the outputs and, per state, a `(T+1) * N` buffer whose row 0 is the initial state and
//! rows `1..=T` the state after each step (what the kernel writes anyway); [`scan`] returns
//! views of it. candle hands the result back to the op's `bwd`, so backward reads the states
//! from there: the forward scan is never recomputed, there is no side buffer to keep in sync,
//! and the memory lives exactly as long as the autograd graph. Gradients of the state views
//! (a loss on the voltage, or on the final state) flow into the same kernel's backward.
//!
//! ## Example
//!
//! ```
//! use candle_core::{DType, Device, Tensor, Var};
//! use candle_nn::{Module, VarBuilder, VarMap};
//! use flexsn_candle::nodes::ParametricLIFNode;
//!
//! let dev = Device::Cpu;
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
//! let plif = ParametricLIFNode::new(Default::default(), vb.pp("plif"))?;
//!
//! // [T = 4, batch = 2, features = 3]
//! let x = Var::from_tensor(&Tensor::full(0.8f32, (4, 2, 3), &dev)?)?;
//! let spikes = plif.forward(x.as_tensor())?;
//! assert_eq!(spikes.dims(), &[4, 2, 3]);
//!
//! let loss = spikes.sum_all()?;
//! let grads = loss.backward()?;
//! assert!(grads.get(x.as_tensor()).is_some());
//! // PLIF's `w` is a `Var` of the map, and gets its gradient.
//! let w = varmap.data().lock().unwrap()["plif.w"].clone();
//! assert!(grads.get(w.as_tensor()).is_some());
//! # Ok::<(), candle_core::Error>(())
//! ```

mod decode;
mod engine;
mod error;
mod layer;
pub mod nodes;
mod op;
pub mod psn;
mod sliding;

pub use decode::decode;
pub use error::Error;
pub use layer::{ParamDims, ScanLayer, default_jit};
pub use op::{ScanOutput, scan, scan_with};
