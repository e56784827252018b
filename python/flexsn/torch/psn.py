"""SpikingJelly's parallel spiking neurons: ``PSN``, ``MaskedPSN`` and ``SlidingPSN``.

Each computes ``S = sg(W·X + b)`` with ``W`` mixing the time steps: the mixing is a matrix
product (torch's GEMM, with its autograd), the spike and its surrogate gradient a compiled flexsn
kernel (a one-op core ``sg(h)``). Constructors, parameters, buffers and step modes follow
SpikingJelly 2.0.0.
"""

import math

import torch
from torch import nn

from .. import _flexsn
from .. import surrogate as _sg
from ..errors import FlexSNValueError
from . import _common as C
from ._scan import normalize_backend, run
from ._trace import trace


class _Spiking(C.HoldsCore, nn.Module):
    """The flexsn spike kernel ``sg(h)`` for a surrogate, and how to apply it to ``[T, ...]``."""

    def _init_spike(self, surrogate_function, backend):
        self.surrogate_function = (
            surrogate_function if surrogate_function is not None else _sg.ATan()
        )
        self.backend = normalize_backend(backend)
        self._build()

    def _make_core(self):
        sg = self.surrogate_function
        t = trace(lambda h: (sg(h),), 1, 0, 1)
        spec = ("psn_spike", t.inputs, t.states, t.params, t.nodes, t.outputs, t.next_states)
        return C.CompiledCore(lambda backend: _flexsn.Core.from_trace(*spec, backend))

    def _spike(self, h):
        backend = C.device_backend(self.backend, ("h", h), [])
        t = h.shape[0]
        n = C.numel(h.shape[1:])
        if t == 0 or n == 0:
            return h.new_empty(h.shape)
        outs, _, _ = run(self._core.get(backend), t, n, [C.as_flat(h, t * n)], [], [], False)
        return outs[0].reshape(h.shape)


def _kaiming(weight):
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    return weight


class PSN(_Spiking):
    """``PSN(T, surrogate_function=ATan())``: multi-step only; ``weight [T, T]``, ``bias [T, 1]``."""

    def __init__(self, T, surrogate_function=None, backend="auto"):
        super().__init__()
        self.T = T
        self.step_mode = "m"
        self.weight = nn.Parameter(_kaiming(torch.zeros(T, T)))
        self.bias = nn.Parameter(torch.full((T, 1), -1.0))
        self._init_spike(surrogate_function, backend)

    def forward(self, x_seq):
        if x_seq.shape[0] != self.T:
            raise FlexSNValueError(
                f"`x_seq` has T = {x_seq.shape[0]}, the module was built for {self.T}"
            )
        h = torch.addmm(self.bias, self.weight, x_seq.flatten(1))
        return self._spike(h).view(x_seq.shape)

    def extra_repr(self):
        return f"T={self.T}"


class MaskedPSN(_Spiking):
    """``MaskedPSN(k, T, lambda_init=0.0, surrogate_function=ATan(), step_mode='s')``: the
    weight blended toward a band mask of width ``k`` by ``lambda_``."""

    def __init__(
        self, k, T, lambda_init=0.0, surrogate_function=None, step_mode="s", backend="auto"
    ):
        super().__init__()
        self.k, self.T = k, T
        self.step_mode = C.check_step_mode(step_mode)
        self.weight = nn.Parameter(_kaiming(torch.zeros(T, T)))
        self.bias = nn.Parameter(torch.full((T, 1), -1.0))
        mask1 = torch.ones(T, T)
        self.register_buffer("_lambda_", torch.as_tensor(float(lambda_init)))
        self.register_buffer("mask1", mask1)
        self.register_buffer("mask0", torch.tril(mask1) * torch.triu(mask1, -(k - 1)))
        self.reset()
        self._init_spike(surrogate_function, backend)

    @property
    def lambda_(self):
        return self._lambda_

    @lambda_.setter
    def lambda_(self, value):
        self._lambda_.fill_(value)

    def reset(self):
        self.time_step = 0
        self.queue = []

    def masked_weight(self):
        if self._lambda_ >= 1.0:
            return self.weight * self.mask0
        return (self._lambda_ * self.mask0 + (1.0 - self._lambda_) * self.mask1) * self.weight

    def forward(self, x):
        if self.step_mode == "m":
            if x.shape[0] != self.T:
                raise FlexSNValueError(
                    f"`x_seq` has T = {x.shape[0]}, the module was built for {self.T}"
                )
            h = torch.addmm(self.bias, self.masked_weight(), x.flatten(1))
            return self._spike(h).view(x.shape)
        if self._lambda_ < 1.0:
            raise FlexSNValueError("MaskedPSN's single-step mode needs lambda_ >= 1")
        if self.time_step + 1 > self.T:
            raise OverflowError(f"MaskedPSN has T = {self.T} steps; call reset()")
        self.queue = [*self.queue, x.flatten()][-self.k :]
        ts = self.time_step
        w = self.masked_weight()[ts, ts + 1 - len(self.queue) : ts + 1]
        h = sum(w[j] * q for j, q in enumerate(self.queue)) + self.bias[ts]
        self.time_step += 1
        return self._spike(h.unsqueeze(0))[0].view(x.shape)

    def extra_repr(self):
        return f"k={self.k}, T={self.T}, step_mode={self.step_mode}"


class SlidingPSN(_Spiking):
    """``SlidingPSN(k, exp_init=True, surrogate_function=ATan(), step_mode='s', backend='gemm')``:
    ``H[t] = Σ_i W_i X[t-k+1+i]``. SpikingJelly's ``'gemm'`` and ``'conv'`` backends are the
    same computation here (a GEMM)."""

    def __init__(self, k, exp_init=True, surrogate_function=None, step_mode="s", backend="gemm"):
        super().__init__()
        self.k = k
        self.step_mode = C.check_step_mode(step_mode)
        if exp_init:
            # SpikingJelly halves from the newest weight back: w[i] = 2^-(k-1-i) in float32
            # (exact down to the smallest subnormal, then 0), computed at once for any k.
            w = torch.exp2(-torch.arange(k - 1, -1, -1, dtype=torch.float64)).float()
        else:
            w = _kaiming(torch.ones(1, k))[0]
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.as_tensor(-1.0))
        self.queue = []
        self._init_spike(surrogate_function, "auto" if backend in ("gemm", "conv") else backend)

    def reset(self):
        self.queue = []

    def gen_gemm_weight(self, T):
        # Only the newest min(k, T) weights reach a T-step sequence: slice them once, so that
        # neither the matrix nor its backward grows with k.
        tail = self.weight[max(0, self.k - T) :]
        rows = []
        for i in range(T):
            start, end = max(0, i + 1 - self.k), i + 1
            length = min(end - start, self.k)
            row = [
                self.weight.new_zeros(start),
                tail[len(tail) - length :],
                self.weight.new_zeros(T - end),
            ]
            rows.append(torch.cat(row))
        return torch.stack(rows)

    def forward(self, x):
        if self.step_mode == "m":
            h = torch.addmm(self.bias, self.gen_gemm_weight(x.shape[0]), x.flatten(1))
            return self._spike(h).view(x.shape)
        self.queue = [*self.queue, x.flatten()][-self.k :]
        w = self.weight[self.k - len(self.queue) :]
        h = sum(w[j] * q for j, q in enumerate(self.queue)) + self.bias
        return self._spike(h.unsqueeze(0))[0].view(x.shape)

    def extra_repr(self):
        return f"k={self.k}, step_mode={self.step_mode}"
