//! CUDA C source generation for scan kernels (pure text: no CUDA dependency).
//!
//! [`codegen_scan`] turns any verified [`ScanKernel`] into self-contained CUDA C (no includes):
//! one thread per neuron, the time loop inside, states in registers, 64-bit offsets
//! `t * pitch + n`. The kernel implements exactly the ABI of [`crate::scan`]; its arguments, in
//! order, are
//!
//! | argument | type | shape |
//! |---|---|---|
//! | `input{i}` | `const S*` | `[T, N]` |
//! | `state_init{j}` | `const float*` | `[N]` |
//! | `param{k}` | `const float*` | `[1]` / `[N]` / `[T]` by kind |
//! | `output{o}` | `S*` (sequence) or `float*` (sum over time) | `[T, N]` / `[N]` |
//! | `state_seq{j}` (only if the kernel stores state sequences) | `S*` | `[T, N]` |
//! | `state_final{j}` | `float*` | `[N]` |
//! | `T`, `N` | `long long` | |
//! | `{name}_pitch` per `[T, N]` buffer above, in order | `long long` | |
//!
//! where `S` is the storage type of sequences: `float`, or `unsigned short` holding IEEE half or
//! bfloat16 bits ([`StorageDtype`]). Arithmetic is always `float`; params, initial and final
//! states and sums over time are always `float`.
//!
//! The `[T, N]` buffers are exactly the storage-typed ones ([`KernelArg::is_sequence`]); row `t`
//! of one starts at `t * pitch` elements, where the pitch (at least `N`) is its own argument:
//! `N` for dense memory, or `N` rounded up to 128 bytes ([`RowLayout::Padded`]) so that every
//! row starts on a 128-byte boundary and each warp's access touches whole 32-byte sectors.
//! Launch with `blockDim.x =`
//! [`CudaSource::block_size`] and `gridDim.x = ceil(N / block_size)` ([`CudaSource::grid_size`]).
//!
//! Each source also holds a deterministic block reduction kernel ([`CudaSource::reduce_entry`])
//! that sums a `float` buffer (e.g. a per-neuron parameter-gradient `[N]`) in a fixed order.
//!
//! The same text compiles as host C++ with the shim of [`shim`]: that is how machines without a
//! GPU check the generated code's numbers against the interpreter.

pub mod checkpoint;
pub mod mixing;
mod prelude;
pub mod samples;
pub mod shim;

use std::fmt::Write;

use crate::error::BuildError;
use crate::ir::{Node, Op, ParamKind, StepGraph, Surrogate};
use crate::scan::{Direction, OutputMode, ScanKernel};

/// How `[T, N]` sequences are stored in memory. Math is always `f32`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StorageDtype {
    /// IEEE binary32 (no conversion).
    #[default]
    F32,
    /// IEEE binary16, stored as `unsigned short` bits.
    F16,
    /// bfloat16, stored as `unsigned short` bits.
    Bf16,
}

impl StorageDtype {
    /// Every storage type.
    pub const ALL: [StorageDtype; 3] = [StorageDtype::F32, StorageDtype::F16, StorageDtype::Bf16];

    /// `f32`, `f16` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            StorageDtype::F32 => "f32",
            StorageDtype::F16 => "f16",
            StorageDtype::Bf16 => "bf16",
        }
    }

    /// Parses [`StorageDtype::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        StorageDtype::ALL.into_iter().find(|d| d.name() == s)
    }

    /// Bytes per stored element.
    pub fn size_bytes(self) -> usize {
        match self {
            StorageDtype::F32 => 4,
            StorageDtype::F16 | StorageDtype::Bf16 => 2,
        }
    }

    /// The C type of one stored element.
    pub fn c_type(self) -> &'static str {
        match self {
            StorageDtype::F32 => "float",
            StorageDtype::F16 | StorageDtype::Bf16 => "unsigned short",
        }
    }
}

/// Precise (default) or fast math.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MathMode {
    /// `expf`, `logf`, `tanhf`, IEEE division, `1 / sqrtf`: what the interpreter computes.
    #[default]
    Precise,
    /// Hardware approximations: `__expf`, `__logf`, `__sinf`, `rsqrtf`; `__fdividef` and
    /// `__powf` only where they give the precise function's result class (NaN, inf, number).
    Fast,
}

impl MathMode {
    /// Both math modes.
    pub const ALL: [MathMode; 2] = [MathMode::Precise, MathMode::Fast];

    /// `precise` or `fast`.
    pub fn name(self) -> &'static str {
        match self {
            MathMode::Precise => "precise",
            MathMode::Fast => "fast",
        }
    }

    /// Parses [`MathMode::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        MathMode::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// Options of [`codegen_scan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CudaOptions {
    /// Storage type of `[T, N]` sequences (math is always f32).
    pub dtype: StorageDtype,
    /// Precise or fast math.
    pub math: MathMode,
    /// Emit a comment naming the IR op on every line of the step body.
    pub comments: bool,
    /// Threads per block of the scan kernel (a multiple of 32, at most 1024).
    pub block_size: u32,
    /// Unroll factor hint for the time loop (`#pragma unroll`); 1 disables it.
    pub unroll: u32,
    /// Input steps loaded ahead of the arithmetic (software pipelining): the loads of steps
    /// `t + 1 ..= t + prefetch` are in flight while step `t` computes, whatever branches the
    /// step's math contains. 0 disables it; limited to 1 for kernels with more than 8 inputs
    /// (register pressure).
    pub prefetch: u32,
}

impl Default for CudaOptions {
    fn default() -> Self {
        CudaOptions {
            dtype: StorageDtype::F32,
            math: MathMode::Precise,
            comments: true,
            block_size: 256,
            unroll: 4,
            prefetch: 2,
        }
    }
}

impl CudaOptions {
    /// Default options with the given storage type and math mode. 16-bit storage unrolls the
    /// time loop 8 times rather than 4, so that each warp keeps as many bytes of loads in flight.
    pub fn new(dtype: StorageDtype, math: MathMode) -> Self {
        CudaOptions {
            dtype,
            math,
            unroll: if dtype.size_bytes() == 2 { 8 } else { 4 },
            ..Default::default()
        }
    }
}

/// How the rows of the `[T, N]` buffers of a launch are laid out in memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RowLayout {
    /// Row `t` at `t * N` (what frameworks' contiguous tensors are).
    #[default]
    Dense,
    /// Row `t` at `t * pitch`, the pitch `N` rounded up to [`ROW_ALIGN_BYTES`] ([`padded_pitch`]).
    Padded,
}

impl RowLayout {
    /// The row pitch in elements for `n` neurons stored as `dtype` (`None` on overflow).
    pub fn pitch(self, n: usize, dtype: StorageDtype) -> Option<usize> {
        match self {
            RowLayout::Dense => Some(n),
            RowLayout::Padded => padded_pitch(n, dtype),
        }
    }
}

/// Rows of padded `[T, N]` buffers start at multiples of this many bytes: a warp's 32
/// consecutive elements then cover whole 32-byte sectors (4 for f32, 2 for 16-bit types) and
/// never straddle a 128-byte line, whatever `N` is.
pub const ROW_ALIGN_BYTES: usize = 128;

/// `n` rounded up to a whole number of [`ROW_ALIGN_BYTES`] of `dtype` elements (32 for f32, 64
/// for f16/bf16); `None` on overflow.
pub fn padded_pitch(n: usize, dtype: StorageDtype) -> Option<usize> {
    let per_line = ROW_ALIGN_BYTES / dtype.size_bytes();
    n.checked_next_multiple_of(per_line)
}

/// The name of the pitch argument of the `[T, N]` buffer argument `arg`.
pub fn pitch_name(arg: &str) -> String {
    format!("{arg}_pitch")
}

/// The C lvalue of element `n` of row `row` of the `[T, N]` buffer `arg` (`row` a C expression
/// of type `long long`, parenthesised when it is not a single token). Every generated access to
/// a `[T, N]` row goes through here.
pub(crate) fn row_elem(arg: &str, row: &str) -> String {
    format!("{arg}[{row} * {} + n]", pitch_name(arg))
}

/// Threads per block of the reduction kernel (fixed: the tree is written for it).
pub const REDUCE_BLOCK: u32 = 256;
/// Elements each reduction thread adds before the tree.
pub const REDUCE_ITEMS: u32 = 16;
/// Elements one reduction block sums.
pub const REDUCE_CHUNK: u64 = REDUCE_BLOCK as u64 * REDUCE_ITEMS as u64;

/// What a kernel argument is, in ABI order (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArgRole {
    /// Input sequence `i`, `[T, N]`, storage type.
    Input(usize),
    /// Initial state `j`, `[N]`, `float`.
    InitState(usize),
    /// Param `k`, `float`, length by its kind.
    Param(usize),
    /// Output `o`: a sequence in storage type, or a `float [N]` sum over time.
    Output(usize),
    /// State sequence `j`, `[T, N]`, storage type.
    StateSeq(usize),
    /// Final state `j`, `[N]`, `float`.
    FinalState(usize),
    /// Checkpoints of state `j` under `checkpoint:K`, `[⌈T/K⌉, N]`, `float`: written by the
    /// fused training forward, read by the fused backward ([`checkpoint`]).
    Checkpoint(usize),
}

impl KernelArg {
    /// Whether the argument is a `[T, N]` sequence (and takes a row pitch): exactly the
    /// storage-typed arguments.
    pub fn is_sequence(&self) -> bool {
        self.ty == ArgType::Storage
    }
}

impl ArgRole {
    /// Whether a scan kernel writes this buffer (checkpoints: see
    /// [`checkpoint::CheckpointSource::writes`]).
    pub fn is_output(self) -> bool {
        matches!(
            self,
            ArgRole::Output(_) | ArgRole::StateSeq(_) | ArgRole::FinalState(_)
        )
    }
}

/// Element type of a kernel buffer argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArgType {
    /// `float`.
    F32,
    /// The sequence storage type of the source.
    Storage,
}

impl ArgType {
    /// Bytes per element for a source whose sequences are stored as `storage`.
    pub fn elem_bytes(self, storage: StorageDtype) -> usize {
        match self {
            ArgType::F32 => 4,
            ArgType::Storage => storage.size_bytes(),
        }
    }
}

/// One pointer argument of the scan kernel (the last two arguments, `T` and `N`, are implicit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelArg {
    /// The argument's name in the source.
    pub name: String,
    /// What it holds (input, state, param, output, ...).
    pub role: ArgRole,
    /// Its pointer's element type.
    pub ty: ArgType,
}

/// Generated CUDA C source for one scan kernel, plus what a launcher needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CudaSource {
    /// The complete, self-contained source (no includes).
    pub code: String,
    /// `extern "C"` name of the scan kernel.
    pub entry: String,
    /// `extern "C"` name of the deterministic reduction kernel in the same source.
    pub reduce_entry: String,
    /// Pointer arguments of the scan kernel in order; `long long T, long long N` follow, then one
    /// `long long` row pitch per sequence argument ([`KernelArg::is_sequence`]), in order.
    pub args: Vec<KernelArg>,
    /// Storage type of the sequences.
    pub dtype: StorageDtype,
    /// Precise or fast math.
    pub math: MathMode,
    /// Threads per block for the scan kernel.
    pub block_size: u32,
    /// Which way the time loop runs.
    pub direction: Direction,
}

impl CudaSource {
    /// Blocks needed for `n` neurons.
    pub fn grid_size(&self, n: u64) -> u64 {
        n.div_ceil(self.block_size as u64)
    }

    /// Bytes per element of buffers of type `ty`.
    pub fn elem_bytes(&self, ty: ArgType) -> usize {
        ty.elem_bytes(self.dtype)
    }

    /// The sequence (`[T, N]`) arguments, which take a row pitch each, in order.
    pub fn sequence_args(&self) -> impl Iterator<Item = &KernelArg> {
        self.args.iter().filter(|a| a.is_sequence())
    }

    /// The source with numbered lines, for error messages.
    pub fn numbered(&self) -> String {
        number_lines(&self.code)
    }
}

/// Prefixes every line with its 1-based number (as compilers report them).
pub fn number_lines(code: &str) -> String {
    let width = code.lines().count().max(1).to_string().len();
    let mut s = String::with_capacity(code.len() + code.len() / 8);
    for (i, line) in code.lines().enumerate() {
        let _ = writeln!(s, "{:>width$} | {line}", i + 1);
    }
    s
}

/// Why source could not be generated.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CodegenError {
    /// The step graph does not verify.
    #[error("the kernel's graph does not verify: {0}")]
    Invalid(#[from] BuildError),
    /// The kernel's output modes do not match its outputs.
    #[error("the kernel has {modes} output modes for {outputs} outputs")]
    OutputModes {
        /// Output modes given.
        modes: usize,
        /// Outputs of the graph.
        outputs: usize,
    },
    /// A block size CUDA cannot launch.
    #[error("block size {0} is invalid: use a multiple of 32 between 32 and 1024")]
    BlockSize(u32),
    /// A backward scan given with a forward graph it was not derived from.
    #[error("the backward scan does not belong to the forward graph: {0}")]
    Mismatch(String),
}

/// Number of groups of blocks-per-reduction needed to reduce `len` values to one:
/// the sequence of partial lengths the driver goes through (`len`, then ceil(len / CHUNK), ...).
pub fn reduce_passes(len: u64) -> Vec<u64> {
    let mut v = vec![len];
    let mut l = len;
    while l > 1 {
        l = l.div_ceil(REDUCE_CHUNK);
        v.push(l);
    }
    v
}

/// A C identifier fragment from a name (letters, digits, `_`; at most 40 characters).
fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect();
    if s.is_empty() {
        s.push_str("core");
    }
    s
}

/// The stable `extern "C"` name of the scan kernel for `kernel` with `opts`:
/// `flexsn_{core}_{fwd|bwd}_{dtype}_{math}_{first 10 hex digits of the kernel's hash}`.
pub fn entry_name(kernel: &ScanKernel, opts: &CudaOptions) -> String {
    let dir = match kernel.direction {
        Direction::Forward => "fwd",
        Direction::Reverse => "bwd",
    };
    let hash = kernel.stable_hash_hex();
    format!(
        "flexsn_{}_{dir}_{}_{}_{}",
        sanitize(kernel.graph.name()),
        opts.dtype.name(),
        opts.math.name(),
        &hash[..10]
    )
}

/// Formats an `f32` constant as a C expression that denotes exactly that value.
fn float_literal(c: f32) -> String {
    if c.is_finite() {
        // Rust's shortest round-trip form, parsed by C with correct rounding to float.
        let s = format!("{c:?}");
        if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
            format!("{s}f")
        } else {
            format!("{s}.0f")
        }
    } else {
        // The verifier rejects non-finite constants; spell them by bits anyway.
        format!("__uint_as_float(0x{:08x}u)", c.to_bits())
    }
}

/// The C expression computing `op` on the operand names `a` (the op must not be a leaf).
fn op_expr(op: &Op, a: &[String], math: MathMode) -> String {
    let fast = math == MathMode::Fast;
    let f1 =
        |precise: &str, quick: &str| format!("{}({})", if fast { quick } else { precise }, a[0]);
    let b01 = |cond: String| format!("(({cond}) ? 1.0f : 0.0f)");
    match *op {
        Op::Input(_) | Op::State(_) | Op::Param(_) | Op::Const(_) => {
            unreachable!("leaves are emitted by the scan loop")
        }
        Op::Neg => format!("-{}", a[0]),
        Op::Reciprocal => {
            if fast {
                format!("flexsn_fast_div(1.0f, {})", a[0])
            } else {
                format!("1.0f / {}", a[0])
            }
        }
        Op::Exp => f1("expf", "__expf"),
        Op::Log => f1("logf", "__logf"),
        Op::Log2 => f1("log2f", "__log2f"),
        Op::Sqrt => f1("sqrtf", "sqrtf"),
        Op::Rsqrt => {
            if fast {
                format!("rsqrtf({})", a[0])
            } else {
                format!("1.0f / sqrtf({})", a[0])
            }
        }
        Op::Tanh => f1("tanhf", "tanhf"),
        Op::Sin => f1("sinf", "__sinf"),
        Op::Cos => f1("cosf", "__cosf"),
        Op::Erf => f1("erff", "erff"),
        Op::Atan => f1("atanf", "atanf"),
        Op::Floor => f1("floorf", "floorf"),
        Op::Ceil => f1("ceilf", "ceilf"),
        // rintf rounds half to even in the default rounding mode (torch.round).
        Op::Round => f1("rintf", "rintf"),
        Op::Relu => format!("flexsn_relu({})", a[0]),
        Op::Sigmoid => {
            if fast {
                format!("flexsn_fast_div(1.0f, 1.0f + __expf(-{}))", a[0])
            } else {
                format!("1.0f / (1.0f + expf(-{}))", a[0])
            }
        }
        Op::Sign => format!("flexsn_sign({})", a[0]),
        Op::Abs => format!("fabsf({})", a[0]),
        Op::Not => format!("(({} != 0.0f) ? 0.0f : 1.0f)", a[0]),
        Op::Add => format!("{} + {}", a[0], a[1]),
        Op::Sub => format!("{} - {}", a[0], a[1]),
        Op::Mul => format!("{} * {}", a[0], a[1]),
        Op::Div => {
            if fast {
                format!("flexsn_fast_div({}, {})", a[0], a[1])
            } else {
                format!("{} / {}", a[0], a[1])
            }
        }
        Op::Pow => format!(
            "{}({}, {})",
            if fast { "flexsn_fast_powf" } else { "powf" },
            a[0],
            a[1]
        ),
        Op::Fmod => format!("fmodf({}, {})", a[0], a[1]),
        Op::Min => format!("flexsn_min({}, {})", a[0], a[1]),
        Op::Max => format!("flexsn_max({}, {})", a[0], a[1]),
        Op::Eq => b01(format!("{} == {}", a[0], a[1])),
        Op::Ne => b01(format!("{} != {}", a[0], a[1])),
        Op::Lt => b01(format!("{} < {}", a[0], a[1])),
        Op::Le => b01(format!("{} <= {}", a[0], a[1])),
        Op::Gt => b01(format!("{} > {}", a[0], a[1])),
        Op::Ge => b01(format!("{} >= {}", a[0], a[1])),
        Op::And => b01(format!("{} != 0.0f && {} != 0.0f", a[0], a[1])),
        Op::Or => b01(format!("{} != 0.0f || {} != 0.0f", a[0], a[1])),
        Op::Clamp => format!("flexsn_min(flexsn_max({}, {}), {})", a[0], a[1], a[2]),
        Op::Select => format!("({} != 0.0f) ? {} : {}", a[0], a[1], a[2]),
        // Forward of every surrogate spike is the Heaviside step, Θ(0) = 1, NaN gives 0.
        // except MultiLevelSpikeCount's count round(clamp(x, 0, max)).
        Op::Spike(Surrogate::MultiLevelSpikeCount {
            max_spike_count, ..
        }) => format!(
            "rintf(flexsn_min(flexsn_max({}, 0.0f), {}))",
            a[0],
            float_literal(max_spike_count as f32)
        ),
        Op::Spike(_) => b01(format!("{} >= 0.0f", a[0])),
        Op::Detach => a[0].clone(),
    }
}

/// `e` (an element in storage type `dtype`) read as `float`.
fn load_expr(dtype: StorageDtype, e: &str) -> String {
    match dtype {
        StorageDtype::F32 => e.to_string(),
        StorageDtype::F16 => format!("flexsn_load_f16({e})"),
        StorageDtype::Bf16 => format!("flexsn_load_bf16({e})"),
    }
}

/// The `float` expression `e` converted to storage type `dtype`.
fn store_expr(dtype: StorageDtype, e: &str) -> String {
    match dtype {
        StorageDtype::F32 => e.to_string(),
        StorageDtype::F16 => format!("flexsn_store_f16({e})"),
        StorageDtype::Bf16 => format!("flexsn_store_bf16({e})"),
    }
}

/// The C expression of a non-leaf node, its operands named `v{index}`.
fn node_expr(node: &Node, math: MathMode) -> String {
    let a: Vec<String> = node
        .args
        .iter()
        .map(|a| format!("v{}", a.index()))
        .collect();
    op_expr(&node.op, &a, math)
}

/// A comment describing node `v` in the text form's notation (`%3 = mul %1, %2`).
fn node_comment(g: &StepGraph, v: usize, node: &Node) -> String {
    let args: Vec<String> = node
        .args
        .iter()
        .map(|a| format!("%{}", a.index()))
        .collect();
    let what = match node.op {
        Op::Input(i) => format!("input {}", g.inputs()[i as usize].name),
        Op::State(j) => format!("state {}", g.states()[j as usize].name),
        Op::Param(k) => format!("param {}", g.params()[k as usize].name),
        Op::Const(c) => format!("const {c:?}"),
        Op::Spike(s) => format!("spike[{s:?}] {}", args.join(", ")),
        ref op => format!("{} {}", op.name(), args.join(", ")),
    };
    // Keep comments on one line and free of comment terminators.
    let what = what.replace("*/", "* /").replace('\n', " ");
    format!("%{v} = {what}")
}

/// Generates the CUDA C source of `kernel`.
pub fn codegen_scan(kernel: &ScanKernel, opts: &CudaOptions) -> Result<CudaSource, CodegenError> {
    let g = &kernel.graph;
    crate::verify::verify(g)?;
    if kernel.output_modes.len() != g.outputs().len() {
        return Err(CodegenError::OutputModes {
            modes: kernel.output_modes.len(),
            outputs: g.outputs().len(),
        });
    }
    if opts.block_size < 32 || opts.block_size > 1024 || !opts.block_size.is_multiple_of(32) {
        return Err(CodegenError::BlockSize(opts.block_size));
    }
    let entry = entry_name(kernel, opts);
    let reduce_entry = "flexsn_reduce_sum_f32".to_string();
    let st = opts.dtype.c_type();
    let load = |e: &str| load_expr(opts.dtype, e);
    let store = |e: &str| store_expr(opts.dtype, e);

    // ---- arguments ----
    let mut args = Vec::new();
    let mut decl = Vec::new(); // (C declaration, comment)
    for (i, d) in g.inputs().iter().enumerate() {
        args.push(KernelArg {
            name: format!("input{i}"),
            role: ArgRole::Input(i),
            ty: ArgType::Storage,
        });
        decl.push((
            format!("const {st}* __restrict__ input{i}"),
            format!("input `{}` [T, N]", d.name),
        ));
    }
    for (j, d) in g.states().iter().enumerate() {
        args.push(KernelArg {
            name: format!("state_init{j}"),
            role: ArgRole::InitState(j),
            ty: ArgType::F32,
        });
        decl.push((
            format!("const float* __restrict__ state_init{j}"),
            format!("initial state `{}` [N]", d.name),
        ));
    }
    for (k, d) in g.params().iter().enumerate() {
        args.push(KernelArg {
            name: format!("param{k}"),
            role: ArgRole::Param(k),
            ty: ArgType::F32,
        });
        let shape = match d.kind {
            ParamKind::Shared => "[1]",
            ParamKind::PerNeuron => "[N]",
            ParamKind::PerTime => "[T]",
        };
        decl.push((
            format!("const float* __restrict__ param{k}"),
            format!("param `{}` {} {shape}", d.name, d.kind.name()),
        ));
    }
    for (o, d) in g.outputs().iter().enumerate() {
        match kernel.output_modes[o] {
            OutputMode::Sequence => {
                args.push(KernelArg {
                    name: format!("output{o}"),
                    role: ArgRole::Output(o),
                    ty: ArgType::Storage,
                });
                decl.push((
                    format!("{st}* __restrict__ output{o}"),
                    format!("output `{}` [T, N]", d.name),
                ));
            }
            OutputMode::SumOverTime => {
                args.push(KernelArg {
                    name: format!("output{o}"),
                    role: ArgRole::Output(o),
                    ty: ArgType::F32,
                });
                decl.push((
                    format!("float* __restrict__ output{o}"),
                    format!("output `{}` summed over time [N]", d.name),
                ));
            }
        }
    }
    if kernel.state_seqs {
        for (j, d) in g.states().iter().enumerate() {
            args.push(KernelArg {
                name: format!("state_seq{j}"),
                role: ArgRole::StateSeq(j),
                ty: ArgType::Storage,
            });
            decl.push((
                format!("{st}* __restrict__ state_seq{j}"),
                format!("state `{}` after each step [T, N]", d.name),
            ));
        }
    }
    for (j, d) in g.states().iter().enumerate() {
        args.push(KernelArg {
            name: format!("state_final{j}"),
            role: ArgRole::FinalState(j),
            ty: ArgType::F32,
        });
        decl.push((
            format!("float* __restrict__ state_final{j}"),
            format!("final state `{}` [N]", d.name),
        ));
    }

    // ---- source ----
    let mut c = String::new();
    let dir_word = match kernel.direction {
        Direction::Forward => "forward",
        Direction::Reverse => "reverse (backward)",
    };
    let _ = writeln!(
        c,
        "// flexsn scan kernel for core `{}`: {dir_word} scan, storage {}, math {}",
        g.name().replace('\n', " "),
        opts.dtype.name(),
        opts.math.name()
    );
    let _ = writeln!(
        c,
        "// Generated by flexsn-compiler from IR {}; self-contained, no includes.",
        &kernel.stable_hash_hex()[..16]
    );
    let _ = writeln!(
        c,
        "// One thread per neuron n, time loop inside, states in registers; row t of a [T, N] buffer"
    );
    let _ = writeln!(
        c,
        "// starts at t * pitch, its own `_pitch` argument (N for dense rows, more for padded ones)."
    );
    c.push('\n');
    c.push_str(prelude::FLOAT_HELPERS);
    c.push_str(prelude::math_helpers(opts.math));
    c.push_str(prelude::storage_helpers(opts.dtype));
    c.push('\n');

    let _ = writeln!(
        c,
        "extern \"C\" __global__ void __launch_bounds__({}) {entry}(",
        opts.block_size
    );
    for (d, comment) in &decl {
        let _ = writeln!(c, "    {d}, // {comment}");
    }
    c.push_str("    const long long T,\n    const long long N");
    for a in args.iter().filter(|a| a.is_sequence()) {
        let _ = write!(c, ",\n    const long long {}", pitch_name(&a.name));
    }
    c.push_str(")\n{\n");
    c.push_str(
        "    const long long n = (long long)blockIdx.x * (long long)blockDim.x + (long long)threadIdx.x;\n",
    );
    c.push_str("    if (n >= N) return;\n");
    for (j, d) in g.states().iter().enumerate() {
        let _ = writeln!(
            c,
            "    float s{j} = state_init{j}[n]; // state `{}`",
            d.name
        );
    }
    for (k, d) in g.params().iter().enumerate() {
        match d.kind {
            ParamKind::Shared => {
                let _ = writeln!(c, "    const float p{k} = param{k}[0];");
            }
            ParamKind::PerNeuron => {
                let _ = writeln!(c, "    const float p{k} = param{k}[n];");
            }
            ParamKind::PerTime => {}
        }
    }
    for (o, mode) in kernel.output_modes.iter().enumerate() {
        if *mode == OutputMode::SumOverTime {
            let _ = writeln!(c, "    float acc{o} = 0.0f;");
        }
    }
    let n_inputs = g.inputs().len();
    let prefetch = match opts.prefetch {
        0 => 0,
        p if n_inputs > 8 => p.min(1),
        p => p.min(8),
    } as usize;
    let forward = kernel.direction == Direction::Forward;
    if prefetch > 0 && n_inputs > 0 {
        let _ = writeln!(
            c,
            "    // Software pipelining: inputs of the next {prefetch} step(s) are loaded before each step's math."
        );
        for i in 0..n_inputs {
            let regs: Vec<String> = (0..prefetch)
                .map(|q| format!("in{i}_q{q} = 0.0f"))
                .collect();
            let _ = writeln!(c, "    float {};", regs.join(", "));
        }
        for q in 0..prefetch {
            let step = if forward {
                format!("{q}LL")
            } else {
                format!("(T - {}LL)", q + 1)
            };
            let loads: Vec<String> = (0..n_inputs)
                .map(|i| {
                    format!(
                        "in{i}_q{q} = {};",
                        load(&row_elem(&format!("input{i}"), &step))
                    )
                })
                .collect();
            let _ = writeln!(c, "    if (T > {q}LL) {{ {} }}", loads.join(" "));
        }
    }
    if opts.unroll > 1 {
        let _ = writeln!(c, "    #pragma unroll {}", opts.unroll);
    }
    if forward {
        c.push_str("    for (long long t = 0; t < T; ++t) {\n");
    } else {
        c.push_str("    for (long long t = T - 1; t >= 0; --t) {\n");
    }
    if prefetch > 0 && n_inputs > 0 {
        let ahead = prefetch as u64;
        let (cond, row) = if forward {
            (format!("t + {ahead}LL < T"), format!("(t + {ahead}LL)"))
        } else {
            (format!("t >= {ahead}LL"), format!("(t - {ahead}LL)"))
        };
        for i in 0..n_inputs {
            let _ = writeln!(c, "        const float in{i}_now = in{i}_q0;");
            for q in 1..prefetch {
                let _ = writeln!(c, "        in{i}_q{} = in{i}_q{q};", q - 1);
            }
        }
        let loads: Vec<String> = (0..n_inputs)
            .map(|i| {
                format!(
                    "in{i}_q{} = {};",
                    prefetch - 1,
                    load(&row_elem(&format!("input{i}"), &row))
                )
            })
            .collect();
        let _ = writeln!(c, "        if ({cond}) {{ {} }}", loads.join(" "));
    }
    for (v, node) in g.nodes() {
        let v = v.index();
        let rhs = match node.op {
            Op::Input(i) if prefetch > 0 => format!("in{i}_now"),
            Op::Input(i) => load(&row_elem(&format!("input{i}"), "t")),
            Op::State(j) => format!("s{j}"),
            Op::Param(k) => match g.params()[k as usize].kind {
                ParamKind::PerTime => format!("param{k}[t]"),
                _ => format!("p{k}"),
            },
            Op::Const(x) => float_literal(x),
            _ => node_expr(node, opts.math),
        };
        if opts.comments {
            let _ = writeln!(
                c,
                "        const float v{v} = {rhs}; // {}",
                node_comment(g, v, node)
            );
        } else {
            let _ = writeln!(c, "        const float v{v} = {rhs};");
        }
    }
    for (o, d) in g.outputs().iter().enumerate() {
        let v = d.value.index();
        match kernel.output_modes[o] {
            OutputMode::Sequence => {
                let _ = writeln!(
                    c,
                    "        {} = {};",
                    row_elem(&format!("output{o}"), "t"),
                    store(&format!("v{v}"))
                );
            }
            OutputMode::SumOverTime => {
                let _ = writeln!(c, "        acc{o} += v{v};");
            }
        }
    }
    for (j, next) in g.next_states().iter().enumerate() {
        let _ = writeln!(c, "        s{j} = v{};", next.index());
    }
    if kernel.state_seqs {
        for j in 0..g.states().len() {
            let _ = writeln!(
                c,
                "        {} = {};",
                row_elem(&format!("state_seq{j}"), "t"),
                store(&format!("s{j}"))
            );
        }
    }
    c.push_str("    }\n");
    for (o, mode) in kernel.output_modes.iter().enumerate() {
        if *mode == OutputMode::SumOverTime {
            let _ = writeln!(c, "    output{o}[n] = acc{o};");
        }
    }
    for j in 0..g.states().len() {
        let _ = writeln!(c, "    state_final{j}[n] = s{j};");
    }
    c.push_str("}\n\n");

    c.push_str(
        &prelude::REDUCE_TEMPLATE
            .replace("{NAME}", &reduce_entry)
            .replace("{BLOCK}", &REDUCE_BLOCK.to_string())
            .replace("{HALF}", &(REDUCE_BLOCK / 2).to_string())
            .replace("{ITEMS}", &REDUCE_ITEMS.to_string())
            .replace("{CHUNK}", &REDUCE_CHUNK.to_string()),
    );

    Ok(CudaSource {
        code: c,
        entry,
        reduce_entry,
        args,
        dtype: opts.dtype,
        math: opts.math,
        block_size: opts.block_size,
        direction: kernel.direction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_literals_round_trip() {
        for c in [
            0.0f32,
            -0.0,
            1.0,
            0.1,
            1e-5,
            3.4028235e38,
            1e-45,
            123456789.0,
            -2.5,
        ] {
            let s = float_literal(c);
            assert!(s.ends_with('f'), "{s}");
            let parsed: f32 = s.trim_end_matches('f').parse().unwrap();
            assert_eq!(parsed.to_bits(), c.to_bits(), "{s}");
        }
        assert_eq!(float_literal(f32::INFINITY), "__uint_as_float(0x7f800000u)");
    }

    #[test]
    fn reduce_passes_shrink_to_one() {
        assert_eq!(reduce_passes(1), vec![1]);
        assert_eq!(reduce_passes(4096), vec![4096, 1]);
        assert_eq!(reduce_passes(4097), vec![4097, 2, 1]);
        assert_eq!(reduce_passes(0), vec![0]);
    }

    #[test]
    fn numbering_pads_line_numbers() {
        let s = number_lines("a\nb\n");
        assert_eq!(s, "1 | a\n2 | b\n");
    }
}
