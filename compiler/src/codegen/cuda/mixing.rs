//! CUDA C source for the time mixing of the PSN family (`PSN`, `MaskedPSN`): a small matrix
//! product over time fused with the spike, forward and backward (pure text, like the scans).
//!
//! The mixing is `H = W·X + b`, `S = Θ(H)`, with `W` `[rows, cols]` (row-major), `X`
//! `[cols, N]`, `b` `[rows]`. Backward, given `gS`: `gH = sg'(H)·gS`, `gX = Wᵀ·gH`,
//! `gW = gH·Xᵀ`, `gb = Σ_n gH`. A source is generated for the largest shape `R × C` of
//! [`MixingSpec`]; `rows ≤ R` and `cols ≤ C` are kernel arguments, so one compiled module serves
//! every window of a sequence (each single step of `MaskedPSN` runs on its `T × T` module).
//!
//! [`codegen_mixing`] emits four kernels (`S` is the storage type of `[·, N]` sequences; every
//! scalar is a `long long`):
//!
//! | kernel | arguments | launch |
//! |---|---|---|
//! | forward | `const float* W, const float* b, const S* x, S* spike, N, rows, cols` | [`MixingSource::grid_size`] × [`MixingSource::block_size`] |
//! | backward | `const float* W, const float* b, const S* x, const S* grad_spike, S* grad_x, float* grad_h, N, rows, cols` | same |
//! | weight grad | `const float* grad_h, const S* x, float* partial, N, rows, cols` | [`MixingSource::wgrad_grid`] × [`WGRAD_BLOCK`] |
//! | reduce | `const float* partial, float* out, chunks, len` | [`MixingSource::reduce_grid`] × [`WGRAD_BLOCK`] |
//!
//! Forward and backward run one thread per neuron; each block stages `W` in shared memory (in
//! blocks of rows when it is larger than [`W_SHARED_FLOATS`]), so the multiply-adds read it
//! from there, broadcast to every thread. Backward recomputes `H` (one more product, no extra
//! traffic), writes `gX` and `gH` (`float [rows, N]`); up to [`MAX_REGISTER_COLS`] input steps
//! stay in registers (the register budget: no spills). The weight-gradient kernel is a split-K
//! product with 2-D output tiles: block `(x, y)` sums `gH·Xᵀ` over the neurons of chunk `x` for
//! output tile `y` (up to 64 × 64 entries, 4 × 4 per thread), through shared-memory tiles of
//! neurons; when a tile has fewer 4 × 4 groups than the block has threads (short sequences), the
//! threads form slices that take every `S`-th neuron and are summed in slice order at the end,
//! so every thread works. It writes `partial[x, :]` (`rows·cols` weight entries row-major, then
//! `rows` bias entries). The reduce kernel gives each entry one warp: its lanes sum every 32nd
//! chunk in double, then lane 0 adds the 32 lane sums in lane order. Chunks and slices depend
//! on `N` and the shape only, so the gradients are the same on every run.

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
/// Largest `R` or `C` a mixing kernel is generated for.
pub const MAX_MIX_STEPS: usize = 4096;
/// Largest `C` whose input column is kept in registers; longer columns are read from memory.
/// The register budget of backward: with C = 128 in registers, ptxas needs 255 registers and
/// spills 620 bytes on sm_80 (`tests/cuda_ptxas.rs`); up to 64 it stays within budget.
pub const MAX_REGISTER_COLS: usize = 64;
/// Floats of `W` a forward or backward block stages in shared memory at once (16 KiB: all of
/// `W` up to T = 64; larger weights go through in blocks of rows).
pub const W_SHARED_FLOATS: usize = 4096;
/// Entries per side of a weight-gradient output tile.
const WGRAD_TILE: usize = 64;
/// Entries of the weight gradient summed per thread: a 4 × 4 group plus 4 bias entries.
const WGRAD_ACC: usize = 20;
/// Warps per reduce block (one entry each).
const REDUCE_WARPS: u64 = WGRAD_BLOCK as u64 / 32;

/// The shape of a time mixing: at most `R` output steps and `C` input steps (the compiled
/// maximum; each launch gives its own `rows ≤ R`, `cols ≤ C`), and the surrogate of backward.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MixingSpec {
    /// Most output steps `R`.
    pub rows: usize,
    /// Most input steps `C`.
    pub cols: usize,
    /// The spike's surrogate (backward).
    pub surrogate: Surrogate,
}

/// Why mixing source could not be generated.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MixingCodegenError {
    /// A zero dimension.
    #[error("a time mixing needs R >= 1 and C >= 1 steps, got R = {rows}, C = {cols}")]
    Empty {
        /// `R`.
        rows: usize,
        /// `C`.
        cols: usize,
    },
    /// Longer than [`MAX_MIX_STEPS`].
    #[error(
        "R = {rows}, C = {cols}: CUDA mixing kernels are generated for at most {MAX_MIX_STEPS} steps"
    )]
    TooLong {
        /// `R`.
        rows: usize,
        /// `C`.
        cols: usize,
    },
    /// A block size that is not a multiple of 32 in `32..=1024`.
    #[error("block size {0} is invalid: use a multiple of 32 between 32 and 1024")]
    BlockSize(u32),
    /// The surrogate's derivative did not build.
    #[error("the surrogate derivative could not be built: {0}")]
    Surrogate(#[from] BuildError),
}

/// The weight-gradient kernel's layout: output tiles of `tile_rows × tile_cols`, `slices`
/// groups of threads per tile, `tile_neurons` neurons per shared-memory tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WgradLayout {
    /// Rows of an output tile (a multiple of 4, at most 64).
    pub tile_rows: usize,
    /// Columns of an output tile (a multiple of 4, at most 64).
    pub tile_cols: usize,
    /// Thread slices per tile (each sums every `slices`-th neuron).
    pub slices: usize,
    /// Neurons per shared-memory tile.
    pub tile_neurons: usize,
}

impl WgradLayout {
    fn new(spec: &MixingSpec) -> Self {
        let tile_rows = (4 * tiles(spec.rows)).min(WGRAD_TILE);
        let tile_cols = (4 * tiles(spec.cols)).min(WGRAD_TILE);
        let groups = (tile_rows / 4) * (tile_cols / 4);
        let slices = (WGRAD_BLOCK as usize / groups).max(1);
        WgradLayout {
            tile_rows,
            tile_cols,
            slices,
            tile_neurons: slices.max(32),
        }
    }

    /// 4 × 4 groups per output tile (threads of one slice).
    fn groups(&self) -> usize {
        (self.tile_rows / 4) * (self.tile_cols / 4)
    }

    /// Floats of static shared memory the kernel declares.
    pub fn shared_floats(&self) -> usize {
        let tiles = self.tile_neurons * (self.tile_rows + 1 + self.tile_cols + 1);
        let combine = if self.slices > 1 {
            WGRAD_ACC * WGRAD_BLOCK as usize
        } else {
            0
        };
        tiles + combine
    }
}

/// Generated source of one mixing, with what a launcher needs.
#[derive(Clone, Debug, PartialEq)]
pub struct MixingSource {
    /// The CUDA C source.
    pub code: String,
    /// Entry name of the forward kernel.
    pub forward_entry: String,
    /// Entry name of the backward kernel.
    pub backward_entry: String,
    /// Entry name of the weight-gradient kernel.
    pub wgrad_entry: String,
    /// Entry name of the reduce kernel.
    pub reduce_entry: String,
    /// The compiled maximum shape and the surrogate.
    pub spec: MixingSpec,
    /// Storage type of the `[·, N]` sequences.
    pub dtype: StorageDtype,
    /// Math mode.
    pub math: MathMode,
    /// Threads per block of forward and backward (one neuron each).
    pub block_size: u32,
    /// The weight-gradient kernel's tiles and slices.
    pub wgrad: WgradLayout,
    /// Most floats of chunk partials ([`WGRAD_PARTIAL_FLOATS`]; lower only to test the bound).
    pub partial_floats: u64,
}

impl MixingSource {
    /// Blocks of forward and backward for `n` neurons.
    pub fn grid_size(&self, n: u64) -> u64 {
        n.div_ceil(self.block_size as u64)
    }

    /// `(chunks, output tiles)`: the 2-D grid of the weight-gradient kernel for `n` neurons and
    /// a launch of `dims = (rows, cols)`. Chunks are units of [`WGRAD_CHUNK`] neurons while their
    /// partials fit in `partial_floats`; beyond, the kernel gives each block
    /// `ceil(units / chunks)` units.
    pub fn wgrad_grid(&self, dims: (usize, usize), n: u64) -> (u64, u64) {
        let cap = (self.partial_floats / grad_len(dims) as u64).max(1);
        let tiles_r = dims.0.div_ceil(self.wgrad.tile_rows) as u64;
        let tiles_c = dims.1.div_ceil(self.wgrad.tile_cols) as u64;
        (n.div_ceil(WGRAD_CHUNK).min(cap), tiles_r * tiles_c)
    }

    /// Blocks of the reduce kernel for a launch of `dims` (one warp per entry).
    pub fn reduce_grid(&self, dims: (usize, usize)) -> u64 {
        (grad_len(dims) as u64).div_ceil(REDUCE_WARPS)
    }

    /// Bytes per stored sequence element.
    pub fn elem_bytes(&self) -> usize {
        self.dtype.size_bytes()
    }

    /// Whether a launch of `dims = (rows, cols)` fits this source (`1 ≤ rows ≤ R`,
    /// `1 ≤ cols ≤ C`).
    pub fn fits(&self, dims: (usize, usize)) -> bool {
        (1..=self.spec.rows).contains(&dims.0) && (1..=self.spec.cols).contains(&dims.1)
    }
}

/// Floats of one chunk's partial gradient for `dims = (rows, cols)`: `rows·cols` weight entries,
/// then `rows` bias entries.
pub fn grad_len(dims: (usize, usize)) -> usize {
    dims.0 * dims.1 + dims.0
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
    let dt = opts.dtype;
    let layout = WgradLayout::new(spec);

    let mut s = String::new();
    let _ = writeln!(
        s,
        "// flexsn time-mixing kernels (PSN family): H = W.X + b, S = heaviside(H); at most R = {r}\n\
         // output steps and C = {c} input steps (rows, cols: launch arguments), surrogate {:?},\n\
         // storage {}, math {}. Self-contained, no includes.",
        spec.surrogate,
        dt.name(),
        opts.math.name()
    );
    let _ = writeln!(
        s,
        "// Row j of a [steps, N] buffer starts at j * pitch, its own `_pitch` argument (N for dense\n\
         // rows, more for padded ones); W is [rows, cols] row-major; gradients are float."
    );
    s.push('\n');
    s.push_str(prelude::math_helpers(opts.math));
    s.push_str(prelude::storage_helpers(dt));
    s.push_str(&surrogate_function(spec.surrogate, opts.math)?);
    s.push('\n');
    neuron_kernels(&mut s, spec, opts, &forward_entry, &backward_entry);
    wgrad_kernel(&mut s, spec, dt, &layout, &wgrad_entry);
    reduce_kernel(&mut s, &reduce_entry);

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
        block_size: opts.block_size,
        wgrad: layout,
    })
}

/// The shared prologue of forward and backward: neuron index, the input column (registers for
/// short columns), the shared `W` stage.
fn neuron_prologue(s: &mut String, c: usize, ws: usize, dt: StorageDtype) {
    let _ = writeln!(s, "    __shared__ float sh_w[{ws}];");
    s.push_str(
        "    const int rows = (int)rows_, cols = (int)cols_;\n    \
         const long long n = (long long)blockIdx.x * (long long)blockDim.x + (long long)threadIdx.x;\n    \
         const bool live = n < N;\n",
    );
    if c <= MAX_REGISTER_COLS {
        let _ = writeln!(s, "    float xv[{c}];");
        let _ = writeln!(s, "    #pragma unroll");
        let _ = writeln!(
            s,
            "    for (int j = 0; j < {c}; ++j) xv[j] = (live && j < cols) ? {} : 0.0f;",
            load(dt, "x[(long long)j * x_pitch + n]")
        );
    }
    // Short columns: shared rows padded to C with zeros (as the column is), so the unrolled
    // products need no bound check; long columns: rows of `cols`. Rows of W per shared stage
    // (>= 1: cols <= C <= the stage size).
    let pitch = if c <= MAX_REGISTER_COLS {
        format!("{c}")
    } else {
        "cols".into()
    };
    let _ = writeln!(s, "    const int stage_rows = {ws} / {pitch};");
    s.push_str("    for (int r0 = 0; r0 < rows; r0 += stage_rows) {\n");
    s.push_str("        const int rb = (rows - r0 < stage_rows) ? rows - r0 : stage_rows;\n");
    s.push_str("        __syncthreads(); // the previous stage is read\n");
    if c <= MAX_REGISTER_COLS {
        let _ = writeln!(
            s,
            "        for (int e = (int)threadIdx.x; e < rb * {c}; e += (int)blockDim.x) {{\n            \
             const int rr = e / {c}, j = e % {c};\n            \
             sh_w[e] = (j < cols) ? W[(long long)(r0 + rr) * cols + j] : 0.0f;\n        }}"
        );
    } else {
        s.push_str(
            "        for (int e = (int)threadIdx.x; e < rb * cols; e += (int)blockDim.x) sh_w[e] = W[(long long)r0 * cols + e];\n",
        );
    }
    s.push_str("        __syncthreads();\n");
    s.push_str("        if (!live) continue;\n");
    s.push_str("        for (int rr = 0; rr < rb; ++rr) {\n");
    s.push_str("            const int row = r0 + rr;\n");
    let _ = writeln!(s, "            const float* w = sh_w + rr * {pitch};");
    // h = sum_j W[row, j] x[j] (j ascending), then + b[row]: the CPU GEMM's order.
    s.push_str("            float h = 0.0f;\n");
    if c <= MAX_REGISTER_COLS {
        let _ = writeln!(s, "            #pragma unroll");
        let _ = writeln!(
            s,
            "            for (int j = 0; j < {c}; ++j) h += w[j] * xv[j]; // zeros past cols"
        );
    } else {
        let _ = writeln!(
            s,
            "            for (int j = 0; j < cols; ++j) h += w[j] * {};",
            load(dt, "x[(long long)j * x_pitch + n]")
        );
    }
    s.push_str("            h += b[row];\n");
}

/// Forward and backward: one thread per neuron.
fn neuron_kernels(s: &mut String, spec: &MixingSpec, opts: &CudaOptions, fwd: &str, bwd: &str) {
    let (r, c) = (spec.rows, spec.cols);
    let (dt, st, block) = (opts.dtype, opts.dtype.c_type(), opts.block_size);
    let ws = (r * c).min(W_SHARED_FLOATS);
    let in_regs = c <= MAX_REGISTER_COLS;
    let _ = writeln!(
        s,
        "// Forward: one thread per neuron n; spike[row, n] = heaviside(sum_j W[row, j] x[j, n] + b[row]).\n\
         // W goes through shared memory {ws} floats at a time (whole rows)."
    );
    let _ = writeln!(
        s,
        "extern \"C\" __global__ void __launch_bounds__({block}, 1) {fwd}(\n    \
         const float* __restrict__ W, // [rows, cols]\n    \
         const float* __restrict__ b, // [rows]\n    \
         const {st}* __restrict__ x, // [cols, N]\n    \
         {st}* __restrict__ spike, // [rows, N]\n    \
         const long long N, const long long rows_, const long long cols_, // rows <= {r}, cols <= {c}\n    \
         const long long x_pitch, const long long spike_pitch)\n{{"
    );
    neuron_prologue(s, c, ws, dt);
    let _ = writeln!(
        s,
        "            spike[(long long)row * spike_pitch + n] = {};",
        store(dt, "(h >= 0.0f) ? 1.0f : 0.0f")
    );
    s.push_str("        }\n    }\n}\n\n");

    let _ = writeln!(
        s,
        "// Backward: one thread per neuron n; recomputes H, gH = sg'(H) gS (written to grad_h for the\n\
         // weight gradient), gX[j, n] = sum_row W[row, j] gH[row, n] (rows ascending)."
    );
    let _ = writeln!(
        s,
        "extern \"C\" __global__ void __launch_bounds__({block}, 1) {bwd}(\n    \
         const float* __restrict__ W, // [rows, cols]\n    \
         const float* __restrict__ b, // [rows]\n    \
         const {st}* __restrict__ x, // [cols, N]\n    \
         const {st}* __restrict__ grad_spike, // [rows, N]\n    \
         {st}* __restrict__ grad_x, // [cols, N]\n    \
         float* __restrict__ grad_h, // [rows, N]\n    \
         const long long N, const long long rows_, const long long cols_, // rows <= {r}, cols <= {c}\n    \
         const long long x_pitch, const long long grad_spike_pitch, const long long grad_x_pitch,\n    \
         const long long grad_h_pitch)\n{{"
    );
    if in_regs {
        let _ = writeln!(s, "    float gx[{c}];");
        let _ = writeln!(s, "    #pragma unroll");
        let _ = writeln!(s, "    for (int j = 0; j < {c}; ++j) gx[j] = 0.0f;");
    }
    neuron_prologue(s, c, ws, dt);
    let _ = writeln!(
        s,
        "            const float gh = flexsn_mix_sg_grad(h) * {};",
        load(dt, "grad_spike[(long long)row * grad_spike_pitch + n]")
    );
    s.push_str("            grad_h[(long long)row * grad_h_pitch + n] = gh;\n");
    if in_regs {
        let _ = writeln!(s, "            #pragma unroll");
        let _ = writeln!(
            s,
            "            for (int j = 0; j < {c}; ++j) gx[j] += w[j] * gh;"
        );
    }
    s.push_str("        }\n    }\n");
    s.push_str("    if (!live) return;\n");
    if in_regs {
        let _ = writeln!(s, "    #pragma unroll");
        let _ = writeln!(
            s,
            "    for (int j = 0; j < {c}; ++j) if (j < cols) grad_x[(long long)j * grad_x_pitch + n] = {};",
            store(dt, "gx[j]")
        );
    } else {
        // Long columns: a second pass over this thread's gH (just written, still in cache), rows
        // ascending like the register path; W from shared memory when it was staged whole.
        let _ = writeln!(
            s,
            "    const float* wsrc = (rows * cols <= {ws}) ? (const float*)sh_w : W;"
        );
        s.push_str("    for (int j = 0; j < cols; ++j) {\n");
        s.push_str("        float g = 0.0f;\n");
        s.push_str(
            "        for (int row = 0; row < rows; ++row) g += wsrc[row * cols + j] * grad_h[(long long)row * grad_h_pitch + n];\n",
        );
        let _ = writeln!(
            s,
            "        grad_x[(long long)j * grad_x_pitch + n] = {};",
            store(dt, "g")
        );
        s.push_str("    }\n");
    }
    s.push_str("}\n\n");
}

/// The weight- and bias-gradient kernel: split-K over neurons, 2-D output tiles, thread slices.
fn wgrad_kernel(s: &mut String, spec: &MixingSpec, dt: StorageDtype, l: &WgradLayout, name: &str) {
    let (r, c) = (spec.rows, spec.cols);
    let st = dt.c_type();
    let (tr, tc, kt, sl) = (l.tile_rows, l.tile_cols, l.tile_neurons, l.slices);
    let (mr, mc, mt) = (tr / 4, tc / 4, l.groups());
    let (gs, xs) = (tr + 1, tc + 1);
    let blk = WGRAD_BLOCK;
    let _ = writeln!(
        s,
        "// Weight and bias gradient, split over neurons: block (x, y) sums gH.X^T over the neurons\n\
         // [x * per, (x + 1) * per), per = {WGRAD_CHUNK} * ceil(ceil(N / {WGRAD_CHUNK}) / gridDim.x) (a function of\n\
         // N only), for output tile y ({tr} rows x {tc} columns, tiles row-major over [rows, cols]).\n\
         // Thread t: slice t / {mt} (of {sl}), 4x4 group t % {mt} (group row / {mc}, column % {mc}); a slice\n\
         // sums every {sl}-th neuron of each shared tile of {kt} neurons, in index order; the slices are\n\
         // added in slice order at the end. Threads of column group 0 in column tile 0 also sum gb.\n\
         // Shared layout: element (k, q * groups + g) holds tile row (column) 4 * g + q of neuron k."
    );
    let _ = writeln!(
        s,
        "extern \"C\" __global__ void __launch_bounds__({blk}) {name}(\n    \
         const float* __restrict__ grad_h, // [rows, N]\n    \
         const {st}* __restrict__ x, // [cols, N]\n    \
         float* __restrict__ partial, // [chunks, rows * cols + rows]\n    \
         const long long N, const long long rows_, const long long cols_, // rows <= {r}, cols <= {c}\n    \
         const long long grad_h_pitch, const long long x_pitch)\n{{"
    );
    let _ = writeln!(s, "    __shared__ float sh_g[{kt} * {gs}];");
    let _ = writeln!(s, "    __shared__ float sh_x[{kt} * {xs}];");
    s.push_str("    const int rows = (int)rows_, cols = (int)cols_;\n");
    s.push_str("    const int tid = (int)threadIdx.x;\n");
    let _ = writeln!(
        s,
        "    const int slice = tid / {mt}, m = tid % {mt};\n    \
         const bool active = slice < {sl};\n    \
         const int rg = m / {mc}, cg = m % {mc};\n    \
         const int col_tiles = (cols + {tc} - 1) / {tc};\n    \
         const int tile_c = (int)blockIdx.y % col_tiles;\n    \
         const int row0 = ((int)blockIdx.y / col_tiles) * {tr}, col0 = tile_c * {tc};"
    );
    let _ = writeln!(
        s,
        "    const long long units = (N + {WGRAD_CHUNK}LL - 1LL) / {WGRAD_CHUNK}LL;\n    \
         const long long per = ((units + (long long)gridDim.x - 1LL) / (long long)gridDim.x) * {WGRAD_CHUNK}LL;\n    \
         const long long n0 = (long long)blockIdx.x * per;\n    \
         const long long n1 = (n0 + per < N) ? n0 + per : N;"
    );
    s.push_str("    float acc[4][4];\n    float accb[4];\n");
    s.push_str("    #pragma unroll\n    for (int p = 0; p < 4; ++p) { accb[p] = 0.0f; for (int q = 0; q < 4; ++q) acc[p][q] = 0.0f; }\n");
    let _ = writeln!(
        s,
        "    for (long long base = n0; base < n1; base += {kt}LL) {{"
    );
    let _ = writeln!(
        s,
        "        for (int e = tid; e < {kt} * {tr}; e += {blk}) {{\n            \
         const int k = e % {kt}, lr = e / {kt}, row = row0 + lr;\n            \
         const long long nn = base + k;\n            \
         sh_g[k * {gs} + (lr % 4) * {mr} + lr / 4] = (row < rows && nn < n1) ? grad_h[(long long)row * grad_h_pitch + nn] : 0.0f;\n        }}"
    );
    let _ = writeln!(
        s,
        "        for (int e = tid; e < {kt} * {tc}; e += {blk}) {{\n            \
         const int k = e % {kt}, lc = e / {kt}, col = col0 + lc;\n            \
         const long long nn = base + k;\n            \
         sh_x[k * {xs} + (lc % 4) * {mc} + lc / 4] = (col < cols && nn < n1) ? {} : 0.0f;\n        }}",
        load(dt, "x[(long long)col * x_pitch + nn]")
    );
    s.push_str("        __syncthreads();\n");
    s.push_str("        if (active) {\n");
    let _ = writeln!(s, "            for (int k = slice; k < {kt}; k += {sl}) {{");
    let _ = writeln!(
        s,
        "                const float* gk = sh_g + k * {gs} + rg;\n                \
         const float* xk = sh_x + k * {xs} + cg;\n                \
         const float g0 = gk[0], g1 = gk[{mr}], g2 = gk[{}], g3 = gk[{}];\n                \
         const float x0 = xk[0], x1 = xk[{mc}], x2 = xk[{}], x3 = xk[{}];",
        2 * mr,
        3 * mr,
        2 * mc,
        3 * mc
    );
    s.push_str(
        "                acc[0][0] += g0 * x0; acc[0][1] += g0 * x1; acc[0][2] += g0 * x2; acc[0][3] += g0 * x3;\n\
         \x20               acc[1][0] += g1 * x0; acc[1][1] += g1 * x1; acc[1][2] += g1 * x2; acc[1][3] += g1 * x3;\n\
         \x20               acc[2][0] += g2 * x0; acc[2][1] += g2 * x1; acc[2][2] += g2 * x2; acc[2][3] += g2 * x3;\n\
         \x20               acc[3][0] += g3 * x0; acc[3][1] += g3 * x1; acc[3][2] += g3 * x2; acc[3][3] += g3 * x3;\n\
         \x20               accb[0] += g0; accb[1] += g1; accb[2] += g2; accb[3] += g3;\n",
    );
    s.push_str("            }\n        }\n        __syncthreads();\n    }\n");
    if sl > 1 {
        // Slice sums through shared memory, added by slice 0 in slice order.
        let _ = writeln!(s, "    __shared__ float sh_acc[{WGRAD_ACC} * {blk}];");
        let _ = writeln!(
            s,
            "    for (int p = 0; p < 4; ++p) {{\n        \
             for (int q = 0; q < 4; ++q) sh_acc[(p * 4 + q) * {blk} + tid] = acc[p][q];\n        \
             sh_acc[(16 + p) * {blk} + tid] = accb[p];\n    }}"
        );
        s.push_str("    __syncthreads();\n");
        s.push_str("    if (slice != 0) return;\n");
        let _ = writeln!(
            s,
            "    #pragma unroll\n    for (int p = 0; p < 4; ++p) {{\n        \
             #pragma unroll\n        for (int q = 0; q < 4; ++q) {{\n            \
             float t = 0.0f;\n            \
             for (int z = 0; z < {sl}; ++z) t += sh_acc[(p * 4 + q) * {blk} + z * {mt} + tid];\n            \
             acc[p][q] = t;\n        }}\n        \
             float t = 0.0f;\n        \
             for (int z = 0; z < {sl}; ++z) t += sh_acc[(16 + p) * {blk} + z * {mt} + tid];\n        \
             accb[p] = t;\n    }}"
        );
    } else {
        s.push_str("    if (!active) return;\n");
    }
    s.push_str(
        "    float* out = partial + (long long)blockIdx.x * (long long)(rows * cols + rows);\n",
    );
    s.push_str("    #pragma unroll\n    for (int p = 0; p < 4; ++p) {\n");
    s.push_str("        const int row = row0 + 4 * rg + p;\n");
    s.push_str("        if (row >= rows) continue;\n");
    s.push_str("        #pragma unroll\n        for (int q = 0; q < 4; ++q) {\n");
    s.push_str("            const int col = col0 + 4 * cg + q;\n");
    s.push_str("            if (col < cols) out[row * cols + col] = acc[p][q];\n");
    s.push_str("        }\n");
    s.push_str("        if (tile_c == 0 && cg == 0) out[rows * cols + row] = accb[p];\n");
    s.push_str("    }\n}\n\n");
}

/// The reduce kernel: one warp per entry, lanes over chunks, fixed order.
fn reduce_kernel(s: &mut String, name: &str) {
    let blk = WGRAD_BLOCK;
    let _ = writeln!(
        s,
        "// out[e] = sum over chunks of partial[chunk, e] in double: warp w of block x takes entry\n\
         // e = x * {REDUCE_WARPS} + w; lane l sums chunks l, l + 32, ... in order; lane 0 adds the lane sums in lane order."
    );
    let _ = writeln!(
        s,
        "extern \"C\" __global__ void __launch_bounds__({blk}) {name}(\n    \
         const float* __restrict__ partial, // [chunks, len]\n    \
         float* __restrict__ out, // [len]\n    \
         const long long chunks, const long long len)\n{{"
    );
    let _ = writeln!(s, "    __shared__ double sh_sum[{blk}];");
    s.push_str("    const int tid = (int)threadIdx.x, lane = tid % 32;\n");
    let _ = writeln!(
        s,
        "    const long long e = (long long)blockIdx.x * {REDUCE_WARPS}LL + (long long)(tid / 32);"
    );
    s.push_str("    double sum = 0.0;\n");
    s.push_str(
        "    if (e < len) for (long long k = lane; k < chunks; k += 32) sum += (double)partial[k * len + e];\n",
    );
    s.push_str("    sh_sum[tid] = sum;\n    __syncthreads();\n");
    s.push_str("    if (lane != 0 || e >= len) return;\n");
    s.push_str("    double total = 0.0;\n");
    s.push_str("    for (int l = 0; l < 32; ++l) total += sh_sum[tid + l];\n");
    s.push_str("    out[e] = (float)total;\n}\n");
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
            let len = grad_len((t, t)) as u64;
            let (chunks, _) = src.wgrad_grid((t, t), n);
            assert!(chunks * len <= WGRAD_PARTIAL_FLOATS.max(len));
            // The chunks cover every neuron: units spread over the blocks.
            let units = n.div_ceil(WGRAD_CHUNK);
            assert!(units.div_ceil(chunks) * chunks >= units);
        }
        // T = 1024, N = 2^24: ~34 GB of partials unbounded, 256 MiB here.
        let big = codegen_mixing(&spec(1024, 1024), &opts).unwrap();
        assert_eq!(
            big.wgrad_grid((1024, 1024), 1 << 24).0,
            WGRAD_PARTIAL_FLOATS / grad_len((1024, 1024)) as u64
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
    fn shared_memory_fits_and_every_thread_works() {
        for t in [1, 3, 4, 16, 17, 64, 65, 128, 1000, MAX_MIX_STEPS] {
            let src = codegen_mixing(&spec(t, t), &CudaOptions::default()).unwrap();
            let l = src.wgrad;
            assert!(4 * l.shared_floats() <= 48 * 1024, "T = {t}: {l:?}");
            // Slices fill the block: at most a group's worth of threads idles.
            let busy = l.slices * l.groups();
            assert!(
                busy <= WGRAD_BLOCK as usize && busy > WGRAD_BLOCK as usize / 2,
                "T = {t}: {l:?}"
            );
            assert!(l.tile_neurons >= 32 && l.tile_neurons >= l.slices);
        }
        // Short sequences spread the neurons over slices; long ones tile the output 64 x 64.
        let short = codegen_mixing(&spec(4, 4), &CudaOptions::default()).unwrap();
        assert_eq!((short.wgrad.slices, short.wgrad.tile_neurons), (256, 256));
        let long = codegen_mixing(&spec(1000, 1000), &CudaOptions::default()).unwrap();
        assert_eq!((long.wgrad.tile_rows, long.wgrad.slices), (64, 1));
        assert_eq!(long.wgrad_grid((1000, 1000), 1).1, 16 * 16);
        // One tile of rows by two of columns.
        assert_eq!(long.wgrad_grid((10, 100), 1).1, 2);
        assert_eq!(long.reduce_grid((2, 3)), 1);
        assert!(long.fits((1000, 1)) && !long.fits((1001, 1)) && !long.fits((0, 1)));
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
