//! The `checkpoint:K` backward on the CPU, with each segment recomputed in cache.
//!
//! The generic backward ([`crate::checkpoint::backward`]) recomputes a whole segment (`K` steps
//! of all `N` neurons) into memory and reads it back in the reverse scan: for large `N` both
//! passes stream it through DRAM, and the segment's inputs are read from DRAM twice. Here each
//! thread takes a range of neurons and walks it one chunk at a time; for each chunk it walks the
//! segments from the last, copies the chunk's rows of the segment's inputs and upstream
//! gradients into small buffers, recomputes the chunk's states into another, runs the segment
//! backward scan over them and copies the chunk's gradient rows out. A chunk's buffers are
//! sized to stay in L2, so the recomputed states never leave the cache and each input row is
//! read from memory once.
//!
//! Every neuron is computed by the same instructions whatever chunk it falls in (see
//! [`crate::cpu`]), and the carried gradients and parameter-gradient sums of a chunk go from
//! segment to segment as in the generic backward, so results are bit-identical to it (and to
//! `states`).

use flexsn_compiler::ir::ParamKind;
use flexsn_compiler::scan::ScanArgs;

use super::{CpuScan, split};
use crate::checkpoint::Shared;
use crate::{RuntimeError, ScanOutputs};

/// Bytes a chunk's buffers take at most (half of this machine class's 1–2 MiB L2).
const CHUNK_BYTES: usize = 512 * 1024;

/// Neurons per chunk for segments of `k` steps with `rows` floats per neuron and step in the
/// chunk's buffers: a multiple of 16, between 16 and 4096.
pub(crate) fn chunk_neurons(k: usize, rows: usize) -> usize {
    let per_neuron = (k + 1) * rows.max(1) * std::mem::size_of::<f32>();
    ((CHUNK_BYTES / per_neuron).clamp(16, 4096) / 16) * 16
}

/// The two scans of the CPU's checkpointed backward.
pub(crate) struct Scans<'a> {
    /// The forward graph without outputs, storing state sequences.
    pub recompute: &'a CpuScan,
    /// The backward kernel's segment form.
    pub segment: &'a CpuScan,
}

/// One thread's share of the results: per sequence output of the segment scan, its rows
/// restricted to the thread's neurons; per carried state, its final value on those neurons.
struct Share<'a> {
    begin: usize,
    end: usize,
    rows: Vec<Vec<&'a mut [f32]>>,
    carry: Vec<&'a mut [f32]>,
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
    let threads = scans.recompute.threads_for(t, n);
    let ranges = split(n, threads);
    // Cut every output row and carried state at the range boundaries.
    let mut shares: Vec<Share<'_>> = ranges
        .iter()
        .map(|&(b, e)| Share {
            begin: b,
            end: e,
            rows: vec![],
            carry: vec![],
        })
        .collect();
    for o in seq_outs.iter_mut() {
        for sh in shares.iter_mut() {
            sh.rows.push(Vec::with_capacity(t));
        }
        for row in o.chunks_mut(n.max(1)) {
            cut(row, &ranges, &mut shares, |s, piece| {
                if let Some(r) = s.rows.last_mut() {
                    r.push(piece)
                }
            });
        }
    }
    for c in carry.iter_mut() {
        cut(c, &ranges, &mut shares, |s, piece| s.carry.push(piece));
    }
    if shares.len() == 1 {
        let s = shares.pop().expect("one share");
        return run_range(scans, sh, s);
    }
    std::thread::scope(|scope| {
        let mut it = shares.into_iter();
        let first = it.next();
        let handles: Vec<_> = it
            .map(|s| scope.spawn(move || run_range(scans, sh, s)))
            .collect();
        let mut result = first.map_or(Ok(()), |s| run_range(scans, sh, s));
        for h in handles {
            let r = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            result = result.and(r);
        }
        result
    })
}

/// Splits `buf` (`N` floats) at `ranges` and hands each piece to its share.
fn cut<'a>(
    buf: &'a mut [f32],
    ranges: &[(usize, usize)],
    shares: &mut [Share<'a>],
    mut put: impl FnMut(&mut Share<'a>, &'a mut [f32]),
) {
    let mut rest = buf;
    let mut at = 0;
    for (&(b, e), s) in ranges.iter().zip(shares.iter_mut()) {
        let tail = std::mem::take(&mut rest);
        let (_, tail) = tail.split_at_mut(b - at);
        let (piece, tail) = tail.split_at_mut(e - b);
        put(s, piece);
        rest = tail;
        at = e;
    }
}

/// Copies rows `t0..t0 + len` of neurons `c0..c0 + c` of a `[T, N]` buffer into `dst`
/// (`[len, c]`).
fn gather(dst: &mut [f32], src: &[f32], n: usize, (t0, len): (usize, usize), c0: usize) {
    let c = dst.len() / len.max(1);
    for (r, d) in dst.chunks_exact_mut(c.max(1)).take(len).enumerate() {
        let at = (t0 + r) * n + c0;
        d.copy_from_slice(&src[at..at + c]);
    }
}

/// The backward over the neurons of one share, chunk by chunk.
fn run_range(scans: &Scans<'_>, sh: &Shared<'_>, mut share: Share<'_>) -> Result<(), RuntimeError> {
    let (n, fwd) = (sh.args.n, sh.fwd);
    let seg_k = &scans.segment.kernel;
    let (ni, ns) = (fwd.inputs().len(), fwd.states().len());
    let present: Vec<&[f32]> = sh
        .upstream
        .outputs
        .iter()
        .chain(&sh.upstream.state_seqs)
        .flatten()
        .copied()
        .collect();
    let longest = sh.segs.iter().map(|s| s.1).max().unwrap_or(0);
    let streams = ni + ns + present.len() + seg_k.output_modes.len();
    let chunk = chunk_neurons(longest, streams);
    let carried = seg_k.graph.states().len();
    // The chunk's buffers: inputs, states (checkpoint row first), upstream rows, outputs.
    let mut xs = vec![vec![0.0f32; longest * chunk]; ni];
    let mut states = vec![vec![0.0f32; (longest + 1) * chunk]; ns];
    let mut ups = vec![vec![0.0f32; longest * chunk]; present.len()];
    let mut outs = vec![vec![0.0f32; longest * chunk]; seg_k.output_modes.len()];
    let mut discard = vec![vec![0.0f32; chunk]; ns];
    let mut carry = vec![vec![0.0f32; chunk]; carried];
    let mut carry_out = carry.clone();
    let mut c0 = share.begin;
    while c0 < share.end {
        let c = chunk.min(share.end - c0);
        for (j, cj) in carry.iter_mut().enumerate() {
            match sh.upstream.final_states.get(j) {
                Some(Some(g)) => cj[..c].copy_from_slice(&g[c0..c0 + c]),
                _ => cj[..c].fill(0.0),
            }
        }
        for (s, &(t0, len)) in sh.segs.iter().enumerate().rev() {
            let m = len * c;
            for (x, src) in xs.iter_mut().zip(&sh.args.inputs) {
                gather(&mut x[..m], src, n, (t0, len), c0);
            }
            for (u, src) in ups.iter_mut().zip(&present) {
                gather(&mut u[..m], src, n, (t0, len), c0);
            }
            let params: Vec<&[f32]> = fwd
                .params()
                .iter()
                .zip(&sh.args.params)
                .map(|(d, p)| match d.kind {
                    ParamKind::PerTime => &p[t0..t0 + len],
                    ParamKind::PerNeuron => &p[c0..c0 + c],
                    ParamKind::Shared => *p,
                })
                .collect();
            let cps: Vec<&[f32]> = sh
                .checkpoints
                .iter()
                .map(|cp| &cp[s * n + c0..s * n + c0 + c])
                .collect();
            for (b, cp) in states.iter_mut().zip(&cps) {
                b[..c].copy_from_slice(cp);
            }
            let rargs = ScanArgs {
                t: len,
                n: c,
                inputs: xs.iter().map(|x| &x[..m]).collect(),
                init_states: cps,
                params: params.clone(),
            };
            let mut rout = ScanOutputs {
                outputs: vec![],
                state_seqs: states.iter_mut().map(|b| &mut b[c..c + m]).collect(),
                final_states: discard.iter_mut().map(|d| &mut d[..c]).collect(),
            };
            scans
                .recompute
                .run_into_with_threads(&rargs, &mut rout, 1)?;

            let mut inputs: Vec<&[f32]> = xs.iter().map(|x| &x[..m]).collect();
            inputs.extend(states.iter().map(|b| &b[..m]));
            inputs.extend(ups.iter().map(|u| &u[..m]));
            let bargs = ScanArgs {
                t: len,
                n: c,
                inputs,
                init_states: carry.iter().map(|v| &v[..c]).collect(),
                params,
            };
            let mut bout = ScanOutputs {
                outputs: outs.iter_mut().map(|o| &mut o[..m]).collect(),
                state_seqs: vec![],
                final_states: carry_out.iter_mut().map(|v| &mut v[..c]).collect(),
            };
            scans.segment.run_into_with_threads(&bargs, &mut bout, 1)?;
            std::mem::swap(&mut carry, &mut carry_out);
            let off = c0 - share.begin;
            for (rows, o) in share.rows.iter_mut().zip(&outs) {
                for (r, src) in o[..m].chunks_exact(c).enumerate() {
                    rows[t0 + r][off..off + c].copy_from_slice(src);
                }
            }
        }
        let off = c0 - share.begin;
        for (dst, src) in share.carry.iter_mut().zip(&carry) {
            dst[off..off + c].copy_from_slice(&src[..c]);
        }
        c0 += c;
    }
    Ok(())
}
