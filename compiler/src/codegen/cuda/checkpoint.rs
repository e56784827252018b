//! Fused CUDA kernels of the `checkpoint:K` save policy (see [`crate::checkpoint`]).
//!
//! - [`codegen_checkpoint_forward`]: the training forward in one launch. The inference scan's
//!   arguments, with one `float` checkpoint buffer per state (`[⌈T/K⌉, N]`, the state before
//!   steps `0, K, 2K, …`) between the outputs and the final states, then `T, N, K`.
//! - [`codegen_checkpoint_backward`]: the backward in one launch. The backward scan's
//!   arguments, except that its "state before step t" inputs are the checkpoint buffers. Each
//!   thread (one neuron) walks the segments from the last: it recomputes the segment's states
//!   from its checkpoint into dynamic shared memory (`K` rows per state, in the storage type, one
//!   column per thread), then runs the reverse scan over them, carrying the state gradients and
//!   the sums over time (parameter-gradient contributions) from segment to segment.
//!
//! The step bodies are the scan kernels' own expressions, evaluated in the same order, and the
//! recomputed states are stored through the storage type as the `states` policy stores them,
//! so precise-math results are bit-identical to the `states` policy's kernels. Shared memory per
//! block is `K · S · blockDim · elem` bytes: [`checkpoint_block`] picks the block size, or says
//! that `K · S` is too large (the runtime then recomputes through device memory).

use std::fmt::Write;

use super::{
    ArgRole, ArgType, CodegenError, CudaOptions, KernelArg, MathMode, StorageDtype, float_literal,
    load_expr, node_comment, op_expr, prelude, sanitize, shim, store_expr,
};
use crate::ir::{Op, ParamKind, StepGraph};
use crate::scan::{Direction, OutputMode, ScanKernel};

/// Dynamic shared memory a block of the backward kernel may use without opting in (48 KiB).
pub const CHECKPOINT_SHARED_BYTES: usize = 48 * 1024;

/// The largest block of the backward kernel (its `__launch_bounds__`).
pub const CHECKPOINT_MAX_BLOCK: u32 = 256;

/// One kernel of the `checkpoint:K` policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointSource {
    /// The complete, self-contained source (no includes).
    pub code: String,
    /// `extern "C"` name of the kernel.
    pub entry: String,
    /// Pointer arguments in order (checkpoint buffers as [`ArgRole::Checkpoint`]); `long long
    /// T, N, K` follow.
    pub args: Vec<KernelArg>,
    /// Storage type of the sequences.
    pub dtype: StorageDtype,
    /// Precise or fast math.
    pub math: MathMode,
    /// Number of states of the forward graph (rows of shared memory per step).
    pub states: usize,
    /// The forward kernel's block size; for the backward kernel its largest block.
    pub block_size: u32,
    /// Whether this is the backward kernel (it takes dynamic shared memory).
    pub backward: bool,
}

impl CheckpointSource {
    /// Threads per block and dynamic shared memory bytes for a launch over `t` steps with
    /// interval `k` (`min(K, T)` rows per state): `None` when even a block of 32 threads would
    /// need more than [`CHECKPOINT_SHARED_BYTES`].
    pub fn launch_shape(&self, t: usize, k: usize) -> Option<(u32, usize)> {
        if !self.backward {
            return Some((self.block_size, 0));
        }
        let rows = k.min(t);
        let b = checkpoint_block(rows, self.states, self.dtype)?;
        Some((b, rows * self.states * b as usize * self.dtype.size_bytes()))
    }
}

/// Threads per block of the backward kernel for interval `k` and `states` states: the largest
/// multiple of 32 up to [`CHECKPOINT_MAX_BLOCK`] whose `k · states · block · elem` bytes fit in
/// [`CHECKPOINT_SHARED_BYTES`]; `None` if 32 threads do not fit.
pub fn checkpoint_block(k: usize, states: usize, dtype: StorageDtype) -> Option<u32> {
    let per_thread = k
        .max(1)
        .checked_mul(states)?
        .checked_mul(dtype.size_bytes())?;
    if per_thread == 0 {
        return Some(CHECKPOINT_MAX_BLOCK);
    }
    let fit = (CHECKPOINT_SHARED_BYTES / per_thread).min(CHECKPOINT_MAX_BLOCK as usize);
    let b = (fit / 32 * 32) as u32;
    (b >= 32).then_some(b)
}

/// The C declaration of one pointer argument.
fn declare(
    args: &mut Vec<KernelArg>,
    decl: &mut Vec<String>,
    role: ArgRole,
    ty: ArgType,
    c: String,
) {
    let name = match role {
        ArgRole::Input(i) => format!("input{i}"),
        ArgRole::InitState(j) => format!("state_init{j}"),
        ArgRole::Param(k) => format!("param{k}"),
        ArgRole::Output(o) => format!("output{o}"),
        ArgRole::StateSeq(j) => format!("state_seq{j}"),
        ArgRole::Checkpoint(j) => format!("checkpoint{j}"),
        ArgRole::FinalState(j) => format!("state_final{j}"),
    };
    decl.push(format!("{c} __restrict__ {name}"));
    args.push(KernelArg { name, role, ty });
}

/// The last arguments of both kernels: the final value of each of `states` states (the carried
/// gradients, for the backward).
fn declare_final_states(states: usize, args: &mut Vec<KernelArg>, decl: &mut Vec<String>) {
    for j in 0..states {
        declare(
            args,
            decl,
            ArgRole::FinalState(j),
            ArgType::F32,
            "float*".into(),
        );
    }
}

/// Declarations shared by both kernels: initial states, params, outputs.
fn declare_tail(k: &ScanKernel, st: &str, args: &mut Vec<KernelArg>, decl: &mut Vec<String>) {
    let g = &k.graph;
    for j in 0..g.states().len() {
        declare(
            args,
            decl,
            ArgRole::InitState(j),
            ArgType::F32,
            "const float*".into(),
        );
    }
    for p in 0..g.params().len() {
        declare(
            args,
            decl,
            ArgRole::Param(p),
            ArgType::F32,
            "const float*".into(),
        );
    }
    for (o, mode) in k.output_modes.iter().enumerate() {
        let (ty, c) = match mode {
            OutputMode::Sequence => (ArgType::Storage, format!("{st}*")),
            OutputMode::SumOverTime => (ArgType::F32, "float*".to_string()),
        };
        declare(args, decl, ArgRole::Output(o), ty, c);
    }
}

/// Checks what [`super::codegen_scan`] checks of a kernel.
fn check(k: &ScanKernel, opts: &CudaOptions) -> Result<(), CodegenError> {
    crate::verify::verify(&k.graph)?;
    if k.output_modes.len() != k.graph.outputs().len() {
        return Err(CodegenError::OutputModes {
            modes: k.output_modes.len(),
            outputs: k.graph.outputs().len(),
        });
    }
    if opts.block_size < 32 || opts.block_size > 1024 || !opts.block_size.is_multiple_of(32) {
        return Err(CodegenError::BlockSize(opts.block_size));
    }
    Ok(())
}

/// Header comment, helpers and the kernel's opening lines up to `if (n >= N) return;`.
fn open(
    c: &mut String,
    what: &str,
    g: &StepGraph,
    opts: &CudaOptions,
    bound: u32,
    entry: &str,
    decl: &[String],
) {
    let _ = writeln!(
        c,
        "// flexsn checkpoint kernel for core `{}`: {what}, storage {}, math {}",
        g.name().replace('\n', " "),
        opts.dtype.name(),
        opts.math.name()
    );
    let _ = writeln!(
        c,
        "// Generated by flexsn-compiler from IR {}; self-contained, no includes.\n",
        &g.stable_hash_hex()[..16]
    );
    c.push_str(prelude::FLOAT_HELPERS);
    c.push_str(prelude::math_helpers(opts.math));
    c.push_str(prelude::storage_helpers(opts.dtype));
    c.push('\n');
    let _ = writeln!(
        c,
        "extern \"C\" __global__ void __launch_bounds__({bound}) {entry}("
    );
    for d in decl {
        let _ = writeln!(c, "    {d},");
    }
    c.push_str("    const long long T,\n    const long long N,\n    const long long K)\n{\n");
    c.push_str(
        "    const long long n = (long long)blockIdx.x * (long long)blockDim.x + (long long)threadIdx.x;\n",
    );
    c.push_str("    if (n >= N) return;\n");
}

/// Per-neuron and shared params into registers, sums over time zeroed.
fn load_params(c: &mut String, k: &ScanKernel) {
    for (p, d) in k.graph.params().iter().enumerate() {
        match d.kind {
            ParamKind::Shared => {
                let _ = writeln!(c, "    const float p{p} = param{p}[0];");
            }
            ParamKind::PerNeuron => {
                let _ = writeln!(c, "    const float p{p} = param{p}[n];");
            }
            ParamKind::PerTime => {}
        }
    }
    for (o, mode) in k.output_modes.iter().enumerate() {
        if *mode == OutputMode::SumOverTime {
            let _ = writeln!(c, "    float acc{o} = 0.0f;");
        }
    }
}

/// One step of `g` at step `t` (index `i = t * N + n`), each value `const float {pre}v{id}`;
/// `leaf` gives the expression of an input or state leaf.
fn step_body(
    c: &mut String,
    g: &StepGraph,
    opts: &CudaOptions,
    indent: &str,
    pre: &str,
    leaf: &dyn Fn(&Op) -> String,
) {
    for (v, node) in g.nodes() {
        let id = v.index();
        let rhs = match node.op {
            Op::Input(_) | Op::State(_) => leaf(&node.op),
            Op::Param(p) => match g.params()[p as usize].kind {
                ParamKind::PerTime => format!("param{p}[t]"),
                _ => format!("p{p}"),
            },
            Op::Const(x) => float_literal(x),
            // Operands named `{pre}v{id}`, like the node itself.
            _ => {
                let a: Vec<String> = node
                    .args
                    .iter()
                    .map(|a| format!("{pre}v{}", a.index()))
                    .collect();
                op_expr(&node.op, &a, opts.math)
            }
        };
        if opts.comments {
            let _ = writeln!(
                c,
                "{indent}const float {pre}v{id} = {rhs}; // {}",
                node_comment(g, id, node)
            );
        } else {
            let _ = writeln!(c, "{indent}const float {pre}v{id} = {rhs};");
        }
    }
}

/// Writes the outputs of a step (sequences at `i`, sums into `acc{o}`).
fn step_outputs(c: &mut String, k: &ScanKernel, opts: &CudaOptions, indent: &str) {
    for (o, d) in k.graph.outputs().iter().enumerate() {
        let v = d.value.index();
        match k.output_modes[o] {
            OutputMode::Sequence => {
                let _ = writeln!(
                    c,
                    "{indent}output{o}[i] = {};",
                    store_expr(opts.dtype, &format!("v{v}"))
                );
            }
            OutputMode::SumOverTime => {
                let _ = writeln!(c, "{indent}acc{o} += v{v};");
            }
        }
    }
}

/// One step of a scan kernel `k` with its outputs and the update of its carried states
/// `{carried}{j}`.
fn scan_step(
    c: &mut String,
    k: &ScanKernel,
    opts: &CudaOptions,
    indent: &str,
    carried: &str,
    leaf: &dyn Fn(&Op) -> String,
) {
    step_body(c, &k.graph, opts, indent, "", leaf);
    step_outputs(c, k, opts, indent);
    for (j, next) in k.graph.next_states().iter().enumerate() {
        let _ = writeln!(c, "{indent}{carried}{j} = v{};", next.index());
    }
}

/// Sums over time and final states written at the end of a kernel.
fn close(c: &mut String, k: &ScanKernel, carried: &str) {
    for (o, mode) in k.output_modes.iter().enumerate() {
        if *mode == OutputMode::SumOverTime {
            let _ = writeln!(c, "    output{o}[n] = acc{o};");
        }
    }
    for j in 0..k.graph.states().len() {
        let _ = writeln!(c, "    state_final{j}[n] = {carried}{j};");
    }
    c.push_str("}\n");
}

/// The stable entry name: `flexsn_{core}_{what}_{dtype}_{math}_{hash}`.
fn entry_name(g: &StepGraph, hash: &str, what: &str, opts: &CudaOptions) -> String {
    format!(
        "flexsn_{}_{what}_{}_{}_{}",
        sanitize(g.name()),
        opts.dtype.name(),
        opts.math.name(),
        &hash[..10]
    )
}

/// The fused training forward of `checkpoint:K` for the inference scan `inference` (a forward
/// scan without state sequences).
pub fn codegen_checkpoint_forward(
    inference: &ScanKernel,
    opts: &CudaOptions,
) -> Result<CheckpointSource, CodegenError> {
    check(inference, opts)?;
    let g = &inference.graph;
    let st = opts.dtype.c_type();
    let hash = ScanKernel::forward(g.clone(), false).stable_hash_hex();
    let entry = entry_name(g, &hash, "ckfwd", opts);
    let (mut args, mut decl) = (vec![], vec![]);
    for i in 0..g.inputs().len() {
        declare(
            &mut args,
            &mut decl,
            ArgRole::Input(i),
            ArgType::Storage,
            format!("const {st}*"),
        );
    }
    declare_tail(inference, st, &mut args, &mut decl);
    for j in 0..g.states().len() {
        declare(
            &mut args,
            &mut decl,
            ArgRole::Checkpoint(j),
            ArgType::F32,
            "float*".into(),
        );
    }
    declare_final_states(g.states().len(), &mut args, &mut decl);
    let mut c = String::new();
    let what = "forward saving the state before every K-th step";
    open(&mut c, what, g, opts, opts.block_size, &entry, &decl);
    for j in 0..g.states().len() {
        let _ = writeln!(c, "    float s{j} = state_init{j}[n];");
    }
    load_params(&mut c, inference);
    c.push_str("    long long cp_next = 0, cp_row = 0;\n");
    if opts.unroll > 1 {
        let _ = writeln!(c, "    #pragma unroll {}", opts.unroll);
    }
    c.push_str("    for (long long t = 0; t < T; ++t) {\n");
    c.push_str("        const long long i = t * N + n;\n");
    c.push_str("        if (t == cp_next) {\n");
    for j in 0..g.states().len() {
        let _ = writeln!(c, "            checkpoint{j}[cp_row * N + n] = s{j};");
    }
    c.push_str("            ++cp_row;\n            cp_next += K;\n        }\n");
    let load = |e: String| load_expr(opts.dtype, &e);
    scan_step(&mut c, inference, opts, "        ", "s", &|op| match *op {
        Op::Input(x) => load(format!("input{x}[i]")),
        Op::State(j) => format!("s{j}"),
        _ => unreachable!("leaves only"),
    });
    c.push_str("    }\n");
    close(&mut c, inference, "s");
    Ok(CheckpointSource {
        code: c,
        entry,
        args,
        dtype: opts.dtype,
        math: opts.math,
        states: g.states().len(),
        block_size: opts.block_size,
        backward: false,
    })
}

/// The fused backward of `checkpoint:K`: `fwd` is the forward step graph the checkpoints came
/// from, `bwd` its backward scan (inputs `x_i`, then the state before each step, then the
/// upstream gradients; see [`crate::autodiff::BackwardGraph`]).
pub fn codegen_checkpoint_backward(
    fwd: &StepGraph,
    bwd: &ScanKernel,
    opts: &CudaOptions,
) -> Result<CheckpointSource, CodegenError> {
    check(bwd, opts)?;
    crate::verify::verify(fwd)?;
    let g = &bwd.graph;
    let (ni, ns) = (fwd.inputs().len(), fwd.states().len());
    if bwd.direction != Direction::Reverse
        || g.inputs().len() < ni + ns
        || g.states().len() != ns
        || g.params().len() != fwd.params().len()
    {
        return Err(CodegenError::Mismatch(format!(
            "{} inputs, {} states, {} params for a forward graph of {ni} inputs, {ns} states, {} params",
            g.inputs().len(),
            g.states().len(),
            g.params().len(),
            fwd.params().len()
        )));
    }
    let st = opts.dtype.c_type();
    let hash = format!(
        "{}{}",
        &fwd.stable_hash_hex()[..5],
        &bwd.stable_hash_hex()[..5]
    );
    let entry = entry_name(g, &hash, "ckbwd", opts);
    let (mut args, mut decl) = (vec![], vec![]);
    for i in 0..g.inputs().len() {
        if (ni..ni + ns).contains(&i) {
            let j = i - ni;
            declare(
                &mut args,
                &mut decl,
                ArgRole::Checkpoint(j),
                ArgType::F32,
                "const float*".into(),
            );
        } else {
            declare(
                &mut args,
                &mut decl,
                ArgRole::Input(i),
                ArgType::Storage,
                format!("const {st}*"),
            );
        }
    }
    declare_tail(bwd, st, &mut args, &mut decl);
    declare_final_states(ns, &mut args, &mut decl);
    let mut c = String::new();
    let what = "backward recomputing each segment of K steps in shared memory";
    open(&mut c, what, g, opts, CHECKPOINT_MAX_BLOCK, &entry, &decl);
    c.push_str(
        "#ifndef FLEXSN_DYNAMIC_SHARED\n\
         #define FLEXSN_DYNAMIC_SHARED(name) extern __shared__ __align__(16) unsigned char name[]\n\
         #endif\n",
    );
    c.push_str("    FLEXSN_DYNAMIC_SHARED(flexsn_smem);\n");
    let _ = writeln!(
        c,
        "    // Per state R = min(K, T) rows of blockDim.x: the state before each step of a segment.\n    {st}* const sh = ({st}*)flexsn_smem;"
    );
    c.push_str("    const long long R = (K < T) ? K : T;\n");
    // Offsets inside shared memory fit 32 bits (R · S · blockDim elements of at most 48 KiB).
    c.push_str("    const unsigned int B = blockDim.x;\n");
    for j in 0..ns {
        let _ = writeln!(
            c,
            "    {st}* const sh{j} = sh + {j}u * (unsigned int)R * B + threadIdx.x;"
        );
    }
    for j in 0..ns {
        let _ = writeln!(c, "    float c{j} = state_init{j}[n]; // carried gradient");
    }
    load_params(&mut c, bwd);
    let load = |e: String| load_expr(opts.dtype, &e);
    // The last segment, found without a 64-bit division (a subroutine call in SASS, whose
    // saved registers would count as spills).
    c.push_str("    long long seg = (T > 0) ? 0 : -1, t0 = 0;\n");
    c.push_str("    while (t0 + K < T) { t0 += K; ++seg; }\n");
    c.push_str("    for (; seg >= 0; --seg, t0 -= K) {\n");
    // A segment has at most R rows, which fit in shared memory: an int.
    c.push_str("        const int len = (int)((T - t0 < K) ? (T - t0) : K);\n");
    // Recompute: rows 0..len of the segment, the checkpoint first.
    let store_rows = |c: &mut String, row: &str| {
        for j in 0..ns {
            let _ = writeln!(
                c,
                "            sh{j}[{row} * B] = {};",
                store_expr(opts.dtype, &format!("r{j}"))
            );
        }
    };
    for j in 0..ns {
        let _ = writeln!(c, "        float r{j} = checkpoint{j}[seg * N + n];");
    }
    store_rows(&mut c, "0u");
    c.push_str("        for (int q = 1; q < len; ++q) {\n");
    c.push_str(
        "            const long long t = t0 + q - 1;\n            const long long i = t * N + n;\n",
    );
    let plain = CudaOptions {
        comments: false,
        ..*opts
    };
    step_body(&mut c, fwd, &plain, "            ", "f", &|op| match *op {
        Op::Input(x) => load(format!("input{x}[i]")),
        Op::State(j) => format!("r{j}"),
        _ => unreachable!("leaves only"),
    });
    for (j, next) in fwd.next_states().iter().enumerate() {
        let _ = writeln!(c, "            r{j} = fv{};", next.index());
    }
    store_rows(&mut c, "(unsigned int)q");
    c.push_str("        }\n");
    // Reverse scan over the segment.
    c.push_str("        for (int q = len - 1; q >= 0; --q) {\n");
    c.push_str(
        "            const long long t = t0 + q;\n            const long long i = t * N + n;\n",
    );
    scan_step(&mut c, bwd, opts, "            ", "c", &|op| match *op {
        Op::Input(x) if (ni..ni + ns).contains(&(x as usize)) => {
            let j = x as usize - ni;
            load(format!("sh{j}[(unsigned int)q * B]"))
        }
        Op::Input(x) => load(format!("input{x}[i]")),
        Op::State(j) => format!("c{j}"),
        _ => unreachable!("leaves only"),
    });
    c.push_str("        }\n    }\n");
    close(&mut c, bwd, "c");
    Ok(CheckpointSource {
        code: c,
        entry,
        args,
        dtype: opts.dtype,
        math: opts.math,
        states: ns,
        block_size: CHECKPOINT_MAX_BLOCK,
        backward: true,
    })
}

impl CheckpointSource {
    /// Whether the kernel writes the buffer of `role` (the forward writes the checkpoints, the
    /// backward reads them).
    pub fn writes(&self, role: ArgRole) -> bool {
        role.is_output() || (!self.backward && matches!(role, ArgRole::Checkpoint(_)))
    }
}

/// The complete host C++ translation unit of `src` (see [`super::shim`]): shim, dynamic shared
/// memory as a per-launch host buffer, the source, and the entry point
/// `int flexsn_emu_checkpoint(void* const* args, long long T, long long N, long long K,
/// unsigned grid, unsigned block, unsigned long long shared_bytes)`. The threads of a block run
/// one after another; each uses only its own column of the shared buffer, so that is exact.
pub fn host_translation_unit(src: &CheckpointSource) -> String {
    let st = src.dtype.c_type();
    let casts: Vec<String> = src
        .args
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let t = match a.ty {
                ArgType::F32 => "float",
                ArgType::Storage => st,
            };
            let c = if src.writes(a.role) { "" } else { "const " };
            format!("({c}{t}*)args[{i}]")
        })
        .collect();
    let mut s = String::with_capacity(shim::SHIM_HEADER.len() + src.code.len() + 2048);
    s.push_str(shim::ftz_define(src.math));
    s.push_str(shim::SHIM_HEADER);
    s.push_str(
        "static thread_local unsigned char* flexsn_emu_dyn_smem = 0;\n\
         #define FLEXSN_DYNAMIC_SHARED(name) unsigned char* const name = flexsn_emu_dyn_smem\n",
    );
    s.push_str(&src.code);
    let _ = write!(
        s,
        r#"
// ---- flexsn host entry point (emulation only) ----
struct flexsn_ck_ctx {{ void* const* args; long long T, N, K; }};
static void flexsn_ck_body(void* p) {{
    flexsn_ck_ctx* c = (flexsn_ck_ctx*)p;
    void* const* args = c->args;
    {entry}({call}, c->T, c->N, c->K);
}}
extern "C" int flexsn_emu_checkpoint(void* const* args, long long T, long long N, long long K, unsigned grid, unsigned block, unsigned long long shared_bytes) {{
    unsigned char* buf = 0;
    if (shared_bytes) {{
        buf = (unsigned char*)malloc(shared_bytes);
        if (!buf) return 3;
    }}
    flexsn_emu_dyn_smem = buf;
    flexsn_ck_ctx c = {{args, T, N, K}};
    const int r = flexsn_emu_run_sequential(grid, 1u, block, flexsn_ck_body, &c);
    flexsn_emu_dyn_smem = 0;
    free(buf);
    return r;
}}
"#,
        entry = src.entry,
        call = casts.join(", "),
    );
    s
}
