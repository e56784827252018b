"""The exceptions flexsn raises. Every one is a :class:`FlexSNError`; bad arguments are also
``ValueError`` or ``TypeError``, so code written for SpikingJelly's checks keeps working."""


class FlexSNError(Exception):
    """Base class of every flexsn error (also raised alone when a backend fails or is missing)."""


class FlexSNValueError(FlexSNError, ValueError):
    """A bad value: a shape, a count, a name, a setting."""


class FlexSNMemoryError(FlexSNError, MemoryError):
    """A call that would allocate more than its core's memory limit (``max_memory``), raised
    before anything is allocated. The message says how much it needs."""


class FlexSNTypeError(FlexSNError, TypeError):
    """A bad kind of argument: a dtype, a device, an object that is not a tensor."""


class UnsupportedOpError(FlexSNError, TypeError):
    """A traced core used an operation flexsn cannot compile. The message names the operation
    and the line of the core."""
