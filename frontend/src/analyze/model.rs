//! The data model of an analysed core: its signature's declarations ([`CoreDef`], [`ArgDef`]),
//! the body as a straight-line [`Program`], and located [`AnalysisError`]s.

use flexsn_ir::{Op, ParamKind};
use proc_macro2::Span;

/// A register of the [`Program`]: the value computed by one instruction.
pub type Reg = usize;

/// A resolved, validated neuron core.
#[derive(Clone, Debug)]
pub struct CoreDef {
    /// The fn's name: the graph's name.
    pub name: String,
    /// Span of the fn's name.
    pub name_span: Span,
    /// The doc comments, one leading space stripped per line, joined and trimmed.
    pub description: String,
    /// The fn's visibility, given to the items the macro generates.
    pub vis: syn::Visibility,
    /// Arguments in signature order.
    pub args: Vec<ArgDef>,
    /// Declarations and body, in evaluation order.
    pub program: Program,
    /// The returned values, in the order of the return tuple.
    pub results: Vec<ResultDef>,
}

/// One argument of the core fn.
#[derive(Clone, Debug)]
pub struct ArgDef {
    /// The argument's name: the input, state, param or hyperparameter name.
    pub name: String,
    /// Span of the argument's pattern (its name).
    pub span: Span,
    /// What the argument declares.
    pub kind: ArgKind,
}

/// What an argument declares.
#[derive(Clone, Debug, PartialEq)]
pub enum ArgKind {
    /// `x: Input`: an input sequence.
    Input,
    /// `v: State`, `v: State<0.5>`, `v: State<Runtime>`, `#[init(expr)] v: State`.
    State,
    /// `w: Param<Kind>` (learnable) or `w: FixedParam<Kind>`.
    Param {
        /// Its kind, fixed or bound at build time.
        kind: ParamKindDef,
        /// `true` for `Param`, `false` for `FixedParam`.
        learnable: bool,
    },
    /// `beta: f32`: a hyperparameter, baked into the graph as a constant.
    Hyper,
}

/// The kind of a parameter as written in the signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKindDef {
    /// A kind written in the signature: `Param<Shared>`, `Param<PerNeuron>` or `Param<PerTime>`.
    Fixed(ParamKind),
    /// `Param<Dynamic>`: the kind is bound when the graph is built (from the shape of the value
    /// the caller will pass); [`ParamKind::Shared`] when nothing is bound.
    Dynamic,
}

/// What a returned value is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A named output.
    Output(String),
    /// The next value of the state with this index (among the states, in declaration order).
    State(usize),
}

/// One element of the returned tuple.
#[derive(Clone, Debug)]
pub struct ResultDef {
    /// Whether it is an output or a state's next value.
    pub role: Role,
    /// The register holding it.
    pub value: Reg,
    /// Span of the returned expression.
    pub span: Span,
}

/// The body as straight-line code: instruction `i` writes register `i`.
#[derive(Clone, Debug, Default)]
pub struct Program {
    /// Instructions in evaluation order; index `i` is register `i`.
    pub instrs: Vec<Step>,
}

/// One instruction with its source span and whether its value is a constant (it depends only
/// on literals and hyperparameters, so it folds to an `f32` when the graph is built).
#[derive(Clone, Debug)]
pub struct Step {
    /// The instruction.
    pub instr: Instr,
    /// The source it came from, for errors.
    pub span: Span,
    /// Whether its value is a compile-time constant.
    pub is_const: bool,
}

/// One instruction. Registers hold [`Value`](crate::lower::Value)s: constants (folded) or graph nodes.
#[derive(Clone, Debug, PartialEq)]
pub enum Instr {
    /// The value of hyperparameter argument `arg`.
    Hyper {
        /// Index of the argument in [`CoreDef::args`].
        arg: usize,
    },
    /// A literal or named constant.
    Lit(f32),
    /// Declares input argument `arg`.
    Input {
        /// Index of the argument in [`CoreDef::args`].
        arg: usize,
    },
    /// Declares state argument `arg`; `init` is a constant register, or `None` for an initial
    /// value supplied at run time.
    State {
        /// Index of the argument in [`CoreDef::args`].
        arg: usize,
        /// Register of the constant initial value; `None` for
        /// [`StateInit::Runtime`](flexsn_ir::StateInit::Runtime).
        init: Option<Reg>,
    },
    /// Declares param argument `arg`.
    Param {
        /// Index of the argument in [`CoreDef::args`].
        arg: usize,
    },
    /// A plain IR op (never `Spike`).
    Apply {
        /// The op, any but [`Op::Spike`].
        op: Op,
        /// Operand registers, in the op's operand order.
        args: Vec<Reg>,
    },
    /// `Θ(x)` forward, the surrogate's derivative backward.
    Spike {
        /// Register of the spike function's argument.
        x: Reg,
        /// The surrogate for the backward pass.
        surrogate: SurrogateSpec,
    },
    /// The surrogate's smooth primitive form (`spiking: false`).
    Primitive {
        /// Register of the argument.
        x: Reg,
        /// The surrogate whose primitive is applied.
        surrogate: SurrogateSpec,
    },
}

/// A surrogate as written: class name and parameters (constant registers); omitted parameters
/// take SpikingJelly's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SurrogateSpec {
    /// SpikingJelly's class name, e.g. `"ATan"`.
    pub name: &'static str,
    /// Parameters given, by name, each a constant register.
    pub params: Vec<(&'static str, Reg)>,
}

/// A located analysis error: what is wrong and what is allowed.
#[derive(Clone, Debug)]
pub struct AnalysisError {
    /// Where the error is.
    pub span: Span,
    /// What is wrong.
    pub message: String,
    /// What is allowed instead, when there is a useful hint.
    pub help: Option<String>,
}

impl AnalysisError {
    pub(super) fn new(span: Span, message: impl Into<String>) -> Self {
        AnalysisError {
            span,
            message: message.into(),
            help: None,
        }
    }
    pub(super) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    /// The error as a `syn::Error` (message and help), for the macro.
    pub fn to_syn_error(&self) -> syn::Error {
        let msg = match &self.help {
            Some(h) => format!("{}\n\nhelp: {h}", self.message),
            None => self.message.clone(),
        };
        syn::Error::new(self.span, msg)
    }
}

/// The result of an analysis step.
pub(super) type Result<T> = std::result::Result<T, AnalysisError>;

impl CoreDef {
    /// The names of the hyperparameter arguments, in signature order.
    pub fn hyperparameters(&self) -> impl Iterator<Item = &ArgDef> {
        self.args.iter().filter(|a| a.kind == ArgKind::Hyper)
    }
    /// The state arguments, in declaration order.
    pub fn states(&self) -> impl Iterator<Item = &ArgDef> {
        self.args.iter().filter(|a| a.kind == ArgKind::State)
    }
    /// The outputs' names, in tuple order.
    pub fn output_names(&self) -> impl Iterator<Item = &str> {
        self.results.iter().filter_map(|r| match &r.role {
            Role::Output(n) => Some(n.as_str()),
            Role::State(_) => None,
        })
    }
    /// Param arguments whose kind is bound when the graph is built.
    pub fn dynamic_params(&self) -> impl Iterator<Item = &ArgDef> {
        self.args.iter().filter(|a| {
            matches!(
                a.kind,
                ArgKind::Param {
                    kind: ParamKindDef::Dynamic,
                    ..
                }
            )
        })
    }
}
