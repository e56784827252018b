//! The step-graph IR: leaves, ops, surrogates, declarations and the graph itself.

mod graph;
mod op;
pub mod surrogate;

pub use graph::{InputDecl, Node, OutputDecl, ParamDecl, StateDecl, StateInit, StepGraph, ValueId};
pub use op::{Arity, Op, OpKey, ParamKind};
pub use surrogate::{Surrogate, SurrogateError};
