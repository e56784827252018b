"""What the modules share: the compiled-core cache, step-mode checks, shapes."""

import math

from .. import _flexsn
from ..errors import FlexSNValueError
from ._scan import Compiled, check_save_policy, check_tensor, resolve_backend

STEP_MODES = ("s", "m")


def check_step_mode(step_mode):
    if step_mode not in STEP_MODES:
        raise FlexSNValueError(f"`step_mode` must be 's' or 'm', got {step_mode!r}")
    return step_mode


class CompiledCore:
    """A core description compiled per backend key on demand (``cpu``, ``interp``,
    ``cuda:<device>:<storage type>``; kept out of pickles and copies: compiling is milliseconds
    and the process-wide JIT cache makes repeats free)."""

    def __init__(self, compile_fn):
        self._compile = compile_fn
        self._by_backend = {}

    def get(self, backend):
        core = self._by_backend.get(backend)
        if core is None:
            core = self._by_backend[backend] = Compiled(self._compile(backend), backend)
        return core

    def __deepcopy__(self, memo):
        return CompiledCore(self._compile)

    def __reduce__(self):
        raise TypeError("internal: a CompiledCore is rebuilt by its module, not pickled")


class HoldsCore:
    """Mixin of the modules that run a :class:`CompiledCore`: `_make_core()` describes it,
    `_build()` compiles it (for the CPU at once, so that errors surface at construction, not on
    the first call), and pickles and copies leave it out and build it again.

    ``save_policy`` is what a training forward keeps for backward: ``'states'`` (every state of
    every step), ``'checkpoint'`` or ``'checkpoint:K'`` (only the states before every K-th step;
    backward recomputes the rest, with bit-identical gradients). Checked when set."""

    # Class defaults: what pickles made before the modules had a save policy get.
    _save_policy = "states"
    _checkpoint = None

    @property
    def save_policy(self):
        return self._save_policy

    @save_policy.setter
    def save_policy(self, policy):
        self._checkpoint = check_save_policy(policy)
        self._save_policy = policy

    def _build(self):
        self._core = self._make_core()
        if self.backend in ("auto", "cpu"):
            self._core.get("cpu")

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_core", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._build()


def builtin_core(name, settings):
    """A :class:`CompiledCore` of a Rust built-in neuron."""
    settings = list(settings)
    return CompiledCore(lambda backend: _flexsn.Core.builtin(name, settings, backend))


def fmt(v):
    """A setting value as the Rust side parses it."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(float(v))


def device_backend(backend, first, others, same_dtype=()):
    """Checks that every tensor is a float tensor on the first one's device (the tensors of
    ``same_dtype`` also of its dtype); returns the compiled-core key that runs them."""
    name, t = first
    check_tensor(name, t)
    for n, x in same_dtype:
        check_tensor(n, x, t.device, t.dtype)
    for n, x in others:
        check_tensor(n, x, t.device)
    return resolve_backend(backend, t.device, t.dtype)


def numel(shape):
    return math.prod(shape)


def as_flat(t, n):
    """A contiguous ``[n]`` view (or copy) of ``t``."""
    return t.contiguous().reshape(n)


def param_flat(name, p, kind, step_shape, n):
    """A captured or built-in param at the length its kind takes."""
    if kind == "shared":
        return p.reshape(1)
    try:
        return p.expand(step_shape).contiguous().reshape(n)
    except RuntimeError:
        raise FlexSNValueError(
            f"param `{name}` of shape {list(p.shape)} does not broadcast to the neuron shape "
            f"{list(step_shape)}"
        ) from None
