//! CUDA C source for the time mixing of the PSN family (`PSN`, `MaskedPSN`): a small matrix
//! product over time fused with the spike, forward and backward (pure text, like the scans).
//!
//! The mixing of [`MixingSpec`] is `H = W·X + b`, `S = Θ(H)`, with `W` `[R, C]` (row-major),
//! `X` `[C, N]`, `b` `[R]`. Backward, given `gS`: `gH = sg'(H)·gS`, `gX = Wᵀ·gH`,
//! `gW = gH·Xᵀ`, `gb = Σ_n gH`. `R` and `C` are compile-time constants of the source, so each
//! thread keeps its neuron's column of `X` in registers.
//!
//! [`codegen_mixing`] emits four kernels (`S` is the storage type of `[·, N]` sequences):
//!
//! | kernel | arguments | launch |
//! |---|---|---|
//! | forward | `const float* W, const float* b, const S* x, S* spike, long long N` | [`MixingSource::grid_size`] × [`MixingSource::block_size`] |
//! | backward | `const float* W, const float* b, const S* x, const S* grad_spike, S* grad_x, float* grad_h, long long N` | same |
//! | weight grad | `const float* grad_h, const S* x, float* partial, long long N` | [`MixingSource::wgrad_grid`] × [`WGRAD_BLOCK`] |
//! | reduce | `const float* partial, float* out, long long chunks` | [`MixingSource::reduce_grid`] × [`WGRAD_BLOCK`] |
//!
//! Forward and backward run one thread per neuron. Backward recomputes `H` (one more product,
//! no extra traffic), writes `gX` and `gH` (`float [R, N]`). The weight-gradient kernel is a
//! split-K product: block `(x, y)` sums `gH·Xᵀ` over the neurons of chunk `x`
//! ([`WGRAD_CHUNK`] of them) for its group `y` of 4×4 output tiles, through shared-memory tiles
//! of [`MixingSource::tile`] neurons, and writes `partial[x, :]` (`R·C` weight entries row-major,
//! then `R` bias entries). The reduce kernel adds the chunks' partials in chunk order in double.
//! Chunks depend on `N` only, so the gradients are the same on every run.

use std::fmt::Write;

use super::{
    CudaOptions, MathMode, StorageDtype, float_literal, load_expr as load, node_expr, prelude,
    store_expr as store,
};
use crate::autodiff::surrogate_grad;
use crate::error::BuildError;
use crate::ir::builder::GraphBuilder;
use crate::ir::{Op, Surrogate};

/// Threads per block of the weight-gradient and reduce kernels.
pub const WGRAD_BLOCK: u32 = 256;
/// Neurons summed by one weight-gradient block (the split of the reduction over `N`), at least:
/// for large `N · R · C` a block sums several such units (see [`WGRAD_PARTIAL_FLOATS`]).
pub const WGRAD_CHUNK: u64 = 2048;
/// Most floats the weight-gradient chunk partials take (256 MiB): beyond, each block sums more
/// units of [`WGRAD_CHUNK`] neurons (a function of `N` only, so results stay independent of
/// timing). Without the bound, T = 1024 and N = 2^24 would need ~34 GB of partials.
pub const WGRAD_PARTIAL_FLOATS: u64 = 1 << 26;
/// Largest `R` or `C` a mixing kernel is generated for (shared-memory tiles must fit in 48 KiB).
pub const MAX_MIX_STEPS: usize = 4096;
/// Largest `C` whose input column is kept in registers; longer columns are read from memory.
/// The register budget of backward: with C = 128 in registers, ptxas needs 255 registers and
/// spills 620 bytes on sm_80 (`tests/cuda_ptxas.rs`); up to 64 it stays within budget.
const MAX_REGISTER_COLS: usize = 64;
/// Static shared memory available to one block.
const SHARED_BYTES: usize = 48 * 1024;

/// The shape of a time mixing: `R` output steps, `C` input steps, the surrogate of backward.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MixingSpec {
    /// Output steps `R`.
    pub rows: usize,
    /// Input steps `C`.
    pub cols: usize,
    /// The spike's surrogate (its derivative is backward's).
    pub surrogate: Surrogate,
}

/// Why mixing source could not be generated.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MixingCodegenError {
    /// `R` or `C` is zero.
    #[error("a time mixing needs R >= 1 and C >= 1 steps, got R = {rows}, C = {cols}")]
    Empty {
        /// Output steps.
        rows: usize,
        /// Input steps.
        cols: usize,
    },
    /// More steps than the generated kernels handle.
    #[error(
        "R = {rows}, C = {cols}: CUDA mixing kernels are generated for at most {MAX_MIX_STEPS} steps"
    )]
    TooLong {
        /// Output steps.
        rows: usize,
        /// Input steps.
        cols: usize,
    },
    /// A block size CUDA cannot launch.
    #[error("block size {0} is invalid: use a multiple of 32 between 32 and 1024")]
    BlockSize(u32),
    /// The surrogate's derivative could not be built.
    #[error("the surrogate derivative could not be built: {0}")]
    Surrogate(#[from] BuildError),
}

/// Generated source of one mixing, with what a launcher needs.
#[derive(Clone, Debug, PartialEq)]
pub struct MixingSource {
    /// The CUDA C source.
    pub code: String,
    /// `extern "C"` name of the forward kernel.
    pub forward_entry: String,
    /// `extern "C"` name of the input-gradient kernel.
    pub backward_entry: String,
    /// `extern "C"` name of the split-K weight-gradient kernel.
    pub wgrad_entry: String,
    /// `extern "C"` name of the ordered reduction kernel.
    pub reduce_entry: String,
    /// The mixing's shape and surrogate.
    pub spec: MixingSpec,
    /// Storage type of the sequences.
    pub dtype: StorageDtype,
    /// Precise or fast math.
    pub math: MathMode,
    /// Threads per block of forward and backward (one neuron each).
    pub block_size: u32,
    /// Neurons per shared-memory tile of the weight-gradient kernel.
    pub tile: u32,
    /// Most floats of chunk partials ([`WGRAD_PARTIAL_FLOATS`]; lower only to test the bound).
    pub partial_floats: u64,
}

impl MixingSource {
    /// Blocks of forward and backward for `n` neurons.
    pub fn grid_size(&self, n: u64) -> u64 {
        n.div_ceil(self.block_size as u64)
    }

    /// `(chunks, tile groups)`: the 2-D grid of the weight-gradient kernel for `n` neurons.
    /// Chunks are units of [`WGRAD_CHUNK`] neurons while their partials fit in
    /// `partial_floats`; beyond, the kernel gives each block `ceil(units / chunks)` units.
    pub fn wgrad_grid(&self, n: u64) -> (u64, u64) {
        let cap = (self.partial_floats / self.grad_len() as u64).max(1);
        (n.div_ceil(WGRAD_CHUNK).min(cap), self.tile_groups() as u64)
    }

    /// Floats of one chunk's partial gradient: `R·C` weight entries, then `R` bias entries.
    pub fn grad_len(&self) -> usize {
        self.spec.rows * self.spec.cols + self.spec.rows
    }

    /// Blocks of the reduce kernel.
    pub fn reduce_grid(&self) -> u64 {
        (self.grad_len() as u64).div_ceil(WGRAD_BLOCK as u64)
    }

    /// Bytes per stored sequence element.
    pub fn elem_bytes(&self) -> usize {
        self.dtype.size_bytes()
    }

    /// Groups of [`WGRAD_BLOCK`] 4×4 output tiles (the `y` extent of the weight-gradient grid).
    fn tile_groups(&self) -> usize {
        (tiles(self.spec.rows) * tiles(self.spec.cols)).div_ceil(WGRAD_BLOCK as usize)
    }
}

/// 4-row (or 4-column) tiles covering `len`.
fn tiles(len: usize) -> usize {
    len.div_ceil(4)
}

/// The surrogate derivative as a C function `flexsn_mix_sg_grad(float h)`, lowered from the same
/// IR that autodiff builds (so it rounds exactly like the interpreter's backward).
fn surrogate_function(s: Surrogate, math: MathMode) -> Result<String, BuildError> {
    let mut b = GraphBuilder::new("surrogate_grad");
    let h = b.add_input("h")?;
    let d = surrogate_grad(&mut b, s, h)?;
    b.add_output("d", d)?;
    let g = b.finish()?;
    let mut c = String::new();
    let _ = writeln!(
        c,
        "// d spike / d h of {} (its backward formula), from flexsn's IR.",
        s.name()
    );
    c.push_str("static __device__ __forceinline__ float flexsn_mix_sg_grad(const float h) {\n");
    for (v, node) in g.nodes() {
        let rhs = match node.op {
            Op::Input(_) => "h".to_string(),
            Op::Const(x) => float_literal(x),
            _ => node_expr(node, math),
        };
        let _ = writeln!(c, "    const float v{} = {rhs};", v.index());
    }
    let _ = writeln!(c, "    return v{};", g.outputs()[0].value.index());
    c.push_str("}\n");
    Ok(c)
}

/// What the source of `spec` with `opts` depends on, as a string: a cache key that needs no
/// code generation (the tag of the entry names plus the block size).
pub fn mixing_key(spec: &MixingSpec, opts: &CudaOptions) -> String {
    format!("{}_b{}", tag(spec, opts), opts.block_size)
}

/// A short name for the mixing: `r{R}c{C}_{surrogate}_{dtype}_{math}`.
fn tag(spec: &MixingSpec, opts: &CudaOptions) -> String {
    let params: Vec<String> = spec
        .surrogate
        .params()
        .iter()
        .map(|(_, v)| format!("{:08x}", (*v as f32).to_bits()))
        .collect();
    format!(
        "r{}c{}_{}{}_{}_{}",
        spec.rows,
        spec.cols,
        spec.surrogate.name(),
        if params.is_empty() {
            String::new()
        } else {
            format!("_{}", params.join("_"))
        },
        opts.dtype.name(),
        opts.math.name()
    )
}

/// Generates the four mixing kernels for `spec` with the storage type, math mode and block size
/// of `opts`.
pub fn codegen_mixing(
    spec: &MixingSpec,
    opts: &CudaOptions,
) -> Result<MixingSource, MixingCodegenError> {
    let (r, c) = (spec.rows, spec.cols);
    if r == 0 || c == 0 {
        return Err(MixingCodegenError::Empty { rows: r, cols: c });
    }
    if r > MAX_MIX_STEPS || c > MAX_MIX_STEPS {
        return Err(MixingCodegenError::TooLong { rows: r, cols: c });
    }
    if opts.block_size < 32 || opts.block_size > 1024 || !opts.block_size.is_multiple_of(32) {
        return Err(MixingCodegenError::BlockSize(opts.block_size));
    }
    let tag = tag(spec, opts);
    let forward_entry = format!("flexsn_mix_fwd_{tag}");
    let backward_entry = format!("flexsn_mix_bwd_{tag}");
    let wgrad_entry = format!("flexsn_mix_wgrad_{tag}");
    let reduce_entry = format!("flexsn_mix_reduce_{tag}");
    let st = opts.dtype.c_type();
    let dt = opts.dtype;
    let block = opts.block_size;
    let in_regs = c <= MAX_REGISTER_COLS;
    let (rp, cp) = (4 * tiles(r), 4 * tiles(c));
    // Shared tiles: gH [tile][rp + 1], X [tile][cp + 1] (odd strides spread the stores over banks).
    let tile = (SHARED_BYTES / (4 * (rp + 1 + cp + 1))).clamp(1, 32);

    let mut s = String::new();
    let _ = writeln!(
        s,
        "// flexsn time-mixing kernels (PSN family): H = W.X + b, S = heaviside(H); R = {r} output steps,"
    );
    let _ = writeln!(
        s,
        "// C = {c} input steps, surrogate {:?}, storage {}, math {}. Self-contained, no includes.",
        spec.surrogate,
        dt.name(),
        opts.math.name()
    );
    let _ = writeln!(
        s,
        "// [steps, N] buffers at step * N + n; W is [R, C] row-major; gradients are float."
    );
    s.push('\n');
    s.push_str(prelude::math_helpers(opts.math));
    s.push_str(prelude::storage_helpers(dt));
    s.push_str(&surrogate_function(spec.surrogate, opts.math)?);
    s.push('\n');

    // The input column of neuron n: registers (fully unrolled) or memory.
    let xval = |j: &str| {
        if in_regs {
            format!("xv[{j}]")
        } else {
            load(dt, &format!("x[(long long)({j}) * N + n]"))
        }
    };
    let load_column = |s: &mut String| {
        if in_regs {
            let _ = writeln!(s, "    float xv[{c}];");
            let _ = writeln!(s, "    #pragma unroll");
            let _ = writeln!(
                s,
                "    for (int j = 0; j < {c}; ++j) xv[j] = {};",
                load(dt, "x[(long long)j * N + n]")
            );
        }
    };
    // h = sum_j W[row, j] x[j] (j ascending), then + b[row]: the CPU GEMM's order.
    let dot = |s: &mut String| {
        let _ = writeln!(s, "        const float* w = W + row * {c};");
        let _ = writeln!(s, "        float h = 0.0f;");
        if in_regs {
            let _ = writeln!(s, "        #pragma unroll");
        }
        let _ = writeln!(
            s,
            "        for (int j = 0; j < {c}; ++j) h += w[j] * {};",
            xval("j")
        );
        let _ = writeln!(s, "        h += b[row];");
    };

    // ---- forward ----
    let _ = writeln!(
        s,
        "// Forward: one thread per neuron n; spike[row, n] = heaviside(sum_j W[row, j] x[j, n] + b[row])."
    );
    let _ = writeln!(
        s,
        "extern \"C\" __global__ void __launch_bounds__({block}) {forward_entry}(\n    \
         const float* __restrict__ W, // [{r}, {c}]\n    \
         const float* __restrict__ b, // [{r}]\n    \
         const {st}* __restrict__ x, // [{c}, N]\n    \
         {st}* __restrict__ spike, // [{r}, N]\n    \
         const long long N)\n{{"
    );
    s.push_str(
        "    const long long n = (long long)blockIdx.x * (long long)blockDim.x + (long long)threadIdx.x;\n",
    );
    s.push_str("    if (n >= N) return;\n");
    load_column(&mut s);
    let _ = writeln!(s, "    for (int row = 0; row < {r}; ++row) {{");
    dot(&mut s);
    let _ = writeln!(
        s,
        "        spike[(long long)row * N + n] = {};",
        store(dt, "(h >= 0.0f) ? 1.0f : 0.0f")
    );
    s.push_str("    }\n}\n\n");

    // ---- backward ----
    let _ = writeln!(
        s,
        "// Backward: one thread per neuron n; recomputes H, gH = sg'(H) gS (written to grad_h for the\n\
         // weight gradient), gX[j, n] = sum_row W[row, j] gH[row, n] (rows ascending)."
    );
    let _ = writeln!(
        s,
        "extern \"C\" __global__ void __launch_bounds__({block}) {backward_entry}(\n    \
         const float* __restrict__ W, // [{r}, {c}]\n    \
         const float* __restrict__ b, // [{r}]\n    \
         const {st}* __restrict__ x, // [{c}, N]\n    \
         const {st}* __restrict__ grad_spike, // [{r}, N]\n    \
         {st}* __restrict__ grad_x, // [{c}, N]\n    \
         float* __restrict__ grad_h, // [{r}, N]\n    \
         const long long N)\n{{"
    );
    s.push_str(
        "    const long long n = (long long)blockIdx.x * (long long)blockDim.x + (long long)threadIdx.x;\n",
    );
    s.push_str("    if (n >= N) return;\n");
    load_column(&mut s);
    if in_regs {
        let _ = writeln!(s, "    float gx[{c}];");
        let _ = writeln!(s, "    #pragma unroll");
        let _ = writeln!(s, "    for (int j = 0; j < {c}; ++j) gx[j] = 0.0f;");
    }
    let _ = writeln!(s, "    for (int row = 0; row < {r}; ++row) {{");
    dot(&mut s);
    let _ = writeln!(
        s,
        "        const float gh = flexsn_mix_sg_grad(h) * {};",
        load(dt, "grad_spike[(long long)row * N + n]")
    );
    let _ = writeln!(s, "        grad_h[(long long)row * N + n] = gh;");
    if in_regs {
        let _ = writeln!(s, "        #pragma unroll");
        let _ = writeln!(
            s,
            "        for (int j = 0; j < {c}; ++j) gx[j] += w[j] * gh;"
        );
    }
    s.push_str("    }\n");
    if in_regs {
        let _ = writeln!(s, "    #pragma unroll");
        let _ = writeln!(
            s,
            "    for (int j = 0; j < {c}; ++j) grad_x[(long long)j * N + n] = {};",
            store(dt, "gx[j]")
        );
    } else {
        // Long columns: a second pass over this thread's gH (just written, still in cache),
        // rows ascending like the register path.
        let _ = writeln!(s, "    for (int j = 0; j < {c}; ++j) {{");
        let _ = writeln!(s, "        float g = 0.0f;");
        let _ = writeln!(
            s,
            "        for (int row = 0; row < {r}; ++row) g += W[row * {c} + j] * grad_h[(long long)row * N + n];"
        );
        let _ = writeln!(
            s,
            "        grad_x[(long long)j * N + n] = {};",
            store(dt, "g")
        );
        s.push_str("    }\n");
    }
    s.push_str("}\n\n");

    // ---- weight and bias gradient (split-K over neurons) ----
    let (rt, ct) = (tiles(r), tiles(c));
    let (gs, xs) = (rp + 1, cp + 1);
    let _ = writeln!(
        s,
        "// Weight and bias gradient, split over neurons: block (x, y) sums gH.X^T over the neurons\n\
         // [x * per, (x + 1) * per), per = {WGRAD_CHUNK} * ceil(ceil(N / {WGRAD_CHUNK}) / gridDim.x) (a function\n\
         // of N only), for its 4x4 output tile m = y * {WGRAD_BLOCK} + thread\n\
         // (tile row group m / {ct}, column group m % {ct}); threads of column group 0 also sum gb.\n\
         // Neurons go through shared memory {tile} at a time, in index order: a fixed order.\n\
         // Shared layout: element (k, q * groups + g) holds row (col) 4 * g + q of neuron k."
    );
    let _ = writeln!(
        s,
        "extern \"C\" __global__ void __launch_bounds__({WGRAD_BLOCK}) {wgrad_entry}(\n    \
         const float* __restrict__ grad_h, // [{r}, N]\n    \
         const {st}* __restrict__ x, // [{c}, N]\n    \
         float* __restrict__ partial, // [chunks, {r} * {c} + {r}]\n    \
         const long long N)\n{{"
    );
    let _ = writeln!(s, "    __shared__ float sh_g[{tile} * {gs}];");
    let _ = writeln!(s, "    __shared__ float sh_x[{tile} * {xs}];");
    s.push_str("    const unsigned int tid = threadIdx.x;\n");
    let _ = writeln!(
        s,
        "    const long long m = (long long)blockIdx.y * {WGRAD_BLOCK}LL + (long long)tid;"
    );
    let _ = writeln!(s, "    const bool active = m < {}LL;", rt * ct);
    let _ = writeln!(
        s,
        "    const int rg = active ? (int)(m / {ct}LL) : 0, cg = active ? (int)(m % {ct}LL) : 0;"
    );
    let _ = writeln!(
        s,
        "    const long long units = (N + {WGRAD_CHUNK}LL - 1LL) / {WGRAD_CHUNK}LL;\n    \
         const long long per = ((units + (long long)gridDim.x - 1LL) / (long long)gridDim.x) * {WGRAD_CHUNK}LL;\n    \
         const long long n0 = (long long)blockIdx.x * per;\n    \
         const long long n1 = (n0 + per < N) ? n0 + per : N;"
    );
    s.push_str("    float acc[4][4];\n    float accb[4];\n");
    s.push_str("    for (int p = 0; p < 4; ++p) { accb[p] = 0.0f; for (int q = 0; q < 4; ++q) acc[p][q] = 0.0f; }\n");
    let _ = writeln!(
        s,
        "    for (long long base = n0; base < n1; base += {tile}LL) {{"
    );
    let _ = writeln!(
        s,
        "        for (int e = (int)tid; e < {tile} * {rp}; e += {WGRAD_BLOCK}) {{\n            \
         const int k = e % {tile}, row = e / {tile};\n            \
         const long long nn = base + k;\n            \
         sh_g[k * {gs} + (row % 4) * {rt} + row / 4] = (row < {r} && nn < n1) ? grad_h[(long long)row * N + nn] : 0.0f;\n        }}"
    );
    let _ = writeln!(
        s,
        "        for (int e = (int)tid; e < {tile} * {cp}; e += {WGRAD_BLOCK}) {{\n            \
         const int k = e % {tile}, col = e / {tile};\n            \
         const long long nn = base + k;\n            \
         sh_x[k * {xs} + (col % 4) * {ct} + col / 4] = (col < {c} && nn < n1) ? {} : 0.0f;\n        }}",
        load(dt, "x[(long long)col * N + nn]")
    );
    s.push_str("        __syncthreads();\n");
    s.push_str("        if (active) {\n");
    let _ = writeln!(s, "            for (int k = 0; k < {tile}; ++k) {{");
    let _ = writeln!(
        s,
        "                const float* gk = sh_g + k * {gs} + rg;\n                \
         const float* xk = sh_x + k * {xs} + cg;\n                \
         const float g0 = gk[0], g1 = gk[{rt}], g2 = gk[{}], g3 = gk[{}];\n                \
         const float x0 = xk[0], x1 = xk[{ct}], x2 = xk[{}], x3 = xk[{}];",
        2 * rt,
        3 * rt,
        2 * ct,
        3 * ct
    );
    s.push_str(
        "                acc[0][0] += g0 * x0; acc[0][1] += g0 * x1; acc[0][2] += g0 * x2; acc[0][3] += g0 * x3;\n\
         \x20               acc[1][0] += g1 * x0; acc[1][1] += g1 * x1; acc[1][2] += g1 * x2; acc[1][3] += g1 * x3;\n\
         \x20               acc[2][0] += g2 * x0; acc[2][1] += g2 * x1; acc[2][2] += g2 * x2; acc[2][3] += g2 * x3;\n\
         \x20               acc[3][0] += g3 * x0; acc[3][1] += g3 * x1; acc[3][2] += g3 * x2; acc[3][3] += g3 * x3;\n\
         \x20               accb[0] += g0; accb[1] += g1; accb[2] += g2; accb[3] += g3;\n",
    );
    s.push_str("            }\n        }\n        __syncthreads();\n    }\n");
    s.push_str("    if (!active) return;\n");
    let _ = writeln!(
        s,
        "    float* out = partial + (long long)blockIdx.x * {}LL;",
        r * c + r
    );
    s.push_str("    for (int p = 0; p < 4; ++p) {\n");
    s.push_str("        const int row = 4 * rg + p;\n");
    let _ = writeln!(s, "        if (row >= {r}) break;");
    s.push_str("        for (int q = 0; q < 4; ++q) {\n");
    s.push_str("            const int col = 4 * cg + q;\n");
    let _ = writeln!(
        s,
        "            if (col < {c}) out[row * {c} + col] = acc[p][q];"
    );
    s.push_str("        }\n");
    let _ = writeln!(s, "        if (cg == 0) out[{} + row] = accb[p];", r * c);
    s.push_str("    }\n}\n\n");

    // ---- reduce over chunks ----
    let len = r * c + r;
    let _ = writeln!(
        s,
        "// out[e] = sum over chunks of partial[chunk, e], chunks in order, in double."
    );
    let _ = writeln!(
        s,
        "extern \"C\" __global__ void __launch_bounds__({WGRAD_BLOCK}) {reduce_entry}(\n    \
         const float* __restrict__ partial, // [chunks, {len}]\n    \
         float* __restrict__ out, // [{len}]\n    \
         const long long chunks)\n{{"
    );
    s.push_str(
        "    const long long e = (long long)blockIdx.x * (long long)blockDim.x + (long long)threadIdx.x;\n",
    );
    let _ = writeln!(s, "    if (e >= {len}LL) return;");
    s.push_str("    double sum = 0.0;\n");
    let _ = writeln!(
        s,
        "    for (long long k = 0; k < chunks; ++k) sum += (double)partial[k * {len}LL + e];"
    );
    s.push_str("    out[e] = (float)sum;\n}\n");

    Ok(MixingSource {
        code: s,
        forward_entry,
        backward_entry,
        wgrad_entry,
        reduce_entry,
        spec: *spec,
        dtype: dt,
        math: opts.math,
        partial_floats: WGRAD_PARTIAL_FLOATS,
        block_size: block,
        tile: tile as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_gradient_partials_are_bounded() {
        let opts = CudaOptions::default();
        for (t, n) in [
            (1024usize, 1u64 << 24),
            (64, 1 << 24),
            (4, 1 << 24),
            (16, 5000),
        ] {
            let src = codegen_mixing(&spec(t, t), &opts).unwrap();
            let (chunks, _) = src.wgrad_grid(n);
            assert!(
                chunks * src.grad_len() as u64 <= WGRAD_PARTIAL_FLOATS.max(src.grad_len() as u64)
            );
            // The chunks cover every neuron: units spread over the blocks.
            let units = n.div_ceil(WGRAD_CHUNK);
            assert!(units.div_ceil(chunks) * chunks >= units);
        }
        // T = 1024, N = 2^24: ~34 GB of partials unbounded, 256 MiB here.
        let big = codegen_mixing(&spec(1024, 1024), &opts).unwrap();
        assert_eq!(
            big.wgrad_grid(1 << 24).0,
            WGRAD_PARTIAL_FLOATS / big.grad_len() as u64
        );
    }

    fn spec(rows: usize, cols: usize) -> MixingSpec {
        MixingSpec {
            rows,
            cols,
            surrogate: Surrogate::ATan { alpha: 2.0 },
        }
    }

    #[test]
    fn shapes_are_checked() {
        let o = CudaOptions::default();
        assert!(matches!(
            codegen_mixing(&spec(0, 3), &o),
            Err(MixingCodegenError::Empty { .. })
        ));
        assert!(matches!(
            codegen_mixing(&spec(4, MAX_MIX_STEPS + 1), &o),
            Err(MixingCodegenError::TooLong { .. })
        ));
        let bad = CudaOptions {
            block_size: 100,
            ..o
        };
        assert_eq!(
            codegen_mixing(&spec(4, 4), &bad),
            Err(MixingCodegenError::BlockSize(100))
        );
    }

    #[test]
    fn shared_tiles_fit_for_every_allowed_length() {
        for t in [1, 4, 64, 128, 129, 1000, MAX_MIX_STEPS] {
            let src = codegen_mixing(&spec(t, t), &CudaOptions::default()).unwrap();
            let (rp, cp) = (4 * tiles(t), 4 * tiles(t));
            let bytes = 4 * src.tile as usize * (rp + 1 + cp + 1);
            assert!(bytes <= SHARED_BYTES, "T = {t}: {bytes} bytes");
            assert!(src.tile >= 1 && src.tile <= 32);
        }
    }

    #[test]
    fn entry_names_differ_by_shape_surrogate_and_storage() {
        let o = CudaOptions::default();
        let a = codegen_mixing(&spec(4, 4), &o).unwrap();
        let b = codegen_mixing(&spec(1, 4), &o).unwrap();
        let mut sp = spec(4, 4);
        sp.surrogate = Surrogate::ATan { alpha: 3.0 };
        let c = codegen_mixing(&sp, &o).unwrap();
        let d = codegen_mixing(
            &spec(4, 4),
            &CudaOptions::new(StorageDtype::Bf16, MathMode::Precise),
        )
        .unwrap();
        let wide = CudaOptions {
            block_size: 512,
            ..o
        };
        assert_ne!(mixing_key(&spec(4, 4), &o), mixing_key(&spec(4, 4), &wide));
        assert_ne!(mixing_key(&spec(4, 4), &o), mixing_key(&spec(1, 4), &o));
        let names = [
            &a.forward_entry,
            &b.forward_entry,
            &c.forward_entry,
            &d.forward_entry,
        ];
        for (i, x) in names.iter().enumerate() {
            for y in &names[i + 1..] {
                assert_ne!(x, y);
            }
        }
    }
}
