//! Code generation: Cranelift IR (`clif`) and CUDA C source (`cuda`).

pub mod clif;
pub mod cuda;
