"""Tracing a Python core into flexsn's step-graph node list.

The core runs once on :class:`Value` proxies. Python operators and ``torch`` functions on a proxy
(through ``__torch_function__``) append nodes; surrogate objects called on a proxy append a
``spike`` (or, with ``spiking=False``, a ``primitive``) node. Python numbers become constants;
tensors the core captures become params (learnable when they require grad). Whatever is not
supported raises :class:`~flexsn.errors.UnsupportedOpError` naming the op and the core's line.
"""

import contextlib
import inspect
import linecache
import math
import sys
import threading

import torch
from torch.overrides import TorchFunctionMode

from .. import surrogate as _sg
from ..errors import FlexSNTypeError, FlexSNValueError, UnsupportedOpError

# Ops with one operand: torch name -> flexsn op name.
_UNARY = {
    "exp": "exp", "log": "log", "log2": "log2", "sqrt": "sqrt", "rsqrt": "rsqrt",
    "tanh": "tanh", "sigmoid": "sigmoid", "expit": "sigmoid", "sin": "sin", "cos": "cos",
    "atan": "atan", "arctan": "atan", "erf": "erf", "abs": "abs", "absolute": "abs",
    "__abs__": "abs", "sign": "sign", "floor": "floor", "ceil": "ceil", "round": "round",
    "relu": "relu", "neg": "neg", "negative": "neg", "__neg__": "neg",
    "reciprocal": "reciprocal", "logical_not": "not", "__invert__": "not", "detach": "detach",
}  # fmt: skip
# Ops with two operands (reflected dunders swap them).
_BINARY = {
    "add": "add", "__add__": "add", "sub": "sub", "subtract": "sub", "__sub__": "sub",
    "mul": "mul", "multiply": "mul", "__mul__": "mul", "div": "div", "divide": "div",
    "true_divide": "div", "__truediv__": "div", "pow": "pow", "__pow__": "pow",
    "minimum": "min", "maximum": "max", "fmod": "fmod", "eq": "eq", "__eq__": "eq",
    "ne": "ne", "not_equal": "ne", "__ne__": "ne", "lt": "lt", "less": "lt", "__lt__": "lt",
    "le": "le", "less_equal": "le", "__le__": "le", "gt": "gt", "greater": "gt",
    "__gt__": "gt", "ge": "ge", "greater_equal": "ge", "__ge__": "ge",
    "logical_and": "and", "__and__": "and", "logical_or": "or", "__or__": "or",
}  # fmt: skip
_REFLECTED = {
    "__radd__": "add", "__rsub__": "sub", "__rmul__": "mul", "__rtruediv__": "div",
    "__rpow__": "pow", "__rand__": "and", "__ror__": "or",
}  # fmt: skip
# Calls that return their operand unchanged (flexsn computes in float32).
_IDENTITY = {
    "clone",
    "contiguous",
    "float",
    "__pos__",
    "positive",
    "type_as",
    "view_as",
    "reshape_as",
}
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)

_LOCK = threading.Lock()
_ACTIVE = threading.local()


class Value:
    """A value inside a traced core (one node of the step graph)."""

    __slots__ = ("tracer", "node")

    def __init__(self, tracer, node):
        self.tracer = tracer
        self.node = node

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        tracer = _find_tracer(args, kwargs)
        return tracer.call(func, args, kwargs or {})

    def __flexsn_surrogate__(self, sg):
        return self.tracer.surrogate(sg, self)

    # Arithmetic and comparisons on the proxy itself.
    def _bin(self, op, other, swap=False):
        a, b = (other, self) if swap else (self, other)
        return self.tracer.emit(op, [a, b])

    def __add__(self, o):
        return self._bin("add", o)

    def __radd__(self, o):
        return self._bin("add", o, True)

    def __sub__(self, o):
        return self._bin("sub", o)

    def __rsub__(self, o):
        return self._bin("sub", o, True)

    def __mul__(self, o):
        return self._bin("mul", o)

    def __rmul__(self, o):
        return self._bin("mul", o, True)

    def __truediv__(self, o):
        return self._bin("div", o)

    def __rtruediv__(self, o):
        return self._bin("div", o, True)

    def __pow__(self, o):
        return self._bin("pow", o)

    def __rpow__(self, o):
        return self._bin("pow", o, True)

    def __and__(self, o):
        return self._bin("and", o)

    def __rand__(self, o):
        return self._bin("and", o, True)

    def __or__(self, o):
        return self._bin("or", o)

    def __ror__(self, o):
        return self._bin("or", o, True)

    def __eq__(self, o):
        return self._bin("eq", o)

    def __ne__(self, o):
        return self._bin("ne", o)

    def __lt__(self, o):
        return self._bin("lt", o)

    def __le__(self, o):
        return self._bin("le", o)

    def __gt__(self, o):
        return self._bin("gt", o)

    def __ge__(self, o):
        return self._bin("ge", o)

    def __neg__(self):
        return self.tracer.emit("neg", [self])

    def __pos__(self):
        return self

    def __abs__(self):
        return self.tracer.emit("abs", [self])

    def __invert__(self):
        return self.tracer.emit("not", [self])

    __hash__ = object.__hash__

    def __bool__(self):
        self.tracer.unsupported("Python control flow on a tensor value (`if`/`and`/`or`/`bool()`)")

    def __float__(self):
        self.tracer.unsupported("converting a tensor value to a Python number")

    def __mod__(self, o):
        self.tracer.unsupported("`%` (Python remainder; use torch.fmod)")

    def __getitem__(self, i):
        self.tracer.unsupported("indexing a tensor value (cores are element-wise)")

    @property
    def dtype(self):
        return torch.float32

    def __getattr__(self, name):
        # Tensor methods (x.exp(), x.clamp(...), x.to(...)) route through __torch_function__.
        method = getattr(torch.Tensor, name, None)
        if method is None or not callable(method):
            self.tracer.unsupported(f"tensor attribute `.{name}`")
        return lambda *a, **k: self.tracer.call(method, (self, *a), k)


def _find_tracer(args, kwargs):
    for a in list(args) + list((kwargs or {}).values()):
        if isinstance(a, Value):
            return a.tracer
        if isinstance(a, (list, tuple)):
            for b in a:
                if isinstance(b, Value):
                    return b.tracer
    raise FlexSNTypeError("internal: no traced value among the arguments")


class Tracer:
    """Records the nodes of one core."""

    def __init__(self, core):
        self.core = core
        self.nodes = []  # (op, args, number, surrogate)
        self.consts = {}
        self.params = []  # (name, kind, learnable)
        self.captured = []  # tensors, in param order
        self._param_of = {}

    # --- diagnostics -------------------------------------------------------------------------
    def where(self):
        code = getattr(self.core, "__code__", None)
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code is code:
                line = linecache.getline(code.co_filename, frame.f_lineno).strip()
                src = f": `{line}`" if line else ""
                return f"line {frame.f_lineno} of core `{code.co_name}`{src}"
            frame = frame.f_back
        return f"core `{getattr(self.core, '__name__', self.core)}`"

    def unsupported(self, what):
        raise UnsupportedOpError(f"flexsn cannot compile {what} (at {self.where()})")

    # --- nodes -------------------------------------------------------------------------------
    def _node(self, op, args=(), number=0.0, sg=None):
        self.nodes.append((op, list(args), float(number), sg))
        return Value(self, len(self.nodes) - 1)

    def leaf(self, kind, index):
        return self._node(kind, number=index)

    def const(self, c):
        c = float(c)
        if not math.isfinite(c):
            self.unsupported(f"the non-finite constant {c}")
        key = (math.copysign(1.0, c), c)
        if key not in self.consts:
            self.consts[key] = self._node("const", number=c)
        return self.consts[key]

    def param(self, t):
        key = id(t)
        if key not in self._param_of:
            learnable = bool(t.requires_grad)
            kind = "shared" if t.numel() == 1 else "per_neuron"
            name = f"p{len(self.params)}"
            self.params.append((name, kind, learnable))
            self.captured.append(t)
            self._param_of[key] = self._node("param", number=len(self.params) - 1)
        return self._param_of[key]

    def operand(self, x):
        if isinstance(x, Value):
            if x.tracer is not self:
                self.unsupported("a value from another core")
            return x
        if isinstance(x, bool):
            return self.const(1.0 if x else 0.0)
        if isinstance(x, (int, float)):
            return self.const(x)
        if isinstance(x, torch.Tensor):
            if not x.is_floating_point() and x.dtype != torch.bool:
                self.unsupported(f"a captured tensor of dtype {x.dtype}")
            if x.requires_grad or x.numel() != 1:
                return self.param(x)
            return self.const(x.item())
        self.unsupported(f"an operand of type {type(x).__name__}")

    def emit(self, op, args):
        vals = [self.operand(a) for a in args]
        return self._node(op, [v.node for v in vals])

    # --- torch functions ---------------------------------------------------------------------
    def call(self, func, args, kwargs):
        name = getattr(func, "__name__", str(func))
        if name.endswith("_") and not name.endswith("__"):
            self.unsupported(f"the in-place op `{name}`")
        if name in _IDENTITY:
            return self.operand(args[0])
        if name in ("to", "type"):
            return self._to(args, kwargs)
        if name == "bool":
            return self.emit("ne", [args[0], 0.0])
        if name in ("zeros_like", "ones_like", "full_like"):
            self._check_like(name, kwargs)
            if name == "full_like":
                fill = args[1] if len(args) > 1 else kwargs.get("fill_value")
                return self.operand(fill)
            return self.const(0.0 if name == "zeros_like" else 1.0)
        if name in ("clamp", "clip", "clamp_min", "clamp_max"):
            return self._clamp(name, args, kwargs)
        if name == "where":
            if len(args) != 3 or kwargs:
                self.unsupported("torch.where without exactly (condition, input, other)")
            return self.emit("select", list(args))
        if name == "square":
            return self.emit("mul", [args[0], args[0]])
        if name in ("sub", "subtract", "add") and "alpha" in kwargs:
            self.unsupported(f"`{name}` with `alpha`")
        if kwargs:
            self.unsupported(f"`{name}` with keyword arguments {sorted(kwargs)}")
        if name in _UNARY and len(args) == 1:
            return self.emit(_UNARY[name], list(args))
        if name in _BINARY and len(args) == 2:
            return self.emit(_BINARY[name], list(args))
        if name in _REFLECTED and len(args) == 2:
            return self.emit(_REFLECTED[name], [args[1], args[0]])
        self.unsupported(f"`{name}`")

    def _check_like(self, name, kwargs):
        dtype = kwargs.get("dtype")
        if dtype is not None and dtype not in _FLOAT_DTYPES:
            self.unsupported(f"`{name}` with dtype {dtype}")

    def _to(self, args, kwargs):
        x = args[0]
        target = kwargs.get("dtype", args[1] if len(args) > 1 else None)
        if isinstance(target, (Value, torch.Tensor)):
            target = target.dtype
        if target == torch.bool:
            return self.emit("ne", [x, 0.0])
        if target is None or target in _FLOAT_DTYPES or isinstance(target, (str, torch.device)):
            return self.operand(x)
        self.unsupported(f"`.to({target})` (flexsn cores compute in floating point)")

    def _clamp(self, name, args, kwargs):
        x = args[0]
        lo = kwargs.get("min", args[1] if len(args) > 1 else None)
        hi = kwargs.get("max", args[2] if len(args) > 2 else None)
        if name == "clamp_max":
            lo, hi = None, kwargs.get("max", args[1] if len(args) > 1 else None)
        if lo is None and hi is None:
            self.unsupported(f"`{name}` without bounds")
        if lo is not None and hi is not None:
            return self.emit("clamp", [x, lo, hi])
        return self.emit("max" if hi is None else "min", [x, lo if hi is None else hi])

    # --- surrogates --------------------------------------------------------------------------
    def surrogate(self, sg, x):
        name, params, spiking = _sg.spec_of(sg)
        spec = (name, [tuple(p) for p in params])
        v = self.operand(x)
        return self._node("spike" if spiking else "primitive", [v.node], sg=spec)


@contextlib.contextmanager
def _surrogate_modules(tracer):
    """While tracing, SpikingJelly surrogate modules (nn.Modules) called on a traced value become
    spike nodes; every other module call is unchanged."""
    original = torch.nn.Module.__call__

    def call(module, *args, **kwargs):
        if (
            len(args) == 1
            and not kwargs
            and isinstance(args[0], Value)
            and _sg.is_surrogate(module)
        ):
            return args[0].tracer.surrogate(module, args[0])
        return original(module, *args, **kwargs)

    torch.nn.Module.__call__ = call
    try:
        yield
    finally:
        torch.nn.Module.__call__ = original


def _names(core, count):
    try:
        params = list(inspect.signature(core).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    out = []
    for i in range(count):
        n = names[i] if i < len(names) and names[i].isidentifier() else f"a{i}"
        out.append(n if n not in out else f"{n}_{i}")
    return out


class Traced:
    """The result of tracing: the node list for ``flexsn._flexsn.Core.from_trace`` and the
    tensors that became params."""

    def __init__(self, name, inputs, states, params, nodes, outputs, next_states, captured):
        self.name = name
        self.inputs = inputs
        self.states = states
        self.params = params
        self.nodes = nodes
        self.outputs = outputs
        self.next_states = next_states
        self.captured = captured


_TRACEABLE = (
    set(_UNARY) | set(_BINARY) | set(_REFLECTED) | _IDENTITY
    | {"to", "type", "clamp", "clip", "clamp_min", "clamp_max", "where", "square"}
)  # fmt: skip


def _has_value(args, kwargs):
    for a in list(args) + list((kwargs or {}).values()):
        if isinstance(a, Value) or (
            isinstance(a, (list, tuple)) and any(isinstance(b, Value) for b in a)
        ):
            return True
    return False


class _CapturedOps(TorchFunctionMode):
    """While a core is traced: a torch op on captured tensors alone, one of which requires grad
    (``torch.sigmoid(w)`` for an ``nn.Parameter`` w), is traced like an op on proxies, so the
    kernel recomputes it from the param on every call and its gradient reaches the param;
    evaluated once here, it would be a stale constant after the first optimizer step."""

    def __init__(self, tracer):
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if (
            name in _TRACEABLE
            and not _has_value(args, kwargs)
            and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args)
        ):
            return self.tracer.call(func, args, kwargs)
        return func(*args, **kwargs)


def trace(core, num_inputs, num_states, num_outputs):
    """Runs ``core`` once on proxies and returns a :class:`Traced`."""
    if not callable(core):
        raise FlexSNTypeError(f"`core` must be callable, got {type(core).__name__}")
    for arg, v in (
        ("num_inputs", num_inputs),
        ("num_states", num_states),
        ("num_outputs", num_outputs),
    ):
        if not isinstance(v, int) or v < 0:
            raise FlexSNValueError(f"`{arg}` must be a non-negative int, got {v!r}")
    if num_outputs + num_states == 0:
        raise FlexSNValueError("the core has no outputs and no states: it computes nothing")
    t = Tracer(core)
    arg_names = _names(core, num_inputs + num_states)
    args = [t.leaf("input", i) for i in range(num_inputs)]
    args += [t.leaf("state", j) for j in range(num_states)]
    with _LOCK, _surrogate_modules(t), _CapturedOps(t):
        result = core(*args)
    if isinstance(result, (Value, torch.Tensor, int, float)):
        result = (result,)
    if not isinstance(result, (tuple, list)) or len(result) != num_outputs + num_states:
        got = len(result) if isinstance(result, (tuple, list)) else type(result).__name__
        raise FlexSNValueError(
            f"`core` must return num_outputs + num_states = {num_outputs + num_states} values "
            f"(outputs, then updated states), got {got}"
        )
    vals = [t.operand(r).node for r in result]
    taken = set(arg_names) | {p[0] for p in t.params}
    outputs = []
    for i in range(num_outputs):
        n = f"y{i}"
        while n in taken:
            n = "out_" + n
        taken.add(n)
        outputs.append((n, vals[i]))
    name = getattr(core, "__name__", "core")
    name = name if name.isidentifier() else "core"
    return Traced(
        name=name,
        inputs=arg_names[:num_inputs],
        states=[(n, None) for n in arg_names[num_inputs:]],
        params=t.params,
        nodes=t.nodes,
        outputs=outputs,
        next_states=vals[num_outputs:],
        captured=t.captured,
    )
