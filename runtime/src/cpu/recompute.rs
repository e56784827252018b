//! The `checkpoint:K` backward on the CPU, with each segment recomputed in cache.
//!
//! The generic backward ([`crate::checkpoint::backward`]) recomputes a whole segment (`K` steps
//! of all `N` neurons) into memory and reads it back in the reverse scan: for large `N` both
//! passes stream it through DRAM, and the segment's inputs are read from DRAM twice. Here each
//! thread takes a range of neurons and walks it one chunk at a time; for each chunk it walks the
//! segments from the last, recomputes the chunk's states into a small buffer, then runs the
//! segment backward scan over them. Both calls read the inputs and upstream gradients, and the
//! backward writes the gradients, in place in the caller's `[T, N]` buffers (rows `N` apart; see
//! [`super::call`]). The states buffer and the chunk's input rows are sized to stay in cache (see
//! [`chunk_neurons`]), so the recomputed states never go to memory and each input row is read
//! from memory once.
//!
//! Every neuron is computed by the same instructions whatever chunk it falls in (see
//! [`crate::cpu`]), and the carried gradients and parameter-gradient sums of a chunk go from
//! segment to segment as in the generic backward, so results are bit-identical to it (and to
//! `states`).

use flexsn_compiler::ir::ParamKind;

use super::call::{Buffer, RawCall, Rows, Span};
use super::{CpuScan, caches, on_threads, split};
use crate::RuntimeError;
use crate::checkpoint::Shared;

/// Neurons per chunk for segments of `k` steps with `rows` floats per neuron and step kept in
/// cache: what fills half of a core's share of the last-level cache, a multiple of 16 between
/// 16 and 65536.
///
/// The share of the last level, not L2: each step of a segment reads (and the backward writes)
/// one piece of a row per `[T, N]` buffer, and pieces of a few KiB (what fits L2) leave the
/// hardware prefetchers too little to run ahead; the forward and backward calls of a chunk then
/// wait on memory. Pieces of tens of KiB stream, and the recomputed states still come back from
/// cache (measured: LIF, T = 1024, N = 2^18, `checkpoint:32`, 2 threads, the recompute call's
/// time fell from 95 to 53 ms per thread going from 2,000 to 32,000 neurons per chunk).
pub(crate) fn chunk_neurons(k: usize, rows: usize) -> usize {
    let budget = caches::last_level_bytes_per_core() / 2;
    let per_neuron = (k + 1) * rows.max(1) * std::mem::size_of::<f32>();
    ((budget / per_neuron).clamp(16, 1 << 16) / 16) * 16
}

/// The two scans of the CPU's checkpointed backward.
pub(crate) struct Scans<'a> {
    /// The forward graph without outputs, storing state sequences.
    pub recompute: &'a CpuScan,
    /// The backward kernel's segment form.
    pub segment: &'a CpuScan,
}

/// Runs the backward: writes the segment scan's sequence outputs (`[T, N]` each) into
/// `seq_outs` and its final carried states (`[N]` each) into `carry`.
pub(crate) fn backward(
    scans: &Scans<'_>,
    sh: &Shared<'_>,
    seq_outs: &mut [&mut [f32]],
    carry: &mut [Vec<f32>],
) -> Result<(), RuntimeError> {
    let (t, n) = (sh.args.t, sh.args.n);
    let ranges = split(n, scans.recompute.threads_for(t, n));
    // The output buffers by address: each thread writes its own neurons of every row.
    let outs: Vec<Buffer> = seq_outs.iter_mut().map(|o| Buffer::of_mut(o)).collect();
    let stack = scans
        .recompute
        .stack_bytes()
        .max(scans.segment.stack_bytes());
    let shares = on_threads(stack, &ranges, |r| run_range(scans, sh, &outs, r))?;
    for (&(b, e), share) in ranges.iter().zip(shares) {
        for (dst, src) in carry.iter_mut().zip(share?) {
            dst[b..e].copy_from_slice(&src);
        }
    }
    Ok(())
}

/// The addresses of the forward's params for steps `t0..` of `span`.
fn param_addrs(sh: &Shared<'_>, t0: usize, span: Span) -> Result<Vec<usize>, RuntimeError> {
    (sh.fwd.params().iter())
        .zip(&sh.args.params)
        .map(|(d, p)| {
            let p = Buffer::of(p);
            match d.kind {
                ParamKind::PerTime => p.values(t0, span.t),
                ParamKind::PerNeuron => p.neurons(span.neurons.0, span),
                ParamKind::Shared => p.values(0, 1),
            }
        })
        .collect()
}

/// The backward over neurons `b..e`, chunk by chunk: writes their rows of `outs` and returns
/// their final carried states.
fn run_range(
    scans: &Scans<'_>,
    sh: &Shared<'_>,
    outs: &[Buffer],
    (b, e): (usize, usize),
) -> Result<Vec<Vec<f32>>, RuntimeError> {
    let (n, fwd) = (sh.args.n, sh.fwd);
    let seg_k = &scans.segment.kernel;
    let (ni, ns) = (fwd.inputs().len(), fwd.states().len());
    let present: Vec<Buffer> = (sh.upstream.outputs.iter())
        .chain(&sh.upstream.state_seqs)
        .flatten()
        .map(|u| Buffer::of(u))
        .collect();
    let longest = sh.segs.iter().map(|s| s.1).max().unwrap_or(0);
    // Kept in cache between the two calls: the recomputed states and the inputs' rows.
    let chunk = chunk_neurons(longest, ni + ns).min(e - b);
    let carried = seg_k.graph.states().len();
    // Per state: the checkpoint, then the recomputed states after each step (rows `chunk`
    // apart).
    let mut states = vec![vec![0.0f32; (longest + 1) * chunk]; ns];
    let mut discard = vec![vec![0.0f32; chunk]; ns];
    let mut carry = vec![vec![0.0f32; chunk]; carried];
    let mut carry_out = carry.clone();
    let mut finals = vec![vec![0.0f32; e - b]; carried];
    let mut c0 = b;
    while c0 < e {
        let c = chunk.min(e - c0);
        for (j, cj) in carry.iter_mut().enumerate() {
            match sh.upstream.final_states.get(j) {
                Some(Some(g)) => cj[..c].copy_from_slice(&g[c0..c0 + c]),
                _ => cj[..c].fill(0.0),
            }
        }
        for (s, &(t0, len)) in sh.segs.iter().enumerate().rev() {
            let span = Span {
                t: len,
                neurons: (c0, c0 + c),
            };
            // Rows t0.. of the caller's [T, N] buffers, in place.
            let at = t0 * n + c0;
            let in_place = |buf: Buffer| buf.rows(at, n, span);
            let xs: Vec<Rows> = (sh.args.inputs.iter())
                .map(|x| in_place(Buffer::of(x)))
                .collect::<Result<_, _>>()?;
            let params = param_addrs(sh, t0, span)?;
            for (buf, cp) in states.iter_mut().zip(sh.checkpoints) {
                buf[..c].copy_from_slice(&cp[s * n + c0..s * n + c0 + c]);
            }
            let recompute = RawCall {
                inputs: xs.clone(),
                init_states: (sh.checkpoints.iter())
                    .map(|cp| Buffer::of(cp).neurons(s * n + c0, span))
                    .collect::<Result<_, _>>()?,
                params: params.clone(),
                outputs: vec![],
                state_seqs: (states.iter_mut())
                    .map(|b| Buffer::of_mut(b).rows(c, c, span))
                    .collect::<Result<_, _>>()?,
                final_states: (discard.iter_mut())
                    .map(|d| Buffer::of_mut(d).neurons(0, span))
                    .collect::<Result<_, _>>()?,
            };
            // SAFETY: every address was checked to lie in its buffer for `span` (`Buffer::rows`,
            // `Buffer::neurons`, `param_addrs`), and the call has one entry per input, state and
            // param of the recompute kernel (which has no outputs). It writes only this thread's
            // `states` and `discard`, which nothing else touches meanwhile. This thread runs on a
            // stack of the kernels' `stack_bytes` (see `backward`).
            unsafe { scans.recompute.call_raw(span, &recompute)? };

            let mut inputs = xs;
            for b in &states {
                inputs.push(Buffer::of(b).rows(0, c, span)?);
            }
            for u in &present {
                inputs.push(in_place(*u)?);
            }
            let segment = RawCall {
                inputs,
                init_states: (carry.iter())
                    .map(|v| Buffer::of(v).neurons(0, span))
                    .collect::<Result<_, _>>()?,
                params,
                outputs: outs
                    .iter()
                    .map(|o| in_place(*o))
                    .collect::<Result<_, _>>()?,
                state_seqs: vec![],
                final_states: (carry_out.iter_mut())
                    .map(|v| Buffer::of_mut(v).neurons(0, span))
                    .collect::<Result<_, _>>()?,
            };
            // SAFETY: as above, for the segment kernel, whose outputs are all sequences: it
            // writes this thread's `carry_out` and neurons `c0..c0 + c` of rows `t0..t0 + len`
            // of `outs`, which `backward` holds mutably for the whole run and gives each thread
            // disjoint neurons of.
            unsafe { scans.segment.call_raw(span, &segment)? };
            std::mem::swap(&mut carry, &mut carry_out);
        }
        for (dst, src) in finals.iter_mut().zip(&carry) {
            dst[c0 - b..c0 - b + c].copy_from_slice(&src[..c]);
        }
        c0 += c;
    }
    Ok(finals)
}
