//! # flexsn-ir
//!
//! The bottom layer of flexsn: a neuron's single time step as a [`StepGraph`] of [`Op`]s, the
//! [`GraphBuilder`](builder::GraphBuilder) that makes one, its [text form](text), the
//! [verifier](verify), and the numeric [semantics of every op](eval). Everything else (passes,
//! autodiff, the interpreter, code generation, the Rust-syntax frontend) builds on this crate,
//! which has no dependency on a code generator; `flexsn_compiler::ir` re-exports it.
//!
//! Modules depend on each other in one direction only: `num`, `op`/`surrogate` and `graph` at
//! the bottom; `error` and `verify`; `builder`; then `primitive`, `text`, `eval`, `rebuild` and
//! `dce`.

pub mod builder;
pub mod dce;
pub mod error;
pub mod eval;
mod graph;
pub mod num;
mod op;
mod primitive;
pub mod rebuild;
pub mod suggest;
pub mod surrogate;
pub mod text;
pub mod verify;

pub use graph::{
    InputDecl, Node, OutputDecl, ParamDecl, StateDecl, StateInit, StepGraph, ValueId, is_zero_one,
};
pub use op::{Arity, Op, OpKey, ParamKind};
pub use surrogate::{Surrogate, SurrogateError};
