//! The functions a core may call, in free-function form `f(x, y)` and method form `x.f(y)`.

use flexsn_ir::Op;

/// What a known function lowers to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum FuncKind {
    /// One IR op applied to the arguments in order.
    Op(Op),
    /// `clamp(x, lo, +inf)` (torch's `clamp(min=lo)`).
    ClampMin,
    /// `clamp(x, -inf, hi)` (torch's `clamp(max=hi)`).
    ClampMax,
    /// `spike(x, surrogate)` or `spike(x)` (Sigmoid with SpikingJelly's defaults).
    Spike,
    /// `surrogate(x, Surrogate::X { .., spiking: false })`: the smooth primitive, or a spike when
    /// `spiking` is true (the default).
    Surrogate,
}

/// One known function.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FuncDef {
    pub name: &'static str,
    /// Number of arguments, counting the receiver of the method form. `Spike` also takes 1.
    pub arity: usize,
    pub kind: FuncKind,
    /// How it is written, for error messages.
    pub usage: &'static str,
}

macro_rules! funcs {
    ($($name:literal, $arity:literal, $kind:expr, $usage:literal;)*) => {
        &[$(FuncDef { name: $name, arity: $arity, kind: $kind, usage: $usage }),*]
    };
}

use FuncKind::Op as O;

/// Every known function. Aliases map to the same op.
pub(crate) const FUNCS: &[FuncDef] = funcs![
    "neg", 1, O(Op::Neg), "neg(x)";
    "recip", 1, O(Op::Reciprocal), "recip(x) or x.recip()";
    "reciprocal", 1, O(Op::Reciprocal), "reciprocal(x)";
    "exp", 1, O(Op::Exp), "exp(x) or x.exp()";
    "ln", 1, O(Op::Log), "ln(x) or x.ln()";
    "log", 1, O(Op::Log), "log(x) or x.log() (natural logarithm)";
    "log2", 1, O(Op::Log2), "log2(x) or x.log2()";
    "sqrt", 1, O(Op::Sqrt), "sqrt(x) or x.sqrt()";
    "rsqrt", 1, O(Op::Rsqrt), "rsqrt(x) or x.rsqrt()";
    "tanh", 1, O(Op::Tanh), "tanh(x) or x.tanh()";
    "sin", 1, O(Op::Sin), "sin(x) or x.sin()";
    "cos", 1, O(Op::Cos), "cos(x) or x.cos()";
    "erf", 1, O(Op::Erf), "erf(x) or x.erf()";
    "atan", 1, O(Op::Atan), "atan(x) or x.atan()";
    "floor", 1, O(Op::Floor), "floor(x) or x.floor()";
    "ceil", 1, O(Op::Ceil), "ceil(x) or x.ceil()";
    "round", 1, O(Op::Round), "round(x) or x.round() (half to even, as torch.round)";
    "round_ties_even", 1, O(Op::Round), "x.round_ties_even()";
    "relu", 1, O(Op::Relu), "relu(x) or x.relu()";
    "sigmoid", 1, O(Op::Sigmoid), "sigmoid(x) or x.sigmoid()";
    "sign", 1, O(Op::Sign), "sign(x) or x.sign() (0 at 0)";
    "signum", 1, O(Op::Sign), "x.signum() (0 at 0, as torch.sign)";
    "abs", 1, O(Op::Abs), "abs(x) or x.abs()";
    "not", 1, O(Op::Not), "not(m) or !m";
    "detach", 1, O(Op::Detach), "detach(x) or x.detach()";
    "pow", 2, O(Op::Pow), "pow(x, y) or x.pow(y)";
    "powf", 2, O(Op::Pow), "powf(x, y) or x.powf(y)";
    "powi", 2, O(Op::Pow), "x.powi(2)";
    "fmod", 2, O(Op::Fmod), "fmod(x, y), x.fmod(y) or x % y";
    "min", 2, O(Op::Min), "min(x, y) or x.min(y)";
    "max", 2, O(Op::Max), "max(x, y) or x.max(y)";
    "minimum", 2, O(Op::Min), "minimum(x, y)";
    "maximum", 2, O(Op::Max), "maximum(x, y)";
    "eq", 2, O(Op::Eq), "eq(x, y) or x == y";
    "ne", 2, O(Op::Ne), "ne(x, y) or x != y";
    "lt", 2, O(Op::Lt), "lt(x, y) or x < y";
    "le", 2, O(Op::Le), "le(x, y) or x <= y";
    "gt", 2, O(Op::Gt), "gt(x, y) or x > y";
    "ge", 2, O(Op::Ge), "ge(x, y) or x >= y";
    "and", 2, O(Op::And), "and(a, b) or a && b";
    "or", 2, O(Op::Or), "or(a, b) or a || b";
    "clamp_min", 2, FuncKind::ClampMin, "clamp_min(x, lo) or x.clamp_min(lo)";
    "clamp_max", 2, FuncKind::ClampMax, "clamp_max(x, hi) or x.clamp_max(hi)";
    "clamp", 3, O(Op::Clamp), "clamp(x, lo, hi) or x.clamp(lo, hi)";
    "select", 3, O(Op::Select), "select(c, a, b), c.select(a, b) or if c { a } else { b }";
    "spike", 2, FuncKind::Spike, "spike(x, Surrogate::ATan { alpha: 2.0 }) or x.spike(..)";
    "surrogate", 2, FuncKind::Surrogate, "surrogate(x, Surrogate::Sigmoid { alpha: 4.0, spiking: false })";
];

/// Looks up a function by name.
pub(crate) fn find(name: &str) -> Option<&'static FuncDef> {
    FUNCS.iter().find(|f| f.name == name)
}

pub(crate) use flexsn_ir::suggest::nearest;

/// The paths `f32::NAME` and `f32::consts::NAME` a core may use as constants.
pub(crate) fn named_constant(path: &[String]) -> Option<f32> {
    use std::f32::consts as c;
    let segs: Vec<&str> = path.iter().map(String::as_str).collect();
    // Strip an optional `std::` / `core::` prefix.
    let segs = match segs.as_slice() {
        ["std" | "core", rest @ ..] => rest,
        s => s,
    };
    Some(match segs {
        ["f32", "INFINITY"] => f32::INFINITY,
        ["f32", "NEG_INFINITY"] => f32::NEG_INFINITY,
        ["f32", "NAN"] => f32::NAN,
        ["f32", "MAX"] => f32::MAX,
        ["f32", "MIN"] => f32::MIN,
        ["f32", "MIN_POSITIVE"] => f32::MIN_POSITIVE,
        ["f32", "EPSILON"] => f32::EPSILON,
        ["f32", "consts", name] => match *name {
            "PI" => c::PI,
            "TAU" => c::TAU,
            "E" => c::E,
            "FRAC_PI_2" => c::FRAC_PI_2,
            "FRAC_PI_3" => c::FRAC_PI_3,
            "FRAC_PI_4" => c::FRAC_PI_4,
            "FRAC_PI_6" => c::FRAC_PI_6,
            "FRAC_PI_8" => c::FRAC_PI_8,
            "FRAC_1_PI" => c::FRAC_1_PI,
            "FRAC_2_PI" => c::FRAC_2_PI,
            "FRAC_2_SQRT_PI" => c::FRAC_2_SQRT_PI,
            "SQRT_2" => c::SQRT_2,
            "FRAC_1_SQRT_2" => c::FRAC_1_SQRT_2,
            "LN_2" => c::LN_2,
            "LN_10" => c::LN_10,
            "LOG2_E" => c::LOG2_E,
            "LOG10_E" => c::LOG10_E,
            "LOG2_10" => c::LOG2_10,
            "LOG10_2" => c::LOG10_2,
            _ => return None,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_of_the_ir_is_callable() {
        for op in Op::PLAIN {
            let arith = matches!(op, Op::Add | Op::Sub | Op::Mul | Op::Div);
            let callable = FUNCS.iter().any(|f| f.kind == FuncKind::Op(*op));
            assert!(arith || callable, "no function lowers to {op:?}");
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            nearest("sigmod", FUNCS.iter().map(|f| f.name)),
            Some("sigmoid")
        );
        assert_eq!(nearest("expp", FUNCS.iter().map(|f| f.name)), Some("exp"));
        assert_eq!(nearest("qqqqqqq", FUNCS.iter().map(|f| f.name)), None);
    }
}
