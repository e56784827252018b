//! [`ScanLayer`]: any flexsn core as a candle [`Module`], its learnable params in a `VarMap`.

use std::sync::{Arc, OnceLock};

use candle_core::{DType, Tensor};
use candle_nn::{Init, Module, VarBuilder};
use flexsn_compiler::ir::{ParamKind, StepGraph};
use flexsn_runtime::{Backend, Jit, Kernel, Neuron, SavePolicy};

use crate::error::{Error, check_f32};
use crate::op::{ScanOutput, scan_with};

/// The CPU JIT every layer built without an explicit one shares, so that equal cores compile
/// once per process.
pub fn default_jit() -> Result<Jit, Error> {
    static JIT: OnceLock<Jit> = OnceLock::new();
    if let Some(j) = JIT.get() {
        return Ok(j.clone());
    }
    let j = Jit::new(Backend::Cpu)?;
    Ok(JIT.get_or_init(|| j).clone())
}

/// Sizes a layer needs to shape its params: `N` for per-neuron params, `T` for per-time ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParamDims {
    /// Neurons per time step (the product of the input's trailing shape).
    pub n: Option<usize>,
    /// Time steps.
    pub t: Option<usize>,
}

/// A flexsn core as a candle layer: inputs `[T, *shape]`, outputs `[T, *shape]`.
///
/// Each learnable param of the core is a `Var` in the layer's `VarBuilder` (under its own name,
/// so `vb.pp("lif1")` gives `lif1.w`); every other param is a constant tensor. Gradients of
/// `loss.backward()` reach the inputs, the given initial states and the learnable params.
/// Calls do not carry state from one to the next: each starts from the given initial states or
/// the core's declared initial values (SpikingJelly's state after `reset()`).
#[derive(Clone, Debug)]
pub struct ScanLayer {
    kernel: Arc<Kernel>,
    params: Vec<Tensor>,
    save_policy: SavePolicy,
}

impl ScanLayer {
    /// Compiles `neuron` with `jit` and makes its params: `inits` gives each param's initial
    /// value by name (all params need one); `dims` sizes per-neuron and per-time params.
    pub fn new<N: Neuron + ?Sized>(
        jit: &Jit,
        neuron: &N,
        vb: VarBuilder,
        inits: &[(&str, Init)],
        dims: ParamDims,
    ) -> candle_core::Result<ScanLayer> {
        let kernel = Arc::new(jit.compile(neuron).map_err(Error::from)?);
        let g = kernel.graph();
        let known = || param_names(g);
        for (name, _) in inits {
            if g.param_index(name).is_none() {
                return Err(Error::UnknownParam {
                    param: name.to_string(),
                    known: known(),
                }
                .into());
            }
        }
        let mut params = Vec::with_capacity(g.params().len());
        for d in g.params() {
            let init = inits
                .iter()
                .find(|(k, _)| *k == d.name)
                .map(|(_, i)| *i)
                .ok_or_else(|| Error::MissingParam {
                    param: d.name.clone(),
                    known: known(),
                })?;
            let len = match d.kind {
                ParamKind::Shared => Some(1),
                ParamKind::PerNeuron => dims.n,
                ParamKind::PerTime => dims.t,
            }
            .ok_or_else(|| {
                Error::Neuron(format!(
                    "param `{}` is {}: give its size in ParamDims",
                    d.name,
                    d.kind.name()
                ))
            })?;
            let p = if d.learnable {
                vb.get_with_hints(len, &d.name, init)?
            } else {
                // Constants stay out of the VarMap (they get no gradient).
                init.var(len, DType::F32, vb.device())?.as_tensor().detach()
            };
            params.push(p);
        }
        Ok(ScanLayer {
            save_policy: kernel.save_policy(),
            kernel,
            params,
        })
    }

    /// A layer over an already compiled kernel with the given param tensors (graph order;
    /// e.g. loaded ones): checked against the graph's params (count, float32, `Var`s only for
    /// learnable ones); their sizes are checked on each call.
    pub fn from_kernel(kernel: Arc<Kernel>, params: Vec<Tensor>) -> candle_core::Result<ScanLayer> {
        let g = kernel.graph();
        if params.len() != g.params().len() {
            return Err(Error::Count {
                what: "params",
                expected: g.params().len(),
                got: params.len(),
            }
            .into());
        }
        for (p, d) in params.iter().zip(g.params()) {
            check_f32(&d.name, p)?;
            if p.is_variable() && !d.learnable {
                return Err(Error::NotLearnable(d.name.clone()).into());
            }
        }
        Ok(ScanLayer {
            save_policy: kernel.save_policy(),
            kernel,
            params,
        })
    }

    /// The layer with the save policy `policy`: `checkpoint:K` keeps the state before every
    /// `K`-th step for backward instead of every state (bit-identical gradients; no state
    /// sequences in [`ScanLayer::forward_all`]'s result). K = 0 is an error.
    pub fn with_save_policy(mut self, policy: SavePolicy) -> candle_core::Result<ScanLayer> {
        policy.check().map_err(|e| Error::Neuron(e.to_string()))?;
        self.save_policy = policy;
        Ok(self)
    }

    /// What a forward keeps for backward (default: the kernel's, `states`).
    pub fn save_policy(&self) -> SavePolicy {
        self.save_policy
    }

    /// The compiled kernel.
    pub fn kernel(&self) -> &Arc<Kernel> {
        &self.kernel
    }

    /// The core's step graph (optimised).
    pub fn graph(&self) -> &StepGraph {
        self.kernel.graph()
    }

    /// The param tensors in graph order (learnable ones are the `VarMap`'s variables).
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    /// The param named `name`.
    pub fn param(&self, name: &str) -> Option<&Tensor> {
        self.graph().param_index(name).map(|k| &self.params[k])
    }

    /// Every output, state sequence and final state for `inputs` (graph order, `[T, *shape]`)
    /// from `init_states` (`[*shape]` each; `None`: the core's declared initial values).
    pub fn forward_all(
        &self,
        inputs: &[&Tensor],
        init_states: Option<&[&Tensor]>,
    ) -> candle_core::Result<ScanOutput> {
        let params: Vec<&Tensor> = self.params.iter().collect();
        scan_with(&self.kernel, inputs, init_states, &params, self.save_policy)
    }
}

/// The first output of the core for a single-input core.
impl Module for ScanLayer {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        first_output(self.forward_all(&[x], None)?)
    }
}

pub(crate) fn first_output(out: ScanOutput) -> candle_core::Result<Tensor> {
    out.outputs
        .into_iter()
        .next()
        .ok_or_else(|| Error::Neuron("the core has no outputs".into()).into())
}

fn param_names(g: &StepGraph) -> String {
    if g.params().is_empty() {
        return "(none)".into();
    }
    g.params()
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
