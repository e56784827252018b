"""flexsn: spiking-neuron kernels compiled in milliseconds.

``flexsn.torch`` holds the PyTorch modules (``FlexSN`` and SpikingJelly's built-in neurons);
``flexsn.surrogate`` the surrogate-gradient functions. Importing ``flexsn`` alone needs neither
torch nor SpikingJelly.

Large CPU tensors that flexsn creates (outputs, state sequences, gradients of at least 8 MiB)
come from a process-wide host buffer cache that reuses their memory from call to call:
:func:`host_cache_info`, :func:`empty_host_cache` and :func:`set_host_cache_limit` inspect and
bound it.
"""

from . import surrogate
from ._flexsn import __version__, empty_host_cache, host_cache_info, set_host_cache_limit
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
    "empty_host_cache",
    "host_cache_info",
    "set_host_cache_limit",
    "surrogate",
    "__version__",
]
