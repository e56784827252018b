//! IF, LIF and PLIF: SpikingJelly's `IFNode`, `LIFNode` and `ParametricLIFNode` as step graphs.
//!
//! Each step is charge → fire → reset, with the float operations in the order of SpikingJelly's
//! torch code (see the spec's Appendix A), so that the interpreter reproduces its forward bits:
//!
//! | neuron | charge |
//! |---|---|
//! | IF | `h = v + x` |
//! | LIF, decay_input | `h = v + (x - (v - vr)) / tau` |
//! | LIF, !decay_input | `h = v - (v - vr) / tau + x` |
//! | PLIF, decay_input | `h = v + (x - (v - vr)) * sigmoid(w)` |
//! | PLIF, !decay_input | `h = v - (v - vr) * sigmoid(w) + x` |
//!
//! with `vr = v_reset` (0.0 for soft reset), then `s = sg(h - v_threshold)` and the reset of
//! [`FireReset`]. Every graph has one input `x`, one state `v` (initial value `v_reset` for hard
//! reset, 0.0 for soft reset) and one output `spike`; PLIF adds the learnable shared param `w`.

use flexsn_compiler::BuildError;
use flexsn_compiler::dsl::Expr;
use flexsn_compiler::ir::{ParamKind, StateInit, StepGraph, Surrogate};

use crate::params::{
    FireReset, NeuronError, ParamValue, builder, fmt_f32, invalid, parse_bool, parse_f32, parse_f64,
};

/// Builder methods for the [`FireReset`] fields, shared by the spiking neurons.
macro_rules! fire_reset_methods {
    () => {
        /// Firing threshold (default 1.0).
        pub fn v_threshold(mut self, v: f32) -> Self {
            self.fire.v_threshold = v;
            self
        }
        /// `Some(v)`: hard reset to `v` (default `Some(0.0)`); `None`: soft reset.
        pub fn v_reset(mut self, v: Option<f32>) -> Self {
            self.fire.v_reset = v;
            self
        }
        /// Cut the gradient through the reset's dependence on the spike (default false).
        pub fn detach_reset(mut self, d: bool) -> Self {
            self.fire.detach_reset = d;
            self
        }
        /// The surrogate gradient (default `Sigmoid { alpha: 4.0 }`).
        pub fn surrogate(mut self, s: Surrogate) -> Self {
            self.fire.surrogate = s;
            self
        }
        /// `false`: use the surrogate's smooth primitive as a real-valued spike (default true).
        pub fn spiking(mut self, s: bool) -> Self {
            self.fire.spiking = s;
            self
        }
    };
}

/// The spike output and the membrane state of a spiking neuron's graph.
pub const SPIKE_OUTPUT: &str = "spike";
/// The membrane-potential state of every built-in neuron's graph.
pub const V_STATE: &str = "v";

fn finish<'b>(
    b: &'b flexsn_compiler::dsl::CoreBuilder,
    fire: &FireReset,
    h: Expr<'b>,
) -> (Expr<'b>, Expr<'b>) {
    let (s, v_next) = fire.fire_reset(h);
    b.output(SPIKE_OUTPUT, s);
    b.set_state(V_STATE, v_next);
    (s, v_next)
}

/// The charge of LIF and PLIF, where `decay(e)` scales `e` by `1/tau`: `h = v + decay(x - (v -
/// vr))` with `decay_input`, else `h = v - decay(v - vr) + x` (SpikingJelly's operation order).
pub(crate) fn leaky_charge<'b>(
    decay_input: bool,
    x: Expr<'b>,
    v: Expr<'b>,
    vr: f32,
    decay: impl Fn(Expr<'b>) -> Expr<'b>,
) -> Expr<'b> {
    if decay_input {
        v + decay(x - (v - vr))
    } else {
        v - decay(v - vr) + x
    }
}

/// The description of a LIF-like graph: `decay` is how the charge scales by `1/tau` (`/ tau`,
/// `* r`), `note` follows the formula, `tau` is the time-constant setting as `key=value`.
fn leaky_description(
    class: &str,
    decay_input: bool,
    decay: &str,
    note: &str,
    tau: &str,
    fire: &FireReset,
) -> String {
    let h = if decay_input {
        format!("h = v + (x - (v - vr)) {decay}")
    } else {
        format!("h = v - (v - vr) {decay} + x")
    };
    format!(
        "SpikingJelly {class}: {h}{note} ({tau}, decay_input={}, {})",
        if decay_input { "True" } else { "False" },
        fire.describe()
    )
}

/// A time constant's number type: LIF's `tau` is an `f32` tensor scalar, PLIF's `init_tau` a
/// Python float.
trait TimeConstant: Copy + Into<f64> {
    fn parse(neuron: &'static str, key: &str, value: &str) -> Result<Self, NeuronError>;
}

impl TimeConstant for f32 {
    fn parse(neuron: &'static str, key: &str, value: &str) -> Result<Self, NeuronError> {
        parse_f32(neuron, key, value)
    }
}

impl TimeConstant for f64 {
    fn parse(neuron: &'static str, key: &str, value: &str) -> Result<Self, NeuronError> {
        parse_f64(neuron, key, value)
    }
}

/// Applies a [`FireReset`] setting and validates the result; `own` lists the neuron's other
/// keys for the error when `key` is not a shared one either.
fn set_fire(
    fire: &mut FireReset,
    neuron: &'static str,
    own: &[&str],
    key: &str,
    value: &str,
) -> Result<(), NeuronError> {
    if !fire.set(neuron, key, value)? {
        return Err(unknown(neuron, key, own));
    }
    fire.validate(neuron)
}

/// The settings of LIF and PLIF: the time constant `own[0]` (must be > 1, as SpikingJelly
/// asserts), `decay_input`, and the [`FireReset`] keys.
fn set_leaky<T: TimeConstant>(
    neuron: &'static str,
    own: &[&str],
    (key, value): (&str, &str),
    tau: &mut T,
    decay_input: &mut bool,
    fire: &mut FireReset,
) -> Result<(), NeuronError> {
    if key == own[0] {
        let t = T::parse(neuron, key, value)?;
        if t.into() <= 1.0 {
            return Err(invalid(
                neuron,
                key,
                value,
                "must be > 1 (as SpikingJelly asserts)",
            ));
        }
        *tau = t;
    } else if key == "decay_input" {
        *decay_input = parse_bool(neuron, key, value)?;
    } else {
        set_fire(fire, neuron, own, key, value)?;
    }
    Ok(())
}

/// The parameter values of LIF and PLIF: the time constant, `decay_input`, then the shared ones.
fn leaky_param_values(
    tau: ParamValue,
    decay_input: bool,
    decay_help: &'static str,
    fire: &FireReset,
) -> Vec<ParamValue> {
    let mut v = vec![
        tau,
        ParamValue::new("decay_input", decay_input.to_string(), decay_help),
    ];
    v.extend(fire.param_values());
    v
}

/// Integrate-and-fire: `h = v + x`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct IFNode {
    /// Threshold, reset and surrogate.
    pub fire: FireReset,
}

impl IFNode {
    /// SpikingJelly's class name.
    pub const CLASS: &'static str = "IFNode";

    /// SpikingJelly's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    fire_reset_methods!();

    /// The step graph: input `x`, state `v`, output `spike`.
    pub fn step_graph(&self) -> Result<StepGraph, BuildError> {
        let b = builder(
            Self::CLASS,
            format!("SpikingJelly IFNode: h = v + x ({})", self.fire.describe()),
        );
        let x = b.input("x");
        let v = b.state(V_STATE, StateInit::Const(self.fire.initial_v()));
        let h = v + x;
        finish(&b, &self.fire, h);
        b.build()
    }

    /// Applies one `key=value` setting.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), NeuronError> {
        set_fire(&mut self.fire, Self::CLASS, &[], key, value)
    }

    /// The current parameter values.
    pub fn param_values(&self) -> Vec<ParamValue> {
        self.fire.param_values()
    }
}

/// Leaky integrate-and-fire with time constant `tau`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LIFNode {
    /// Membrane time constant (default 2.0; SpikingJelly requires `tau > 1`).
    pub tau: f32,
    /// Whether the input is divided by `tau` too (default true).
    pub decay_input: bool,
    /// Threshold, reset and surrogate.
    pub fire: FireReset,
}

impl Default for LIFNode {
    fn default() -> Self {
        LIFNode {
            tau: 2.0,
            decay_input: true,
            fire: FireReset::default(),
        }
    }
}

impl LIFNode {
    /// SpikingJelly's class name.
    pub const CLASS: &'static str = "LIFNode";
    const KEYS: &'static [&'static str] = &["tau", "decay_input"];

    /// SpikingJelly's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Membrane time constant.
    pub fn tau(mut self, tau: f32) -> Self {
        self.tau = tau;
        self
    }

    /// Whether the input is divided by `tau`.
    pub fn decay_input(mut self, d: bool) -> Self {
        self.decay_input = d;
        self
    }

    fire_reset_methods!();

    /// The step graph: input `x`, state `v`, output `spike`.
    pub fn step_graph(&self) -> Result<StepGraph, BuildError> {
        let b = builder(
            Self::CLASS,
            leaky_description(
                Self::CLASS,
                self.decay_input,
                "/ tau",
                "",
                &format!("tau={}", fmt_f32(self.tau)),
                &self.fire,
            ),
        );
        let x = b.input("x");
        let v = b.state(V_STATE, StateInit::Const(self.fire.initial_v()));
        let h = leaky_charge(self.decay_input, x, v, self.fire.vr(), |e| e / self.tau);
        finish(&b, &self.fire, h);
        b.build()
    }

    /// Applies one `key=value` setting.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), NeuronError> {
        set_leaky(
            Self::CLASS,
            Self::KEYS,
            (key, value),
            &mut self.tau,
            &mut self.decay_input,
            &mut self.fire,
        )
    }

    /// The current parameter values.
    pub fn param_values(&self) -> Vec<ParamValue> {
        leaky_param_values(
            ParamValue::new("tau", fmt_f32(self.tau), "membrane time constant (> 1)"),
            self.decay_input,
            "divide the input by tau too",
            &self.fire,
        )
    }
}

/// Parametric LIF: `1/tau = sigmoid(w)` with a learnable scalar `w` shared by all neurons.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParametricLIFNode {
    /// Initial time constant (default 2.0; SpikingJelly requires `init_tau > 1`). A Python float:
    /// `w`'s initial value is computed from it in double precision.
    pub init_tau: f64,
    /// Whether the input is scaled by `1/tau` too (default true).
    pub decay_input: bool,
    /// Threshold, reset and surrogate.
    pub fire: FireReset,
}

impl Default for ParametricLIFNode {
    fn default() -> Self {
        ParametricLIFNode {
            init_tau: 2.0,
            decay_input: true,
            fire: FireReset::default(),
        }
    }
}

/// The learnable parameter of [`ParametricLIFNode`].
pub const PLIF_W: &str = "w";

impl ParametricLIFNode {
    /// SpikingJelly's class name.
    pub const CLASS: &'static str = "ParametricLIFNode";
    const KEYS: &'static [&'static str] = &["init_tau", "decay_input"];

    /// SpikingJelly's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Initial time constant.
    pub fn init_tau(mut self, t: f64) -> Self {
        self.init_tau = t;
        self
    }

    /// Whether the input is scaled by `1/tau`.
    pub fn decay_input(mut self, d: bool) -> Self {
        self.decay_input = d;
        self
    }

    fire_reset_methods!();

    /// `w`'s initial value, `-ln(init_tau - 1)` (computed in `f64`, stored as `f32`), so that
    /// `sigmoid(w) = 1 / init_tau`.
    pub fn initial_w(&self) -> f32 {
        (-(self.init_tau - 1.0).ln()) as f32
    }

    /// The step graph: input `x`, state `v`, learnable shared param `w`, output `spike`.
    pub fn step_graph(&self) -> Result<StepGraph, BuildError> {
        let b = builder(
            Self::CLASS,
            leaky_description(
                Self::CLASS,
                self.decay_input,
                "* r",
                ", r = sigmoid(w) = 1/tau",
                &format!("init_tau={}", self.init_tau),
                &self.fire,
            ),
        );
        let x = b.input("x");
        let v = b.state(V_STATE, StateInit::Const(self.fire.initial_v()));
        let w = b.param(PLIF_W, ParamKind::Shared, true);
        let vr = self.fire.vr();
        let r = w.sigmoid();
        let h = leaky_charge(self.decay_input, x, v, vr, |e| e * r);
        finish(&b, &self.fire, h);
        b.build()
    }

    /// Applies one `key=value` setting.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), NeuronError> {
        set_leaky(
            Self::CLASS,
            Self::KEYS,
            (key, value),
            &mut self.init_tau,
            &mut self.decay_input,
            &mut self.fire,
        )
    }

    /// The current parameter values.
    pub fn param_values(&self) -> Vec<ParamValue> {
        leaky_param_values(
            ParamValue::new(
                "init_tau",
                format!("{:?}", self.init_tau),
                "initial time constant (> 1); w = -ln(init_tau - 1), 1/tau = sigmoid(w)",
            ),
            self.decay_input,
            "scale the input by 1/tau too",
            &self.fire,
        )
    }
}

pub(crate) fn unknown(neuron: &'static str, key: &str, own: &[&str]) -> NeuronError {
    let allowed: Vec<&str> = own
        .iter()
        .copied()
        .chain(FireReset::KEYS.iter().copied())
        .collect();
    NeuronError::UnknownParam {
        neuron,
        key: key.to_string(),
        allowed: allowed.join(", "),
    }
}
