//! The `checkpoint:K` save policy on any backend (see [`flexsn_compiler::checkpoint`]).
//!
//! Training forward runs the inference scan one segment of `K` steps at a time, writing each
//! segment's final states into the next checkpoint row. Backward walks the segments from the
//! last: it recomputes the segment's states into a `[(K+1), N]` buffer per state (first row: the
//! checkpoint) with the recompute scan, then runs the segment backward scan over them, carrying
//! the state gradients and the parameter-gradient sums into the previous segment.

use flexsn_compiler::autodiff::BackwardGraph;
use flexsn_compiler::bptt::{self, Gradients, Upstream};
use flexsn_compiler::checkpoint::{SavePolicy, SegmentBackward};
use flexsn_compiler::ir::{ParamKind, StepGraph};
use flexsn_compiler::scan::{ScanArgs, ScanResult, ShapeError};

use crate::cpu::{CpuScan, recompute};
use crate::{RuntimeError, ScanExecutor, ScanOutputs};

/// Rows `t0..t0 + len` of a `[T, N]` buffer.
fn rows(x: &[f32], n: usize, t0: usize, len: usize) -> &[f32] {
    &x[t0 * n..(t0 + len) * n]
}

/// The arguments of steps `t0..t0 + len` of `args` (inputs and per-time params sliced),
/// starting from `init_states`.
fn segment_args<'a>(
    g: &StepGraph,
    args: &ScanArgs<'a, f32>,
    (t0, len): (usize, usize),
    init_states: Vec<&'a [f32]>,
) -> ScanArgs<'a, f32> {
    let n = args.n;
    ScanArgs {
        t: len,
        n,
        inputs: args.inputs.iter().map(|x| rows(x, n, t0, len)).collect(),
        init_states,
        params: g
            .params()
            .iter()
            .zip(&args.params)
            .map(|(d, p)| match d.kind {
                ParamKind::PerTime => &p[t0..t0 + len],
                ParamKind::Shared | ParamKind::PerNeuron => *p,
            })
            .collect(),
    }
}

/// Where a training forward under `checkpoint:K` writes.
pub(crate) struct Saved<'a, 'b> {
    /// Per output: `[T, N]`.
    pub outputs: &'a mut [&'b mut [f32]],
    /// Per state: `⌈T/K⌉` rows of `N`, the state before steps `0, K, 2K, …`.
    pub checkpoints: &'a mut [&'b mut [f32]],
    /// Per state: `[N]`.
    pub final_states: &'a mut [&'b mut [f32]],
}

/// Checks that `bufs` hold one `⌈T/K⌉ × N` checkpoint buffer per state of `g`.
pub(crate) fn check_checkpoints(
    g: &StepGraph,
    t: usize,
    n: usize,
    k: usize,
    lens: &[usize],
) -> Result<(), RuntimeError> {
    let rows = SavePolicy::Checkpoint(k).saved_rows(t);
    ShapeError::check_count("checkpoint buffers", g.states().len(), lens.len())?;
    for (d, &l) in g.states().iter().zip(lens) {
        ShapeError::check_len(
            format!("checkpoint buffer {}", d.name),
            format!("[ceil(T/K)={rows}, N={n}]"),
            rows * n,
            l,
        )?;
    }
    Ok(())
}

/// Training forward under `checkpoint:K`: outputs and final states as the inference scan
/// writes them, and the checkpoints. `args` and the buffers' shapes are checked by the caller.
pub(crate) fn forward(
    inference: &dyn ScanExecutor,
    g: &StepGraph,
    args: &ScanArgs<'_, f32>,
    k: usize,
    saved: Saved<'_, '_>,
) -> Result<(), RuntimeError> {
    if let Some(fused) = crate::cuda::checkpoint::Fused::of(inference) {
        // CUDA: one launch of the fused forward.
        return fused.forward(inference.kernel(), args, k, saved);
    }
    let (n, segs) = (args.n, SavePolicy::Checkpoint(k).segments(args.t));
    let Saved {
        outputs,
        checkpoints,
        final_states,
    } = saved;
    for ((cp, s0), fin) in checkpoints
        .iter_mut()
        .zip(&args.init_states)
        .zip(final_states.iter_mut())
    {
        if let Some(row) = cp.get_mut(..n) {
            row.copy_from_slice(s0);
        }
        // What a zero-step scan returns.
        fin.copy_from_slice(s0);
    }
    for (s, &seg) in segs.iter().enumerate() {
        let last = s + 1 == segs.len();
        let mut inits = Vec::with_capacity(checkpoints.len());
        let mut fins = Vec::with_capacity(checkpoints.len());
        for (cp, fin) in checkpoints.iter_mut().zip(final_states.iter_mut()) {
            let (before, after) = cp.split_at_mut((s + 1) * n);
            inits.push(&before[s * n..]);
            fins.push(if last { &mut **fin } else { &mut after[..n] });
        }
        let (t0, len) = seg;
        let mut out = ScanOutputs {
            outputs: outputs
                .iter_mut()
                .map(|o| &mut o[t0 * n..(t0 + len) * n])
                .collect(),
            state_seqs: vec![],
            final_states: fins,
        };
        inference.run_into(&segment_args(g, args, seg, inits), &mut out)?;
    }
    Ok(())
}

/// The scans backward needs under `checkpoint:K`.
pub(crate) struct Scans<'a> {
    /// The forward graph without outputs, storing state sequences.
    pub recompute: &'a dyn ScanExecutor,
    /// The backward graph's segment form, and its compiled scan.
    pub segment: &'a SegmentBackward,
    pub segment_exec: &'a dyn ScanExecutor,
}

/// What the segments of a checkpointed backward read: the forward call, its checkpoints (`⌈T/K⌉`
/// rows of `N` per state) and the upstream gradients.
pub(crate) struct Shared<'a> {
    pub fwd: &'a StepGraph,
    pub args: &'a ScanArgs<'a, f32>,
    pub segs: &'a [(usize, usize)],
    pub checkpoints: &'a [&'a [f32]],
    pub upstream: &'a Upstream<'a, f32>,
}

/// Backward under `checkpoint:K` from the forward call's `args` and `checkpoints` (as
/// [`forward`] left them). Bit-identical to [`bptt::backward_from_prev`] on the full state
/// sequences. `args` and `upstream` are checked by the caller.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    scans: &Scans<'_>,
    fwd: &StepGraph,
    bwd: &BackwardGraph,
    args: &ScanArgs<'_, f32>,
    k: usize,
    checkpoints: &[&[f32]],
    upstream: &Upstream<'_, f32>,
    input_grads: &mut [&mut [f32]],
) -> Result<Gradients<f32>, RuntimeError> {
    let (t, n) = (args.t, args.n);
    let (ni, ns) = (fwd.inputs().len(), fwd.states().len());
    let segs = SavePolicy::Checkpoint(k).segments(t);
    if checkpoints.len() != ns || checkpoints.iter().any(|c| c.len() != segs.len() * n) {
        return Err(bptt::ExecError::MissingStateSeqs.into());
    }
    if input_grads.len() != ni || input_grads.iter().any(|g| g.len() != t * n) {
        return Err(bptt::ExecError::MissingStateSeqs.into());
    }
    if let Some(fused) = crate::cuda::checkpoint::Fused::of(scans.recompute) {
        // CUDA: one launch that recomputes each segment in shared memory, unless `K · S` is
        // too large for it (then the segments go through device memory below).
        if let Some(mut r) = fused.backward(fwd, &bwd.kernel, args, k, checkpoints, upstream)? {
            // The input gradients go into the caller's buffers, as below.
            for (dst, src) in input_grads.iter_mut().zip(r.outputs.iter_mut()) {
                dst.copy_from_slice(&std::mem::take(src));
            }
            return Ok(bptt::collect_gradients(fwd, bwd, r, t, n));
        }
    }
    let seg_graph = &scans.segment.kernel.graph;
    // Carried gradients, then the parameter-gradient sums: in and out of each segment.
    let zeros = vec![0.0f32; n];
    let mut carry: Vec<Vec<f32>> = (0..seg_graph.states().len())
        .map(|j| match upstream.final_states.get(j) {
            Some(Some(g)) => g.to_vec(),
            _ => zeros.clone(),
        })
        .collect();
    // The segment scan's first sequence outputs are the input gradients: they go straight into
    // the caller's buffers; only the per-step param contributions are allocated here.
    let seq_count = scans.segment.kernel.output_modes.len();
    let mut contribs: Vec<Vec<f32>> = (ni..seq_count).map(|_| vec![0.0; t * n]).collect();
    let mut seq_outs: Vec<&mut [f32]> = input_grads
        .iter_mut()
        .map(|g| &mut **g)
        .chain(contribs.iter_mut().map(Vec::as_mut_slice))
        .collect();
    let shared = Shared {
        fwd,
        args,
        segs: &segs,
        checkpoints,
        upstream,
    };
    match (cpu(scans.recompute), cpu(scans.segment_exec)) {
        // The CPU recomputes each segment per chunk of neurons, in cache.
        (Some(recompute), Some(segment)) => recompute::backward(
            &recompute::Scans { recompute, segment },
            &shared,
            &mut seq_outs,
            &mut carry,
        )?,
        _ => whole_segments(scans, &shared, &mut seq_outs, &mut carry)?,
    }
    drop(seq_outs);
    // The backward kernel's results, as one scan over all `T` steps would have returned them
    // (the input gradients are already in place: empty here).
    let mut contribs = contribs.into_iter().map(Some).collect::<Vec<_>>();
    let outputs = scans
        .segment
        .sources
        .iter()
        .map(|src| match *src {
            Ok(o) if o < ni => vec![],
            Ok(o) => contribs[o - ni].take().unwrap_or_default(),
            Err(j) => carry[j].clone(),
        })
        .collect();
    carry.truncate(ns);
    let r = ScanResult {
        outputs,
        state_seqs: vec![],
        final_states: carry,
    };
    Ok(bptt::collect_gradients(fwd, bwd, r, t, n))
}

/// `e` as a CPU scan, if it is one.
fn cpu(e: &dyn ScanExecutor) -> Option<&CpuScan> {
    e.as_any().downcast_ref::<CpuScan>()
}

/// The segments of [`backward`] one after the other, each over all `N` neurons: recomputes a
/// segment's states into `[(K+1), N]` buffers, then runs the segment backward scan over them.
/// `carry` holds the carried states on entry (as `upstream` gives them) and their final values
/// on return; `seq_outs` receives the segment scan's sequence outputs.
fn whole_segments(
    scans: &Scans<'_>,
    sh: &Shared<'_>,
    seq_outs: &mut [&mut [f32]],
    carry: &mut Vec<Vec<f32>>,
) -> Result<(), RuntimeError> {
    let (fwd, args, upstream) = (sh.fwd, sh.args, sh.upstream);
    let (n, ns) = (args.n, fwd.states().len());
    let longest = sh.segs.iter().map(|s| s.1).max().unwrap_or(0);
    // Per state: the checkpoint, then the recomputed states after each step of the segment.
    let mut states = vec![vec![0.0f32; (longest + 1) * n]; ns];
    let mut discard = vec![vec![0.0f32; n]; ns];
    let mut carry_out = carry.clone();
    for (s, &seg) in sh.segs.iter().enumerate().rev() {
        let (t0, len) = seg;
        let cps: Vec<&[f32]> = sh
            .checkpoints
            .iter()
            .map(|c| &c[s * n..(s + 1) * n])
            .collect();
        for (buf, cp) in states.iter_mut().zip(&cps) {
            buf[..n].copy_from_slice(cp);
        }
        let mut out = ScanOutputs {
            outputs: vec![],
            state_seqs: states
                .iter_mut()
                .map(|b| &mut b[n..(len + 1) * n])
                .collect(),
            final_states: discard.iter_mut().map(Vec::as_mut_slice).collect(),
        };
        scans
            .recompute
            .run_into(&segment_args(fwd, args, seg, cps), &mut out)?;

        let mut bargs = segment_args(fwd, args, seg, carry.iter().map(Vec::as_slice).collect());
        bargs.inputs.extend(states.iter().map(|b| &b[..len * n]));
        let present = upstream
            .outputs
            .iter()
            .chain(&upstream.state_seqs)
            .flatten();
        bargs.inputs.extend(present.map(|x| rows(x, n, t0, len)));
        let mut out = ScanOutputs {
            outputs: seq_outs
                .iter_mut()
                .map(|o| &mut o[t0 * n..(t0 + len) * n])
                .collect(),
            state_seqs: vec![],
            final_states: carry_out.iter_mut().map(Vec::as_mut_slice).collect(),
        };
        scans.segment_exec.run_into(&bargs, &mut out)?;
        std::mem::swap(carry, &mut carry_out);
    }
    Ok(())
}
