//! The two kernel calls the candle op makes, on host slices it borrows from candle's storage.

use flexsn_compiler::autodiff;
use flexsn_compiler::bptt::{self, Gradients, Upstream};
use flexsn_compiler::scan::ScanArgs;
use flexsn_runtime::{Kernel, RuntimeError, ScanOutputs};

/// Training forward into `packed`: outputs `[T, N]`, then per state a `(T+1) * N` buffer whose
/// row 0 is the initial state and rows `1..=T` the state after each step.
pub(crate) fn forward_packed(
    kernel: &Kernel,
    args: &ScanArgs<'_, f32>,
    packed: &mut [f32],
) -> Result<(), RuntimeError> {
    let (t, n) = (args.t, args.n);
    let g = kernel.graph();
    let (outs, states) = packed.split_at_mut(g.outputs().len() * t * n);
    let mut seqs = Vec::with_capacity(g.states().len());
    for (buf, s0) in states.chunks_mut((t + 1) * n).zip(&args.init_states) {
        let (row0, seq) = buf.split_at_mut(n);
        row0.copy_from_slice(s0);
        seqs.push(seq);
    }
    // The final states are row T of each buffer; the scan also writes them separately.
    let mut finals = vec![0f32; g.states().len() * n];
    let mut out = ScanOutputs {
        outputs: outs.chunks_mut(t * n).collect(),
        state_seqs: seqs,
        final_states: finals.chunks_mut(n).collect(),
    };
    kernel.training_scan().run_into(args, &mut out)
}

/// Backpropagation through time with the kernel's own backward scan, reading the states before
/// each step from `prev` (rows `0..T` of the forward's state buffers). Gradients of absent
/// upstreams are zero; with none present nothing runs.
pub(crate) fn backward(
    kernel: &Kernel,
    args: &ScanArgs<'_, f32>,
    prev: &[&[f32]],
    upstream: &Upstream<'_, f32>,
) -> Result<Gradients<f32>, RuntimeError> {
    let g = kernel.graph();
    let spec = upstream.spec();
    let (t, n) = (args.t, args.n);
    if upstream
        .outputs
        .iter()
        .chain(&upstream.state_seqs)
        .chain(&upstream.final_states)
        .all(Option::is_none)
    {
        return Ok(Gradients {
            inputs: vec![vec![0.0; t * n]; g.inputs().len()],
            init_states: vec![vec![0.0; n]; g.states().len()],
            params: g
                .params()
                .iter()
                .map(|d| {
                    d.learnable
                        .then(|| vec![0.0; flexsn_compiler::scan::param_len(d.kind, t, n)])
                })
                .collect(),
        });
    }
    let exec = kernel.prepare_backward(&spec)?;
    let bwd = autodiff::backward(g, &spec)?;
    bptt::backward_from_prev(g, &bwd, args, prev, upstream, |_, a| exec.run(a))
}
