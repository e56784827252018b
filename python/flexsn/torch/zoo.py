"""SpikingJelly's wider neuron zoo as ``nn.Module``s: QIF, EIF, Izhikevich, KLIF, current-based
LIF, complementary LIF, integer LIF, half-threshold IF and ternary IF/LIF.

Constructor arguments (names, order, defaults) follow SpikingJelly 2.0.0, with flexsn's
``backend`` as a keyword-only argument at the end. Each runs the Rust built-in of the same class
name; the built-in checks the values (as SpikingJelly's constructor does) and gives the states
and their initial values: ``v``, and Izhikevich's ``w``, CUBA-LIF's ``c``, CLIF's ``m``.
"""

import numbers

import torch
from torch import nn

from .. import surrogate as _sg
from ..errors import FlexSNTypeError, FlexSNValueError
from . import _common as C
from .neurons import BaseNode


def _float(name, value):
    """A constructor argument SpikingJelly requires to be a Python float."""
    if not isinstance(value, float):
        raise FlexSNTypeError(f"`{name}` must be a float, got {value!r}")
    return value


def _real(name, value):
    """A constructor argument SpikingJelly takes as any real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise FlexSNTypeError(f"`{name}` must be a real number, got {value!r}")
    return float(value)


def _flag(name, value):
    if not isinstance(value, bool):
        raise FlexSNTypeError(f"`{name}` must be a bool, got {value!r}")
    return value


class _ZooNode(BaseNode):
    """A zoo neuron: ``_own`` names the constructor arguments handed to the built-in as they
    are. The built-in names the states; their initial values are SpikingJelly's Python floats
    (the built-in's are the same in float32)."""

    _own = ()

    def __init__(self, v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                 store_v_seq, backend, save_policy):  # fmt: skip
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         backend, store_v_seq, save_policy=save_policy)  # fmt: skip

    def _settings(self):
        return [*(f"{k}={C.fmt(getattr(self, k))}" for k in self._own), *super()._settings()]

    def extra_repr(self):
        own = ", ".join(f"{k}={getattr(self, k)}" for k in self._own)
        return f"{super().extra_repr()}, {own}" if own else super().extra_repr()


class QIFNode(_ZooNode):
    """Quadratic integrate-and-fire:
    ``h = v + (x + a0 (v - v_rest)(v - v_c)) / tau``."""

    _builtin = "QIFNode"
    _own = ("tau", "v_c", "a0", "v_rest")

    def __init__(self, tau=2.0, v_c=0.8, a0=1.0, v_threshold=1.0, v_rest=0.0, v_reset=-0.1,
                 surrogate_function=None, detach_reset=False, step_mode="s", store_v_seq=False,
                 *, backend="auto", save_policy="states"):  # fmt: skip
        self.tau = _float("tau", tau)
        self.v_c = _real("v_c", v_c)
        self.a0 = _real("a0", a0)
        self.v_rest = _real("v_rest", v_rest)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend, save_policy)  # fmt: skip


class EIFNode(_ZooNode):
    """Exponential integrate-and-fire:
    ``h = v + (x - (v - v_rest) + delta_T exp((v - theta_rh) / delta_T)) / tau``."""

    _builtin = "EIFNode"
    _own = ("tau", "delta_T", "theta_rh", "v_rest")

    def __init__(self, tau=2.0, delta_T=1.0, theta_rh=0.8, v_threshold=1.0, v_rest=0.0,
                 v_reset=-0.1, surrogate_function=None, detach_reset=False, step_mode="s",
                 store_v_seq=False, *, backend="auto", save_policy="states"):  # fmt: skip
        self.tau = _float("tau", tau)
        self.delta_T = _real("delta_T", delta_T)
        self.theta_rh = _real("theta_rh", theta_rh)
        self.v_rest = _real("v_rest", v_rest)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend, save_policy)  # fmt: skip


class IzhikevichNode(_ZooNode):
    """Izhikevich (QIF with adaptation): ``h = v + (x + a0 (v - v_rest)(v - v_c) - w) / tau``,
    ``w = w + (a (h - v_rest) - w) / tau_w + b s``; the adaptation state is ``w``."""

    _builtin = "IzhikevichNode"
    _own = ("tau", "v_c", "a0", "v_rest", "w_rest", "tau_w", "a", "b")

    def __init__(self, tau=2.0, v_c=0.8, a0=1.0, v_threshold=1.0, v_reset=0.0, v_rest=-0.1,
                 w_rest=0.0, tau_w=2.0, a=0.0, b=0.0, surrogate_function=None,
                 detach_reset=False, step_mode="s", store_v_seq=False, *,
                 backend="auto", save_policy="states"):  # fmt: skip
        self.tau = _float("tau", tau)
        self.v_c = _real("v_c", v_c)
        self.a0 = _real("a0", a0)
        for k, v in (("v_rest", v_rest), ("w_rest", w_rest), ("tau_w", tau_w), ("a", a),
                     ("b", b)):  # fmt: skip
            setattr(self, k, _float(k, v))
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend, save_policy)  # fmt: skip

    def _init_of(self, name):
        return self.w_rest if name == "w" else super()._init_of(name)


class KLIFNode(_ZooNode):
    """KLIF: ``h = relu(k * charge)`` with LIF's charge, ``k`` a learnable ``nn.Parameter``
    (initially 1); with ``scale_reset`` the reset acts on ``h / k`` against
    ``v_threshold / k``."""

    _builtin = "KLIFNode"
    _own = ("scale_reset", "tau", "decay_input")

    def __init__(self, scale_reset=False, tau=2.0, decay_input=True, v_threshold=1.0,
                 v_reset=0.0, surrogate_function=None, detach_reset=False, step_mode="s",
                 store_v_seq=False, *, backend="auto", save_policy="states"):  # fmt: skip
        self.scale_reset = bool(scale_reset)
        self.tau = _float("tau", tau)
        self.decay_input = bool(decay_input)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend, save_policy)  # fmt: skip
        self.k = nn.Parameter(torch.as_tensor(self._initial_param("k")))

    def _params(self):
        return {"k": self.k}


class CUBALIFNode(_ZooNode):
    """Current-based LIF: ``c = c * c_decay + x``, ``h = v * v_decay + c``; the synaptic current
    is the state ``c``. SpikingJelly's constructor takes only the first five arguments; the
    others are keyword-only here (SpikingJelly sets them as attributes)."""

    _builtin = "CUBALIFNode"
    _own = ("c_decay", "v_decay")

    def __init__(self, c_decay=0.5, v_decay=0.75, v_threshold=0.5, v_reset=0.0,
                 surrogate_function=None, *, detach_reset=False, step_mode="s",
                 store_v_seq=False, backend="auto", save_policy="states"):  # fmt: skip
        self.c_decay = _real("c_decay", c_decay)
        self.v_decay = _real("v_decay", v_decay)
        sg = surrogate_function if surrogate_function is not None else _sg.Rect()
        super().__init__(v_threshold, v_reset, sg, detach_reset, step_mode, store_v_seq,
                         backend, save_policy)  # fmt: skip


class ComplementaryLIFNode(_ZooNode):
    """Complementary LIF: ``h = v - v / tau + x``, ``m = m * sigmoid(h / tau) + s``,
    ``v = h - s * (v_threshold + sigmoid(m))``; states ``v`` and ``m``. As in SpikingJelly it
    keeps no ``v_seq``: ``store_state_seqs`` keeps ``state_seqs = [v_seq, m_seq]``."""

    _builtin = "ComplementaryLIFNode"
    _own = ("tau",)
    _fire_keys = ("v_threshold",)
    _appends_v_seq = False

    def __init__(self, tau=2.0, v_threshold=1.0, surrogate_function=None, step_mode="s",
                 store_state_seqs=False, *, backend="auto", save_policy="states"):  # fmt: skip
        self.tau = _float("tau", tau)
        self.store_state_seqs = store_state_seqs
        sg = surrogate_function if surrogate_function is not None else _sg.Rect(alpha=1.0)
        super().__init__(v_threshold, None, sg, False, step_mode, False, backend, save_policy)

    @property
    def store_state_seqs(self):
        return self._store_state_seqs

    @store_state_seqs.setter
    def store_state_seqs(self, value):
        self._store_state_seqs = bool(value)
        self.state_seqs = None

    def reset(self):
        super().reset()
        self.state_seqs = None

    def detach(self):
        super().detach()
        if self.state_seqs is not None:
            self.state_seqs = [s.detach() for s in self.state_seqs]

    def _wants_seqs(self, single):
        return self._store_state_seqs and not single

    def _keep_seqs(self, seqs):
        self.state_seqs = list(seqs)

    def extra_repr(self):
        return f"v_threshold={self.v_threshold}, step_mode={self.step_mode}, tau={self.tau}"


class ILIFNode(_ZooNode):
    """Integer LIF: ``h = (1 - 1/tau) v + x``, spike counts
    ``round(clamp(h / v_threshold, 0, max_spike_count))``, soft reset; its surrogate must be a
    spiking :class:`flexsn.surrogate.MultiLevelSpikeCount` (default ``MultiLevelSpikeCount(4)``)."""

    _builtin = "ILIFNode"
    _own = ("tau",)
    _fire_keys = ("v_threshold", "detach_reset")

    def __init__(self, tau=4.0 / 3.0, v_threshold=1.0, surrogate_function=None,
                 detach_reset=False, step_mode="s", store_v_seq=False, *,
                 backend="auto", save_policy="states"):  # fmt: skip
        sg = surrogate_function if surrogate_function is not None else _sg.MultiLevelSpikeCount(4)
        if type(sg).__name__ != "MultiLevelSpikeCount" or not getattr(sg, "spiking", False):
            raise FlexSNValueError("`surrogate_function` must be a spiking MultiLevelSpikeCount")
        self.tau = _float("tau", tau)
        self.decay_input = False
        super().__init__(v_threshold, None, sg, detach_reset, step_mode, store_v_seq, backend,
                         save_policy)  # fmt: skip


class HalfThresholdIFNode(_ZooNode):
    """IF with soft reset whose ``v`` starts (and resets) at ``v_threshold / 2``."""

    _builtin = "HalfThresholdIFNode"
    _fire_keys = ("v_threshold", "detach_reset")

    def __init__(self, v_threshold=1.0, surrogate_function=None, detach_reset=False,
                 step_mode="s", store_v_seq=False, *, backend="auto",
                 save_policy="states"):  # fmt: skip
        if isinstance(v_threshold, torch.Tensor):
            if v_threshold.numel() != 1:
                raise FlexSNValueError("`v_threshold` must be a scalar")
            v_threshold = v_threshold.item()
        v_threshold = _real("v_threshold", v_threshold)
        super().__init__(v_threshold, None, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend, save_policy)  # fmt: skip

    def _v_init(self):
        return self.v_threshold / 2.0


class TernaryIFNode(_ZooNode):
    """IF with spikes -1/0/1: ``s = Θ(h - v_threshold) - Θ(-h - v_threshold)``, hard reset to
    ``v_reset`` after either, or signed soft reset (``v_reset=None``)."""

    _builtin = "TernaryIFNode"

    def __init__(self, v_threshold=1.0, v_reset=0.0, surrogate_function=None,
                 detach_reset=False, step_mode="s", store_v_seq=False, *,
                 backend="auto", save_policy="states"):  # fmt: skip
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend, save_policy)  # fmt: skip


class TernaryLIFNode(_ZooNode):
    """LIF with spikes -1/0/1 (charge as ``LIFNode``'s, fire and reset as
    :class:`TernaryIFNode`)."""

    _builtin = "TernaryLIFNode"
    _own = ("tau", "decay_input")

    def __init__(self, tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0,
                 surrogate_function=None, detach_reset=False, step_mode="s", store_v_seq=False,
                 *, backend="auto", save_policy="states"):  # fmt: skip
        self.tau = _float("tau", tau)
        self.decay_input = _flag("decay_input", decay_input)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend, save_policy)  # fmt: skip


#: The classes of this module, SpikingJelly's names.
ZOO = (
    "QIFNode", "EIFNode", "IzhikevichNode", "KLIFNode", "CUBALIFNode", "ComplementaryLIFNode",
    "ILIFNode", "HalfThresholdIFNode", "TernaryIFNode", "TernaryLIFNode",
)  # fmt: skip
