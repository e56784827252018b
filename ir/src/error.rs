//! Errors of building and checking step graphs.

use crate::surrogate::SurrogateError;

/// Why a step graph could not be built or failed verification. Each variant names what is wrong.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BuildError {
    #[error("`{name}` is declared twice (as {first} and as {second})")]
    DuplicateName {
        name: String,
        first: &'static str,
        second: &'static str,
    },
    #[error("`{0}` is not a valid name: use letters, digits and `_`, not starting with a digit")]
    InvalidName(String),
    #[error("`{op}` takes {expected} operand(s), got {got}")]
    Arity {
        op: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("operand {operand} of node %{node} refers to %{arg}, which is not defined before it")]
    ForwardReference { node: u32, operand: usize, arg: u32 },
    #[error("{kind} index {index} is out of range: the graph declares {count}")]
    LeafOutOfRange {
        kind: &'static str,
        index: u32,
        count: usize,
    },
    #[error("state `{0}` is never updated: give it a next value")]
    StateNotUpdated(String),
    #[error("state `{0}` is updated twice")]
    StateUpdatedTwice(String),
    #[error("no state named `{name}`; declared states: {declared}")]
    UnknownState { name: String, declared: String },
    #[error("the core has no outputs and no states: it computes nothing")]
    Empty,
    #[error("value %{0} refers to a node that does not exist")]
    DanglingValue(u32),
    #[error("an expression from a different builder was used")]
    ForeignExpr,
    #[error(
        "surrogate `{0}` has no smooth primitive form (SpikingJelly defines none); use it with spiking = true"
    )]
    NoPrimitive(&'static str),
    #[error("constant {0} is not finite")]
    NonFiniteConst(f32),
    #[error("graph edges disagree with node operands at node %{0}")]
    EdgeMismatch(u32),
    #[error(transparent)]
    Surrogate(#[from] SurrogateError),
}
