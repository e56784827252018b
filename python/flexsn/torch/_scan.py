"""Running a compiled core on torch tensors: argument checks, the zero-copy hand-over of CPU
float32 memory, and the ``torch.autograd.Function`` that connects forward and backward."""

import torch

from ..errors import FlexSNError, FlexSNTypeError, FlexSNValueError

#: SpikingJelly's backend names, accepted and run as ``'auto'`` (the inputs' device).
SPIKINGJELLY_BACKENDS = ("triton", "inductor", "torch", "hop", "cupy")
BACKENDS = ("auto", "cpu", "cuda", "interp")


def normalize_backend(backend):
    """``backend`` as flexsn understands it (SpikingJelly's names mean ``'auto'``)."""
    if backend in SPIKINGJELLY_BACKENDS:
        return "auto"
    if backend not in BACKENDS:
        raise FlexSNValueError(
            f"`backend` must be one of {', '.join(BACKENDS)} (or SpikingJelly's "
            f"{', '.join(SPIKINGJELLY_BACKENDS)}), got {backend!r}"
        )
    return backend


def resolve_backend(backend, device):
    """The host backend that runs tensors on ``device`` for the module setting ``backend``."""
    if device.type == "cuda" or backend == "cuda":
        raise FlexSNError(
            "CUDA tensors are not supported by this build of flexsn.torch: the CUDA backend "
            "has no entry point on torch's device memory and stream yet; move the tensors "
            "to the CPU (float32)"
        )
    if device.type != "cpu":
        raise FlexSNTypeError(f"tensors on device `{device}` are not supported (cpu only)")
    return "interp" if backend == "interp" else "cpu"


def buf(t):
    """``(address, element count)`` of a contiguous float32 CPU tensor, for the native module
    (which checks both again)."""
    return (t.data_ptr(), t.numel())


def check_tensor(name, t, device=None):
    """Checks one argument: a float32 tensor on ``device``."""
    if not isinstance(t, torch.Tensor):
        raise FlexSNTypeError(f"`{name}` must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != torch.float32:
        raise FlexSNTypeError(f"`{name}` must be float32, got {t.dtype}")
    if device is not None and t.device != device:
        raise FlexSNValueError(f"`{name}` is on {t.device}, but the first input is on {device}")


class Scan(torch.autograd.Function):
    """Forward and backward of one compiled core over ``[T, N]`` sequences.

    Arguments after ``(core, t, n, ni, ns, seqs)``: the inputs ``[T*N]``, initial states
    ``[N]`` and params (flattened to their kind's length). Returns the outputs ``[T, N]``, then
    with ``seqs`` the state sequences ``[T, N]``, then the final states ``[N]``.
    """

    @staticmethod
    def forward(ctx, core, t, n, ni, ns, seqs, *flat):
        inputs, s0, params = flat[:ni], flat[ni : ni + ns], flat[ni + ns :]
        like = inputs[0] if inputs else s0[0]
        outs = [like.new_empty((t, n)) for _ in core.outputs]
        bufs = [like.new_empty((t + 1, n)) for _ in range(ns)]
        finals = [like.new_empty((n,)) for _ in range(ns)]
        core.forward(
            t, n, [buf(x) for x in inputs], [buf(p) for p in params], [buf(s) for s in s0],
            [buf(o) for o in outs], [buf(f) for f in finals], [buf(b) for b in bufs],
        )  # fmt: skip
        ctx.core, ctx.t, ctx.n, ctx.ni, ctx.ns, ctx.seqs = core, t, n, ni, ns, seqs
        ctx.save_for_backward(*inputs, *params, *s0, *bufs)
        ctx.set_materialize_grads(False)
        seq_views = [b[1:] for b in bufs] if seqs else []
        return (*outs, *seq_views, *finals)

    @staticmethod
    def backward(ctx, *grads):
        core, t, n, ni, ns = ctx.core, ctx.t, ctx.n, ctx.ni, ctx.ns
        saved = ctx.saved_tensors
        inputs, params = saved[:ni], saved[ni : len(saved) - 2 * ns]
        s0, bufs = saved[len(saved) - 2 * ns : len(saved) - ns], saved[len(saved) - ns :]
        no = len(core.outputs)
        g_out = list(grads[:no])
        g_seq = list(grads[no : no + ns]) if ctx.seqs else [None] * ns
        g_fin = list(grads[len(grads) - ns :])
        keep = []

        def arg(g):
            if g is None:
                return None
            g = g.contiguous()
            keep.append(g)
            return buf(g)

        like = bufs[0] if bufs else inputs[0]
        g_in = [like.new_empty((t, n)) for _ in range(ni)]
        g_s0 = [like.new_empty((n,)) for _ in range(ns)]
        needs = ctx.needs_input_grad[6 + ni + ns :]
        learnable = [p[2] for p in core.params]
        g_p = [p.new_empty(p.shape) if need and ok else None
               for p, need, ok in zip(params, needs, learnable)]  # fmt: skip
        core.backward(
            t, n, [buf(x) for x in inputs], [buf(p) for p in params], [buf(s) for s in s0],
            [buf(b) for b in bufs],
            [arg(g) for g in g_out], [arg(g) for g in g_seq], [arg(g) for g in g_fin],
            [buf(g) for g in g_in], [buf(g) for g in g_s0],
            [None if g is None else buf(g) for g in g_p],
        )  # fmt: skip
        return (None, None, None, None, None, None, *g_in, *g_s0, *g_p)


def run(core, t, n, inputs, states, params, seqs):
    """Runs ``core`` on flat tensors (inputs ``[T*N]``-sized, states ``[N]``, params at their
    kind's length). Returns ``(outputs, state_seqs or None, finals)`` as ``[T, N]``/``[N]``
    tensors, through autograd when any argument requires grad."""
    flat = [x.reshape(t, n) for x in inputs] + list(states) + list(params)
    ni, ns = len(inputs), len(states)
    needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in flat)
    if needs_grad or seqs:
        with torch.set_grad_enabled(needs_grad):
            res = Scan.apply(core, t, n, ni, ns, seqs, *flat)
        no = len(core.outputs)
        outs = list(res[:no])
        state_seqs = list(res[no : no + ns]) if seqs else None
        return outs, state_seqs, list(res[len(res) - ns :])
    like = flat[0]
    outs = [like.new_empty((t, n)) for _ in core.outputs]
    finals = [like.new_empty((n,)) for _ in range(ns)]
    core.forward(
        t, n, [buf(x) for x in flat[:ni]], [buf(p) for p in params], [buf(s) for s in states],
        [buf(o) for o in outs], [buf(f) for f in finals],
    )  # fmt: skip
    return outs, None, finals
