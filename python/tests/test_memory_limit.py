"""``max_memory``: a native call that would allocate more than its core's limit raises
``FlexSNMemoryError`` (also a ``MemoryError``) before allocating, saying how much it needs."""

import pytest
import torch

import flexsn
from flexsn.torch._scan import buf


def lif_backward(core):
    """Forward (states kept) and backward of LIF over T = 3 steps of N = 2 neurons."""
    t, n = 3, 2
    x, v, s, f = torch.ones(t * n), torch.zeros(n), torch.zeros(t * n), torch.zeros(n)
    bufs = torch.zeros((t + 1) * n)
    core.forward(t, n, [buf(x)], [], [buf(v)], [buf(s)], [buf(f)], [buf(bufs)])
    g_in, g_s0 = torch.zeros(t * n), torch.zeros(n)
    core.backward(t, n, [buf(x)], [], [buf(v)], [buf(bufs)], [buf(torch.ones(t * n))], [None],
                  [None], [buf(g_in)], [buf(g_s0)], [])  # fmt: skip
    return g_in


def test_a_call_over_the_limit_raises_a_memory_error():
    # Backward allocates the parameter gradients' buffers: N floats here, 8 bytes > 1.
    small = flexsn._flexsn.Core.builtin("lif", [], "cpu", max_memory=1)
    with pytest.raises(flexsn.FlexSNMemoryError, match="needs about 8 B") as e:
        lif_backward(small)
    assert isinstance(e.value, MemoryError) and isinstance(e.value, flexsn.FlexSNError)
    # The same calls with the default limit run.
    g = lif_backward(flexsn._flexsn.Core.builtin("lif", [], "cpu"))
    assert g.abs().sum() > 0
