"""Module behaviour: tracing, params, step modes, T = 0, copies and pickles, bad inputs."""

import copy
import io
import pickle

import pytest
import torch

import flexsn
import flexsn.surrogate as fsg
from flexsn.torch import FlexSN, IFNode, LIFNode, ParametricLIFNode

from .conftest import close


def lif_core(x, v):
    h = v + (x - v) / 2.0
    s = fsg.ATan()(h - 1.0)
    return s, h * (1.0 - s)


def test_captured_parameters_get_gradients():
    w = torch.nn.Parameter(torch.full((3,), 0.3))  # per neuron, broadcast over the batch
    b = torch.nn.Parameter(torch.tensor(0.1))  # shared scalar
    sg = fsg.Sigmoid(alpha=2.0, spiking=False)  # smooth: gradients are exact

    def core(x, v):
        h = v * torch.sigmoid(w) + x + b
        return sg(h - 1.0), h - 0.5 * sg(h - 1.0)

    m = FlexSN(core, 1, 1, 1)
    x = torch.randn(5, 2, 3, requires_grad=True)
    y = m(x)
    (y * torch.arange(30.0).reshape(5, 2, 3)).sum().backward()

    def eager(x, w, b):
        v = torch.zeros(2, 3)
        outs = []
        for t in range(5):
            h = v * torch.sigmoid(w) + x[t] + b
            s = torch.sigmoid(2.0 * (h - 1.0))
            outs.append(s)
            v = h - 0.5 * s
        return torch.stack(outs)

    w2, b2 = w.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    y2 = eager(x2, w2, b2)
    (y2 * torch.arange(30.0).reshape(5, 2, 3)).sum().backward()
    close(y, y2, "output", atol=1e-5)
    close(x.grad, x2.grad, "grad x")
    close(w.grad, w2.grad, "grad w")
    close(b.grad, b2.grad, "grad b")


def test_single_step_mode_matches_multi_step():
    x = torch.randn(6, 4) + 0.5
    m = FlexSN(lif_core, 1, 1, 1, step_mode="m")
    s = FlexSN(lif_core, 1, 1, 1, step_mode="s", backend="torch")
    ys = torch.stack([s(x[t]) for t in range(6)])
    close(ys, m(x), "spikes", rtol=0, atol=0)
    close(s.states[0], m.states[0], "v")
    s.reset()
    assert s.states is None and s.state_seqs is None


def test_many_outputs_and_states_return_lists():
    def core(x, y, a, b):
        return x + a, y * b, a + 1.0, b * 0.5

    m = FlexSN(core, 2, 2, 2, store_state_seqs=True)
    outs = m(torch.ones(3, 2), torch.ones(3, 2))
    assert isinstance(outs, list) and len(outs) == 2
    assert [s.shape for s in m.state_seqs] == [torch.Size([3, 2])] * 2
    close(m.states[0], torch.full((2,), 3.0), "a")


def test_t_zero_keeps_states():
    m = FlexSN(lif_core, 1, 1, 1, store_state_seqs=True)
    y = m(torch.empty(0, 3))
    assert y.shape == (0, 3)
    assert m.states[0].shape == (3,) and m.state_seqs[0].shape == (0, 3)
    n = LIFNode(step_mode="m")
    assert n(torch.empty(0, 2)).shape == (0, 2)


def test_non_contiguous_inputs():
    x = (torch.randn(4, 6) + 0.5).t()  # [6, 4] transposed view
    assert not x.is_contiguous()
    a, b = LIFNode(step_mode="m"), LIFNode(step_mode="m")
    close(a(x), b(x.contiguous()), "spikes", rtol=0, atol=0)


def test_backend_names():
    x = torch.randn(5, 3) + 0.5
    ref = FlexSN(lif_core, 1, 1, 1, backend="interp")(x)
    for backend in ("auto", "cpu", "triton", "inductor", "torch", "hop"):
        close(FlexSN(lif_core, 1, 1, 1, backend=backend)(x), ref, backend, rtol=0, atol=0)
    with pytest.raises(ValueError, match="backend"):
        FlexSN(lif_core, 1, 1, 1, backend="gpu")


def test_state_dict_copy_pickle_save():
    m = torch.nn.Sequential(torch.nn.Linear(3, 3), ParametricLIFNode(step_mode="m"))
    with torch.no_grad():
        m[1].w.fill_(0.7)
    assert "1.w" in m.state_dict()
    x = torch.randn(4, 2, 3)
    m(x)
    from spikingjelly.activation_based import functional

    functional.reset_net(m)  # as in SpikingJelly, `v` is part of the autograd graph until reset
    for clone in (
        copy.deepcopy(m),
        pickle.loads(pickle.dumps(m)),
        torch.load(io.BytesIO(_save(m)), weights_only=False),
    ):
        close(clone(x), m(x), "output of the copy", rtol=0, atol=0)
        functional.reset_net(m)
        assert clone[1].w.item() == pytest.approx(0.7)
    fx = FlexSN(_module_level_core, 1, 1, 1)
    close(pickle.loads(pickle.dumps(fx))(x), fx(x), "FlexSN copy")


def _module_level_core(x, v):
    h = v + x
    s = fsg.Sigmoid()(h - 1.0)
    return s, h - s


def _save(m):
    buf = io.BytesIO()
    torch.save(m, buf)
    return buf.getvalue()


def test_unsupported_op_names_op_and_line():
    def core(x, v):
        h = v + x
        k = torch.cumsum(h, 0)
        return k, h

    with pytest.raises(flexsn.UnsupportedOpError, match=r"cumsum.*line \d+.*torch.cumsum"):
        FlexSN(core, 1, 1, 1)

    def branchy(x, v):
        if v > 0:
            return x, v
        return x, v

    with pytest.raises(flexsn.UnsupportedOpError, match="control flow"):
        FlexSN(branchy, 1, 1, 1)


def test_bad_inputs_raise_typed_errors():
    m = FlexSN(lif_core, 1, 1, 1)
    with pytest.raises(TypeError, match="float32"):
        m(torch.randn(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="expected 1 inputs"):
        m(torch.randn(3, 2), torch.randn(3, 2))
    m.states = [torch.zeros(5)]
    with pytest.raises(ValueError, match="state `v`"):
        m(torch.randn(3, 2))
    m.states = [torch.zeros(2, device="meta")]
    with pytest.raises(ValueError, match="`v` is on meta"):
        m(torch.randn(3, 2))
    with pytest.raises(ValueError, match="must return"):
        FlexSN(lambda x, v: (x,), 1, 1, 1)
    with pytest.raises(flexsn.FlexSNError):
        LIFNode(tau=0.5)
    with pytest.raises(TypeError):
        IFNode(v_threshold=1)  # SpikingJelly asserts a float too
    with pytest.raises(TypeError, match="not a surrogate"):
        IFNode(surrogate_function=torch.nn.ReLU())
    with pytest.raises(TypeError):
        fsg.ATan(beta=1.0)


def test_native_module_checks_buffers():
    """The Rust side re-checks what Python passes: lengths, null and overlapping buffers."""
    from flexsn import _flexsn

    core = _flexsn.Core.builtin("lif", [], "cpu")
    x, v, s, f = torch.zeros(4), torch.zeros(2), torch.zeros(4), torch.zeros(2)
    buf = lambda t: (t.data_ptr(), t.numel())  # noqa: E731
    with pytest.raises(ValueError, match="expected 4 float32"):
        core.forward(2, 2, [(x.data_ptr(), 3)], [], [buf(v)], [buf(s)], [buf(f)])
    with pytest.raises(ValueError, match="not a valid float32 buffer"):
        core.forward(2, 2, [(0, 4)], [], [buf(v)], [buf(s)], [buf(f)])
    with pytest.raises(ValueError, match="overlaps"):
        core.forward(2, 2, [buf(x)], [], [buf(v)], [buf(x)], [buf(f)])
    with pytest.raises(ValueError, match="expected 1 inputs"):
        core.forward(2, 2, [], [], [buf(v)], [buf(s)], [buf(f)])
    with pytest.raises(ValueError, match="tau"):
        _flexsn.Core.builtin("lif", ["tau=0.5"], "cpu")


def test_psn_family_copies():
    from flexsn.torch import PSN, MaskedPSN, SlidingPSN

    x = torch.randn(4, 3) * 2 + 1
    for m in (PSN(4), MaskedPSN(2, 4, step_mode="m"), SlidingPSN(2, step_mode="m")):
        for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
            close(clone(x), m(x), f"copy of {type(m).__name__}", rtol=0, atol=0)


def test_cuda_backend_is_a_clear_error():
    """CUDA tensors are not routed to the CUDA backend yet: a FlexSNError says so."""
    m = FlexSN(lif_core, 1, 1, 1, backend="cuda")
    with pytest.raises(flexsn.FlexSNError, match="CUDA"):
        m(torch.randn(3, 2))


def test_ops_on_captured_params_follow_the_params():
    """`torch.sigmoid(w)` on a captured Parameter is part of the kernel: after an optimizer
    step the core sees the new `w`, and a second backward works."""
    w = torch.nn.Parameter(torch.tensor([0.2, -0.4]))
    m = FlexSN(lambda x, v: (v * torch.sigmoid(w) + x, v * torch.sigmoid(w) + x), 1, 1, 1)
    opt = torch.optim.SGD([w], lr=0.5)
    x = torch.randn(3, 2)
    for _ in range(2):
        m.reset()
        y = m(x)
        v, want = torch.zeros(2), []
        for t in range(3):
            v = v * torch.sigmoid(w) + x[t]
            want.append(v)
        close(y, torch.stack(want), "outputs with the current w")
        opt.zero_grad()
        y.sum().backward()
        g = torch.autograd.grad(torch.stack(want).sum(), w)[0]
        close(w.grad, g, "w.grad")
        opt.step()
