"""Surrogate gradients with SpikingJelly's class names, parameters and defaults.

Inside a core traced by :class:`flexsn.torch.FlexSN` (or given to a built-in neuron), an
instance works exactly like its ``spikingjelly.activation_based.surrogate`` namesake: forward is
the Heaviside step ``Θ(x)`` (``Θ(0) = 1``), backward the surrogate's derivative; with
``spiking=False`` the smooth primitive function is used instead. SpikingJelly's own instances are
accepted too (recognised by class name and attributes).
"""

import numbers

from .errors import FlexSNTypeError, FlexSNValueError


class SurrogateFunctionBase:
    """A surrogate function: its SpikingJelly class name, parameters and spiking mode."""

    #: ``(parameter, default)`` pairs in SpikingJelly's constructor order.
    defaults: tuple = ()

    def __init__(self, *args, spiking=True, **kwargs):
        names = [k for k, _ in self.defaults]
        if len(args) > len(names):
            raise FlexSNTypeError(
                f"{type(self).__name__} takes at most {len(names)} positional parameters"
            )
        values = dict(self.defaults)
        for k, v in zip(names, args):
            values[k] = v
        for k, v in kwargs.items():
            if k not in values:
                raise FlexSNTypeError(
                    f"{type(self).__name__} has no parameter `{k}`; it takes: "
                    + (", ".join(names) or "no parameters")
                )
            values[k] = v
        self.spiking = bool(spiking)
        self._sg_param_names = tuple(names)
        for k, v in values.items():
            setattr(self, k, v)

    def set_spiking_mode(self, spiking: bool):
        self.spiking = bool(spiking)

    def __call__(self, x):
        hook = getattr(x, "__flexsn_surrogate__", None)
        if hook is None:
            raise FlexSNTypeError(
                f"flexsn.surrogate.{type(self).__name__} is applied inside a core traced by "
                "flexsn.torch.FlexSN or given to a flexsn neuron, not called on a tensor"
            )
        return hook(self)

    def __repr__(self):
        parts = [f"{k}={getattr(self, k)!r}" for k in self._sg_param_names]
        parts.append(f"spiking={self.spiking}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def __eq__(self, other):
        return spec_of(self) == spec_of(other) if is_surrogate(other) else NotImplemented

    def __hash__(self):
        return hash(spec_of(self))


def _make(name, defaults, doc):
    return type(name, (SurrogateFunctionBase,), {"defaults": defaults, "__doc__": doc})


Sigmoid = _make(
    "Sigmoid", (("alpha", 4.0),), "sg'(x) = alpha * sigmoid(alpha x)(1 - sigmoid(alpha x))."
)
ATan = _make("ATan", (("alpha", 2.0),), "sg'(x) = alpha / 2 / (1 + (pi/2 alpha x)^2).")
PiecewiseQuadratic = _make("PiecewiseQuadratic", (("alpha", 1.0),), "Piecewise quadratic.")
PiecewiseExp = _make("PiecewiseExp", (("alpha", 1.0),), "sg'(x) = alpha/2 exp(-alpha |x|).")
SoftSign = _make("SoftSign", (("alpha", 2.0),), "sg'(x) = alpha / 2 / (1 + alpha |x|)^2.")
SuperSpike = _make("SuperSpike", (("alpha", 1.0),), "sg'(x) = 1 / (alpha |x| + 1)^2.")
NonzeroSignLogAbs = _make("NonzeroSignLogAbs", (("alpha", 1.0),), "sg'(x) = 1 / (1/alpha + |x|).")
Erf = _make("Erf", (("alpha", 2.0),), "sg'(x) = alpha / sqrt(pi) exp(-(alpha x)^2).")
PiecewiseLeakyReLU = _make(
    "PiecewiseLeakyReLU", (("w", 1.0), ("c", 0.01)), "Slope 1/(2w) inside |x| <= w, c outside."
)
SquarewaveFourierSeries = _make(
    "SquarewaveFourierSeries", (("n", 2), ("T_period", 8)), "Fourier series of a square wave."
)
S2NN = _make("S2NN", (("alpha", 4.0), ("beta", 1.0)), "Sigmoid for x < 0, log-shaped for x >= 0.")
QPseudoSpike = _make("QPseudoSpike", (("alpha", 2.0),), "sg'(x) = (1 + 2|x|/(alpha-1))^-alpha.")
LeakyKReLU = _make("LeakyKReLU", (("leak", 0.0), ("k", 1.0)), "Slope k for x >= 0, leak below.")
FakeNumericalGradient = _make(
    "FakeNumericalGradient", (("alpha", 0.3),), "sg'(x) = min(Θ(x)/x ... , alpha)."
)
LogTailedReLU = _make("LogTailedReLU", (("alpha", 0.0),), "Log-tailed ReLU.")
Rect = _make("Rect", (("alpha", 1.0),), "sg'(x) = alpha * (|x| < 1/(2 alpha)).")
DeterministicPass = _make("DeterministicPass", (), "sg'(x) = 1 (straight-through).")


class MultiLevelSpikeCount(SurrogateFunctionBase):
    """Integer spike counts (``ILIFNode``'s): forward ``round(clamp(x, 0, max_spike_count))``,
    backward 1 inside ``grad_window = (grad_min, grad_max)`` (default ``(0, max_spike_count)``),
    else 0; ``spiking=False`` gives ``clamp(x, 0, max_spike_count)``. SpikingJelly's
    constructor: ``max_spike_count`` (an integer >= 1) is required."""

    defaults = (("max_spike_count", 4), ("grad_min", 0.0), ("grad_max", 4.0))

    def __init__(self, max_spike_count, spiking=True, grad_window=None):
        if isinstance(max_spike_count, bool) or not isinstance(max_spike_count, numbers.Integral):
            raise FlexSNTypeError(f"`max_spike_count` must be an integer, got {max_spike_count!r}")
        if max_spike_count < 1:
            raise FlexSNValueError(f"`max_spike_count` must be >= 1, got {max_spike_count}")
        if grad_window is None:
            grad_min, grad_max = 0.0, float(max_spike_count)
        else:
            grad_min, grad_max = grad_window
            if grad_min > grad_max:
                raise FlexSNValueError(
                    f"`grad_window` must satisfy grad_min <= grad_max, got {grad_window!r}"
                )
        super().__init__(int(max_spike_count), grad_min, grad_max, spiking=spiking)


#: Class names flexsn implements (the same as SpikingJelly's catalogue).
NAMES = (
    "Sigmoid", "ATan", "PiecewiseQuadratic", "PiecewiseExp", "SoftSign", "SuperSpike",
    "NonzeroSignLogAbs", "Erf", "PiecewiseLeakyReLU", "SquarewaveFourierSeries", "S2NN",
    "QPseudoSpike", "LeakyKReLU", "FakeNumericalGradient", "LogTailedReLU", "Rect",
    "DeterministicPass", "MultiLevelSpikeCount",
)  # fmt: skip

# SpikingJelly's attribute names that the Rust catalogue spells differently.
_RUST_PARAM = {"T_period": "T"}


def is_surrogate(obj) -> bool:
    """Whether ``obj`` is a surrogate flexsn knows: one of this module's, or SpikingJelly's
    class of the same name (recognised by class name and a ``spiking`` attribute)."""
    return type(obj).__name__ in NAMES and hasattr(obj, "spiking")


def spec_of(obj):
    """``(class name, ((param, value), ...), spiking)`` of a surrogate object."""
    if not is_surrogate(obj):
        raise FlexSNTypeError(
            f"{type(obj).__module__}.{type(obj).__qualname__} is not a surrogate flexsn knows; "
            f"known: {', '.join(NAMES)}"
        )
    cls = globals()[type(obj).__name__]
    names = getattr(obj, "_sg_param_names", None) or [k for k, _ in cls.defaults]
    params = []
    for k in names:
        v = getattr(obj, k)
        if hasattr(v, "item"):
            v = v.item()
        params.append((_RUST_PARAM.get(k, k), float(v)))
    return type(obj).__name__, tuple(params), bool(obj.spiking)


__all__ = ["SurrogateFunctionBase", "is_surrogate", "spec_of", "NAMES", *NAMES]
