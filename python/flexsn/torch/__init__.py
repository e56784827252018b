"""PyTorch modules on flexsn kernels: :class:`FlexSN` and SpikingJelly's built-in neurons (its
wider zoo too: QIF, EIF, Izhikevich, KLIF, CUBA-LIF, CLIF, ILIF, half-threshold and ternary), with
SpikingJelly's constructors, so that ``from flexsn.torch import LIFNode`` replaces
``from spikingjelly.activation_based.neuron import LIFNode``."""

from .. import empty_host_cache, host_cache_info, set_host_cache_limit
from .flexsn_module import FlexSN
from .neurons import (
    BaseNode,
    IFNode,
    LIFNode,
    NonSpikingIFNode,
    NonSpikingLIFNode,
    ParametricLIFNode,
    SimpleIFNode,
    SimpleLIFNode,
)
from .psn import PSN, MaskedPSN, SlidingPSN
from .zoo import (
    ComplementaryLIFNode,
    CUBALIFNode,
    EIFNode,
    HalfThresholdIFNode,
    ILIFNode,
    IzhikevichNode,
    KLIFNode,
    QIFNode,
    TernaryIFNode,
    TernaryLIFNode,
)

__all__ = [
    "FlexSN",
    "BaseNode",
    "IFNode",
    "LIFNode",
    "ParametricLIFNode",
    "SimpleIFNode",
    "SimpleLIFNode",
    "NonSpikingIFNode",
    "NonSpikingLIFNode",
    "PSN",
    "MaskedPSN",
    "SlidingPSN",
    "QIFNode",
    "EIFNode",
    "IzhikevichNode",
    "KLIFNode",
    "CUBALIFNode",
    "ComplementaryLIFNode",
    "ILIFNode",
    "HalfThresholdIFNode",
    "TernaryIFNode",
    "TernaryLIFNode",
    "empty_host_cache",
    "host_cache_info",
    "set_host_cache_limit",
]
