//! `SlidingPSN`: a learnable mix of the last `k` inputs, as a scan.
//!
//! `H[t] = Σ_{i=0}^{k-1} W_i · X[t-k+1+i] + b` (`X[<0] = 0`), `S[t] = Θ(H[t])`. The step graph
//! keeps the previous `k - 1` inputs in states `x_prev1..x_prev{k-1}` (a shift register,
//! starting at 0: `x_prev1' = x`, `x_prevj' = x_prev{j-1}`), and `W_i` (`weight_i`) and `b`
//! (`bias`) are learnable shared params. It is an ordinary scan: it runs on every backend, its
//! gradients (input, weight, bias) come from autodiff, and single-step mode is the same scan one
//! step at a time with the register carried by the [`Node`].

use flexsn_compiler::BuildError;
use flexsn_compiler::dsl::Expr;
use flexsn_compiler::ir::{ParamKind, StateInit, StepGraph, Surrogate};

use super::rng::{SplitMix64, kaiming_uniform_a_sqrt5};
use super::{
    DEFAULT_SURROGATE, Mode, PsnError, check_floats, parse_u64, parse_usize, set_surrogate,
    steps_of, surrogate_values,
};
use flexsn_runtime::{Jit, Neuron};

use crate::node::{Node, NodeBackend};
use crate::params::{NeuronError, ParamValue, builder, invalid, parse_bool};

/// The name of the bias param in SlidingPSN's step graph.
pub const SLIDING_BIAS: &str = "bias";

/// The name of weight `i`'s param in SlidingPSN's step graph (`weight_0` multiplies the oldest
/// input of the window, `weight_{k-1}` the current one).
pub fn sliding_weight_name(i: usize) -> String {
    format!("weight_{i}")
}

/// Hyperparameters of a [`SlidingPSN`]: SpikingJelly's
/// `SlidingPSN(k, exp_init=True, surrogate_function=ATan(), step_mode="s")`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlidingPSNConfig {
    /// Window length: each output sees the last `k` inputs.
    pub k: usize,
    /// `true`: weight `[2^-(k-1), …, 1/2, 1]`; `false`: `U(-1/√k, 1/√k)` from `seed`.
    pub exp_init: bool,
    /// The spike's surrogate (its derivative is backward's).
    pub surrogate: Surrogate,
    /// Single-step (`s`) or multi-step (`m`).
    pub step_mode: Mode,
    /// Seed of the initialisation when `exp_init` is false.
    pub seed: u64,
}

impl Default for SlidingPSNConfig {
    fn default() -> Self {
        SlidingPSNConfig {
            k: 2,
            exp_init: true,
            surrogate: DEFAULT_SURROGATE,
            step_mode: Mode::Single,
            seed: 0,
        }
    }
}

impl SlidingPSNConfig {
    /// SpikingJelly's class name.
    pub const CLASS: &'static str = "SlidingPSN";
    const KEYS: &'static [&'static str] = &[
        "k",
        "exp_init",
        "step_mode",
        "backend",
        "seed",
        "surrogate",
        "surrogate.<param>",
    ];

    /// Window `k`, SpikingJelly's defaults otherwise.
    pub fn new(k: usize) -> Self {
        SlidingPSNConfig {
            k,
            ..Default::default()
        }
    }
    /// With exponential (`true`) or uniform initialisation.
    pub fn exp_init(mut self, e: bool) -> Self {
        self.exp_init = e;
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

    /// Applies one `key=value` setting. `backend=gemm|conv` (SpikingJelly's two multi-step
    /// implementations, mathematically equal) is accepted and changes nothing: flexsn runs the
    /// scan.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), NeuronError> {
        match key {
            "k" => self.k = parse_usize(Self::CLASS, key, value, 1)?,
            "exp_init" => self.exp_init = parse_bool(Self::CLASS, key, value)?,
            "seed" => self.seed = parse_u64(Self::CLASS, key, value)?,
            "step_mode" => {
                self.step_mode = Mode::from_name(value)
                    .ok_or_else(|| invalid(Self::CLASS, key, value, "expected s or m"))?
            }
            "backend" => {
                if value != "gemm" && value != "conv" {
                    return Err(invalid(Self::CLASS, key, value, "expected gemm or conv"));
                }
            }
            _ => {
                if !set_surrogate(Self::CLASS, &mut self.surrogate, key, value)? {
                    return Err(NeuronError::UnknownParam {
                        neuron: Self::CLASS,
                        key: key.to_string(),
                        allowed: Self::KEYS.join(", "),
                    });
                }
            }
        }
        Ok(())
    }

    /// The settings with their current values.
    pub fn param_values(&self) -> Vec<ParamValue> {
        let mut v = vec![
            ParamValue::new(
                "k",
                self.k.to_string(),
                "window: H[t] = sum_i weight[i] * x[t-k+1+i] + bias",
            ),
            ParamValue::new(
                "exp_init",
                self.exp_init.to_string(),
                "weight [2^-(k-1), ..., 1/2, 1]; false: U(-1/sqrt(k), 1/sqrt(k))",
            ),
            ParamValue::new(
                "step_mode",
                self.step_mode.name(),
                "s (one step per call) or m (a sequence per call)",
            ),
            ParamValue::new(
                "seed",
                self.seed.to_string(),
                "seed of the initialisation when exp_init is false",
            ),
        ];
        v.extend(surrogate_values(&self.surrogate));
        v
    }

    /// SpikingJelly's initial weight `[k]` and bias (-1).
    pub fn init_params(&self) -> (Vec<f32>, f32) {
        let k = self.k;
        let w = if self.exp_init {
            let mut w = vec![0.0f32; k];
            if k > 0 {
                w[k - 1] = 1.0;
                for i in (0..k - 1).rev() {
                    w[i] = w[i + 1] / 2.0;
                }
            }
            w
        } else {
            kaiming_uniform_a_sqrt5(&mut SplitMix64::new(self.seed), k, k)
        };
        (w, -1.0)
    }

    /// The step graph: input `x`, states `x_prev1..x_prev{k-1}` (0 initially), learnable shared
    /// params `weight_0..weight_{k-1}` and `bias`, output `spike`.
    pub fn step_graph(&self) -> Result<StepGraph, BuildError> {
        self.window_graph(self.k)
    }

    /// The taps a run of `steps` steps from zero states can reach: `min(k, steps)` (at least 1).
    /// Step `t` reads the inputs `t, t-1, …, t-k+1`, and those before step 0 are 0, so the
    /// weights older than this multiply zeros only (their gradient is exactly 0).
    pub fn window_for(&self, steps: usize) -> usize {
        self.k.min(steps).max(1)
    }

    /// The step graph of the newest `w` taps (`1 <= w <= k`, clamped): states
    /// `x_prev1..x_prev{w-1}`, params `weight_{k-w}..weight_{k-1}` (named as in the full
    /// graph) and `bias`. From zero states it computes what [`SlidingPSNConfig::step_graph`]
    /// does for as long as the inputs it has seen fit in it (`w` steps, or any number when
    /// `w = k`); `window_graph(k)` is the full graph.
    pub fn window_graph(&self, w: usize) -> Result<StepGraph, BuildError> {
        let k = self.k.max(1);
        let w = w.clamp(1, k);
        let window = if w == k {
            String::new()
        } else {
            format!(", window of the newest {w}")
        };
        let b = builder(
            Self::CLASS,
            format!(
                "SpikingJelly SlidingPSN: H[t] = sum_{{i<{k}}} weight_i * x[t-{}+i] + bias, spike = Θ(H) (surrogate {}); states hold the previous {} input(s){window}",
                k - 1,
                self.surrogate,
                w - 1
            ),
        );
        let x = b.input("x");
        let regs: Vec<Expr> = (1..w)
            .map(|j| b.state(&format!("x_prev{j}"), StateInit::Const(0.0)))
            .collect();
        let first = k - w;
        let weights: Vec<Expr> = (first..k)
            .map(|i| b.param(&sliding_weight_name(i), ParamKind::Shared, true))
            .collect();
        let bias = b.param(SLIDING_BIAS, ParamKind::Shared, true);
        // weight_i multiplies x[t - (k-1-i)]: the register j = k-1-i (0 = the current input).
        let tap = |i: usize| {
            let j = k - 1 - i;
            if j == 0 { x } else { regs[j - 1] }
        };
        let mut h = weights[0] * tap(first);
        for (i, wi) in weights.iter().enumerate().skip(1) {
            h = h + *wi * tap(first + i);
        }
        let s = (h + bias).spike(self.surrogate);
        b.output(crate::SPIKE_OUTPUT, s);
        for j in 1..w {
            let prev = if j == 1 { x } else { regs[j - 2] };
            b.set_state(&format!("x_prev{j}"), prev);
        }
        b.build()
    }

    /// The module on `backend`, parameters from [`SlidingPSNConfig::init_params`].
    pub fn build(&self, backend: NodeBackend) -> Result<SlidingPSN, PsnError> {
        self.build_with_jit(&Jit::new(backend)?)
    }

    /// [`SlidingPSNConfig::build`] on any [`Jit`] (backend and options of your choice).
    pub fn build_with_jit(&self, jit: &Jit) -> Result<SlidingPSN, PsnError> {
        self.check()?;
        // The weight, and its copy in the module.
        check_floats(jit, &[&[2, self.k]], "SlidingPSN's weight")?;
        let window = self.k.min(INITIAL_WINDOW);
        let node = Node::with_jit(&self.window_graph(window)?, jit)?;
        self.finish(node, window)
    }

    fn check(&self) -> Result<(), PsnError> {
        if self.k == 0 {
            return Err(PsnError::ZeroK {
                module: Self::CLASS,
            });
        }
        Ok(())
    }

    fn finish(&self, mut node: Node, window: usize) -> Result<SlidingPSN, PsnError> {
        node.set_step_mode(self.step_mode)?;
        let (w, b) = self.init_params();
        let mut m = SlidingPSN {
            config: *self,
            node,
            window,
            weight: vec![],
        };
        m.set_weight(&w)?;
        m.set_bias(b)?;
        Ok(m)
    }
}

/// The window a [`SlidingPSN`] starts with (all of it when `k` is at most this): short runs
/// never need another compile.
const INITIAL_WINDOW: usize = 64;

/// `jit.compile(&SlidingPSNConfig::new(k))` compiles the scan.
impl Neuron for SlidingPSNConfig {
    fn step_graph(&self) -> Result<StepGraph, BuildError> {
        SlidingPSNConfig::step_graph(self)
    }
}

impl From<BuildError> for PsnError {
    fn from(e: BuildError) -> Self {
        PsnError::from(crate::node::NodeError::from(e))
    }
}

/// SpikingJelly's `SlidingPSN`: spikes from a learnable mix of the last `k` inputs plus a bias,
/// in single-step (default) or multi-step mode; a [`Node`] over
/// [`SlidingPSNConfig::window_graph`], with the weight gathered as a `[k]` vector.
///
/// The node runs only the newest taps the steps since the last reset can reach (at least
/// `min(k, 64)`, grown as the steps add up, at most `k`), so the work per step is bounded by
/// the steps run, not by `k`: older weights multiply zeros, and their gradient stays exactly 0.
/// The results are those of the full `k`-tap scan.
///
/// ```
/// use flexsn_neurons::node::{NodeBackend, StepMode};
/// use flexsn_neurons::psn::SlidingPSNConfig;
///
/// let mut sp = SlidingPSNConfig::new(3).step_mode(StepMode::Multi).build(NodeBackend::Interpreter)?;
/// assert_eq!(sp.weight()?, vec![0.25, 0.5, 1.0]);
/// let s = sp.forward(&[1.0f32, 1.0, 1.0, 1.0], 2)?;   // T = 2, N = 2
/// assert_eq!(s, vec![1.0, 1.0, 1.0, 1.0]);             // 1·1 - 1 = 0 fires; 1.5 - 1 fires
/// # Ok::<(), flexsn_neurons::psn::PsnError>(())
/// ```
#[derive(Debug)]
pub struct SlidingPSN {
    config: SlidingPSNConfig,
    node: Node,
    /// The taps the node's graph has: weights `k - window .. k` live in the node.
    window: usize,
    /// The whole weight `[k]`; the node holds the window's part (and is what counts for it).
    weight: Vec<f32>,
}

impl SlidingPSN {
    /// SpikingJelly's class name.
    pub const CLASS: &'static str = SlidingPSNConfig::CLASS;

    /// `SlidingPSN(k)`: exp-init weight, ATan, single-step, on the interpreter.
    pub fn new(k: usize) -> Result<SlidingPSN, PsnError> {
        SlidingPSNConfig::new(k).build(NodeBackend::Interpreter)
    }

    /// The taps the node runs now (the newest `window` weights; `k` once it has grown to all).
    pub fn window(&self) -> usize {
        self.window
    }

    /// Grows the node's window so that a call of `steps` more steps, and what the registers
    /// must keep after it, fit: the registers hold the last `window - 1` inputs and those
    /// before the reset are 0, so `window > time_step` (or `window = k`) loses nothing.
    fn fit_window(&mut self, steps: usize) -> Result<(), PsnError> {
        let k = self.config.k;
        let needed = k.min(
            self.node
                .time_step()
                .saturating_add(steps)
                .saturating_add(1),
        );
        if needed <= self.window {
            return Ok(());
        }
        // Doubling: a run of single steps compiles O(log k) windows.
        let w = needed.max(self.window.saturating_mul(2)).min(k);
        let graph = self.config.window_graph(w)?;
        let weight = &self.weight;
        self.node.extend_graph(graph, |name| {
            (k - w..k)
                .find(|&i| sliding_weight_name(i) == name)
                .map(|i| vec![weight[i]])
        })?;
        self.window = w;
        Ok(())
    }

    /// The configuration the module was built from.
    pub fn config(&self) -> &SlidingPSNConfig {
        &self.config
    }
    /// The window length `k`.
    pub fn k(&self) -> usize {
        self.config.k
    }
    /// The node running the scan (states, step mode, backend, recorded steps). Its graph is the
    /// current window ([`SlidingPSN::window`]): registers `x_prev1..` and weights of that window.
    pub fn node(&self) -> &Node {
        &self.node
    }
    /// The node that runs the scan, mutably. Calls made on it directly run the current window
    /// only; [`SlidingPSN::forward`] grows the window first.
    pub fn node_mut(&mut self) -> &mut Node {
        &mut self.node
    }
    /// Single-step (`s`) or multi-step (`m`).
    pub fn step_mode(&self) -> Mode {
        self.node.step_mode()
    }
    /// Sets the step mode.
    pub fn set_step_mode(&mut self, m: Mode) -> Result<(), PsnError> {
        Ok(self.node.set_step_mode(m)?)
    }
    /// Training mode: forward records what backward needs.
    pub fn set_training(&mut self, t: bool) {
        self.node.set_training(t);
    }
    /// Forgets the state and the recorded steps.
    pub fn reset(&mut self) {
        self.node.reset();
    }
    /// Keeps the state, forgets the recorded steps (truncated backpropagation).
    pub fn detach(&mut self) {
        self.node.detach();
    }
    /// Zeroes the accumulated weight and bias gradients.
    pub fn zero_grad(&mut self) {
        self.node.zero_grad();
    }

    fn scalar(&self, name: &str) -> Result<f32, PsnError> {
        Ok(self
            .node
            .param(name)?
            .and_then(|v| v.first().copied())
            .unwrap_or(0.0))
    }

    /// The index of the first weight the node holds.
    fn first_tap(&self) -> usize {
        self.config.k - self.window
    }

    /// The weight `[k]` (`weight[k-1]` multiplies the current input).
    pub fn weight(&self) -> Result<Vec<f32>, PsnError> {
        let first = self.first_tap();
        let mut w = self.weight[..first].to_vec();
        for i in first..self.config.k {
            w.push(self.scalar(&sliding_weight_name(i))?);
        }
        Ok(w)
    }
    /// The bias.
    pub fn bias(&self) -> Result<f32, PsnError> {
        self.scalar(SLIDING_BIAS)
    }
    /// Sets the weight `[k]`.
    pub fn set_weight(&mut self, w: &[f32]) -> Result<(), PsnError> {
        if w.len() != self.config.k {
            return Err(PsnError::Len {
                what: "weight",
                expected: self.config.k,
                got: w.len(),
            });
        }
        if w.iter().any(|v| !v.is_finite()) {
            return Err(PsnError::NonFinite {
                module: Self::CLASS,
                param: "weight",
            });
        }
        let first = self.first_tap();
        for (i, &v) in w.iter().enumerate().skip(first) {
            self.node.set_param(&sliding_weight_name(i), &[v])?;
        }
        self.weight = w.to_vec();
        Ok(())
    }
    /// Sets the bias.
    pub fn set_bias(&mut self, b: f32) -> Result<(), PsnError> {
        if !b.is_finite() {
            return Err(PsnError::NonFinite {
                module: Self::CLASS,
                param: "bias",
            });
        }
        Ok(self.node.set_param(SLIDING_BIAS, &[b])?)
    }

    fn grad_scalar(&self, name: &str) -> Result<f32, PsnError> {
        Ok(self
            .node
            .param_grad(name)?
            .and_then(|v| v.first().copied())
            .unwrap_or(0.0))
    }
    /// Accumulated gradient of the weight `[k]` (0 for the weights outside the window: no step
    /// run so far reached them).
    pub fn weight_grad(&self) -> Result<Vec<f32>, PsnError> {
        let first = self.first_tap();
        let mut g = vec![0.0; first];
        for i in first..self.config.k {
            g.push(self.grad_scalar(&sliding_weight_name(i))?);
        }
        Ok(g)
    }
    /// Accumulated gradient of the bias.
    pub fn bias_grad(&self) -> Result<f32, PsnError> {
        self.grad_scalar(SLIDING_BIAS)
    }

    /// Spikes of `x`: `[N]` per call in single-step mode, `[T, N]` in multi-step mode.
    pub fn forward(&mut self, x: &[f32], n: usize) -> Result<Vec<f32>, PsnError> {
        let steps = match self.node.step_mode() {
            Mode::Multi => steps_of(Self::CLASS, x.len(), n)?,
            Mode::Single => 1,
        };
        self.fit_window(steps)?;
        Ok(self.node.forward(&[x], n)?.remove(0))
    }

    /// Backward over the steps recorded since the last reset/backward/detach: `grad_spike` is
    /// `[steps, N]`; returns `d loss / d x` for those steps and accumulates the weight and bias
    /// gradients.
    pub fn backward(&mut self, grad_spike: &[f32]) -> Result<Vec<f32>, PsnError> {
        Ok(self.node.backward(&[Some(grad_spike)])?.inputs.remove(0))
    }
}
