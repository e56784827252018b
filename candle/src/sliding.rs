//! SpikingJelly's `SlidingPSN` as a candle layer that runs only the taps a call can reach.

use std::sync::Arc;

use candle_core::Tensor;
use candle_nn::{Init, Module, VarBuilder};
use flexsn_neurons::Builtin;
use flexsn_neurons::psn::{SLIDING_BIAS, SlidingPSNConfig, sliding_weight_name};
use flexsn_runtime::{Jit, SavePolicy};

use crate::error::Error;
use crate::layer::{ScanLayer, default_jit};

/// SpikingJelly's `SlidingPSN`: spikes of a learnable mix of the last `k` inputs plus a bias,
/// as a scan; `k` weight `Var`s (`weight_0` … `weight_{k-1}`, the last one multiplying the
/// current input) and a `bias` `Var`.
///
/// Every call starts from zero registers, so a call of `T` steps never reaches the weights
/// older than the newest `min(k, T)`: only those enter the computation (the scan of
/// [`SlidingPSNConfig::window_graph`]), and the cost of a call does not grow with `k`. The
/// results are those of the full `k`-tap scan; the older weights' gradient is exactly 0 (they
/// are not in the loss's graph, so a `GradStore` has no entry for them).
#[derive(Clone, Debug)]
pub struct SlidingPSN {
    config: SlidingPSNConfig,
    /// `weight_0 … weight_{k-1}`.
    weights: Vec<Tensor>,
    bias: Tensor,
    jit: Jit,
    save_policy: SavePolicy,
}

impl SlidingPSN {
    /// The layer for `config`; its weights and bias are `Var`s of `vb`, initialised as
    /// SpikingJelly does (`exp_init`: `2^-(k-1-i)`).
    pub fn new(config: SlidingPSNConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        if config.k == 0 {
            return Err(Error::Neuron("SlidingPSN needs k >= 1".into()).into());
        }
        let mut weights = Vec::with_capacity(config.k);
        let mut bias = None;
        for (name, v) in Builtin::SlidingPsn(config).initial_params() {
            let init = Init::Const(f64::from(v[0]));
            let var = vb.get_with_hints(1, &name, init)?;
            if name == SLIDING_BIAS {
                bias = Some(var);
            } else {
                weights.push(var);
            }
        }
        let bias = bias.ok_or_else(|| Error::Neuron("SlidingPSN has no bias".into()))?;
        let jit = default_jit()?;
        Ok(SlidingPSN {
            config,
            weights,
            bias,
            save_policy: SavePolicy::States,
            jit,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &SlidingPSNConfig {
        &self.config
    }

    /// The weight `Var`s `[k]` (`weight_{k-1}` multiplies the current input) and the bias.
    pub fn params(&self) -> (&[Tensor], &Tensor) {
        (&self.weights, &self.bias)
    }

    /// The scan layer a call of `t` steps runs: the newest `min(k, t)` taps
    /// ([`SlidingPSNConfig::window_graph`]) with their `Var`s. Its initial states are the
    /// window's registers; those beyond it are 0.
    pub fn layer(&self, t: usize) -> candle_core::Result<ScanLayer> {
        let c = &self.config;
        let graph = c
            .window_graph(c.window_for(t))
            .map_err(|e| Error::Neuron(e.to_string()))?;
        let kernel = Arc::new(self.jit.compile(&graph).map_err(Error::from)?);
        let params = kernel
            .graph()
            .params()
            .iter()
            .map(|d| self.param(&d.name))
            .collect::<Result<Vec<_>, _>>()?;
        ScanLayer::from_kernel(kernel, params)?.with_save_policy(self.save_policy)
    }

    /// The `Var` of param `name` of the full graph.
    fn param(&self, name: &str) -> Result<Tensor, Error> {
        if name == SLIDING_BIAS {
            return Ok(self.bias.clone());
        }
        name.strip_prefix("weight_")
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|&i| sliding_weight_name(i) == name)
            .and_then(|i| self.weights.get(i).cloned())
            .ok_or_else(|| Error::Neuron(format!("SlidingPSN has no param `{name}`")))
    }

    /// The layer keeping only every `K`-th state for backward under `checkpoint:K` (see
    /// [`ScanLayer::with_save_policy`]).
    pub fn with_save_policy(mut self, policy: SavePolicy) -> candle_core::Result<Self> {
        policy.check().map_err(|e| Error::Neuron(e.to_string()))?;
        self.save_policy = policy;
        Ok(self)
    }
}

/// Spikes `[T, *shape]` for input `[T, *shape]`.
impl Module for SlidingPSN {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let t = x.dims().first().copied().unwrap_or(0);
        self.layer(t)?.forward(x)
    }
}
