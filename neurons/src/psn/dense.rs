//! `PSN` and `MaskedPSN`: a learnable `[T, T]` mixing of the whole sequence.

use flexsn_compiler::ir::Surrogate;

use super::rng::{SplitMix64, kaiming_uniform_a_sqrt5};
use super::{
    DEFAULT_SURROGATE, Mode, PsnError, check_floats, check_len, check_surrogate, parse_u64,
    parse_usize, set_surrogate, steps_of, surrogate_values,
};
use crate::params::{NeuronError, ParamValue, fmt_f32, parse_f32};
use flexsn_runtime::{Backend, Jit, Mixing};

fn check_finite(module: &'static str, param: &'static str, v: &[f32]) -> Result<(), PsnError> {
    if v.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(PsnError::NonFinite { module, param })
    }
}

fn add_into(acc: &mut [f32], g: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(g) {
        *a += v;
    }
}

/// The settings PSN and MaskedPSN configs share: `T`, `seed`, `surrogate` and
/// `surrogate.<param>`; any other key is unknown to `class` (whose keys are `keys`).
fn set_shared(
    (class, keys): (&'static str, &[&str]),
    t: &mut usize,
    seed: &mut u64,
    surrogate: &mut Surrogate,
    key: &str,
    value: &str,
) -> Result<(), NeuronError> {
    match key {
        "T" | "t" => *t = parse_usize(class, key, value, 1)?,
        "seed" => *seed = parse_u64(class, key, value)?,
        _ => {
            if !set_surrogate(class, surrogate, key, value)? {
                return Err(NeuronError::UnknownParam {
                    neuron: class,
                    key: key.to_string(),
                    allowed: keys.join(", "),
                });
            }
        }
    }
    Ok(())
}

/// The `T` and `seed` entries of a PSN or MaskedPSN config's listing.
fn t_and_seed_values(t: usize, seed: u64) -> [ParamValue; 2] {
    [
        ParamValue::new(
            "T",
            t.to_string(),
            "sequence length; weight is [T, T], bias [T]",
        ),
        ParamValue::new(
            "seed",
            seed.to_string(),
            "seed of the initialisation (weight U(-1/sqrt(T), 1/sqrt(T)), bias -1)",
        ),
    ]
}

// =============================================================================================
// What PSN and MaskedPSN share

/// The weight `[T, T]` and blend factor `[T, T]` of a [`MaskedPSN`] (see [`MaskedPSN::blend`]).
struct Masked {
    weight: Vec<f32>,
    blend: Vec<f32>,
}

/// The learnable mixing of [`PSN`] and [`MaskedPSN`]: weight `[T, T]`, bias `[T]`, their
/// accumulated gradients, the backend, and the last multi-step training forward's input.
#[derive(Clone, Debug)]
struct Core {
    module: &'static str,
    surrogate: Surrogate,
    weight: Vec<f32>,
    bias: Vec<f32>,
    weight_grad: Vec<f32>,
    bias_grad: Vec<f32>,
    jit: Jit,
    training: bool,
    /// The last training multi-step forward's input and N, for backward.
    saved: Option<(Vec<f32>, usize)>,
}

impl Core {
    fn new(
        module: &'static str,
        surrogate: Surrogate,
        (weight, bias): (Vec<f32>, Vec<f32>),
        jit: Jit,
    ) -> Core {
        Core {
            module,
            surrogate,
            weight_grad: vec![0.0; weight.len()],
            bias_grad: vec![0.0; bias.len()],
            weight,
            bias,
            jit,
            training: true,
            saved: None,
        }
    }

    /// Checks `floats` (what a call is about to allocate, in f32 values: `[count, dims...]`
    /// groups) against the memory limit of the module's [`Jit`].
    fn check_memory(&self, floats: &[&[usize]], what: &str) -> Result<(), PsnError> {
        check_floats(&self.jit, floats, what)
    }

    /// The sequence length (the bias is `[T]`).
    fn t(&self) -> usize {
        self.bias.len()
    }

    fn replace(
        module: &'static str,
        param: &'static str,
        to: &mut [f32],
        v: &[f32],
    ) -> Result<(), PsnError> {
        check_len(param, to.len(), v.len())?;
        check_finite(module, param, v)?;
        to.copy_from_slice(v);
        Ok(())
    }

    fn set_weight(&mut self, w: &[f32]) -> Result<(), PsnError> {
        Core::replace(self.module, "weight", &mut self.weight, w)
    }

    fn set_bias(&mut self, b: &[f32]) -> Result<(), PsnError> {
        Core::replace(self.module, "bias", &mut self.bias, b)
    }

    fn zero_grad(&mut self) {
        self.weight_grad.fill(0.0);
        self.bias_grad.fill(0.0);
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
        if !training {
            self.saved = None;
        }
    }

    /// The mixing of `x` by `weight` (`[rows, cols]`) and `bias` (`[rows]`).
    fn mixing<'a>(
        &'a self,
        rows: usize,
        cols: usize,
        weight: &'a [f32],
        bias: &'a [f32],
    ) -> Mixing<'a> {
        Mixing {
            rows,
            cols,
            weight,
            bias,
            surrogate: self.surrogate,
        }
    }

    /// The whole-sequence mixing, by the module's own weight or a [`MaskedPSN`]'s masked one.
    fn full<'a>(&'a self, masked: Option<&'a Masked>) -> Mixing<'a> {
        let weight = masked.map_or(&self.weight[..], |m| &m.weight);
        self.mixing(self.t(), self.t(), weight, &self.bias)
    }

    /// Multi-step forward: spikes `[T, N]` of `x` (`[T, N]`) into `spikes`; keeps the input for
    /// backward when training.
    fn forward_multi(
        &mut self,
        masked: Option<&Masked>,
        x: &[f32],
        n: usize,
        spikes: &mut [f32],
    ) -> Result<(), PsnError> {
        let t = steps_of(self.module, x.len(), n)?;
        if t != self.t() {
            return Err(PsnError::SeqShape {
                module: self.module,
                len: x.len(),
                t: self.t(),
                n,
            });
        }
        if self.training {
            self.check_memory(&[&[1, x.len()]], "the input kept for backward")?;
        }
        self.full(masked).forward_into(x, n, &self.jit, spikes)?;
        self.saved = self.training.then(|| (x.to_vec(), n));
        Ok(())
    }

    /// Backward of the last multi-step forward: `d loss / d x` into `grad_x`, and the weight
    /// and bias gradients added to the accumulated ones (the weight's through the mask's blend
    /// when `masked`). What forward kept stays for another try when this fails.
    fn backward_multi(
        &mut self,
        masked: Option<&Masked>,
        grad_spike: &[f32],
        grad_x: &mut [f32],
    ) -> Result<(), PsnError> {
        let (x, n) = self.saved.take().ok_or(PsnError::NothingRecorded {
            module: self.module,
        })?;
        let (gw, gb) = match self
            .full(masked)
            .backward_into(&x, n, grad_spike, &self.jit, grad_x)
        {
            Ok(g) => g,
            Err(e) => {
                self.saved = Some((x, n));
                return Err(e.into());
            }
        };
        match masked {
            Some(m) => {
                for ((acc, &g), &b) in self.weight_grad.iter_mut().zip(&gw).zip(&m.blend) {
                    *acc += g * b;
                }
            }
            None => add_into(&mut self.weight_grad, &gw),
        }
        add_into(&mut self.bias_grad, &gb);
        Ok(())
    }
}

/// The public methods [`PSN`] and [`MaskedPSN`] share, on their `config` and `core` fields.
macro_rules! shared_methods {
    ($module:ident, $config:ident) => {
        impl $module {
            /// The configuration the module was built from.
            pub fn config(&self) -> &$config {
                &self.config
            }
            /// Time steps `T`.
            pub fn t(&self) -> usize {
                self.config.t
            }
            /// The runtime the time mixing runs on.
            pub fn jit(&self) -> &Jit {
                &self.core.jit
            }
            /// Moves the time mixing to `jit`'s backend.
            pub fn set_jit(&mut self, jit: Jit) {
                self.core.jit = jit;
            }
            /// The weight `[T, T]`, row-major (`W[i][j]`: how input step `j` drives output step
            /// `i`).
            pub fn weight(&self) -> &[f32] {
                &self.core.weight
            }
            /// The bias `[T]` (SpikingJelly's `[T, 1]`).
            pub fn bias(&self) -> &[f32] {
                &self.core.bias
            }
            /// Replaces the weight (`[T, T]`, finite).
            pub fn set_weight(&mut self, w: &[f32]) -> Result<(), PsnError> {
                self.core.set_weight(w)
            }
            /// Replaces the bias (`[T]`, finite).
            pub fn set_bias(&mut self, b: &[f32]) -> Result<(), PsnError> {
                self.core.set_bias(b)
            }
            #[doc = concat!(
                        "Gradient of the weight accumulated by every [`", stringify!($module),
                        "::backward`] since [`", stringify!($module), "::zero_grad`]."
                    )]
            pub fn weight_grad(&self) -> &[f32] {
                &self.core.weight_grad
            }
            /// Gradient of the bias, accumulated like the weight's.
            pub fn bias_grad(&self) -> &[f32] {
                &self.core.bias_grad
            }
            /// Zeroes the accumulated weight and bias gradients.
            pub fn zero_grad(&mut self) {
                self.core.zero_grad();
            }
        }
    };
}

// =============================================================================================
// PSN

/// Hyperparameters of a [`PSN`]: SpikingJelly's `PSN(T, surrogate_function=ATan())`, plus the
/// seed of the initialisation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PSNConfig {
    /// Sequence length (required by SpikingJelly; 4 when built by name without `T=`).
    pub t: usize,
    /// The spike's surrogate (its derivative is backward's).
    pub surrogate: Surrogate,
    /// Seed of the weight and bias initialisation.
    pub seed: u64,
}

impl Default for PSNConfig {
    fn default() -> Self {
        PSNConfig {
            t: 4,
            surrogate: DEFAULT_SURROGATE,
            seed: 0,
        }
    }
}

impl PSNConfig {
    /// SpikingJelly's class name.
    pub const CLASS: &'static str = "PSN";
    const KEYS: &'static [&'static str] = &["T", "seed", "surrogate", "surrogate.<param>"];

    /// `T` steps, SpikingJelly's defaults otherwise.
    pub fn new(t: usize) -> Self {
        PSNConfig {
            t,
            ..Default::default()
        }
    }
    /// With surrogate `s`.
    pub fn surrogate(mut self, s: Surrogate) -> Self {
        self.surrogate = s;
        self
    }
    /// With initialisation seed `seed`.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Applies one `key=value` setting (`T`, `seed`, `surrogate`, `surrogate.<param>`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), NeuronError> {
        let Self { t, seed, surrogate } = self;
        set_shared((Self::CLASS, Self::KEYS), t, seed, surrogate, key, value)
    }

    /// The settings with their current values.
    pub fn param_values(&self) -> Vec<ParamValue> {
        let mut v = Vec::from(t_and_seed_values(self.t, self.seed));
        v.extend(surrogate_values(&self.surrogate));
        v
    }

    /// SpikingJelly's initialisation, from `seed`: weight `[T, T]`, bias `[T]`.
    pub fn init_params(&self) -> (Vec<f32>, Vec<f32>) {
        let mut rng = SplitMix64::new(self.seed);
        (
            kaiming_uniform_a_sqrt5(&mut rng, self.t * self.t, self.t),
            vec![-1.0; self.t],
        )
    }

    /// The module, initialised from the seed, its time mixing on `backend`.
    pub fn build(&self, backend: Backend) -> Result<PSN, PsnError> {
        self.build_with_jit(&Jit::new(backend)?)
    }

    /// [`PSNConfig::build`] on any [`Jit`] (backend and options of your choice).
    pub fn build_with_jit(&self, jit: &Jit) -> Result<PSN, PsnError> {
        if self.t == 0 {
            return Err(PsnError::ZeroT {
                module: Self::CLASS,
            });
        }
        check_surrogate(Self::CLASS, &self.surrogate)?;
        check_floats(
            jit,
            &[&[2, self.t, self.t], &[2, self.t]],
            "PSN's parameters",
        )?;
        Ok(PSN {
            config: *self,
            core: Core::new(Self::CLASS, self.surrogate, self.init_params(), jit.clone()),
        })
    }
}

/// SpikingJelly's `PSN`: `S = Θ(W·X + b)` over a whole sequence `[T, N]`, multi-step only and
/// stateless. Holds its parameters and their accumulated gradients.
///
/// ```
/// use flexsn_neurons::psn::PSN;
///
/// let mut psn = PSN::new(4)?;                   // T = 4, ATan, seed 0
/// let x = vec![2.0f32; 4 * 3];                  // [T = 4, N = 3]
/// let s = psn.forward(&x, 3)?;
/// let gx = psn.backward(&vec![1.0; 12])?;       // d sum(S) / dX, accumulates dW and db
/// assert_eq!((s.len(), gx.len(), psn.weight_grad().len()), (12, 12, 16));
/// # Ok::<(), flexsn_neurons::psn::PsnError>(())
/// ```
#[derive(Clone, Debug)]
pub struct PSN {
    config: PSNConfig,
    core: Core,
}

shared_methods!(PSN, PSNConfig);

impl PSN {
    /// SpikingJelly's class name.
    pub const CLASS: &'static str = PSNConfig::CLASS;

    /// `PSN(T)` with SpikingJelly's defaults, seed 0, on the CPU GEMM path.
    pub fn new(t: usize) -> Result<PSN, PsnError> {
        PSNConfig::new(t).build(Backend::Cpu)
    }

    /// Always multi-step.
    pub fn step_mode(&self) -> Mode {
        Mode::Multi
    }
    /// Only [`Mode::Multi`] is accepted (SpikingJelly's PSN is a `MultiStepModule`).
    pub fn set_step_mode(&mut self, mode: Mode) -> Result<(), PsnError> {
        match mode {
            Mode::Multi => Ok(()),
            Mode::Single => Err(PsnError::MultiStepOnly {
                module: Self::CLASS,
            }),
        }
    }
    /// Training mode (default): forward keeps its input for backward.
    pub fn set_training(&mut self, training: bool) {
        self.core.set_training(training);
    }
    /// Drops what forward kept for backward (PSN has no other state).
    pub fn reset(&mut self) {
        self.core.saved = None;
    }

    /// Spikes `[T, N]` of `x_seq` (`[T, N]`, time-major, `n` neurons).
    pub fn forward(&mut self, x_seq: &[f32], n: usize) -> Result<Vec<f32>, PsnError> {
        self.core
            .check_memory(&[&[1, x_seq.len()]], "PSN forward's spikes")?;
        let mut s = vec![0.0; x_seq.len()];
        self.forward_into(x_seq, n, &mut s)?;
        Ok(s)
    }

    /// [`PSN::forward`] into a caller's buffer (`[T, N]`): no allocation of the output, which
    /// for large `N` costs as much as the mixing itself (fresh pages).
    pub fn forward_into(
        &mut self,
        x_seq: &[f32],
        n: usize,
        spikes: &mut [f32],
    ) -> Result<(), PsnError> {
        self.core.forward_multi(None, x_seq, n, spikes)
    }

    /// Backward of the last forward: returns `d loss / d x_seq` and adds `d loss / d weight` and
    /// `d loss / d bias` to the accumulated gradients. `grad_spike` is `[T, N]`.
    pub fn backward(&mut self, grad_spike: &[f32]) -> Result<Vec<f32>, PsnError> {
        self.core
            .check_memory(&[&[1, grad_spike.len()]], "PSN backward's input gradient")?;
        let mut gx = vec![0.0; grad_spike.len()];
        self.backward_into(grad_spike, &mut gx)?;
        Ok(gx)
    }

    /// [`PSN::backward`] writing `d loss / d x_seq` into a caller's buffer (`[T, N]`).
    pub fn backward_into(
        &mut self,
        grad_spike: &[f32],
        grad_x: &mut [f32],
    ) -> Result<(), PsnError> {
        self.core.backward_multi(None, grad_spike, grad_x)
    }
}

// =============================================================================================
// MaskedPSN

/// Hyperparameters of a [`MaskedPSN`]: SpikingJelly's
/// `MaskedPSN(k, T, lambda_init=0.0, surrogate_function=ATan(), step_mode="s")`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaskedPSNConfig {
    /// Width of the band mask: output step `i` sees input steps `i-k+1..=i`.
    pub k: usize,
    /// Time steps `T`.
    pub t: usize,
    /// Initial λ: 0 = no mask, 1 = the band mask fully applied.
    pub lambda_init: f32,
    /// The spike's surrogate (its derivative is backward's).
    pub surrogate: Surrogate,
    /// Single-step (`s`) or multi-step (`m`).
    pub step_mode: Mode,
    /// Seed of the weight and bias initialisation.
    pub seed: u64,
}

impl Default for MaskedPSNConfig {
    fn default() -> Self {
        MaskedPSNConfig {
            k: 2,
            t: 4,
            lambda_init: 0.0,
            surrogate: DEFAULT_SURROGATE,
            step_mode: Mode::Single,
            seed: 0,
        }
    }
}

impl MaskedPSNConfig {
    /// SpikingJelly's class name.
    pub const CLASS: &'static str = "MaskedPSN";
    const KEYS: &'static [&'static str] = &[
        "k",
        "T",
        "lambda_init",
        "step_mode",
        "seed",
        "surrogate",
        "surrogate.<param>",
    ];

    /// Band width `k` over `T` steps, SpikingJelly's defaults otherwise.
    pub fn new(k: usize, t: usize) -> Self {
        MaskedPSNConfig {
            k,
            t,
            ..Default::default()
        }
    }
    /// With initial λ `l`.
    pub fn lambda_init(mut self, l: f32) -> Self {
        self.lambda_init = l;
        self
    }
    /// With surrogate `s`.
    pub fn surrogate(mut self, s: Surrogate) -> Self {
        self.surrogate = s;
        self
    }
    /// With step mode `m`.
    pub fn step_mode(mut self, m: Mode) -> Self {
        self.step_mode = m;
        self
    }
    /// With initialisation seed `seed`.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets one setting by key (`k`, `T`, `lambda_init`, `surrogate`, ...).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), NeuronError> {
        match key {
            "k" => self.k = parse_usize(Self::CLASS, key, value, 1)?,
            "lambda_init" | "lambda" => self.lambda_init = parse_f32(Self::CLASS, key, value)?,
            "step_mode" => {
                self.step_mode = Mode::from_name(value).ok_or_else(|| {
                    crate::params::invalid(Self::CLASS, key, value, "expected s or m")
                })?
            }
            _ => set_shared(
                (Self::CLASS, Self::KEYS),
                &mut self.t,
                &mut self.seed,
                &mut self.surrogate,
                key,
                value,
            )?,
        }
        Ok(())
    }

    /// The settings with their current values.
    pub fn param_values(&self) -> Vec<ParamValue> {
        let [t, seed] = t_and_seed_values(self.t, self.seed);
        let mut v = vec![
            ParamValue::new(
                "k",
                self.k.to_string(),
                "band width: step i sees steps i-k+1..=i",
            ),
            t,
            ParamValue::new(
                "lambda_init",
                fmt_f32(self.lambda_init),
                "mask blend: W * (lambda*mask + (1-lambda)); W * mask when >= 1",
            ),
            ParamValue::new(
                "step_mode",
                self.step_mode.name(),
                "s (one step per call; needs lambda >= 1) or m (the whole sequence)",
            ),
            seed,
        ];
        v.extend(surrogate_values(&self.surrogate));
        v
    }

    /// SpikingJelly's initialisation, from `seed`: weight `[T, T]`, bias `[T]`.
    pub fn init_params(&self) -> (Vec<f32>, Vec<f32>) {
        PSNConfig::new(self.t).seed(self.seed).init_params()
    }

    /// The module, its time mixing on `backend`.
    pub fn build(&self, backend: Backend) -> Result<MaskedPSN, PsnError> {
        self.build_with_jit(&Jit::new(backend)?)
    }

    /// [`MaskedPSNConfig::build`] on any [`Jit`] (backend and options of your choice).
    pub fn build_with_jit(&self, jit: &Jit) -> Result<MaskedPSN, PsnError> {
        if self.t == 0 {
            return Err(PsnError::ZeroT {
                module: Self::CLASS,
            });
        }
        if self.k == 0 {
            return Err(PsnError::ZeroK {
                module: Self::CLASS,
            });
        }
        if !self.lambda_init.is_finite() {
            return Err(PsnError::NonFinite {
                module: Self::CLASS,
                param: "lambda",
            });
        }
        check_surrogate(Self::CLASS, &self.surrogate)?;
        check_floats(
            jit,
            &[&[2, self.t, self.t], &[2, self.t]],
            "MaskedPSN's parameters",
        )?;
        let mut m = MaskedPSN {
            config: *self,
            core: Core::new(Self::CLASS, self.surrogate, self.init_params(), jit.clone()),
            lambda: self.lambda_init,
            mode: Mode::Multi,
            history: Vec::new(),
            n: None,
            tape_from: 0,
        };
        m.set_step_mode(self.step_mode)?;
        Ok(m)
    }
}

/// SpikingJelly's `MaskedPSN`: a PSN whose weight is multiplied by a band mask of width `k`
/// blended by λ (`W * (λ·M + (1-λ))`, `W * M` once λ ≥ 1), so training can move from a full
/// PSN (λ = 0) to a causal, local one (λ = 1) by raising λ ([`MaskedPSN::set_lambda`]).
///
/// Multi-step: `S = Θ(W_masked·X + b)` over `[T, N]`. Single-step (λ ≥ 1 only): one step per
/// call, counting steps from the last [`reset`](MaskedPSN::reset); step `t` sees the last `k`
/// inputs; a call past step `T` is an error. Backward through single steps replays the steps
/// recorded since the last reset or backward (earlier inputs act as constants).
#[derive(Clone, Debug)]
pub struct MaskedPSN {
    config: MaskedPSNConfig,
    core: Core,
    lambda: f32,
    mode: Mode,
    /// Single-step: every input since reset (`time_step` of them), each `[N]`.
    history: Vec<Vec<f32>>,
    n: Option<usize>,
    /// Single-step: the first step not yet differentiated.
    tape_from: usize,
}

shared_methods!(MaskedPSN, MaskedPSNConfig);

impl MaskedPSN {
    /// SpikingJelly's class name.
    pub const CLASS: &'static str = MaskedPSNConfig::CLASS;

    /// `MaskedPSN(k, T)` with SpikingJelly's defaults (λ = 0, multi-step since single-step needs
    /// λ ≥ 1), seed 0, on the CPU GEMM path.
    pub fn new(k: usize, t: usize) -> Result<MaskedPSN, PsnError> {
        MaskedPSNConfig::new(k, t)
            .step_mode(Mode::Multi)
            .build(Backend::Cpu)
    }

    /// The band width `k`.
    pub fn k(&self) -> usize {
        self.config.k
    }
    /// Training mode: forward records what backward needs.
    pub fn set_training(&mut self, training: bool) {
        self.core.set_training(training);
        if !training {
            self.tape_from = self.history.len();
        }
    }
    /// The current λ (0: no mask, 1: the band mask fully applied).
    pub fn lambda(&self) -> f32 {
        self.lambda
    }
    /// Sets λ (SpikingJelly's `lambda_ = ...`), e.g. from a schedule during training. Lowering
    /// it below 1 in single-step mode is an error.
    pub fn set_lambda(&mut self, lambda: f32) -> Result<(), PsnError> {
        if !lambda.is_finite() {
            return Err(PsnError::NonFinite {
                module: Self::CLASS,
                param: "lambda",
            });
        }
        if self.mode == Mode::Single && lambda < 1.0 {
            return Err(PsnError::SingleStepLambda { lambda });
        }
        self.lambda = lambda;
        Ok(())
    }
    /// Single-step (`s`) or multi-step (`m`).
    pub fn step_mode(&self) -> Mode {
        self.mode
    }
    /// Switches step mode; single-step needs λ ≥ 1. Drops recorded steps and the step counter.
    pub fn set_step_mode(&mut self, mode: Mode) -> Result<(), PsnError> {
        if mode == Mode::Single && self.lambda < 1.0 {
            return Err(PsnError::SingleStepLambda {
                lambda: self.lambda,
            });
        }
        self.mode = mode;
        self.reset();
        Ok(())
    }
    /// Steps taken since the last reset (single-step mode).
    pub fn time_step(&self) -> usize {
        self.history.len()
    }
    /// Starts a new sequence: clears the step counter, the input queue and what was recorded.
    pub fn reset(&mut self) {
        self.history.clear();
        self.n = None;
        self.tape_from = 0;
        self.core.saved = None;
    }
    /// Keeps the step counter and queue but stops backward at this point (truncated BPTT).
    pub fn detach(&mut self) {
        self.tape_from = self.history.len();
        self.core.saved = None;
    }

    /// `mask0[i][j] = 1` iff `j <= i <= j + k - 1`.
    pub fn mask0(&self) -> Vec<f32> {
        let (t, k) = (self.config.t, self.config.k);
        let mut m = vec![0.0; t * t];
        for i in 0..t {
            for j in i.saturating_sub(k - 1)..=i {
                m[i * t + j] = 1.0;
            }
        }
        m
    }

    /// The factor each weight is multiplied by: `λ·mask0 + (1 - λ)` (in SpikingJelly's `f32`
    /// operation order), or `mask0` when λ ≥ 1.
    pub fn blend(&self) -> Vec<f32> {
        let l = self.lambda;
        self.mask0()
            .into_iter()
            .map(|m| if l >= 1.0 { m } else { l * m + (1.0 - l) * 1.0 })
            .collect()
    }

    /// The weight the mixing uses: `blend ⊙ W` (bit-identical to SpikingJelly's
    /// `masked_weight()`: the product is commutative in IEEE arithmetic).
    pub fn masked_weight(&self) -> Vec<f32> {
        self.masked().weight
    }

    /// The masked weight and its blend, after checking their memory (with the mask, three
    /// `[T, T]` buffers) and `more` (see [`Core::check_memory`]).
    fn masked_checked(&self, more: &[&[usize]], what: &str) -> Result<Masked, PsnError> {
        let t = self.config.t;
        let masks = [3, t, t];
        let mut floats: Vec<&[usize]> = vec![&masks];
        floats.extend_from_slice(more);
        self.core.check_memory(&floats, what)?;
        Ok(self.masked())
    }

    fn masked(&self) -> Masked {
        let blend = self.blend();
        let weight = blend
            .iter()
            .zip(&self.core.weight)
            .map(|(&b, &w)| b * w)
            .collect();
        Masked { weight, blend }
    }

    /// Multi-step: spikes `[T, N]` of `x` (`[T, N]`). Single-step: spikes `[N]` of one step `x`
    /// (`[N]`).
    pub fn forward(&mut self, x: &[f32], n: usize) -> Result<Vec<f32>, PsnError> {
        match self.mode {
            Mode::Multi => self.forward_multi(x, n),
            Mode::Single => self.forward_single(x, n),
        }
    }

    fn forward_multi(&mut self, x: &[f32], n: usize) -> Result<Vec<f32>, PsnError> {
        let masked = self.masked_checked(&[&[1, x.len()]], "MaskedPSN forward")?;
        let mut s = vec![0.0; x.len()];
        self.core.forward_multi(Some(&masked), x, n, &mut s)?;
        Ok(s)
    }

    /// The window of input steps step `t` reads: `t+1-k..=t` (clipped at 0).
    fn window(&self, t: usize) -> usize {
        (t + 1).saturating_sub(self.config.k)
    }

    fn forward_single(&mut self, x: &[f32], n: usize) -> Result<Vec<f32>, PsnError> {
        if self.lambda < 1.0 {
            return Err(PsnError::SingleStepLambda {
                lambda: self.lambda,
            });
        }
        if n == 0 {
            return Err(PsnError::NoNeurons);
        }
        check_len("input step", n, x.len())?;
        if let Some(prev) = self.n
            && prev != n
        {
            return Err(PsnError::ShapeChanged {
                module: Self::CLASS,
                expected: prev,
                got: n,
            });
        }
        let step = self.history.len();
        if step + 1 > self.config.t {
            return Err(PsnError::PastT {
                step: step + 1,
                t: self.config.t,
            });
        }
        let lo = self.window(step);
        let t = self.config.t;
        // The window's inputs, the step kept for backward, the spikes.
        let mw = self
            .masked_checked(&[&[step + 1 - lo + 2, n]], "MaskedPSN single step")?
            .weight;
        let row = &mw[step * t + lo..step * t + step + 1];
        let mut xs = Vec::with_capacity(row.len() * n);
        for h in &self.history[lo..] {
            xs.extend_from_slice(h);
        }
        xs.extend_from_slice(x);
        let core = &self.core;
        // Every step's window runs on the whole T x T mixing's CUDA module (compiled once).
        let s = core
            .mixing(1, row.len(), row, &core.bias[step..step + 1])
            .forward_within(&xs, n, &core.jit, (t, t))?;
        self.n = Some(n);
        self.history.push(x.to_vec());
        if !self.core.training {
            self.tape_from = self.history.len();
        }
        Ok(s)
    }

    /// Backward. Multi-step: of the last forward, `grad_spike` `[T, N]`, returns `d loss / d x`
    /// `[T, N]`. Single-step: of every step since the last reset or backward, `grad_spike` the
    /// concatenation of those steps' spike gradients (`[steps, N]`), returns the gradients of
    /// those steps' inputs (`[steps, N]`). Either way the weight and bias gradients are added to
    /// the accumulated ones (through the mask: `dW = dW_masked ⊙ blend`).
    pub fn backward(&mut self, grad_spike: &[f32]) -> Result<Vec<f32>, PsnError> {
        let t = self.config.t;
        let (from, to) = (self.tape_from, self.history.len());
        let lo = self.window(from);
        let masked = match self.mode {
            Mode::Multi => self.masked_checked(&[&[1, grad_spike.len()]], "MaskedPSN backward")?,
            // The window's weight and inputs.
            Mode::Single => self.masked_checked(
                &[&[to - from, to - lo], &[to - lo, self.n.unwrap_or(0)]],
                "MaskedPSN backward",
            )?,
        };
        match self.mode {
            Mode::Multi => {
                let mut gx = vec![0.0; grad_spike.len()];
                self.core
                    .backward_multi(Some(&masked), grad_spike, &mut gx)?;
                Ok(gx)
            }
            Mode::Single => {
                let n = match self.n {
                    Some(n) if to > from => n,
                    _ => {
                        return Err(PsnError::NothingRecorded {
                            module: Self::CLASS,
                        });
                    }
                };
                check_len("spike gradient", (to - from) * n, grad_spike.len())?;
                // Rows: the recorded steps; columns: every input they read.
                let (rows, cols) = (to - from, to - lo);
                let mut w = Vec::with_capacity(rows * cols);
                for r in from..to {
                    w.extend_from_slice(&masked.weight[r * t + lo..r * t + to]);
                }
                let mut xs = Vec::with_capacity(cols * n);
                for h in &self.history[lo..to] {
                    xs.extend_from_slice(h);
                }
                let core = &mut self.core;
                let g = core
                    .mixing(rows, cols, &w, &core.bias[from..to])
                    .backward_within(&xs, n, grad_spike, &core.jit, (t, t))?;
                for (ri, r) in (from..to).enumerate() {
                    for (ci, c) in (lo..to).enumerate() {
                        core.weight_grad[r * t + c] +=
                            g.weight[ri * cols + ci] * masked.blend[r * t + c];
                    }
                    core.bias_grad[r] += g.bias[ri];
                }
                self.tape_from = to;
                // Gradients of the inputs before the recorded steps are dropped.
                Ok(g.x[(from - lo) * n..].to_vec())
            }
        }
    }
}
