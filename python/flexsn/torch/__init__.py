"""PyTorch modules on flexsn kernels: :class:`FlexSN` and SpikingJelly's built-in neurons, with
SpikingJelly's constructors, so that ``from flexsn.torch import LIFNode`` replaces
``from spikingjelly.activation_based.neuron import LIFNode``."""

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
]
