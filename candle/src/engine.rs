//! The two kernel calls the candle op makes, through the runtime's host-memory entry points,
//! on slices borrowed from candle's storage.

use flexsn_compiler::bptt::{Gradients, Upstream};
use flexsn_compiler::scan::param_len;
use flexsn_runtime::{
    CheckpointBuffers, GradBuffers, Kernel, KernelArgs, RuntimeError, SavePolicy, TrainingBuffers,
};

/// Training forward into `packed`: outputs `[T, N]`, then per state a `(T+1) * N` buffer whose
/// row 0 is the initial state and rows `1..=T` the state after each step (under
/// `checkpoint:K`: its `⌈T/K⌉` checkpoint rows, then its final value).
pub(crate) fn forward_packed(
    kernel: &Kernel,
    args: &KernelArgs<'_>,
    policy: SavePolicy,
    packed: &mut [f32],
) -> Result<(), RuntimeError> {
    let (t, n) = (args.t, args.n);
    let g = kernel.graph();
    let (outs, states) = packed.split_at_mut(g.outputs().len() * t * n);
    if let SavePolicy::Checkpoint(k) = policy {
        let rows = policy.saved_rows(t) * n;
        let (mut cps, mut finals) = (vec![], vec![]);
        for part in states.chunks_mut(rows + n) {
            let (c, f) = part.split_at_mut(rows);
            cps.push(c);
            finals.push(f);
        }
        let mut out = CheckpointBuffers {
            outputs: outs.chunks_mut(t * n).collect(),
            checkpoints: cps,
            final_states: finals,
        };
        return kernel.forward_checkpointed_host(args, k, &mut out);
    }
    // The final states are row T of each buffer; the kernel also writes them separately.
    let mut finals = vec![0f32; g.states().len() * n];
    let mut out = TrainingBuffers {
        outputs: outs.chunks_mut(t * n).collect(),
        state_bufs: states.chunks_mut((t + 1) * n).collect(),
        final_states: finals.chunks_mut(n).collect(),
    };
    kernel.forward_host(args, &mut out)
}

/// Backpropagation through time with the kernel's own backward scan, reading the forward's
/// state buffers. Gradients of absent upstreams are zero; with none present nothing runs.
pub(crate) fn backward(
    kernel: &Kernel,
    args: &KernelArgs<'_>,
    policy: SavePolicy,
    state_bufs: &[&[f32]],
    upstream: &Upstream<'_, f32>,
) -> Result<Gradients<f32>, RuntimeError> {
    let g = kernel.graph();
    let (t, n) = (args.t, args.n);
    let mut inputs = vec![vec![0f32; t * n]; g.inputs().len()];
    let mut init_states = vec![vec![0f32; n]; g.states().len()];
    let nothing = upstream
        .outputs
        .iter()
        .chain(&upstream.state_seqs)
        .chain(&upstream.final_states)
        .all(Option::is_none);
    let params = if nothing {
        g.params()
            .iter()
            .map(|d| d.learnable.then(|| vec![0.0; param_len(d.kind, t, n)]))
            .collect()
    } else {
        let mut grads = GradBuffers {
            inputs: inputs.iter_mut().map(Vec::as_mut_slice).collect(),
            init_states: init_states.iter_mut().map(Vec::as_mut_slice).collect(),
        };
        match policy {
            SavePolicy::Checkpoint(k) => {
                kernel.backward_checkpointed_host(args, k, state_bufs, upstream, &mut grads)?
            }
            SavePolicy::States => kernel.backward_host(args, state_bufs, upstream, &mut grads)?,
        }
    };
    Ok(Gradients {
        inputs,
        init_states,
        params,
    })
}
