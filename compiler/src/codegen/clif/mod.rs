//! Cranelift IR for scan kernels.
//!
//! [`codegen_scan`] turns any verified [`ScanKernel`] (forward or reverse, sequence or
//! sum-over-time outputs, with or without state sequences, every op of the IR) into one Cranelift
//! [`Function`] with the signature `fn(frame: *const ScanFrame)`. `T` and `N` are run-time
//! values read from the [`ScanFrame`]; so is the range of neurons `[n_begin, n_end)` the call
//! handles, which is how the runtime splits the neurons over threads, and each `[T, N]`
//! buffer's row pitch, which lets a call read and write rows of a neuron range in place inside
//! larger buffers (the CPU's checkpointed backward does).
//!
//! ## Loop nest
//!
//! ```text
//! for chunk in (n_begin..n_end).step_by(C)          // C neurons: states stay in a stack buffer
//!     copy initial states of the chunk into the buffer; zero the sum-over-time accumulators
//!     for s in 0..T                                   // t = s, or T-1-s for a reverse scan
//!         per-time params, and the nodes that depend only on them and constants
//!         for 4U neurons at a time: U interleaved f32x4 copies of the step (U = 4, or 2 for
//!                                   big graphs)
//!         for 4 neurons at a time (when U > 1)
//!         for each remaining neuron: the same vector code on a splatted value (lane 0 stored),
//!                                   so the tail is bit-identical to the vector body
//!     copy the buffer to the final states and the sums to their outputs
//! ```
//!
//! Nodes that depend only on constants and shared params are computed once per call; nodes that
//! also depend on per-time params once per step. The buffer holds `C` floats per state and per
//! sum-over-time output; `C` defaults to [`default_chunk`].
//!
//! ## Schedule
//!
//! The function is meant to be compiled at Cranelift's `opt_level = none`, which keeps the
//! instruction order written here (the e-graph pass of the other levels computes each pure value
//! just before its first use, undoing the interleaving below). So the order is chosen here:
//!
//! - the `U` copies of an unrolled body are emitted together, instruction by instruction
//!   (`lanes::Lanes` over arrays of `U` values), so their dependency chains overlap in the CPU:
//!   one copy of a surrogate derivative is a chain of ~100 cycles of latency, longer than what an
//!   out-of-order window holds of one copy after another;
//! - neuron-level nodes are emitted depth first from the roots, operands needing more registers
//!   first (Sethi–Ullman order), and each output is stored as soon as it is computed (next
//!   states only after every read of the old ones);
//! - constants come from the constant pool and per-call / per-step values from a stack slot at
//!   each use, rather than living in registers across the loops.
//!
//! ## Numerics
//!
//! Every op is lowered by [`lower::lower_op`], written over the [`lanes::Lanes`] abstraction.
//! All ops except the transcendental functions of [`math`] are exact and agree with
//! [`crate::interp::eval_op`] bit for bit (including `min`/`max` on signed zeros, NaN rules of
//! `relu`/`sign`, and an exact `fmod`). The approximated functions are bit-identical to their
//! [`lanes::Scalar`] model, whose error bounds are stated in [`math`]; [`model::run_scan`] runs a
//! whole scan on that model.
//!
//! ## Annotations
//!
//! Every instruction carries a source location naming the step-graph node (or the part of the
//! loop nest) it comes from; [`ClifScan::annotated_text`] prints the function with a comment
//! line wherever that changes.

mod emit;
pub mod lanes;
pub mod lower;
pub mod math;
pub mod model;
mod scan;
mod two_over_pi;

use std::fmt::Write as _;

use cranelift_codegen::entity::SecondaryMap;
use cranelift_codegen::ir::{Function, Inst, Value};
use cranelift_codegen::isa::TargetFrontendConfig;
use cranelift_codegen::write::{FuncWriter, PlainWriter, decorate_function};

use crate::BuildError;
use crate::scan::ScanKernel;

/// The argument block of a generated scan function, passed by pointer.
///
/// Buffers follow the kernel ABI of [`crate::scan`]; each pointer array has one entry per
/// input / state / param / output of the graph (`state_seqs` only when the kernel stores state
/// sequences). The function handles neurons `n_begin..n_end` of `N = n`: it reads and writes only
/// their elements, so disjoint ranges may run on different threads at once.
#[repr(C)]
#[derive(Debug)]
pub struct ScanFrame {
    /// Time steps.
    pub t: u64,
    /// Per `[T, N]`-shaped buffer, inputs then outputs then state sequences (in that order, one
    /// entry for every output, sum-over-time ones too, whose entry is not read): the distance in
    /// floats from row `t` to row `t + 1`. Neuron `j` of step `t` is element `t * pitch + j`.
    /// Usually `N`.
    pub pitches: *const u64,
    /// First neuron this call handles.
    pub n_begin: u64,
    /// One past the last neuron this call handles.
    pub n_end: u64,
    /// Per input: its `[T, N]` sequence (rows `pitch` apart).
    pub inputs: *const *const f32,
    /// Per state: its initial value `[N]`.
    pub init_states: *const *const f32,
    /// Per param: its values.
    pub params: *const *const f32,
    /// Per output: its buffer.
    pub outputs: *const *mut f32,
    /// Per state: its `[T, N]` sequence buffer (rows `pitch` apart).
    pub state_seqs: *const *mut f32,
    /// Per state: its final value `[N]`.
    pub final_states: *const *mut f32,
    /// Must be `math::TWO_OVER_PI_CHUNKS.as_ptr()`.
    pub tables: *const [f64; 4],
    /// [`ClifScan::scratch_bytes`] bytes of memory for this call alone (null when that is 0):
    /// where kernels too big for a thread's stack keep their uniform values and state buffers.
    pub scratch: *mut u8,
}

/// Code generation options.
#[derive(Clone, Copy)]
pub struct ClifOptions {
    /// The target's calling convention and pointer width (from its `TargetIsa`).
    pub frontend: TargetFrontendConfig,
    /// Neurons per chunk: a multiple of 16 up to 65536, or 0 for [`default_chunk`].
    pub chunk: usize,
    /// f32x4 copies per loop iteration, 1 to 4, or 0 for automatic (4, or 2 for big graphs).
    pub unroll: usize,
    /// Fused multiply-adds in the polynomials of [`math`] (one `fma` instruction where the
    /// target has one: see [`host_fma`]); the model of such code is [`lanes::Scalar::FUSED`].
    /// The exactly lowered ops never fuse.
    pub fused: bool,
}

impl ClifOptions {
    /// Automatic chunk and unroll for a target.
    pub fn new(frontend: TargetFrontendConfig) -> Self {
        ClifOptions {
            frontend,
            chunk: 0,
            unroll: 0,
            fused: false,
        }
    }

    /// Automatic chunk and unroll for the host architecture (default flags).
    pub fn host() -> Result<Self, CodegenError> {
        let isa = cranelift_codegen::isa::lookup_by_name(std::env::consts::ARCH)
            .map_err(|e| CodegenError::Target(e.to_string()))?
            .finish(cranelift_codegen::settings::Flags::new(
                cranelift_codegen::settings::builder(),
            ))
            .map_err(|e| CodegenError::Target(e.to_string()))?;
        Ok(ClifOptions::new(isa.frontend_config()))
    }
}

/// Whether this machine has a fused multiply-add for `f32x4` that Cranelift lowers to one
/// instruction (x86-64 with FMA3, which `cranelift-native` detects the same way; AArch64).
pub fn host_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(target_arch = "aarch64")]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Bytes of chunk buffers [`default_chunk`] aims for.
pub const CHUNK_BUFFER_BYTES: usize = 128 * 1024;

/// The default chunk: the buffers (one per state and per sum-over-time output) take at most
/// [`CHUNK_BUFFER_BYTES`], so they stay in L2 next to the streamed rows; between 256 and 32768
/// neurons. Long chunks matter more than an L1-sized buffer: each step reads and writes one
/// contiguous row segment of the chunk's length per sequence, and the hardware prefetchers
/// restart at every segment (LIF at T = 64, N = 2^20, 2 threads: forward + backward 10-20%
/// faster with 32768 neurons per chunk than with 4096).
pub fn default_chunk(buffers: usize) -> usize {
    let c = (CHUNK_BUFFER_BYTES / 4) / buffers.max(1);
    (c.clamp(256, 32768) / 16) * 16
}

/// Why a kernel could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    /// The step graph does not verify.
    #[error("invalid step graph: {0}")]
    Graph(#[from] BuildError),
    /// The kernel's output modes do not match its outputs.
    #[error("the kernel has {modes} output modes for {outputs} outputs")]
    OutputModes {
        /// Output modes given.
        modes: usize,
        /// Outputs of the graph.
        outputs: usize,
    },
    /// A code generation option out of range.
    #[error("invalid codegen option: {0}")]
    Option(String),
    /// Cranelift cannot target this machine.
    #[error("unsupported target: {0}")]
    Target(String),
    /// The kernel's working memory does not fit the 32-bit offsets of the generated code.
    #[error(
        "the kernel needs {bytes} bytes of working memory per call, more than a 32-bit offset reaches"
    )]
    TooBig {
        /// Bytes the kernel would need.
        bytes: usize,
    },
}

/// A generated scan function with its annotations.
#[derive(Clone, Debug)]
pub struct ClifScan {
    /// The Cranelift function.
    pub func: Function,
    /// Indexed by the instructions' source locations.
    pub annotations: Vec<String>,
    /// Neurons per chunk.
    pub chunk: usize,
    /// f32x4 copies per iteration of the main neuron loop.
    pub unroll: usize,
    /// Bytes of scratch memory each call needs ([`ScanFrame::scratch`]); 0 when everything fits
    /// in the stack frame.
    pub scratch_bytes: usize,
}

/// Generates the Cranelift function of `kernel`.
pub fn codegen_scan(kernel: &ScanKernel, opts: &ClifOptions) -> Result<ClifScan, CodegenError> {
    scan::emit(kernel, opts)
}

/// Prints a comment line with the annotation whenever it changes.
struct Annotator<'a> {
    annotations: &'a [String],
    last: Option<u32>,
}

impl FuncWriter for Annotator<'_> {
    fn write_block_header(
        &mut self,
        w: &mut dyn std::fmt::Write,
        func: &Function,
        block: cranelift_codegen::ir::Block,
        indent: usize,
    ) -> std::fmt::Result {
        self.last = None;
        PlainWriter.write_block_header(w, func, block, indent)
    }

    fn write_instruction(
        &mut self,
        w: &mut dyn std::fmt::Write,
        func: &Function,
        aliases: &SecondaryMap<Value, Vec<Value>>,
        inst: Inst,
        indent: usize,
    ) -> std::fmt::Result {
        let loc = func.srcloc(inst);
        if !loc.is_default() && self.last != Some(loc.bits()) {
            self.last = Some(loc.bits());
            if let Some(a) = self.annotations.get(loc.bits() as usize) {
                writeln!(w, "{:indent$}; {a}", "")?;
            }
        }
        PlainWriter.write_instruction(w, func, aliases, inst, indent)
    }
}

impl ClifScan {
    /// The function as CLIF text, with `; …` comment lines naming the step-graph node or loop
    /// part each group of instructions comes from.
    pub fn annotated_text(&self) -> String {
        annotate(&self.func, &self.annotations)
    }
}

/// Prints `func` with the comment lines of [`ClifScan::annotated_text`] (for a function whose
/// source locations index `annotations`, before or after optimisation).
pub fn annotate(func: &Function, annotations: &[String]) -> String {
    let mut s = String::new();
    let mut w = Annotator {
        annotations,
        last: None,
    };
    let _ = decorate_function(&mut w, &mut s, func);
    let _ = writeln!(s);
    s
}

#[cfg(test)]
mod tests;
