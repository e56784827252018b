"""SpikingJelly's built-in neurons as ``nn.Module``s on flexsn's compiled kernels.

Constructor arguments, defaults and attributes follow SpikingJelly 2.0.0 (``v``, ``v_seq``,
``store_v_seq``, ``step_mode``, ``reset()``, ``ParametricLIFNode.w``); each runs the Rust built-in
of the same name (``flexsn_neurons``), and takes the ``backend`` argument of :class:`FlexSN`.
"""

import math

import torch
from torch import nn

from .. import _flexsn
from .. import surrogate as _sg
from ..errors import FlexSNTypeError, FlexSNValueError
from . import _common as C
from ._scan import normalize_backend, run


def _surrogate_settings(sg):
    name, params, spiking = _sg.spec_of(sg)
    out = [f"surrogate={name}"]
    out += [f"surrogate.{k}={C.fmt(v)}" for k, v in params]
    out.append(f"surrogate.spiking={C.fmt(spiking)}")
    return out


class _Node(C.HoldsCore, nn.Module):
    """A stateful neuron with one input and one output. Its states (``v``, and e.g.
    Izhikevich's ``w``) are attributes named as the Rust built-in's states, which are
    SpikingJelly's memory names: a float until the first call, then a tensor."""

    _builtin = ""
    #: Whether single steps append ``v`` to ``v_seq`` when ``store_v_seq`` is set.
    _appends_v_seq = True

    def __init__(self, step_mode, backend, store_v_seq, save_policy="states"):
        if "_parameters" not in self.__dict__:
            super().__init__()
        self.step_mode = C.check_step_mode(step_mode)
        self.backend = normalize_backend(backend)
        self.save_policy = save_policy
        self._store_v_seq = bool(store_v_seq)
        # `(name, initial value)` per state, from the built-in itself.
        self._states = tuple(_flexsn.builtin_states(self._builtin, self._settings()))
        self.reset()
        self._build()

    # Subclasses: settings for the Rust built-in and the params it reads, by graph name.
    def _settings(self):
        return []

    def _params(self):
        return {}

    def _v_init(self):
        return dict(self._states)["v"]

    def _init_of(self, name):
        return self._v_init() if name == "v" else dict(self._states)[name]

    def _initial_param(self, name):
        """A learnable param's initial value, from the built-in (a scalar)."""
        values = dict(_flexsn.builtin_initial_params(self._builtin, self._settings()))[name]
        return values[0] if len(values) == 1 else values

    def _make_core(self):
        return C.builtin_core(self._builtin, self._settings())

    @property
    def store_v_seq(self):
        return self._store_v_seq

    @store_v_seq.setter
    def store_v_seq(self, value):
        self._store_v_seq = bool(value)
        self.v_seq = None

    def reset(self):
        """Back to the initial states (floats, re-shaped on the next call)."""
        for name, _ in self._states:
            setattr(self, name, self._init_of(name))
        self.v_seq = None

    def detach(self):
        """Cuts the autograd history of the states (truncated BPTT)."""
        for name, _ in self._states:
            s = getattr(self, name)
            if isinstance(s, torch.Tensor):
                setattr(self, name, s.detach())
        if isinstance(self.v_seq, torch.Tensor):
            self.v_seq = self.v_seq.detach()

    def forward(self, x):
        if not isinstance(x, torch.Tensor):
            raise FlexSNTypeError(f"`x` must be a torch.Tensor, got {type(x).__name__}")
        if self.step_mode == "s":
            return self.single_step_forward(x)
        return self.multi_step_forward(x)

    def single_step_forward(self, x):
        y = self._step(x.unsqueeze(0), single=True)[0]
        if self._store_v_seq and self._appends_v_seq:
            # As SpikingJelly: a single step appends `v` to `v_seq` until `reset()`.
            v = self.v.unsqueeze(0)
            seq = self.v_seq
            fits = isinstance(seq, torch.Tensor) and seq.shape[1:] == v.shape[1:]
            self.v_seq = torch.cat((seq, v)) if fits else v.clone()
        return y

    def multi_step_forward(self, x_seq):
        if x_seq.dim() < 1:
            raise FlexSNValueError("`x_seq` must be [T, *shape]")
        return self._step(x_seq, single=False)

    def _materialize(self, name, x0):
        s = getattr(self, name)
        if not isinstance(s, torch.Tensor):
            return torch.full_like(x0, float(s))
        if s.shape != x0.shape:
            # SpikingJelly re-initialises a state of another shape (e.g. a new batch size).
            return torch.full_like(x0, float(self._init_of(name)))
        return s

    def _wants_seqs(self, single):
        return self._store_v_seq and not single

    def _keep_seqs(self, seqs):
        """Keeps the state sequences (``[T, *shape]`` each, in state order)."""
        self.v_seq = seqs[[k for k, _ in self._states].index("v")]

    def _step(self, x_seq, single):
        t, shape = x_seq.shape[0], x_seq.shape[1:]
        n = C.numel(shape)
        x0 = x_seq[0] if t > 0 else x_seq.new_zeros(shape)
        names = [k for k, _ in self._states]
        states = [self._materialize(k, x0) for k in names]
        params = self._params()
        backend = C.device_backend(
            self.backend, ("x", x_seq), [*zip(names, states), *params.items()]
        )
        core = self._core.get(backend)
        seqs = self._wants_seqs(single)
        if t == 0 or n == 0:
            if seqs:
                self._keep_seqs([x_seq.new_empty((t, *shape)) for _ in names])
            for k, s in zip(names, states):
                setattr(self, k, s)
            return x_seq.new_empty((t, *shape))
        kinds = {p[0]: p[1] for p in core.params}
        flat_p = [C.param_flat(k, params[k], kinds[k], shape, n) for k in kinds]
        flat_s = [C.as_flat(s, n) for s in states]
        outs, state_seqs, finals = run(
            core, t, n, [C.as_flat(x_seq, t * n)], flat_s, flat_p, seqs, self._checkpoint
        )
        for k, f in zip(names, finals):
            setattr(self, k, f.reshape(shape))
        if seqs:
            self._keep_seqs([q.reshape(t, *shape) for q in state_seqs])
        return outs[0].reshape(t, *shape)


class BaseNode(_Node):
    """SpikingJelly's ``BaseNode`` arguments: threshold, reset, surrogate, detach_reset."""

    def __init__(self, v_threshold=1.0, v_reset=0.0, surrogate_function=None,
                 detach_reset=False, step_mode="s", backend="auto", store_v_seq=False, *,
                 save_policy="states"):  # fmt: skip
        nn.Module.__init__(self)  # before the surrogate, which may be a module
        if not isinstance(v_threshold, float):
            raise FlexSNTypeError(f"`v_threshold` must be a float, got {v_threshold!r}")
        if v_reset is not None and not isinstance(v_reset, float):
            raise FlexSNTypeError(f"`v_reset` must be a float or None, got {v_reset!r}")
        if not isinstance(detach_reset, bool):
            raise FlexSNTypeError(f"`detach_reset` must be a bool, got {detach_reset!r}")
        self.v_threshold = v_threshold
        self.v_reset = v_reset
        self.detach_reset = detach_reset
        self.surrogate_function = (
            surrogate_function if surrogate_function is not None else _sg.Sigmoid()
        )
        _sg.spec_of(self.surrogate_function)
        super().__init__(step_mode, backend, store_v_seq, save_policy)

    def _v_init(self):
        return self.v_reset if self.v_reset is not None else 0.0

    #: The threshold and reset settings the built-in takes (its SpikingJelly constructor's).
    _fire_keys = ("v_threshold", "v_reset", "detach_reset")

    def _settings(self):
        return [
            *(f"{k}={C.fmt(getattr(self, k))}" for k in self._fire_keys),
            *_surrogate_settings(self.surrogate_function),
        ]

    def extra_repr(self):
        return (
            f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
            f"detach_reset={self.detach_reset}, step_mode={self.step_mode}, backend={self.backend}"
        )


class IFNode(BaseNode):
    """Integrate-and-fire: ``h = v + x``."""

    _builtin = "if"


class LIFNode(BaseNode):
    """Leaky integrate-and-fire: ``h = v + (x - (v - v_reset)) / tau`` (``decay_input``)."""

    _builtin = "lif"

    def __init__(self, tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0,
                 surrogate_function=None, detach_reset=False, step_mode="s", backend="auto",
                 store_v_seq=False, *, save_policy="states"):  # fmt: skip
        if not isinstance(tau, float) or tau <= 1.0:
            raise FlexSNValueError(f"`tau` must be a float > 1, got {tau!r}")
        self.tau = tau
        self.decay_input = bool(decay_input)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         backend, store_v_seq, save_policy=save_policy)  # fmt: skip

    def _settings(self):
        return [
            f"tau={C.fmt(self.tau)}",
            f"decay_input={C.fmt(self.decay_input)}",
            *super()._settings(),
        ]

    def extra_repr(self):
        return f"{super().extra_repr()}, tau={self.tau}"


class ParametricLIFNode(BaseNode):
    """LIF with a learnable time constant: ``1/tau = sigmoid(w)``, ``w`` an ``nn.Parameter``."""

    _builtin = "plif"

    def __init__(self, init_tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0,
                 surrogate_function=None, detach_reset=False, step_mode="s", backend="auto",
                 store_v_seq=False, *, save_policy="states"):  # fmt: skip
        if not isinstance(init_tau, float) or init_tau <= 1.0:
            raise FlexSNValueError(f"`init_tau` must be a float > 1, got {init_tau!r}")
        self.init_tau = init_tau
        self.decay_input = bool(decay_input)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         backend, store_v_seq, save_policy=save_policy)  # fmt: skip
        self.w = nn.Parameter(torch.as_tensor(-math.log(init_tau - 1.0)))

    def _settings(self):
        return [f"init_tau={C.fmt(self.init_tau)}", f"decay_input={C.fmt(self.decay_input)}",
                *super()._settings()]  # fmt: skip

    def _params(self):
        return {"w": self.w}

    def extra_repr(self):
        with torch.no_grad():
            tau = 1.0 / self.w.sigmoid().item()
        return f"{super().extra_repr()}, tau={tau}"


class SimpleIFNode(IFNode):
    """SpikingJelly's teaching ``SimpleIFNode``: IF whose ``v`` starts at 0.0."""

    def __init__(self, v_threshold=1.0, v_reset=0.0, surrogate_function=None,
                 detach_reset=False, step_mode="s", backend="auto", *,
                 save_policy="states"):  # fmt: skip
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, backend,
                         save_policy=save_policy)  # fmt: skip

    def _v_init(self):
        return 0.0


class SimpleLIFNode(LIFNode):
    """SpikingJelly's teaching ``SimpleLIFNode``: LIF whose ``v`` starts at 0.0."""

    def __init__(self, tau, decay_input, v_threshold=1.0, v_reset=0.0, surrogate_function=None,
                 detach_reset=False, step_mode="s", backend="auto", *,
                 save_policy="states"):  # fmt: skip
        if v_reset is None:
            raise FlexSNTypeError("SimpleLIFNode needs a float `v_reset`")
        super().__init__(float(tau), decay_input, v_threshold, v_reset, surrogate_function,
                         detach_reset, step_mode, backend, save_policy=save_policy)  # fmt: skip

    def _v_init(self):
        return 0.0


_DECODES = ("max-mem", "max-abs-mem", "mean-mem", "last_mem")


class _NonSpiking(_Node):
    """SpikingJelly's ``NonSpikingBaseNode``: multi-step only, ``v`` from zeros every call,
    then an optional decoding over time (``None``: a list of the T membrane tensors)."""

    def __init__(self, decode=None, backend="auto", *, save_policy="states"):
        self.decode = decode
        super().__init__("m", backend, False, save_policy)

    def forward(self, x_seq):
        if not isinstance(x_seq, torch.Tensor) or x_seq.dim() < 1:
            raise FlexSNValueError("`x_seq` must be a tensor [T, *shape]")
        self.v = 0.0
        mem = self._step(x_seq, single=False)
        d = self.decode
        if d == "max-mem":
            return mem.max(0).values
        if d == "max-abs-mem":
            mx, mn = mem.max(0).values, mem.min(0).values
            return mx * (mx.abs() > mn.abs()) + mn * (mx.abs() <= mn.abs())
        if d == "mean-mem":
            return mem.mean(0)
        if d == "last_mem":
            return mem[-1]
        return list(mem.unbind(0))


class NonSpikingIFNode(_NonSpiking):
    """Non-spiking integrator: ``v = v + x``."""

    _builtin = "nonspiking-if"


class NonSpikingLIFNode(_NonSpiking):
    """Non-spiking leaky integrator: ``v = v + (x - v) / tau``."""

    _builtin = "nonspiking-lif"

    def __init__(self, tau=2.0, decode=None, backend="auto", *, save_policy="states"):
        self.tau = float(tau)
        super().__init__(decode, backend, save_policy=save_policy)

    def _settings(self):
        return [f"tau={C.fmt(self.tau)}"]
