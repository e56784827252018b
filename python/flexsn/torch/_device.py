"""Running a compiled core on CUDA tensors: on device memory, on torch's current stream.

The native core lists the buffers of each scan (``scan_arguments``: name, element type,
length, in the kernel's argument order); torch allocates what the scan writes on the tensors'
device, and ``launch`` queues the kernel on ``torch.cuda.current_stream(device)`` with every
address, so nothing goes through host memory and torch's stream order holds (the caching
allocator does not reuse a buffer before the work queued on its stream is done). float16 and
bfloat16 tensors run the kernels with that storage type (their arithmetic is float32).

The state buffers kept from forward for backward are flexsn's own: their rows are padded to
the core's ``row_pitch`` (N rounded up to 128 bytes on CUDA), so that each warp's access to a
row covers whole memory sectors whatever N is; the kernels take that pitch with the buffer.

Backward runs the compiled reverse scan the same way; a learnable param's per-neuron
contributions are summed by torch on the device (over neurons for shared params, per step for
per-time params).

Under ``save_policy='checkpoint:K'`` the fused checkpoint kernels run instead: the training
forward keeps only ``ceil(T/K)`` float32 rows per state (the state before every K-th step), and
the backward recomputes each segment of K steps from them in shared memory, with results
bit-identical to ``'states'``.

Host cores that take raw launches (the generated CUDA kernels emulated as host C++) run the same
code on CPU tensors: that is how it is tested without a GPU.
"""

import torch

from ..errors import FlexSNValueError

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def _stream(device):
    return torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0


def _flat(x, dname):
    """``x`` as a contiguous flat tensor of the element type ``dname`` a kernel takes."""
    return x.to(DTYPES[dname]).contiguous().reshape(-1)


def _raw(x, dname):
    return (x.data_ptr(), x.numel(), dname)


def _alloc(spec, device):
    return [torch.empty(length, dtype=DTYPES[d], device=device) for _, d, length in spec]


def _launch(cc, which, t, n, device, spec, tensors, pitches=None, k=None, **flags):
    """Queues scan ``which``; ``pitches`` maps a buffer's index to its row pitch. With a
    checkpoint interval ``k``: the fused checkpoint kernel (dense rows)."""
    if len(spec) != len(tensors):
        raise FlexSNValueError(
            f"internal: scan `{which}` takes {len(spec)} buffers, {len(tensors)} were prepared"
        )
    raw = [_raw(x, d) for x, (_, d, _) in zip(tensors, spec)]
    if k is not None:
        cc.core.launch_checkpoint(which, t, n, k, _stream(device), raw, **flags)
        return
    rows = [(pitches or {}).get(i) for i in range(len(raw))]
    cc.core.launch(which, t, n, _stream(device), raw, pitches=rows, **flags)


def _arguments(cc, which, t, n, k, **flags):
    if k is None:
        return cc.core.scan_arguments(which, t, n, **flags)
    return cc.core.checkpoint_arguments(which, t, n, k, **flags)


def _param_grad(c, kind, t, n, like):
    """A param's gradient from its backward contributions (``[N]``, or ``[T, N]`` per-time)."""
    c = c.float()
    if kind == "shared":
        g = c.sum().reshape(1)
    elif kind == "per_time":
        g = c.reshape(t, n).sum(1)
    else:
        g = c
    return g.to(like.dtype).reshape(like.shape)


class DeviceScan(torch.autograd.Function):
    """Forward and backward of one compiled core over ``[T, N]`` on the tensors' device.

    Arguments after ``(compiled, t, n, seqs, k)``: the inputs ``[T, N]``, initial states
    ``[N]`` and params (at their kind's length). Returns the outputs ``[T, N]``, then with
    ``seqs`` the state sequences ``[T, N]``, then the final states ``[N]``, in the kernels'
    storage types. ``k`` is the checkpoint interval (``None``: every state is saved; with
    ``seqs`` the sequences are returned, so every state is saved whatever ``k``).
    """

    @staticmethod
    def forward(ctx, cc, t, n, seqs, k, *flat):
        ns, npar, no = len(cc.states), len(cc.params), len(cc.outputs)
        ni = len(flat) - ns - npar
        device = flat[0].device
        k = None if seqs else k
        spec = _arguments(cc, "train", t, n, k)
        d = [a[1] for a in spec]
        xs = [_flat(x, d[i]) for i, x in enumerate(flat[:ni])]
        s0 = [_flat(s, d[ni + j]) for j, s in enumerate(flat[ni : ni + ns])]
        ps = [_flat(p, d[ni + ns + q]) for q, p in enumerate(flat[ni + ns :])]
        o0 = ni + ns + npar
        outs = _alloc(spec[o0 : o0 + no], device)
        finals = _alloc(spec[o0 + no + ns :], device)
        pitches = []
        if k is None:
            # Per state a [T + 1, pitch] buffer: row 0 the initial state (backward reads rows
            # 0..T as "the state before step t"), rows 1..=T the sequence the kernel writes; the
            # first N columns of each row are the values, the rest padding.
            bufs = []
            for j in range(ns):
                dname = d[o0 + no + j]
                pitch = cc.core.row_pitch(n, dname)
                b = torch.empty((t + 1, pitch), dtype=DTYPES[dname], device=device)
                b[0, :n].copy_(s0[j])
                bufs.append(b)
                pitches.append(pitch)
            seq_rows = [b[1:] for b in bufs]
        else:
            # Per state the checkpoints: ceil(T/K) dense float32 rows, written by the kernel.
            bufs = _alloc(spec[o0 + no : o0 + no + ns], device)
            seq_rows = bufs
        rows = {o0 + no + j: p for j, p in enumerate(pitches)}
        tensors = [*xs, *s0, *ps, *outs, *seq_rows, *finals]
        _launch(cc, "train", t, n, device, spec, tensors, rows, k)
        ctx.cc, ctx.t, ctx.n, ctx.ni, ctx.seqs, ctx.k = cc, t, n, ni, seqs, k
        ctx.dtypes = [x.dtype for x in flat]
        ctx.pitches = pitches
        ctx.save_for_backward(*xs, *ps, *bufs)
        ctx.set_materialize_grads(False)
        return (*outs, *((r[:, :n] for r in seq_rows) if seqs else []), *finals)

    @staticmethod
    def backward(ctx, *grads):
        cc, t, n, ni = ctx.cc, ctx.t, ctx.n, ctx.ni
        ns, npar, no = len(cc.states), len(cc.params), len(cc.outputs)
        saved = ctx.saved_tensors
        xs, ps, bufs = saved[:ni], saved[ni : ni + npar], saved[ni + npar :]
        device = bufs[0].device if bufs else xs[0].device
        g_out = grads[:no]
        g_seq = grads[no : no + ns] if ctx.seqs else (None,) * ns
        g_fin = grads[len(grads) - ns :] if ns else ()
        flags = {
            "grad_outputs": [g is not None for g in g_out],
            "grad_state_seqs": [g is not None for g in g_seq],
        }
        spec = _arguments(cc, "backward", t, n, ctx.k, **flags)
        d = [a[1] for a in spec]
        # Reads: inputs, states before each step (or their checkpoints), the upstream gradients
        # present; the final states' gradients are the reverse scan's initial carries; then the
        # params.
        prev = bufs if ctx.k is not None else [b[:t] for b in bufs]
        reads = [*xs, *prev]
        rows = {ni + j: p for j, p in enumerate(ctx.pitches)}
        ups = [g for g in (*g_out, *g_seq) if g is not None]
        r0 = len(reads)
        reads += [_flat(g, d[r0 + k]) for k, g in enumerate(ups)]
        c0 = len(reads)
        carries = [
            torch.zeros(n, dtype=DTYPES[d[c0 + j]], device=device) if g is None
            else _flat(g, d[c0 + j])
            for j, g in enumerate(g_fin)
        ]  # fmt: skip
        w0 = c0 + ns + npar
        writes = _alloc(spec[w0:], device)
        tensors = [*reads, *carries, *ps, *writes]
        _launch(cc, "backward", t, n, device, spec, tensors, rows, ctx.k, **flags)
        g_in, g_s0 = writes[:ni], writes[len(writes) - ns :]
        contribs = writes[ni : len(writes) - ns]
        dt = ctx.dtypes
        res = [g.reshape(t, n).to(dt[i]) for i, g in enumerate(g_in)]
        res += [g.to(dt[ni + j]) for j, g in enumerate(g_s0)]
        needs = ctx.needs_input_grad[5 + ni + ns :]
        it = iter(contribs)
        for k, ((_, kind, learnable), need) in enumerate(zip(cc.params, needs)):
            c = next(it) if learnable else None
            like = ps[k].to(dt[ni + ns + k])
            res.append(_param_grad(c, kind, t, n, like) if c is not None and need else None)
        return (None, None, None, None, None, *res)


def run(cc, t, n, inputs, states, params, seqs, k=None):
    """:func:`._scan.run` for raw-launch cores (CUDA): results in the inputs' dtype; ``k`` the
    checkpoint interval of training (``None``: ``'states'``)."""
    flat = [x.reshape(t, n) for x in inputs] + list(states) + list(params)
    ns, no = len(states), len(cc.outputs)
    dtype = flat[0].dtype
    needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in flat)
    if needs_grad or seqs:
        res = DeviceScan.apply(cc, t, n, seqs, k, *flat)
        res = [r.to(dtype) for r in res]
        outs = [o.reshape(t, n) for o in res[:no]]
        state_seqs = list(res[no : no + ns]) if seqs else None
        return outs, state_seqs, list(res[len(res) - ns :])
    ni, npar = len(inputs), len(params)
    device = flat[0].device
    spec = cc.core.scan_arguments("infer", t, n)
    d = [a[1] for a in spec]
    reads = [_flat(x, d[i]) for i, x in enumerate(flat)]
    writes = _alloc(spec[ni + ns + npar :], device)
    _launch(cc, "infer", t, n, device, spec, [*reads, *writes])
    outs = [o.reshape(t, n).to(dtype) for o in writes[:no]]
    return outs, None, [f.to(dtype) for f in writes[no:]]
