//! Time mixing with a spike: the compute core of the PSN family, run by a [`Jit`] on its own
//! backend.
//!
//! Forward: `H = W·X + b`, `S = Θ(H)`, with `W` a `[R, C]` matrix over time (`R` output steps,
//! `C` input steps; `R = C = T` for a whole sequence), `X` the `[C, N]` input, `b` the `[R]`
//! bias. Backward, given `gS`: `gH = sg'(H)·gS`, `gX = Wᵀ·gH`, `gW = gH·Xᵀ`, `gb = Σ_n gH`.
//!
//! What runs depends on the [`Jit`]'s backend:
//!
//! - the interpreter (and any backend plugged in with [`Jit::with_compiler`]): plain loops
//!   (the `reference` module), the oracle the fast paths are tested against;
//! - CPU: GEMMs from `matrixmultiply` over blocks of columns, with the bias, the spike (and,
//!   backward, the surrogate derivative, `gX` and `gW`) computed while the block is in cache, on
//!   the Jit's thread count. The chunks are a function of the shape only and their partial
//!   `gW`, `gb` are summed in chunk order, so gradients are bit-identical for every thread count;
//! - CUDA / emulated CUDA: the generated kernels of [`crate::cuda::MixingKernels`] (one thread
//!   per neuron fused with the spike and the surrogate, a split-K weight gradient summed in a
//!   fixed order), on device 0 or run as host C++. A module is compiled (and cached) per largest
//!   shape; a window of a longer sequence runs on the module of the whole mixing
//!   ([`Mixing::forward_within`]).

mod cpu;
mod reference;

use flexsn_compiler::ir::Surrogate;

use crate::Jit;
use crate::memory::{Estimate, MemoryError};

/// Where a [`Jit`] runs its time mixing (set by its constructor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MixTarget {
    /// Plain loops (the oracle).
    Reference,
    /// Blocked GEMM on `threads` threads (0 = every available core).
    Cpu { threads: usize },
    /// CUDA device 0.
    Cuda,
    /// The CUDA source as host C++.
    CudaEmulated,
}

impl MixTarget {
    fn name(self) -> &'static str {
        match self {
            MixTarget::Reference => "interp",
            MixTarget::Cpu { .. } => "cpu",
            MixTarget::Cuda => "cuda",
            MixTarget::CudaEmulated => "cuda-emulated",
        }
    }
}

/// Why a time mixing cannot run.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MixError {
    #[error("`{what}`: expected {expected} elements, got {got}")]
    /// A buffer of the wrong length.
    Len {
        /// What was checked.
        what: &'static str,
        /// What the call needs.
        expected: usize,
        /// What it got.
        got: usize,
    },
    #[error("N = 0: a call needs at least one neuron")]
    /// `N = 0`.
    NoNeurons,
    #[error("steps * N overflows")]
    /// A buffer size overflows.
    Overflow,
    #[error("the time mixing could not run on backend `{backend}`: {why}")]
    /// The backend failed (e.g. no CUDA device).
    Backend {
        /// The backend's name.
        backend: &'static str,
        /// What is wrong.
        why: String,
    },
    #[error(transparent)]
    /// The call would allocate more than the [`Jit`]'s memory limit.
    Memory(#[from] MemoryError),
}

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), MixError> {
    if expected == got {
        Ok(())
    } else {
        Err(MixError::Len {
            what,
            expected,
            got,
        })
    }
}

/// One time mixing: weight `[rows, cols]` (row-major), bias `[rows]`, and the surrogate whose
/// derivative backward uses.
#[derive(Clone, Copy, Debug)]
pub struct Mixing<'a> {
    /// Output steps `R`.
    pub rows: usize,
    /// Input steps `C`.
    pub cols: usize,
    /// The weight `[R, C]`, row-major.
    pub weight: &'a [f32],
    /// The bias `[R]`.
    pub bias: &'a [f32],
    /// The spike's surrogate (its derivative is backward's).
    pub surrogate: Surrogate,
}

/// Gradients of a mixing: `x` `[cols, N]`, `weight` `[rows, cols]`, `bias` `[rows]`.
#[derive(Clone, Debug, PartialEq)]
pub struct MixGrads {
    /// Gradient of the input `[C, N]`.
    pub x: Vec<f32>,
    /// Gradient of the weight `[R, C]`.
    pub weight: Vec<f32>,
    /// Gradient of the bias `[R]`.
    pub bias: Vec<f32>,
}

impl Mixing<'_> {
    fn check(&self, x: &[f32], n: usize) -> Result<(), MixError> {
        if n == 0 {
            return Err(MixError::NoNeurons);
        }
        check_len("weight", self.rows * self.cols, self.weight.len())?;
        check_len("bias", self.rows, self.bias.len())?;
        let len = self.cols.checked_mul(n).ok_or(MixError::Overflow)?;
        self.rows.checked_mul(n).ok_or(MixError::Overflow)?;
        check_len("input sequence", len, x.len())
    }

    /// Checks what a call allocates against `jit`'s memory limit, before it allocates: the
    /// backend's working memory, plus the spikes (forward) or the input gradient (backward)
    /// when the call returns them in a vector of its own (`owned`).
    fn check_memory(
        &self,
        n: usize,
        jit: &Jit,
        backward: bool,
        owned: bool,
    ) -> Result<(), MixError> {
        let f = std::mem::size_of::<f32>();
        let (rows, cols) = (self.rows, self.cols);
        let out = if backward { cols } else { rows };
        let mut e = Estimate::new().add(usize::from(owned), &[out, n], f);
        // The weight and bias gradients every backward returns.
        if backward {
            e = e.add(1, &[rows, cols], f).add(1, &[rows], f);
        }
        e = match jit.mix_target() {
            MixTarget::Reference if backward => e.add(1, &[rows, n], f).add(1, &[rows, cols], f),
            MixTarget::Reference => e,
            MixTarget::Cpu { threads } => cpu::scratch(self, n, threads, backward, e),
            // The host copy of the result (and, backward, of every gradient).
            MixTarget::Cuda | MixTarget::CudaEmulated => e.add(1, &[out, n], f),
        };
        let what = if backward {
            "the time mixing's backward"
        } else {
            "the time mixing"
        };
        e.check(jit.memory_limit(), what)?;
        Ok(())
    }

    /// Spikes `[rows, N]` of input `x` (`[cols, N]`), on `jit`'s backend.
    pub fn forward(&self, x: &[f32], n: usize, jit: &Jit) -> Result<Vec<f32>, MixError> {
        self.forward_within(x, n, jit, (self.rows, self.cols))
    }

    /// [`Mixing::forward`] into a caller's buffer `spikes` (`[rows, N]`), e.g. reused across
    /// calls.
    pub fn forward_into(
        &self,
        x: &[f32],
        n: usize,
        jit: &Jit,
        spikes: &mut [f32],
    ) -> Result<(), MixError> {
        self.forward_into_within(x, n, jit, spikes, (self.rows, self.cols))
    }

    /// [`Mixing::forward`] on CUDA kernels compiled for up to `compiled = (R, C)` steps (a window
    /// of a longer sequence reuses its module instead of compiling its own shape; other
    /// backends ignore `compiled`).
    pub fn forward_within(
        &self,
        x: &[f32],
        n: usize,
        jit: &Jit,
        compiled: (usize, usize),
    ) -> Result<Vec<f32>, MixError> {
        self.check(x, n)?;
        self.check_memory(n, jit, false, true)?;
        let mut s = vec![0.0; self.rows.checked_mul(n).ok_or(MixError::Overflow)?];
        self.forward_into_within(x, n, jit, &mut s, compiled)?;
        Ok(s)
    }

    fn forward_into_within(
        &self,
        x: &[f32],
        n: usize,
        jit: &Jit,
        spikes: &mut [f32],
        compiled: (usize, usize),
    ) -> Result<(), MixError> {
        self.check(x, n)?;
        check_len("spike output", self.rows * n, spikes.len())?;
        self.check_memory(n, jit, false, false)?;
        match jit.mix_target() {
            MixTarget::Reference => reference::forward(self, x, n, spikes),
            MixTarget::Cpu { threads } => cpu::forward(self, x, n, threads, spikes),
            t @ (MixTarget::Cuda | MixTarget::CudaEmulated) => {
                spikes.copy_from_slice(&cuda::forward(self, x, n, t, compiled)?)
            }
        }
        Ok(())
    }

    /// Gradients of `sum(grad_s * S)` w.r.t. `x`, the weight and the bias, on `jit`'s backend.
    pub fn backward(
        &self,
        x: &[f32],
        n: usize,
        grad_s: &[f32],
        jit: &Jit,
    ) -> Result<MixGrads, MixError> {
        self.backward_within(x, n, grad_s, jit, (self.rows, self.cols))
    }

    /// [`Mixing::backward`] writing `d loss / d x` into a caller's buffer `grad_x`
    /// (`[cols, N]`); returns the weight and bias gradients.
    pub fn backward_into(
        &self,
        x: &[f32],
        n: usize,
        grad_s: &[f32],
        jit: &Jit,
        grad_x: &mut [f32],
    ) -> Result<(Vec<f32>, Vec<f32>), MixError> {
        self.backward_into_within(x, n, grad_s, jit, grad_x, (self.rows, self.cols))
    }

    /// [`Mixing::backward`] on CUDA kernels compiled for up to `compiled = (R, C)` steps (see
    /// [`Mixing::forward_within`]).
    pub fn backward_within(
        &self,
        x: &[f32],
        n: usize,
        grad_s: &[f32],
        jit: &Jit,
        compiled: (usize, usize),
    ) -> Result<MixGrads, MixError> {
        self.check(x, n)?;
        self.check_memory(n, jit, true, true)?;
        let mut gx = vec![0.0; self.cols * n];
        let (weight, bias) = self.backward_into_within(x, n, grad_s, jit, &mut gx, compiled)?;
        Ok(MixGrads {
            x: gx,
            weight,
            bias,
        })
    }

    fn backward_into_within(
        &self,
        x: &[f32],
        n: usize,
        grad_s: &[f32],
        jit: &Jit,
        grad_x: &mut [f32],
        compiled: (usize, usize),
    ) -> Result<(Vec<f32>, Vec<f32>), MixError> {
        self.check(x, n)?;
        check_len("spike gradient", self.rows * n, grad_s.len())?;
        check_len("input gradient", self.cols * n, grad_x.len())?;
        self.check_memory(n, jit, true, false)?;
        Ok(match jit.mix_target() {
            MixTarget::Reference => reference::backward(self, x, n, grad_s, grad_x),
            MixTarget::Cpu { threads } => cpu::backward(self, x, n, grad_s, threads, grad_x),
            t @ (MixTarget::Cuda | MixTarget::CudaEmulated) => {
                let g = cuda::backward(self, x, n, grad_s, t, compiled)?;
                grad_x.copy_from_slice(&g.x);
                (g.weight, g.bias)
            }
        })
    }
}

/// CUDA (real or emulated): the generated mixing kernels of [`crate::cuda::mixing`].
mod cuda {
    use std::sync::Arc;

    use flexsn_compiler::codegen::cuda::CudaOptions;
    use flexsn_compiler::codegen::cuda::mixing::MixingSpec;

    use super::{MixError, MixTarget, Mixing};
    use crate::cuda::{CudaError, MixGradients, MixingKernels, shared_device, shared_emulated};

    /// The compiled kernels for up to `compiled` steps with `m`'s surrogate (cached per
    /// process).
    fn kernels(
        m: &Mixing,
        target: MixTarget,
        compiled: (usize, usize),
    ) -> Result<Arc<dyn MixingKernels>, CudaError> {
        let spec = MixingSpec {
            rows: compiled.0.max(m.rows),
            cols: compiled.1.max(m.cols),
            surrogate: m.surrogate,
        };
        Ok(if target == MixTarget::Cuda {
            shared_device()?.mixing(&spec, &CudaOptions::default())?
        } else {
            shared_emulated()?.mixing(&spec)?
        })
    }

    fn err(target: MixTarget) -> impl FnOnce(CudaError) -> MixError {
        move |e| MixError::Backend {
            backend: target.name(),
            why: e.to_string(),
        }
    }

    pub(super) fn forward(
        m: &Mixing,
        x: &[f32],
        n: usize,
        target: MixTarget,
        compiled: (usize, usize),
    ) -> Result<Vec<f32>, MixError> {
        kernels(m, target, compiled)
            .and_then(|k| k.forward(m.weight, m.bias, x, n))
            .map_err(err(target))
    }

    pub(super) fn backward(
        m: &Mixing,
        x: &[f32],
        n: usize,
        grad_s: &[f32],
        target: MixTarget,
        compiled: (usize, usize),
    ) -> Result<MixGradients, MixError> {
        kernels(m, target, compiled)
            .and_then(|k| k.backward(m.weight, m.bias, x, grad_s, n))
            .map_err(err(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backend;
    use crate::cpu::CpuOptions;
    use flexsn_compiler::rng::SplitMix64;

    fn cpu(threads: usize) -> Jit {
        Jit::cpu(CpuOptions {
            threads,
            ..CpuOptions::default()
        })
        .unwrap()
    }

    fn reference() -> Jit {
        Jit::new(Backend::Interpreter).unwrap()
    }

    fn random(rng: &mut SplitMix64, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| rng.uniform_symmetric(scale)).collect()
    }

    fn close(a: &[f32], b: &[f32], rtol: f32, atol: f32) {
        assert_eq!(a.len(), b.len());
        for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= atol + rtol * y.abs(),
                "element {i}: {x} vs {y}"
            );
        }
    }

    #[test]
    fn cpu_matches_reference_over_shapes() {
        let mut rng = SplitMix64::new(3);
        for &(rows, cols, n) in &[
            (1, 1, 1),
            (4, 4, 7),
            (2, 3, 1001),
            (4, 4, 70_000),
            (3, 5, 33),
            (16, 16, 1000),
            (8, 3, 4099),
            (64, 64, 300),
            // rows != cols on the GEMM path, two blocks per column chunk.
            (7, 40, 51_200),
        ] {
            let w = random(&mut rng, rows * cols, 1.0 / (cols as f32).sqrt());
            let b = random(&mut rng, rows, 1.0);
            let x = random(&mut rng, cols * n, 3.0);
            let gs = random(&mut rng, rows * n, 1.0);
            let mix = Mixing {
                rows,
                cols,
                weight: &w,
                bias: &b,
                surrogate: Surrogate::ATan { alpha: 2.0 },
            };
            let sr = mix.forward(&x, n, &reference()).unwrap();
            let sc = mix.forward(&x, n, &cpu(2)).unwrap();
            if cols <= cpu::SMALL_COLS {
                assert_eq!(sr, sc, "the small path sums in the reference's order");
            }
            // Spikes may differ only where H is within rounding of 0.
            let flips = sr.iter().zip(&sc).filter(|(a, b)| a != b).count();
            assert!(flips <= n * rows / 1000, "{flips} spike flips");
            let gr = mix.backward(&x, n, &gs, &reference()).unwrap();
            let gc = mix.backward(&x, n, &gs, &cpu(2)).unwrap();
            close(&gc.x, &gr.x, 1e-4, 1e-5);
            close(&gc.weight, &gr.weight, 1e-4, 1e-4);
            close(&gc.bias, &gr.bias, 1e-4, 1e-4);
        }
    }

    #[test]
    fn gradients_bit_identical_for_every_thread_count() {
        let mut rng = SplitMix64::new(11);
        for (rows, cols, n) in [(16, 16, 50_000), (4, 4, 70_000)] {
            let w = random(&mut rng, rows * cols, 0.25);
            let b = random(&mut rng, rows, 1.0);
            let x = random(&mut rng, cols * n, 3.0);
            let gs = random(&mut rng, rows * n, 1.0);
            let mix = Mixing {
                rows,
                cols,
                weight: &w,
                bias: &b,
                surrogate: Surrogate::Sigmoid { alpha: 4.0 },
            };
            let g1 = mix.backward(&x, n, &gs, &cpu(1)).unwrap();
            for threads in [2, 3, 5] {
                let gk = mix.backward(&x, n, &gs, &cpu(threads)).unwrap();
                assert_eq!(g1, gk, "threads = {threads}");
            }
            let s1 = mix.forward(&x, n, &cpu(1)).unwrap();
            let s3 = mix.forward(&x, n, &cpu(3)).unwrap();
            assert_eq!(s1, s3);
        }
    }

    #[test]
    fn shapes_are_checked() {
        let w = [1.0f32; 4];
        let b = [0.0f32; 2];
        let mix = Mixing {
            rows: 2,
            cols: 2,
            weight: &w,
            bias: &b,
            surrogate: Surrogate::ATan { alpha: 2.0 },
        };
        assert!(matches!(
            mix.forward(&[1.0; 5], 3, &reference()),
            Err(MixError::Len {
                what: "input sequence",
                expected: 6,
                got: 5
            })
        ));
        assert!(matches!(
            mix.forward(&[], 0, &cpu(0)),
            Err(MixError::NoNeurons)
        ));
        assert!(matches!(
            mix.backward(&[1.0; 6], 3, &[1.0; 5], &cpu(0)),
            Err(MixError::Len { .. })
        ));
    }
}
