//! The operations of a step graph.

use super::surrogate::Surrogate;

/// The kind of a parameter: how its value is shaped and indexed inside the scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamKind {
    /// One scalar shared by every neuron and time step.
    Shared,
    /// One value per neuron, `[N]`.
    PerNeuron,
    /// One value per time step, `[T]`.
    PerTime,
}

impl ParamKind {
    /// The name used in the text form.
    pub fn name(self) -> &'static str {
        match self {
            ParamKind::Shared => "shared",
            ParamKind::PerNeuron => "per_neuron",
            ParamKind::PerTime => "per_time",
        }
    }

    /// Parses [`ParamKind::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "shared" => ParamKind::Shared,
            "per_neuron" => ParamKind::PerNeuron,
            "per_time" => ParamKind::PerTime,
            _ => return None,
        })
    }
}

/// One operation. Leaves carry the index of what they read; every other op takes its operands
/// from [`Node::args`](super::Node::args) in the order documented on the variant.
///
/// Comparisons and logic ops yield exactly `0.0` or `1.0`; logic ops treat any non-zero operand as
/// true (ATen truthiness).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// Input sequence `i`, read at the current time step.
    Input(u32),
    /// State `j` as it was after the previous step (the initial state at t = 0).
    State(u32),
    /// Parameter `k`, indexed according to its [`ParamKind`].
    Param(u32),
    /// A constant.
    Const(f32),

    // unary
    /// `-x`.
    Neg,
    /// `1 / x`.
    Reciprocal,
    /// `e^x`.
    Exp,
    /// Natural logarithm.
    Log,
    /// Base-2 logarithm.
    Log2,
    /// Square root.
    Sqrt,
    /// `1 / sqrt(x)`.
    Rsqrt,
    /// Hyperbolic tangent.
    Tanh,
    /// Sine (radians).
    Sin,
    /// Cosine (radians).
    Cos,
    /// Gauss error function.
    Erf,
    /// Arctangent (radians).
    Atan,
    /// Round toward negative infinity.
    Floor,
    /// Round toward positive infinity.
    Ceil,
    /// Round half to even, as `torch.round`.
    Round,
    /// `max(x, 0)`; NaN passes through, `-0` gives `+0`.
    Relu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `(x > 0) - (x < 0)`.
    Sign,
    /// `|x|`.
    Abs,
    /// Logical not: `1` if `x == 0`, else `0`.
    Not,

    // binary
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b` (IEEE: division by zero gives an infinity or NaN).
    Div,
    /// `a ^ b`.
    Pow,
    /// Remainder with the sign of the dividend (C `fmod`, `torch.fmod`).
    Fmod,
    /// NaN-propagating minimum (`torch.minimum`).
    Min,
    /// NaN-propagating maximum (`torch.maximum`).
    Max,
    /// `a == b`.
    Eq,
    /// `a != b` (true when either is NaN).
    Ne,
    /// `a < b`.
    Lt,
    /// `a <= b`.
    Le,
    /// `a > b`.
    Gt,
    /// `a >= b`.
    Ge,
    /// Logical and.
    And,
    /// Logical or.
    Or,

    // ternary
    /// `clamp(x, lo, hi) = min(max(x, lo), hi)`.
    Clamp,
    /// `select(c, a, b) = if c != 0 { a } else { b }`.
    Select,

    /// Heaviside step `Θ(x)` (`Θ(0) = 1`, NaN gives 0) forward; the surrogate's derivative backward.
    Spike(Surrogate),
    /// Identity forward, zero gradient backward.
    Detach,
}

/// How many operands an op takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// No operands: inputs, states, params and constants.
    Leaf,
    /// One operand.
    Unary,
    /// Two operands.
    Binary,
    /// Three operands.
    Ternary,
}

impl Arity {
    /// The operand count as a number (0 to 3).
    pub fn count(self) -> usize {
        match self {
            Arity::Leaf => 0,
            Arity::Unary => 1,
            Arity::Binary => 2,
            Arity::Ternary => 3,
        }
    }
}

impl Op {
    /// The number of operands this op takes.
    pub fn arity(&self) -> Arity {
        use Op::*;
        match self {
            Input(_) | State(_) | Param(_) | Const(_) => Arity::Leaf,
            Neg | Reciprocal | Exp | Log | Log2 | Sqrt | Rsqrt | Tanh | Sin | Cos | Erf | Atan
            | Floor | Ceil | Round | Relu | Sigmoid | Sign | Abs | Not | Spike(_) | Detach => {
                Arity::Unary
            }
            Add | Sub | Mul | Div | Pow | Fmod | Min | Max | Eq | Ne | Lt | Le | Gt | Ge | And
            | Or => Arity::Binary,
            Clamp | Select => Arity::Ternary,
        }
    }

    /// Whether the op is a leaf (reads an input, state, param or constant).
    pub fn is_leaf(&self) -> bool {
        self.arity() == Arity::Leaf
    }

    /// Whether every value of the op is exactly `+0.0` or `1.0`, whatever its operands:
    /// comparisons, logic ops, and spikes whose forward is the Heaviside step (every surrogate
    /// but `MultiLevelSpikeCount`, which counts).
    pub fn is_zero_one(&self) -> bool {
        use Op::*;
        match self {
            Eq | Ne | Lt | Le | Gt | Ge | And | Or | Not => true,
            Spike(s) => !matches!(s, Surrogate::MultiLevelSpikeCount { .. }),
            _ => false,
        }
    }

    /// Whether the op is commutative in its two operands.
    pub fn is_commutative(&self) -> bool {
        matches!(
            self,
            Op::Add | Op::Mul | Op::Min | Op::Max | Op::Eq | Op::Ne | Op::And | Op::Or
        )
    }

    /// The op's name in the text form and in diagnostics (`spike` for every surrogate).
    pub fn name(&self) -> &'static str {
        use Op::*;
        match self {
            Input(_) => "input",
            State(_) => "state",
            Param(_) => "param",
            Const(_) => "const",
            Neg => "neg",
            Reciprocal => "reciprocal",
            Exp => "exp",
            Log => "log",
            Log2 => "log2",
            Sqrt => "sqrt",
            Rsqrt => "rsqrt",
            Tanh => "tanh",
            Sin => "sin",
            Cos => "cos",
            Erf => "erf",
            Atan => "atan",
            Floor => "floor",
            Ceil => "ceil",
            Round => "round",
            Relu => "relu",
            Sigmoid => "sigmoid",
            Sign => "sign",
            Abs => "abs",
            Not => "not",
            Add => "add",
            Sub => "sub",
            Mul => "mul",
            Div => "div",
            Pow => "pow",
            Fmod => "fmod",
            Min => "min",
            Max => "max",
            Eq => "eq",
            Ne => "ne",
            Lt => "lt",
            Le => "le",
            Gt => "gt",
            Ge => "ge",
            And => "and",
            Or => "or",
            Clamp => "clamp",
            Select => "select",
            Spike(_) => "spike",
            Detach => "detach",
        }
    }

    /// Every non-leaf op that takes no extra data, for parsers and random-graph generators.
    pub const PLAIN: &'static [Op] = &[
        Op::Neg,
        Op::Reciprocal,
        Op::Exp,
        Op::Log,
        Op::Log2,
        Op::Sqrt,
        Op::Rsqrt,
        Op::Tanh,
        Op::Sin,
        Op::Cos,
        Op::Erf,
        Op::Atan,
        Op::Floor,
        Op::Ceil,
        Op::Round,
        Op::Relu,
        Op::Sigmoid,
        Op::Sign,
        Op::Abs,
        Op::Not,
        Op::Add,
        Op::Sub,
        Op::Mul,
        Op::Div,
        Op::Pow,
        Op::Fmod,
        Op::Min,
        Op::Max,
        Op::Eq,
        Op::Ne,
        Op::Lt,
        Op::Le,
        Op::Gt,
        Op::Ge,
        Op::And,
        Op::Or,
        Op::Clamp,
        Op::Select,
        Op::Detach,
    ];

    /// Looks up a plain op (not a leaf, not `spike`) by [`Op::name`].
    pub fn plain_from_name(name: &str) -> Option<Op> {
        Op::PLAIN.iter().copied().find(|op| op.name() == name)
    }

    /// A key for hash-consing: equal keys mean the ops compute the same function of the same
    /// operands (constants compared by bits, so `-0.0` and `0.0` stay distinct).
    pub fn key(&self) -> OpKey {
        OpKey(match *self {
            Op::Const(c) => OpKeyInner::Const(c.to_bits()),
            Op::Spike(s) => OpKeyInner::Spike(s.key()),
            other => OpKeyInner::Other(other.discriminant_and_index()),
        })
    }

    fn discriminant_and_index(&self) -> (u8, u32) {
        // The name identifies the variant uniquely; leaves also carry their index.
        let idx = match *self {
            Op::Input(i) | Op::State(i) | Op::Param(i) => i,
            _ => 0,
        };
        let d = Op::PLAIN
            .iter()
            .position(|p| p.name() == self.name())
            .map(|p| p as u8 + 4)
            .unwrap_or(match self {
                Op::Input(_) => 0,
                Op::State(_) => 1,
                Op::Param(_) => 2,
                _ => 3,
            });
        (d, idx)
    }
}

/// Hashable identity of an [`Op`]; see [`Op::key`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpKey(OpKeyInner);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum OpKeyInner {
    Const(u32),
    Spike([u32; 4]),
    Other((u8, u32)),
}
