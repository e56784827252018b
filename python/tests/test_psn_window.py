"""SlidingPSN with a window far longer than the sequence: only the newest ``min(k, T)``
weights reach it; the rest get a zero gradient, and the result is that of the short window."""

import pytest
import torch

from flexsn.torch import SlidingPSN


@pytest.mark.parametrize("k", [1, 2, 3, 149, 150, 151, 300])
def test_exp_init_halves_from_the_newest_weight(k):
    w = torch.ones(k)
    for i in range(k - 2, -1, -1):
        w[i] = w[i + 1] / 2.0
    got = SlidingPSN(k).weight.data
    assert got.dtype == torch.float32 and torch.equal(got, w)


@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_a_huge_window_equals_its_reachable_part(step_mode):
    t, n, k = 6, 5, 100_000
    torch.manual_seed(0)
    x = torch.randn(t, n)
    big, small = (
        SlidingPSN(k, exp_init=False, step_mode=step_mode),
        SlidingPSN(t, step_mode=step_mode),
    )
    with torch.no_grad():
        small.weight.copy_(big.weight[k - t :])
    outs = []
    for m in (big, small):
        if step_mode == "m":
            s = m(x)
        else:
            s = torch.stack([m(x[i]) for i in range(t)])
        (s * torch.arange(1.0, n + 1)).sum().backward()
        outs.append(s)
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(big.weight.grad[k - t :], small.weight.grad)
    assert not big.weight.grad[: k - t].any()
    assert big.bias.grad == small.bias.grad
