"""flexsn: spiking-neuron kernels compiled in milliseconds.

``flexsn.torch`` holds the PyTorch modules (``FlexSN`` and SpikingJelly's built-in neurons);
``flexsn.surrogate`` the surrogate-gradient functions. Importing ``flexsn`` alone needs neither
torch nor SpikingJelly.
"""

from . import surrogate
from ._flexsn import __version__
from .errors import (
    FlexSNError,
    FlexSNMemoryError,
    FlexSNTypeError,
    FlexSNValueError,
    UnsupportedOpError,
)

__all__ = [
    "FlexSNError",
    "FlexSNMemoryError",
    "FlexSNTypeError",
    "FlexSNValueError",
    "UnsupportedOpError",
    "surrogate",
    "__version__",
]
