//! SpikingJelly's wider neuron zoo as step graphs: QIF, EIF, Izhikevich, KLIF, current-based
//! LIF, complementary LIF, integer LIF, half-threshold IF and ternary IF/LIF.
//!
//! Each neuron keeps SpikingJelly 2.0.0's constructor arguments (as `key=value` settings and
//! public fields), defaults, constructor checks and float operation order. Python floats are
//! kept as `f64` and become `f32` where SpikingJelly's torch code uses them as tensor scalars.

mod clif;
mod cuba_lif;
mod half_threshold_if;
mod ilif;
mod izhikevich;
mod klif;
mod nonlinear_if;
mod ternary;

pub use clif::{CLIF_M, ComplementaryLIFNode};
pub use cuba_lif::{CUBA_C, CUBALIFNode};
pub use half_threshold_if::HalfThresholdIFNode;
pub use ilif::ILIFNode;
pub use izhikevich::{IZHIKEVICH_W, IzhikevichNode};
pub use klif::{KLIF_K, KLIFNode};
pub use nonlinear_if::{EIFNode, QIFNode};
pub use ternary::{TernaryIFNode, TernaryLIFNode};

use flexsn_compiler::BuildError;
use flexsn_compiler::dsl::{CoreBuilder, Expr};
use flexsn_compiler::ir::{StateInit, StepGraph};

use crate::params::{FireReset, NeuronError, ParamValue, builder, invalid, parse_bool, parse_f64};
use crate::spiking::{SPIKE_OUTPUT, V_STATE};

/// A neuron setting's value type: Python floats (`f64`) and flags.
pub(crate) trait Knob: Sized {
    fn parse(neuron: &'static str, key: &str, value: &str) -> Result<Self, NeuronError>;
    fn show(&self) -> String;
}

impl Knob for f64 {
    fn parse(neuron: &'static str, key: &str, value: &str) -> Result<Self, NeuronError> {
        parse_f64(neuron, key, value)
    }
    fn show(&self) -> String {
        format!("{self:?}")
    }
}

impl Knob for bool {
    fn parse(neuron: &'static str, key: &str, value: &str) -> Result<Self, NeuronError> {
        parse_bool(neuron, key, value)
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

/// Whether the [`FireReset`] setting `key` belongs to a neuron whose constructor takes
/// `fire_keys` (a surrogate's own settings come with `surrogate`).
pub(crate) fn fire_key_allowed(fire_keys: &[&str], key: &str) -> bool {
    fire_keys.contains(&key)
        || (fire_keys.contains(&"surrogate") && (key == "spiking" || key.starts_with("surrogate.")))
}

/// The error for a key the neuron does not have.
pub(crate) fn unknown_key(
    neuron: &'static str,
    key: &str,
    own: &[&str],
    fire_keys: &[&str],
) -> NeuronError {
    let mut allowed: Vec<&str> = own.iter().chain(fire_keys).copied().collect();
    if fire_keys.contains(&"surrogate") {
        allowed.extend(["surrogate.<param>", "surrogate.spiking"]);
    }
    NeuronError::UnknownParam {
        neuron,
        key: key.to_string(),
        allowed: allowed.join(", "),
    }
}

/// `Err` naming `key = value` and `why` unless `ok` (SpikingJelly's constructor asserts).
pub(crate) fn require(
    ok: bool,
    neuron: &'static str,
    key: &str,
    value: impl std::fmt::Debug,
    why: &str,
) -> Result<(), NeuronError> {
    if ok {
        Ok(())
    } else {
        Err(invalid(neuron, key, &format!("{value:?}"), why))
    }
}

/// The checks of a time constant SpikingJelly asserts to be > 1.
pub(crate) fn require_tau(neuron: &'static str, key: &str, tau: f64) -> Result<(), NeuronError> {
    require(
        tau > 1.0,
        neuron,
        key,
        tau,
        "must be > 1 (as SpikingJelly asserts)",
    )
}

/// A builder described as `SpikingJelly <class>: <formula> (<every setting>)`.
pub(crate) fn zoo_builder(class: &str, formula: &str, params: &[ParamValue]) -> CoreBuilder {
    let settings: Vec<String> = params
        .iter()
        .map(|p| format!("{}={}", p.key, p.value))
        .collect();
    builder(
        class,
        format!("SpikingJelly {class}: {formula} ({})", settings.join(", ")),
    )
}

/// The graph of a neuron whose one state is `v` (starting at `v0`): input `x`, output `spike`;
/// `step(b, x, v)` gives `(spike, next v)`.
pub(crate) fn v_graph(
    class: &str,
    formula: &str,
    params: &[ParamValue],
    v0: f32,
    step: impl for<'b> FnOnce(&'b CoreBuilder, Expr<'b>, Expr<'b>) -> (Expr<'b>, Expr<'b>),
) -> Result<StepGraph, BuildError> {
    let b = zoo_builder(class, formula, params);
    let x = b.input("x");
    let v = b.state(V_STATE, StateInit::Const(v0));
    let (s, v_next) = step(&b, x, v);
    b.output(SPIKE_OUTPUT, s);
    b.set_state(V_STATE, v_next);
    b.build()
}

/// The hard-reset checks of QIF and EIF: `v_threshold > v_reset` and `v_rest >= v_reset`.
pub(crate) fn require_reset_below(
    neuron: &'static str,
    fire: &FireReset,
    v_rest: f64,
) -> Result<(), NeuronError> {
    if let Some(vr) = fire.v_reset {
        require(
            fire.v_threshold > vr,
            neuron,
            "v_reset",
            vr,
            "must be below v_threshold",
        )?;
        require(
            v_rest >= vr as f64,
            neuron,
            "v_rest",
            v_rest,
            "must be >= v_reset",
        )?;
    }
    Ok(())
}

/// Declares a zoo neuron: the struct with its settings (`f64` or `bool` fields) and a
/// [`FireReset`], `Default` with SpikingJelly's defaults, builder methods, `set` (parse, then
/// the neuron's `check`, all or nothing) and `param_values`. `fire_keys` are the [`FireReset`]
/// settings its constructor takes.
macro_rules! zoo_neuron {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$fm:meta])* $field:ident : $ty:ty = $default:expr, $help:literal; )*
        }
        fire: $fire:expr, fire_keys: [$($fk:literal),*] $(,)?
    ) => {
        $(#[$meta])*
        #[allow(non_snake_case)]
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub struct $name {
            $( $(#[$fm])* pub $field: $ty, )*
            /// Threshold, reset and surrogate (only the settings the constructor takes apply).
            pub fire: $crate::params::FireReset,
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $default, )* fire: $fire }
            }
        }

        #[allow(non_snake_case)]
        impl $name {
            /// SpikingJelly's class name.
            pub const CLASS: &'static str = stringify!($name);
            const OWN_KEYS: &'static [&'static str] = &[$(stringify!($field)),*];
            const FIRE_KEYS: &'static [&'static str] = &[$($fk),*];

            /// SpikingJelly's defaults.
            pub fn new() -> Self {
                Self::default()
            }

            $(
                $(#[$fm])*
                pub fn $field(mut self, v: $ty) -> Self {
                    self.$field = v;
                    self
                }
            )*

            /// Replaces threshold, reset and surrogate.
            pub fn with_fire(mut self, fire: $crate::params::FireReset) -> Self {
                self.fire = fire;
                self
            }

            /// Applies one `key=value` setting; on error nothing changes.
            pub fn set(&mut self, key: &str, value: &str) -> Result<(), $crate::params::NeuronError> {
                let mut next = *self;
                match key {
                    $( stringify!($field) => {
                        next.$field = <$ty as $crate::zoo::Knob>::parse(Self::CLASS, key, value)?;
                    } )*
                    _ if $crate::zoo::fire_key_allowed(Self::FIRE_KEYS, key) => {
                        next.fire.set(Self::CLASS, key, value)?;
                    }
                    _ => {
                        return Err($crate::zoo::unknown_key(
                            Self::CLASS,
                            key,
                            Self::OWN_KEYS,
                            Self::FIRE_KEYS,
                        ))
                    }
                }
                next.fire.validate(Self::CLASS)?;
                next.check()?;
                *self = next;
                Ok(())
            }

            /// The current parameter values.
            pub fn param_values(&self) -> Vec<$crate::params::ParamValue> {
                let mut v = vec![$(
                    $crate::params::ParamValue::new(
                        stringify!($field),
                        $crate::zoo::Knob::show(&self.$field),
                        $help,
                    ),
                )*];
                v.extend(
                    self.fire
                        .param_values()
                        .into_iter()
                        .filter(|p| $crate::zoo::fire_key_allowed(Self::FIRE_KEYS, p.key)),
                );
                v
            }
        }
    };
}
pub(crate) use zoo_neuron;

#[cfg(test)]
mod tests;
