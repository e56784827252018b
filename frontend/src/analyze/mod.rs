//! The analysis shared by the `#[neuron]` macro and the text frontend: a `syn::ItemFn` checked
//! and resolved into a [`CoreDef`] — the signature's declarations and the body as a straight-line
//! [`Program`] of instructions with spans.
//!
//! Both entry points execute the same program in the same order through
//! [`Lowerer`](crate::Lowerer): the text frontend interprets it, the macro emits one Rust
//! statement per instruction. So the same source gives the same IR either way.
//!
//! By concern: [`model`] (what the analysis produces), `signature` (the fn's attributes,
//! arguments and return type), `body` (statements and expressions) and `surrogate_args`
//! (surrogates as written in `spike(..)` and `surrogate(..)` calls).

mod body;
pub mod model;
mod signature;
mod surrogate_args;
mod syntax;

pub use model::{
    AnalysisError, ArgDef, ArgKind, CoreDef, Instr, ParamKindDef, Program, Reg, ResultDef, Role,
    Step, SurrogateSpec,
};
pub use signature::{analyze_fn, doc_string};
