"""Running a compiled core on torch tensors: argument checks, the zero-copy hand-over of CPU
float32 memory, and the ``torch.autograd.Function`` that connects forward and backward.

CPU tensors go to the host kernels (float16/bfloat16 ones are computed in float32 and come back
in their own dtype); CUDA tensors go to :mod:`._device`."""

import math

import torch

from .. import _flexsn
from ..errors import FlexSNTypeError, FlexSNValueError

#: SpikingJelly's backend names, accepted and run as ``'auto'`` (the inputs' device).
SPIKINGJELLY_BACKENDS = ("triton", "inductor", "torch", "hop", "cupy")
BACKENDS = ("auto", "cpu", "cuda", "interp")

#: Floating dtypes the modules take, by the name of the CUDA kernels' storage type.
STORAGE = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}

#: CPU buffers at least this large come from flexsn's host buffer cache (``_flexsn.host_empty``:
#: huge pages, reused from call to call instead of freshly mapped and zeroed each time); smaller
#: ones from torch, whose malloc reuses its heap for them anyway.
HOST_CACHE_MIN_BYTES = 8 << 20


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


def resolve_backend(backend, device, dtype=torch.float32):
    """The compiled-core key that runs tensors of ``dtype`` on ``device`` for the module setting
    ``backend``: ``'cpu'``, ``'interp'`` or ``'cuda:<device index>:<storage type>'``."""
    if device.type == "cuda":
        if backend in ("cpu", "interp"):
            raise FlexSNValueError(
                f"`backend` {backend!r} runs on the CPU, but the inputs are on {device}: move "
                "them with .cpu(), or use backend 'auto' or 'cuda'"
            )
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index}:{STORAGE[dtype]}"
    if device.type != "cpu":
        raise FlexSNTypeError(f"tensors on device `{device}` are not supported (cpu or cuda)")
    if backend == "cuda":
        raise FlexSNValueError(
            "`backend` 'cuda' needs CUDA tensors, but the inputs are on the CPU: move them with "
            ".cuda(), or use backend 'auto' or 'cpu'"
        )
    return "interp" if backend == "interp" else "cpu"


def check_save_policy(policy):
    """The checkpoint interval of save policy ``policy`` (``'states'``: ``None``;
    ``'checkpoint'``: the default interval; ``'checkpoint:K'``: ``K``). Anything else raises
    :class:`FlexSNValueError` naming ``save_policy``."""
    if not isinstance(policy, str):
        raise FlexSNValueError(
            f"`save_policy` must be 'states', 'checkpoint' or 'checkpoint:K', got {policy!r}"
        )
    return _flexsn.save_policy_interval(policy)


def buf(t):
    """``(address, element count)`` of a contiguous float32 CPU tensor, for the native module
    (which checks both again)."""
    return (t.data_ptr(), t.numel())


def empty(shape, like):
    """An uninitialised float32 tensor on ``like``'s device; large CPU ones from the host buffer
    cache (handed over zero-copy, back in the cache once torch frees the tensor)."""
    if math.prod(shape) * 4 >= HOST_CACHE_MIN_BYTES and like.device.type == "cpu":
        return torch.from_dlpack(_flexsn.host_empty(list(shape)))
    return torch.empty(shape, dtype=torch.float32, device=like.device)


def check_tensor(name, t, device=None, dtype=None):
    """Checks one argument: a float32/float16/bfloat16 tensor on ``device`` (of ``dtype``)."""
    if not isinstance(t, torch.Tensor):
        raise FlexSNTypeError(f"`{name}` must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in STORAGE:
        raise FlexSNTypeError(f"`{name}` must be float32 (or float16/bfloat16), got {t.dtype}")
    if dtype is not None and t.dtype != dtype:
        raise FlexSNTypeError(f"`{name}` is {t.dtype}, but the first input is {dtype}")
    if device is not None and t.device != device:
        raise FlexSNValueError(f"`{name}` is on {t.device}, but the first input is on {device}")


class Compiled:
    """A compiled core with what every call asks of it (read once from the native object)."""

    __slots__ = ("core", "device", "key", "learnable", "outputs", "params", "states")

    def __init__(self, core, key):
        self.core = core
        self.key = key
        # CUDA cores, and the host-emulated CUDA kernels tests run them as, take raw launches.
        self.device = key.startswith("cuda")
        self.outputs = core.outputs
        self.states = core.states
        self.params = core.params
        self.learnable = [p[2] for p in self.params]

    def __getattr__(self, name):
        return getattr(self.core, name)


class Scan(torch.autograd.Function):
    """Forward and backward of one compiled core over ``[T, N]`` sequences (host memory).

    Arguments after ``(compiled, t, n, seqs, k)``: the inputs ``[T*N]``, initial states ``[N]``
    and params (flattened to their kind's length). Returns the outputs ``[T, N]``, then with
    ``seqs`` the state sequences ``[T, N]``, then the final states ``[N]``.

    What is saved for backward per state: ``[T + 1, N]`` (every state), or with a checkpoint
    interval ``k`` only ``[ceil(T/k), N]`` (the states before steps ``0, k, 2k, ...``; backward
    recomputes the rest, with bit-identical results). The state sequences ``seqs`` asks for are
    the full buffers, so with ``seqs`` every state is kept whatever ``k``.
    """

    @staticmethod
    def forward(ctx, cc, t, n, seqs, k, *flat):
        ni, ns, no = len(flat) - len(cc.params) - len(cc.states), len(cc.states), len(cc.outputs)
        inputs, s0, params = flat[:ni], flat[ni : ni + ns], flat[ni + ns :]
        like = flat[0]
        k = None if seqs else k
        outs = [empty((t, n), like) for _ in range(no)]
        rows = t + 1 if k is None else -(-t // k)
        bufs = [empty((rows, n), like) for _ in range(ns)]
        finals = [like.new_empty((n,)) for _ in range(ns)]
        cc.core.forward(
            t, n, [buf(x) for x in inputs], [buf(p) for p in params], [buf(s) for s in s0],
            [buf(o) for o in outs], [buf(f) for f in finals], [buf(b) for b in bufs],
            checkpoint=k,
        )  # fmt: skip
        ctx.cc, ctx.t, ctx.n, ctx.ni, ctx.seqs, ctx.k = cc, t, n, ni, seqs, k
        ctx.save_for_backward(*inputs, *params, *s0, *bufs)
        ctx.set_materialize_grads(False)
        seq_views = [b[1:] for b in bufs] if seqs else []
        return (*outs, *seq_views, *finals)

    @staticmethod
    def backward(ctx, *grads):
        cc, t, n, ni = ctx.cc, ctx.t, ctx.n, ctx.ni
        ns, no = len(cc.states), len(cc.outputs)
        saved = ctx.saved_tensors
        inputs, params = saved[:ni], saved[ni : len(saved) - 2 * ns]
        s0, bufs = saved[len(saved) - 2 * ns : len(saved) - ns], saved[len(saved) - ns :]
        g_out = grads[:no]
        g_seq = grads[no : no + ns] if ctx.seqs else (None,) * ns
        g_fin = grads[len(grads) - ns :]
        keep = []

        def arg(g):
            if g is None:
                return None
            g = g.contiguous()
            keep.append(g)
            return buf(g)

        like = saved[0]
        g_in = [empty((t, n), like) for _ in range(ni)]
        g_s0 = [like.new_empty((n,)) for _ in range(ns)]
        needs = ctx.needs_input_grad[5 + ni + ns :]
        g_p = [p.new_empty(p.shape) if need and ok else None
               for p, need, ok in zip(params, needs, cc.learnable)]  # fmt: skip
        cc.core.backward(
            t, n, [buf(x) for x in inputs], [buf(p) for p in params], [buf(s) for s in s0],
            [buf(b) for b in bufs],
            [arg(g) for g in g_out], [arg(g) for g in g_seq], [arg(g) for g in g_fin],
            [buf(g) for g in g_in], [buf(g) for g in g_s0],
            [None if g is None else buf(g) for g in g_p],
            checkpoint=ctx.k,
        )  # fmt: skip
        return (None, None, None, None, None, *g_in, *g_s0, *g_p)


def run(cc, t, n, inputs, states, params, seqs, k=None):
    """Runs compiled core ``cc`` on flat tensors (inputs ``[T*N]``-sized, states ``[N]``,
    params at their kind's length). Returns ``(outputs, state_seqs or None, finals)`` as
    ``[T, N]``/``[N]`` tensors in the inputs' dtype, through autograd when any argument requires
    grad; ``k`` is the checkpoint interval of the module's save policy (``None``: ``states``)."""
    if cc.device:
        from . import _device

        return _device.run(cc, t, n, inputs, states, params, seqs, k)
    dtype = (inputs[0] if inputs else states[0]).dtype
    if dtype != torch.float32:
        # The host kernels compute in float32: convert (differentiably) and convert back.
        f = [x.float() for x in inputs], [s.float() for s in states], [p.float() for p in params]
        outs, state_seqs, finals = run(cc, t, n, *f, seqs, k)
        back = lambda xs: None if xs is None else [x.to(dtype) for x in xs]
        return back(outs), back(state_seqs), back(finals)
    params = [p if p.dtype == torch.float32 else p.float() for p in params]
    states = [s if s.dtype == torch.float32 else s.float() for s in states]
    flat = [x.reshape(t, n) for x in inputs] + list(states) + list(params)
    ni, ns, no = len(inputs), len(states), len(cc.outputs)
    needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in flat)
    if needs_grad or seqs:
        # No grad mode to set: without an argument that requires grad (or in no_grad mode),
        # apply records nothing.
        res = Scan.apply(cc, t, n, seqs, k, *flat)
        outs = list(res[:no])
        state_seqs = list(res[no : no + ns]) if seqs else None
        return outs, state_seqs, list(res[len(res) - ns :])
    like = flat[0]
    outs = [empty((t, n), like) for _ in range(no)]
    finals = [like.new_empty((n,)) for _ in range(ns)]
    cc.core.forward(
        t, n, [buf(x) for x in flat[:ni]], [buf(p) for p in params], [buf(s) for s in states],
        [buf(o) for o in outs], [buf(f) for f in finals],
    )  # fmt: skip
    return outs, None, finals
