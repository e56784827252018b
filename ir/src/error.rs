//! Errors of building and checking step graphs.

use crate::surrogate::SurrogateError;

/// Why a step graph could not be built or failed verification. Each variant names what is wrong.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BuildError {
    /// An input, state, param or output name is used twice.
    #[error("`{name}` is declared twice (as {first} and as {second})")]
    DuplicateName {
        /// The repeated name.
        name: String,
        /// What the name was declared as first, e.g. `"an input"`.
        first: &'static str,
        /// What the name was declared as the second time.
        second: &'static str,
    },
    /// A name that is not an identifier (letters, digits, `_`; no leading digit).
    #[error("`{0}` is not a valid name: use letters, digits and `_`, not starting with a digit")]
    InvalidName(String),
    /// An op was given the wrong number of operands.
    #[error("`{op}` takes {expected} operand(s), got {got}")]
    Arity {
        /// The op's text name.
        op: &'static str,
        /// Operands the op takes.
        expected: usize,
        /// Operands it was given.
        got: usize,
    },
    /// An operand refers to a node at or after its user, breaking topological order.
    #[error("operand {operand} of node %{node} refers to %{arg}, which is not defined before it")]
    ForwardReference {
        /// Index of the using node.
        node: u32,
        /// Position of the bad operand (0-based).
        operand: usize,
        /// Index of the node it refers to.
        arg: u32,
    },
    /// An `Input`, `State` or `Param` leaf reads a declaration index that does not exist.
    #[error("{kind} index {index} is out of range: the graph declares {count}")]
    LeafOutOfRange {
        /// `"input"`, `"state"` or `"param"`.
        kind: &'static str,
        /// The leaf's index.
        index: u32,
        /// How many of that kind the graph declares.
        count: usize,
    },
    /// A declared state (named here) has no next value.
    #[error("state `{0}` is never updated: give it a next value")]
    StateNotUpdated(String),
    /// A state (named here) was given a next value more than once.
    #[error("state `{0}` is updated twice")]
    StateUpdatedTwice(String),
    /// A state was looked up by a name that was never declared.
    #[error("no state named `{name}`; declared states: {declared}")]
    UnknownState {
        /// The undeclared name.
        name: String,
        /// The declared state names, joined with `, `.
        declared: String,
    },
    /// The step has neither outputs nor states.
    #[error("the core has no outputs and no states: it computes nothing")]
    Empty,
    /// A value id (the node index here) past the end of the graph.
    #[error("value %{0} refers to a node that does not exist")]
    DanglingValue(u32),
    /// An expression handle belongs to another builder.
    #[error("an expression from a different builder was used")]
    ForeignExpr,
    #[error(
        "surrogate `{0}` has no smooth primitive form (SpikingJelly defines none); use it with spiking = true"
    )]
    /// The surrogate (named here) was used as a smooth primitive but has no closed form.
    NoPrimitive(&'static str),
    /// A constant is NaN or infinite.
    #[error("constant {0} is not finite")]
    NonFiniteConst(f32),
    /// A state (named here) is declared with a NaN initial value. Declared values follow the
    /// rule for numbers a user writes ([`crate::num::user_f32`]); values passed at run time are
    /// data and may be NaN.
    #[error(
        "state `{0}` is declared with a NaN initial value: NaN is not a value (pass NaN initial states at run time if that is intended)"
    )]
    NanStateInit(String),
    /// The petgraph edges into a node (index here) disagree with its `args`.
    #[error("graph edges disagree with node operands at node %{0}")]
    EdgeMismatch(u32),
    /// A surrogate's parameters are invalid.
    #[error(transparent)]
    Surrogate(#[from] SurrogateError),
}
