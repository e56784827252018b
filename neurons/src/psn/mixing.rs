//! Time mixing with a spike: the compute core of [`PSN`](super::PSN) and
//! [`MaskedPSN`](super::MaskedPSN).
//!
//! Forward: `H = W·X + b`, `S = Θ(H)`, with `W` a `[R, C]` matrix over time (`R` output steps,
//! `C` input steps; `R = C = T` for a whole sequence), `X` the `[C, N]` input, `b` the `[R]`
//! bias. Backward, given `gS`: `gH = sg'(H)·gS`, `gX = Wᵀ·gH`, `gW = gH·Xᵀ`, `gb = Σ_n gH`.
//!
//! Three implementations, chosen by [`MixBackend`]:
//!
//! - [`MixBackend::Reference`]: plain loops, `f32` sums in index order (`f64` for the parameter
//!   gradients). Obviously right; the oracle the fast path is tested against.
//! - [`MixBackend::Cpu`]: GEMMs from the `matrixmultiply` crate over blocks of columns, with the
//!   bias, the spike (and, backward, the surrogate derivative, `gX` and `gW`) computed while the
//!   block is in cache, so `H` never goes to memory. Forward reads `X` once and writes `S` once;
//!   backward reads `X` and `gS` once and writes `gX` once (`H` is recomputed: one more GEMM, no
//!   more memory traffic). Column chunks run on threads. The chunks are a function of the shape
//!   only and the partial `gW`, `gb` of the chunks are summed in chunk order, so gradients are
//!   bit-identical for every thread count.
//! - [`MixBackend::Cuda`] / [`MixBackend::CudaEmulated`]: the generated CUDA kernels of
//!   [`flexsn_compiler::codegen::cuda::mixing`] (one thread per neuron fused with the spike and
//!   the surrogate, a split-K weight gradient summed in a fixed order), on device 0 or run as
//!   host C++. A module is compiled (and cached) per largest shape; `MaskedPSN`'s single steps
//!   run their windows on the module of the whole `T × T` mixing.

use flexsn_compiler::ir::Surrogate;
use flexsn_runtime::{Backend, UnknownBackend};

use super::{PsnError, check_len};

/// Where the time mixing runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MixBackend {
    /// Plain loops (the oracle).
    Reference,
    /// Blocked GEMM (`matrixmultiply`) fused with the spike step, on `threads` threads
    /// (0 = every available core).
    /// Blocked GEMM (`matrixmultiply`) fused with the spike step.
    Cpu {
        /// Threads (0 = every available core).
        threads: usize,
    },
    /// CUDA device 0: the generated mixing kernels (NVRTC), f32, precise math; host slices are
    /// copied in and out per call.
    Cuda,
    /// The same CUDA source compiled as host C++ and run on the CPU (checks the kernels
    /// without a GPU; slow).
    CudaEmulated,
}

impl MixBackend {
    /// The CPU path on every available core.
    pub fn cpu() -> Self {
        MixBackend::Cpu { threads: 0 }
    }

    /// Parses a backend name with [`Backend::from_name`].
    pub fn from_name(name: &str) -> Result<Self, UnknownBackend> {
        Backend::from_name(name).map(MixBackend::from)
    }

    /// The name [`MixBackend::from_name`] reads.
    pub fn name(self) -> &'static str {
        match self {
            MixBackend::Reference => "interp",
            MixBackend::Cpu { .. } => "cpu",
            MixBackend::Cuda => "cuda",
            MixBackend::CudaEmulated => "cuda-emulated",
        }
    }
}

/// Each runtime backend's time mixing: the interpreter's is the reference loops.
impl From<Backend> for MixBackend {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Interpreter => MixBackend::Reference,
            Backend::Cpu => MixBackend::cpu(),
            Backend::Cuda => MixBackend::Cuda,
            Backend::CudaEmulated => MixBackend::CudaEmulated,
        }
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
    fn check(&self, x: &[f32], n: usize) -> Result<(), PsnError> {
        if n == 0 {
            return Err(PsnError::NoNeurons);
        }
        check_len("weight", self.rows * self.cols, self.weight.len())?;
        check_len("bias", self.rows, self.bias.len())?;
        let len = self.cols.checked_mul(n).ok_or(PsnError::Overflow)?;
        self.rows.checked_mul(n).ok_or(PsnError::Overflow)?;
        check_len("input sequence", len, x.len())
    }

    /// Spikes `[rows, N]` of input `x` (`[cols, N]`).
    pub fn forward(&self, x: &[f32], n: usize, backend: MixBackend) -> Result<Vec<f32>, PsnError> {
        self.forward_within(x, n, backend, (self.rows, self.cols))
    }

    /// [`Mixing::forward`] into a caller's buffer `spikes` (`[rows, N]`), e.g. reused across
    /// calls.
    pub fn forward_into(
        &self,
        x: &[f32],
        n: usize,
        backend: MixBackend,
        spikes: &mut [f32],
    ) -> Result<(), PsnError> {
        self.forward_into_within(x, n, backend, spikes, (self.rows, self.cols))
    }

    /// [`Mixing::forward`] on CUDA kernels compiled for up to `compiled = (R, C)` steps (a window
    /// of a longer sequence reuses its module instead of compiling its own shape).
    pub(crate) fn forward_within(
        &self,
        x: &[f32],
        n: usize,
        backend: MixBackend,
        compiled: (usize, usize),
    ) -> Result<Vec<f32>, PsnError> {
        let mut s = vec![0.0; self.rows.checked_mul(n).ok_or(PsnError::Overflow)?];
        self.forward_into_within(x, n, backend, &mut s, compiled)?;
        Ok(s)
    }

    fn forward_into_within(
        &self,
        x: &[f32],
        n: usize,
        backend: MixBackend,
        spikes: &mut [f32],
        compiled: (usize, usize),
    ) -> Result<(), PsnError> {
        self.check(x, n)?;
        check_len("spike output", self.rows * n, spikes.len())?;
        match backend {
            MixBackend::Reference => reference_forward(self, x, n, spikes),
            MixBackend::Cpu { threads } => cpu_forward(self, x, n, threads, spikes),
            MixBackend::Cuda | MixBackend::CudaEmulated => {
                spikes.copy_from_slice(&cuda::forward(self, x, n, backend, compiled)?)
            }
        }
        Ok(())
    }

    /// Gradients of `sum(grad_s * S)` w.r.t. `x`, the weight and the bias.
    pub fn backward(
        &self,
        x: &[f32],
        n: usize,
        grad_s: &[f32],
        backend: MixBackend,
    ) -> Result<MixGrads, PsnError> {
        self.backward_within(x, n, grad_s, backend, (self.rows, self.cols))
    }

    /// [`Mixing::backward`] writing `d loss / d x` into a caller's buffer `grad_x`
    /// (`[cols, N]`); returns the weight and bias gradients.
    pub fn backward_into(
        &self,
        x: &[f32],
        n: usize,
        grad_s: &[f32],
        backend: MixBackend,
        grad_x: &mut [f32],
    ) -> Result<(Vec<f32>, Vec<f32>), PsnError> {
        self.backward_into_within(x, n, grad_s, backend, grad_x, (self.rows, self.cols))
    }

    /// [`Mixing::backward`] on CUDA kernels compiled for up to `compiled = (R, C)` steps (see
    /// [`Mixing::forward_within`]).
    pub(crate) fn backward_within(
        &self,
        x: &[f32],
        n: usize,
        grad_s: &[f32],
        backend: MixBackend,
        compiled: (usize, usize),
    ) -> Result<MixGrads, PsnError> {
        self.check(x, n)?;
        let mut gx = vec![0.0; self.cols * n];
        let (weight, bias) = self.backward_into_within(x, n, grad_s, backend, &mut gx, compiled)?;
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
        backend: MixBackend,
        grad_x: &mut [f32],
        compiled: (usize, usize),
    ) -> Result<(Vec<f32>, Vec<f32>), PsnError> {
        self.check(x, n)?;
        check_len("spike gradient", self.rows * n, grad_s.len())?;
        check_len("input gradient", self.cols * n, grad_x.len())?;
        Ok(match backend {
            MixBackend::Reference => reference_backward(self, x, n, grad_s, grad_x),
            MixBackend::Cpu { threads } => cpu_backward(self, x, n, grad_s, threads, grad_x),
            MixBackend::Cuda | MixBackend::CudaEmulated => {
                let g = cuda::backward(self, x, n, grad_s, backend, compiled)?;
                grad_x.copy_from_slice(&g.x);
                (g.weight, g.bias)
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// CUDA (real or emulated): the generated mixing kernels of `flexsn_runtime::cuda::mixing`.

mod cuda {
    use std::sync::Arc;

    use flexsn_compiler::codegen::cuda::CudaOptions;
    use flexsn_compiler::codegen::cuda::mixing::MixingSpec;
    use flexsn_runtime::cuda::{
        CudaError, MixGradients, MixingKernels, shared_device, shared_emulated,
    };

    use super::{MixBackend, Mixing, PsnError};

    /// The compiled kernels for up to `compiled` steps with `m`'s surrogate on `backend` (cached
    /// per process).
    fn kernels(
        m: &Mixing,
        backend: MixBackend,
        compiled: (usize, usize),
    ) -> Result<Arc<dyn MixingKernels>, CudaError> {
        let spec = MixingSpec {
            rows: compiled.0.max(m.rows),
            cols: compiled.1.max(m.cols),
            surrogate: m.surrogate,
        };
        Ok(if backend == MixBackend::Cuda {
            shared_device()?.mixing(&spec, &CudaOptions::default())?
        } else {
            shared_emulated()?.mixing(&spec)?
        })
    }

    fn err(backend: MixBackend) -> impl FnOnce(CudaError) -> PsnError {
        move |e| PsnError::MixBackend {
            backend: backend.name(),
            why: e.to_string(),
        }
    }

    pub(super) fn forward(
        m: &Mixing,
        x: &[f32],
        n: usize,
        backend: MixBackend,
        compiled: (usize, usize),
    ) -> Result<Vec<f32>, PsnError> {
        kernels(m, backend, compiled)
            .and_then(|k| k.forward(m.weight, m.bias, x, n))
            .map_err(err(backend))
    }

    pub(super) fn backward(
        m: &Mixing,
        x: &[f32],
        n: usize,
        grad_s: &[f32],
        backend: MixBackend,
        compiled: (usize, usize),
    ) -> Result<MixGradients, PsnError> {
        kernels(m, backend, compiled)
            .and_then(|k| k.backward(m.weight, m.bias, x, grad_s, n))
            .map_err(err(backend))
    }
}

// ---------------------------------------------------------------------------------------------
// Reference

fn reference_h(m: &Mixing, x: &[f32], n: usize, r: usize, c: usize) -> f32 {
    let mut acc = 0.0f32;
    for j in 0..m.cols {
        acc += m.weight[r * m.cols + j] * x[j * n + c];
    }
    acc + m.bias[r]
}

fn reference_forward(m: &Mixing, x: &[f32], n: usize, s: &mut [f32]) {
    for r in 0..m.rows {
        for c in 0..n {
            s[r * n + c] = Surrogate::heaviside(reference_h(m, x, n, r, c));
        }
    }
}

fn reference_backward(
    m: &Mixing,
    x: &[f32],
    n: usize,
    gs: &[f32],
    gx: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let (rows, cols) = (m.rows, m.cols);
    let mut gh = vec![0.0f32; rows * n];
    for r in 0..rows {
        for c in 0..n {
            let h = reference_h(m, x, n, r, c);
            gh[r * n + c] = m.surrogate.grad(h) * gs[r * n + c];
        }
    }
    for j in 0..cols {
        for c in 0..n {
            let mut acc = 0.0f32;
            for r in 0..rows {
                acc += m.weight[r * cols + j] * gh[r * n + c];
            }
            gx[j * n + c] = acc;
        }
    }
    let mut gw = vec![0.0f32; rows * cols];
    for r in 0..rows {
        for j in 0..cols {
            let acc: f64 = (0..n)
                .map(|c| gh[r * n + c] as f64 * x[j * n + c] as f64)
                .sum();
            gw[r * cols + j] = acc as f32;
        }
    }
    let gb = (0..rows)
        .map(|r| {
            gh[r * n..(r + 1) * n]
                .iter()
                .map(|&g| g as f64)
                .sum::<f64>() as f32
        })
        .collect();
    (gw, gb)
}

// ---------------------------------------------------------------------------------------------
// CPU: blocked GEMM fused with the spike

/// A matrix operand: slice, row stride, column stride (both non-negative).
struct Mat<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

/// `C ← A·B + beta·C` with `A` `[m, k]`, `B` `[k, n]`, `C` `[m, n]` (row stride `rsc`, column
/// stride 1). Checks that every element the GEMM touches lies inside its slice.
#[allow(clippy::too_many_arguments)]
fn gemm(m: usize, k: usize, n: usize, a: Mat, b: Mat, beta: f32, c: &mut [f32], rsc: usize) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| {
        (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs
    };
    assert!(
        k == 0 || last(m, k, a.rs, a.cs) < a.data.len(),
        "gemm: A out of bounds"
    );
    assert!(
        k == 0 || last(k, n, b.rs, b.cs) < b.data.len(),
        "gemm: B out of bounds"
    );
    assert!(last(m, n, rsc, 1) < c.len(), "gemm: C out of bounds");
    // SAFETY: the asserts above check that every element read from `a` and `b` and written to
    // `c` lies inside the slice it comes from; strides are non-negative and `c` is a unique
    // borrow with row stride >= n (so no two elements of C alias).
    assert!(m == 1 || rsc >= n, "gemm: C rows overlap");
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            1,
        );
    }
}

/// Columns per block: the `[rows, nb]` block of `H` (and of `X`) stays in L2.
fn block_cols(rows: usize, cols: usize) -> usize {
    const BLOCK_FLOATS: usize = 16 * 1024; // 64 KiB per buffer
    let per_col = rows.max(cols).max(1);
    (BLOCK_FLOATS / per_col).clamp(16, 4096) / 16 * 16
}

/// Column chunks (the unit of work of a thread and of the deterministic gradient reduction):
/// a function of the shape only, at most `MAX_CHUNKS` of them, whole blocks each.
fn chunk_cols(rows: usize, cols: usize, n: usize) -> usize {
    const MAX_CHUNKS: usize = 64;
    let nb = block_cols(rows, cols);
    let per = n.div_ceil(MAX_CHUNKS).max(1);
    per.div_ceil(nb) * nb
}

/// Below this many multiply-adds a call stays on one thread (thread start-up costs more).
const PARALLEL_MIN_WORK: usize = 1 << 18;

fn thread_count(requested: usize, chunks: usize, work: usize) -> usize {
    if work < PARALLEL_MIN_WORK {
        return 1;
    }
    let avail = if requested == 0 {
        std::thread::available_parallelism().map_or(1, |p| p.get())
    } else {
        requested
    };
    avail.clamp(1, chunks.max(1))
}

/// Splits each of the `rows` rows of `out` (`[rows, n]`) at multiples of `ch` columns and
/// returns, per chunk, its row segments: disjoint mutable views a thread can own.
fn row_segments(out: &mut [f32], n: usize, ch: usize) -> Vec<Vec<&mut [f32]>> {
    let chunks = n.div_ceil(ch);
    let mut per_chunk: Vec<Vec<&mut [f32]>> = (0..chunks).map(|_| Vec::new()).collect();
    for row in out.chunks_mut(n) {
        for (i, seg) in row.chunks_mut(ch).enumerate() {
            per_chunk[i].push(seg);
        }
    }
    per_chunk
}

/// Runs `work(chunk_index, item)` for every item, on `threads` threads, items split into
/// contiguous runs.
fn run_chunks<T: Send>(items: Vec<T>, threads: usize, work: impl Fn(usize, T) + Sync) {
    if threads <= 1 {
        for (i, it) in items.into_iter().enumerate() {
            work(i, it);
        }
        return;
    }
    let total = items.len();
    let mut groups: Vec<Vec<(usize, T)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, it) in items.into_iter().enumerate() {
        groups[i * threads / total].push((i, it));
    }
    std::thread::scope(|s| {
        for g in groups {
            let work = &work;
            s.spawn(move || {
                for (i, it) in g {
                    work(i, it);
                }
            });
        }
    });
}

fn cpu_forward(m: &Mixing, x: &[f32], n: usize, threads: usize, s: &mut [f32]) {
    let (rows, cols) = (m.rows, m.cols);
    let nb = block_cols(rows, cols);
    let ch = chunk_cols(rows, cols, n);
    let segs = row_segments(s, n, ch);
    let threads = thread_count(threads, segs.len(), rows * cols * n);
    run_chunks(segs, threads, |ci, mut out_rows| {
        let c0 = ci * ch;
        let width = out_rows.first().map_or(0, |r| r.len());
        if cols <= SMALL_COLS {
            small_forward(m, x, n, c0, &mut out_rows);
            return;
        }
        let mut h = vec![0.0f32; rows * nb];
        let mut off = 0;
        while off < width {
            let w = nb.min(width - off);
            gemm(
                rows,
                cols,
                w,
                Mat {
                    data: m.weight,
                    rs: cols,
                    cs: 1,
                },
                Mat {
                    data: &x[c0 + off..],
                    rs: n,
                    cs: 1,
                },
                0.0,
                &mut h,
                w,
            );
            for (r, out) in out_rows.iter_mut().enumerate() {
                let b = m.bias[r];
                let dst = &mut out[off..off + w];
                for (d, &hv) in dst.iter_mut().zip(&h[r * w..(r + 1) * w]) {
                    *d = if hv + b >= 0.0 { 1.0 } else { 0.0 };
                }
            }
            off += w;
        }
    });
}

/// Up to this many input (and, backward, output) steps, the mixing skips the GEMM crate, whose
/// packing and fixed-size micro-kernels cost more than the few multiply-adds per column, for
/// plain loops ([`small_forward`], [`small_backward`]). Measured here (T = 4, N = 4M, one
/// thread): forward 18 ms instead of ~34 ms, backward 68 ms instead of 125 ms; at T = 8 the
/// GEMM path was as fast or faster, so the threshold is 4.
const SMALL_COLS: usize = 4;

/// Forward for `cols <= SMALL_COLS`: per output row, one pass over the chunk's columns with the
/// `cols` weights in registers (monomorphised per `cols`, vectorised over columns), the sum in
/// input-step order then the bias (the reference path's order, so bit-identical to it).
fn small_forward(m: &Mixing, x: &[f32], n: usize, c0: usize, out_rows: &mut [&mut [f32]]) {
    fn run<const C: usize>(
        m: &Mixing,
        x: &[f32],
        n: usize,
        c0: usize,
        out_rows: &mut [&mut [f32]],
    ) {
        for (r, out) in out_rows.iter_mut().enumerate() {
            let width = out.len();
            let w: [f32; C] = std::array::from_fn(|j| m.weight[r * C + j]);
            let xs: [&[f32]; C] = std::array::from_fn(|j| &x[j * n + c0..j * n + c0 + width]);
            let b = m.bias[r];
            for (i, o) in out.iter_mut().enumerate() {
                let mut acc = 0.0f32;
                for j in 0..C {
                    acc += w[j] * xs[j][i];
                }
                *o = if acc + b >= 0.0 { 1.0 } else { 0.0 };
            }
        }
    }
    match m.cols {
        1 => run::<1>(m, x, n, c0, out_rows),
        2 => run::<2>(m, x, n, c0, out_rows),
        3 => run::<3>(m, x, n, c0, out_rows),
        4 => run::<4>(m, x, n, c0, out_rows),
        c => unreachable!("small_forward called with {c} > {SMALL_COLS} columns"),
    }
}

/// Backward for `rows, cols <= SMALL_COLS` over one chunk (columns `c0..`, `gx_rows` its rows
/// of `gX`), in blocks of `g.len() / rows` columns: recompute `H` (as [`small_forward`]),
/// `gH = sg'(H + b)·gS`, then `gX = Wᵀ·gH` and the partial `gW += gH·Xᵀ`, `gb += Σ gH` with plain
/// loops (8-lane sums, a fixed order).
#[allow(clippy::too_many_arguments)]
fn small_backward(
    m: &Mixing,
    x: &[f32],
    n: usize,
    gs: &[f32],
    c0: usize,
    gx_rows: &mut [&mut [f32]],
    g: &mut [f32],
    part: &mut Partial,
) {
    fn run<const C: usize>(
        m: &Mixing,
        x: &[f32],
        n: usize,
        gs: &[f32],
        c0: usize,
        gx_rows: &mut [&mut [f32]],
        g: &mut [f32],
        part: &mut Partial,
    ) {
        let rows = m.rows;
        let width = gx_rows.first().map_or(0, |r| r.len());
        let nb = g.len() / rows;
        let mut off = 0;
        while off < width {
            let w = nb.min(width - off);
            let col = c0 + off;
            let xs: [&[f32]; C] = std::array::from_fn(|j| &x[j * n + col..j * n + col + w]);
            for r in 0..rows {
                let wr: [f32; C] = std::array::from_fn(|j| m.weight[r * C + j]);
                let grow = &mut g[r * w..(r + 1) * w];
                for (i, h) in grow.iter_mut().enumerate() {
                    let mut acc = 0.0f32;
                    for j in 0..C {
                        acc += wr[j] * xs[j][i];
                    }
                    *h = acc;
                }
                surrogate_times(
                    m.surrogate,
                    grow,
                    m.bias[r],
                    &gs[r * n + col..r * n + col + w],
                );
                part.gb[r] += sum_f64(grow);
                for (j, xj) in xs.iter().enumerate() {
                    part.gw[r * C + j] += dot(grow, xj);
                }
            }
            for (j, out) in gx_rows.iter_mut().enumerate() {
                let out = &mut out[off..off + w];
                out.fill(0.0);
                for r in 0..rows {
                    let wrj = m.weight[r * C + j];
                    for (o, &gv) in out.iter_mut().zip(&g[r * w..(r + 1) * w]) {
                        *o += wrj * gv;
                    }
                }
            }
            off += w;
        }
    }
    match m.cols {
        1 => run::<1>(m, x, n, gs, c0, gx_rows, g, part),
        2 => run::<2>(m, x, n, gs, c0, gx_rows, g, part),
        3 => run::<3>(m, x, n, gs, c0, gx_rows, g, part),
        4 => run::<4>(m, x, n, gs, c0, gx_rows, g, part),
        c => unreachable!("small_backward called with {c} > {SMALL_COLS} columns"),
    }
}

/// `Σ a[i]·b[i]` in `f32` over 8 independent lanes (vectorisable; fixed order).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((l, &p), &q) in lanes.iter_mut().zip(x).zip(y) {
            *l += p * q;
        }
    }
    let mut total = lanes.iter().sum::<f32>();
    for (&p, &q) in ta.iter().zip(tb) {
        total += p * q;
    }
    total
}

/// Expands `$fast` with `$f` bound to a plain-`f32` closure computing `sg'` (one closure type
/// per surrogate, so every use is monomorphised and inlined), or `$slow` with `$s` bound to the
/// surrogate when it has no fast form. Each fast formula is [`Surrogate::grad`]'s, operation for
/// operation, so the results are bit-identical (tested).
macro_rules! with_fast_grad {
    ($sg:expr, |$f:ident| $fast:expr, |$s:ident| $slow:expr) => {{
        use Surrogate::*;
        match $sg {
            ATan { alpha } => {
                let a = alpha / 2.0;
                let pa = std::f32::consts::PI * a;
                let $f = move |x: f32| {
                    let ax = pa * x;
                    a / (1.0 + ax * ax)
                };
                $fast
            }
            Sigmoid { alpha } => {
                let $f = move |x: f32| {
                    let s = 1.0 / (1.0 + (-(x * alpha)).exp());
                    (1.0 - s) * s * alpha
                };
                $fast
            }
            PiecewiseQuadratic { alpha } => {
                let (inv, a2) = (1.0 / alpha, alpha * alpha);
                let $f = move |x: f32| {
                    if x.abs() > inv {
                        0.0
                    } else {
                        -a2 * x.abs() + alpha
                    }
                };
                $fast
            }
            PiecewiseExp { alpha } => {
                let half = alpha / 2.0;
                let $f = move |x: f32| half * (-alpha * x.abs()).exp();
                $fast
            }
            SoftSign { alpha } => {
                let (inv, two_a) = (1.0 / alpha, 2.0 * alpha);
                let $f = move |x: f32| {
                    let d = inv + x.abs();
                    1.0 / (two_a * (d * d))
                };
                $fast
            }
            SuperSpike { alpha } => {
                let $f = move |x: f32| {
                    let d = x.abs() + 1.0;
                    alpha / (d * d)
                };
                $fast
            }
            NonzeroSignLogAbs { alpha } => {
                let inv = 1.0 / alpha;
                let $f = move |x: f32| 1.0 / (inv + x.abs());
                $fast
            }
            PiecewiseLeakyReLU { w, c } => {
                let inside = 1.0 / (2.0 * w);
                let $f = move |x: f32| if x.abs() < w { inside } else { c };
                $fast
            }
            LeakyKReLU { leak, k } => {
                let $f = move |x: f32| if x >= 0.0 { k } else { leak };
                $fast
            }
            Rect { alpha } => {
                let half = 0.5 / alpha;
                let $f = move |x: f32| if x.abs() < half { alpha } else { 0.0 };
                $fast
            }
            DeterministicPass => {
                let $f = |_x: f32| 1.0f32;
                $fast
            }
            $s => $slow,
        }
    }};
}

/// `g[i] ← sg'(g[i] + bias) · gs[i]`, with the surrogate resolved once, outside the loop (the
/// generic [`Surrogate::grad`] goes through the `Real` trait, whose cross-crate calls made this
/// loop the slowest part of backward).
fn surrogate_times(sg: Surrogate, g: &mut [f32], bias: f32, gs: &[f32]) {
    #[inline(always)]
    fn run(g: &mut [f32], bias: f32, gs: &[f32], f: impl Fn(f32) -> f32) {
        for (gv, &sv) in g.iter_mut().zip(gs) {
            *gv = f(*gv + bias) * sv;
        }
    }
    with_fast_grad!(sg, |f| run(g, bias, gs, f), |s| run(g, bias, gs, |x| s
        .grad(x)))
}

/// `Σ xs` in `f64`, over 8 independent lanes (vectorisable; the order is fixed, so the result
/// is the same on every run).
fn sum_f64(xs: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += v as f64;
        }
    }
    let mut total = lanes.iter().sum::<f64>();
    for &v in tail {
        total += v as f64;
    }
    total
}

/// Per-chunk partial parameter gradients.
struct Partial {
    gw: Vec<f32>,
    gb: Vec<f64>,
}

fn cpu_backward(
    m: &Mixing,
    x: &[f32],
    n: usize,
    gs: &[f32],
    threads: usize,
    gx: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let (rows, cols) = (m.rows, m.cols);
    let nb = block_cols(rows, cols);
    let ch = chunk_cols(rows, cols, n);
    let segs = row_segments(gx, n, ch);
    let chunks = segs.len();
    let partials: Vec<std::sync::Mutex<Option<Partial>>> =
        (0..chunks).map(|_| std::sync::Mutex::new(None)).collect();
    let threads = thread_count(threads, chunks, 3 * rows * cols * n);
    run_chunks(segs, threads, |ci, mut gx_rows| {
        let c0 = ci * ch;
        let width = gx_rows.first().map_or(0, |r| r.len());
        let mut g = vec![0.0f32; rows * nb];
        let mut gxb = vec![0.0f32; cols * nb];
        let mut part = Partial {
            gw: vec![0.0; rows * cols],
            gb: vec![0.0; rows],
        };
        if rows <= SMALL_COLS && cols <= SMALL_COLS {
            small_backward(m, x, n, gs, c0, &mut gx_rows, &mut g, &mut part);
            *partials[ci].lock().unwrap_or_else(|e| e.into_inner()) = Some(part);
            return;
        }
        let mut off = 0;
        while off < width {
            let w = nb.min(width - off);
            let col = c0 + off;
            // H = W·X (recomputed), then gH = sg'(H + b)·gS in place.
            gemm(
                rows,
                cols,
                w,
                Mat {
                    data: m.weight,
                    rs: cols,
                    cs: 1,
                },
                Mat {
                    data: &x[col..],
                    rs: n,
                    cs: 1,
                },
                0.0,
                &mut g,
                w,
            );
            for r in 0..rows {
                let grow = &mut g[r * w..(r + 1) * w];
                surrogate_times(
                    m.surrogate,
                    grow,
                    m.bias[r],
                    &gs[r * n + col..r * n + col + w],
                );
                part.gb[r] += sum_f64(grow);
            }
            // gX = Wᵀ·gH.
            gemm(
                cols,
                rows,
                w,
                Mat {
                    data: m.weight,
                    rs: 1,
                    cs: cols,
                },
                Mat {
                    data: &g,
                    rs: w,
                    cs: 1,
                },
                0.0,
                &mut gxb,
                w,
            );
            for (j, out) in gx_rows.iter_mut().enumerate() {
                out[off..off + w].copy_from_slice(&gxb[j * w..(j + 1) * w]);
            }
            // gW += gH·Xᵀ.
            gemm(
                rows,
                w,
                cols,
                Mat {
                    data: &g,
                    rs: w,
                    cs: 1,
                },
                Mat {
                    data: &x[col..],
                    rs: 1,
                    cs: n,
                },
                1.0,
                &mut part.gw,
                cols,
            );
            off += w;
        }
        *partials[ci].lock().unwrap_or_else(|e| e.into_inner()) = Some(part);
    });
    // Sum the chunks' partials in chunk order (f64), independent of the thread count.
    let mut gw = vec![0.0f64; rows * cols];
    let mut gb = vec![0.0f64; rows];
    for p in partials {
        let p = p
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .expect("every chunk ran");
        for (a, &v) in gw.iter_mut().zip(&p.gw) {
            *a += v as f64;
        }
        for (a, &v) in gb.iter_mut().zip(&p.gb) {
            *a += v;
        }
    }
    (
        gw.into_iter().map(|v| v as f32).collect(),
        gb.into_iter().map(|v| v as f32).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::psn::rng::SplitMix64;

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
            let sr = mix.forward(&x, n, MixBackend::Reference).unwrap();
            let sc = mix.forward(&x, n, MixBackend::Cpu { threads: 2 }).unwrap();
            if cols <= SMALL_COLS {
                assert_eq!(sr, sc, "the small path sums in the reference's order");
            }
            // Spikes may differ only where H is within rounding of 0.
            let flips = sr.iter().zip(&sc).filter(|(a, b)| a != b).count();
            assert!(flips <= n * rows / 1000, "{flips} spike flips");
            let gr = mix.backward(&x, n, &gs, MixBackend::Reference).unwrap();
            let gc = mix
                .backward(&x, n, &gs, MixBackend::Cpu { threads: 2 })
                .unwrap();
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
            let g1 = mix
                .backward(&x, n, &gs, MixBackend::Cpu { threads: 1 })
                .unwrap();
            for threads in [2, 3, 5] {
                let gk = mix
                    .backward(&x, n, &gs, MixBackend::Cpu { threads })
                    .unwrap();
                assert_eq!(g1, gk, "threads = {threads}");
            }
            let s1 = mix.forward(&x, n, MixBackend::Cpu { threads: 1 }).unwrap();
            let s3 = mix.forward(&x, n, MixBackend::Cpu { threads: 3 }).unwrap();
            assert_eq!(s1, s3);
        }
    }

    #[test]
    fn fast_surrogate_derivatives_are_bit_identical_to_the_generic_ones() {
        let surrogates = Surrogate::NAMES
            .iter()
            .map(|n| Surrogate::default_for(n).unwrap())
            .chain([
                Surrogate::ATan { alpha: 3.3 },
                Surrogate::Sigmoid { alpha: 1.7 },
                Surrogate::PiecewiseQuadratic { alpha: 0.6 },
                Surrogate::Rect { alpha: 2.5 },
            ]);
        let xs: Vec<f32> = (-4000..=4000)
            .map(|i| i as f32 * 1.37e-3)
            .chain([0.0, -0.0, 1e-30, -1e-30, 1e30, f32::NAN])
            .collect();
        for sg in surrogates {
            let mut g = xs.clone();
            let ones = vec![1.0f32; xs.len()];
            surrogate_times(sg, &mut g, 0.0, &ones);
            for (&x, &got) in xs.iter().zip(&g) {
                let want = sg.grad(x + 0.0);
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{sg}: sg'({x}) = {got}, generic {want}"
                );
            }
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
            mix.forward(&[1.0; 5], 3, MixBackend::Reference),
            Err(PsnError::Len {
                what: "input sequence",
                expected: 6,
                got: 5
            })
        ));
        assert!(matches!(
            mix.forward(&[], 0, MixBackend::cpu()),
            Err(PsnError::NoNeurons)
        ));
        assert!(matches!(
            mix.backward(&[1.0; 6], 3, &[1.0; 5], MixBackend::cpu()),
            Err(PsnError::Len { .. })
        ));
    }
}
