//! SpikingJelly's `PSN` and `MaskedPSN` as candle layers: `S = Θ(W·X + b)` over the whole
//! sequence. The mixing `W·X + b` is candle's matrix product (its autograd gives `dW`, `db`,
//! `dX`); the firing `Θ` with its surrogate gradient is a flexsn kernel (a stateless one-input
//! core run through [`scan`]), so the spikes and surrogate derivatives are flexsn's.

use std::sync::Arc;

use candle_core::Tensor;
use candle_nn::{Init, Module, VarBuilder};
use flexsn_compiler::dsl::CoreBuilder;
use flexsn_compiler::ir::Surrogate;
use flexsn_neurons::node::StepMode;
use flexsn_neurons::psn::{MaskedPSNConfig, PSNConfig};
use flexsn_runtime::{Backend, Kernel};

use crate::error::{Error, check_f32};
use crate::layer::default_jit;
use crate::op::scan;

/// The compiled `Θ(h)` with `surrogate`'s derivative backward.
fn fire_kernel(surrogate: Surrogate) -> candle_core::Result<Arc<Kernel>> {
    let b = CoreBuilder::new("psn_fire");
    let h = b.input("h");
    b.output("spike", h.spike(surrogate));
    let g = b.build().map_err(|e| Error::Neuron(e.to_string()))?;
    Ok(Arc::new(default_jit()?.compile(&g).map_err(Error::from)?))
}

/// The learnable mixing `W·X + b` and the firing kernel, shared by both layers.
#[derive(Clone, Debug)]
struct Mix {
    t: usize,
    weight: Tensor,
    bias: Tensor,
    fire: Arc<Kernel>,
}

impl Mix {
    /// `weight` `[T, T]` (SpikingJelly's `kaiming_uniform_(a=√5)`: `U(±1/√T)`) and `bias` `[T]`
    /// (-1) from `vb`.
    fn new(t: usize, surrogate: Surrogate, vb: &VarBuilder) -> candle_core::Result<Mix> {
        if t == 0 {
            return Err(Error::Neuron("PSN: T = 0; it needs at least one time step".into()).into());
        }
        let bound = 1.0 / (t as f64).sqrt();
        Ok(Mix {
            t,
            weight: vb.get_with_hints(
                (t, t),
                "weight",
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            )?,
            bias: vb.get_with_hints(t, "bias", Init::Const(-1.0))?,
            fire: fire_kernel(surrogate)?,
        })
    }

    /// Spikes `[T, *shape]` of `x` `[T, *shape]` mixed by `weight` `[T, T]`.
    fn forward(&self, weight: &Tensor, x: &Tensor) -> candle_core::Result<Tensor> {
        check_f32("x_seq", x)?;
        let dims = x.dims().to_vec();
        if dims.first() != Some(&self.t) || dims.len() < 2 {
            return Err(Error::Shape {
                what: "x_seq".into(),
                expected: format!("[T = {}, ...]", self.t),
                got: dims,
            }
            .into());
        }
        let n = x.elem_count() / self.t;
        let x2 = x.reshape((self.t, n))?;
        let h = weight
            .matmul(&x2)?
            .broadcast_add(&self.bias.reshape((self.t, 1))?)?;
        let s = scan(&self.fire, &[&h], None, &[])?;
        crate::layer::first_output(s)?.reshape(dims)
    }
}

/// SpikingJelly's `PSN(T)`: every output step sees every input step through a learnable
/// `[T, T]` weight; `weight` and `bias` are `Var`s.
#[derive(Clone, Debug)]
pub struct PSN {
    config: PSNConfig,
    mix: Mix,
}

impl PSN {
    /// The layer for `config` (its `seed` is not used: the weights come from `vb`).
    pub fn new(config: PSNConfig, vb: VarBuilder) -> candle_core::Result<PSN> {
        let mix = Mix::new(config.t, config.surrogate, &vb)?;
        Ok(PSN { config, mix })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &PSNConfig {
        &self.config
    }

    /// `[T, T]`.
    pub fn weight(&self) -> &Tensor {
        &self.mix.weight
    }

    /// `[T]`.
    pub fn bias(&self) -> &Tensor {
        &self.mix.bias
    }
}

impl Module for PSN {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.mix.forward(&self.mix.weight, x)
    }
}

/// SpikingJelly's `MaskedPSN(k, T)`, multi-step: the weight is multiplied by the blend
/// `λ·mask + (1 - λ)` of a causal band mask of width `k` ([`MaskedPSN::set_lambda`] moves λ
/// from 0, a full PSN, to 1, a local causal one). Gradients reach `weight` through the blend.
#[derive(Clone, Debug)]
pub struct MaskedPSN {
    config: MaskedPSNConfig,
    mix: Mix,
    /// The blend for the current λ, `[T, T]` (a constant).
    blend: Tensor,
    lambda: f32,
}

impl MaskedPSN {
    /// The layer for `config` (its `seed` is not used: the weights come from `vb`).
    pub fn new(config: MaskedPSNConfig, vb: VarBuilder) -> candle_core::Result<MaskedPSN> {
        let mix = Mix::new(config.t, config.surrogate, &vb)?;
        let mut m = MaskedPSN {
            config,
            blend: mix.weight.zeros_like()?,
            mix,
            lambda: f32::NAN,
        };
        m.set_lambda(config.lambda_init)?;
        Ok(m)
    }

    /// Sets λ (e.g. from a schedule during training); the blend follows flexsn-neurons'
    /// `MaskedPSN::blend`, in SpikingJelly's float order.
    pub fn set_lambda(&mut self, lambda: f32) -> candle_core::Result<()> {
        // The layer runs whole sequences (multi-step), whatever the config's step mode.
        let cfg = self.config.lambda_init(lambda).step_mode(StepMode::Multi);
        let reference = cfg
            .build(Backend::Cpu)
            .map_err(|e| Error::Neuron(e.to_string()))?;
        let t = self.config.t;
        self.blend = Tensor::from_vec(reference.blend(), (t, t), self.mix.weight.device())?;
        self.lambda = lambda;
        Ok(())
    }

    /// λ.
    pub fn lambda(&self) -> f32 {
        self.lambda
    }

    /// The hyperparameters (`lambda_init` as given at construction).
    pub fn config(&self) -> &MaskedPSNConfig {
        &self.config
    }

    /// `[T, T]` (before masking).
    pub fn weight(&self) -> &Tensor {
        &self.mix.weight
    }

    /// `[T]`.
    pub fn bias(&self) -> &Tensor {
        &self.mix.bias
    }
}

impl Module for MaskedPSN {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let w = self.mix.weight.mul(&self.blend)?;
        self.mix.forward(&w, x)
    }
}
