//! Code generation: CUDA C source (`cuda`).

pub mod cuda;
