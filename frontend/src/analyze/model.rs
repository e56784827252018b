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
    pub name_span: Span,
    /// The doc comments, one leading space stripped per line, joined and trimmed.
    pub description: String,
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
    pub name: String,
    pub span: Span,
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
    Param { kind: ParamKindDef, learnable: bool },
    /// `beta: f32`: a hyperparameter, baked into the graph as a constant.
    Hyper,
}

/// The kind of a parameter as written in the signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKindDef {
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
    pub role: Role,
    pub value: Reg,
    pub span: Span,
}

/// The body as straight-line code: instruction `i` writes register `i`.
#[derive(Clone, Debug, Default)]
pub struct Program {
    pub instrs: Vec<Step>,
}

/// One instruction with its source span and whether its value is a constant (it depends only
/// on literals and hyperparameters, so it folds to an `f32` when the graph is built).
#[derive(Clone, Debug)]
pub struct Step {
    pub instr: Instr,
    pub span: Span,
    pub is_const: bool,
}

/// One instruction. Registers hold [`Value`](super::Value)s: constants (folded) or graph nodes.
#[derive(Clone, Debug, PartialEq)]
pub enum Instr {
    /// The value of hyperparameter argument `arg`.
    Hyper { arg: usize },
    /// A literal or named constant.
    Lit(f32),
    /// Declares input argument `arg`.
    Input { arg: usize },
    /// Declares state argument `arg`; `init` is a constant register, or `None` for an initial
    /// value supplied at run time.
    State { arg: usize, init: Option<Reg> },
    /// Declares param argument `arg`.
    Param { arg: usize },
    /// A plain IR op (never `Spike`).
    Apply { op: Op, args: Vec<Reg> },
    /// `Θ(x)` forward, the surrogate's derivative backward.
    Spike { x: Reg, surrogate: SurrogateSpec },
    /// The surrogate's smooth primitive form (`spiking: false`).
    Primitive { x: Reg, surrogate: SurrogateSpec },
}

/// A surrogate as written: class name and parameters (constant registers); omitted parameters
/// take SpikingJelly's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SurrogateSpec {
    pub name: &'static str,
    pub params: Vec<(&'static str, Reg)>,
}

/// A located analysis error: what is wrong and what is allowed.
#[derive(Clone, Debug)]
pub struct AnalysisError {
    pub span: Span,
    pub message: String,
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
