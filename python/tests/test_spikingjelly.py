"""Side by side with SpikingJelly 2.0.0 on random inputs: every built-in and every golden core,
outputs, input gradients and param gradients, both step modes, reset_net and set_step_mode."""

import pytest
import torch

import flexsn.torch as F

from .conftest import close

sj = pytest.importorskip("spikingjelly.activation_based")
from spikingjelly.activation_based import functional, neuron, surrogate  # noqa: E402

SURROGATES = ["Sigmoid", "ATan", "Erf", "PiecewiseQuadratic", "PiecewiseLeakyReLU", "Rect", "SoftSign"]

BUILTINS = [
    ("IFNode", {}),
    ("IFNode", {"v_reset": None, "detach_reset": True}),
    ("LIFNode", {"tau": 3.0}),
    ("LIFNode", {"tau": 2.5, "decay_input": False, "v_reset": None}),
    ("ParametricLIFNode", {"init_tau": 3.0}),
    ("ParametricLIFNode", {"decay_input": False, "v_reset": -0.2, "v_threshold": 0.8}),
    ("SimpleIFNode", {}),
    ("SimpleLIFNode", {"tau": 2.0, "decay_input": True}),
    ("SimpleLIFNode", {"tau": 4.0, "decay_input": False, "v_reset": 0.1}),
]


def pair(cls, kw, sg, step_mode):
    a = getattr(F, cls)(surrogate_function=getattr(surrogate, sg)(), step_mode=step_mode, **kw)
    b = getattr(neuron, cls)(surrogate_function=getattr(surrogate, sg)(), step_mode=step_mode, **kw)
    return a, b


def compare(a, b, xs, learnable=()):
    """Runs both modules over the calls `xs` (keeping state across them); compares outputs, v,
    and the gradients of a random loss w.r.t. the inputs and params."""
    ins_a = [x.clone().requires_grad_() for x in xs]
    ins_b = [x.clone().requires_grad_() for x in xs]
    ya = [a(x) for x in ins_a]
    yb = [b(x) for x in ins_b]
    for i, (p, q) in enumerate(zip(ya, yb)):
        close(p, q, f"output of call {i}", rtol=0, atol=0)
    close(a.v, b.v, "v", atol=1e-5)
    gs = [torch.randn_like(y) for y in yb]
    sum((y * g).sum() for y, g in zip(ya, gs)).backward()
    sum((y * g).sum() for y, g in zip(yb, gs)).backward()
    for i, (p, q) in enumerate(zip(ins_a, ins_b)):
        close(p.grad, q.grad, f"grad of input {i}")
    for name in learnable:
        close(getattr(a, name).grad, getattr(b, name).grad, f"grad of {name}", atol=1e-4)


def spiking_input(shape, scale=1.5):
    return torch.randn(shape) * scale + 0.4


@pytest.mark.parametrize("cls,kw", BUILTINS, ids=[f"{c}-{i}" for i, (c, _) in enumerate(BUILTINS)])
@pytest.mark.parametrize("sg", SURROGATES)
def test_builtin_multi_step(cls, kw, sg):
    a, b = pair(cls, kw, sg, "m")
    learnable = ("w",) if cls == "ParametricLIFNode" else ()
    # Two calls: the state carries over, as in SpikingJelly.
    compare(a, b, [spiking_input((6, 3, 4)), spiking_input((5, 3, 4))], learnable)


@pytest.mark.parametrize("cls,kw", BUILTINS[::2], ids=[c for c, _ in BUILTINS[::2]])
def test_builtin_single_step(cls, kw):
    a, b = pair(cls, kw, "ATan", "s")
    learnable = ("w",) if cls == "ParametricLIFNode" else ()
    compare(a, b, [spiking_input((2, 5)) for _ in range(4)], learnable)


@pytest.mark.parametrize("cls,kw", BUILTINS[:6:2], ids=[c for c, _ in BUILTINS[:6:2]])
def test_store_v_seq(cls, kw):
    a = getattr(F, cls)(step_mode="m", store_v_seq=True, **kw)
    b = getattr(neuron, cls)(step_mode="m", store_v_seq=True, **kw)
    x = spiking_input((7, 9))
    a(x), b(x)
    close(a.v_seq, b.v_seq, "v_seq", atol=1e-5)


@pytest.mark.parametrize("decode", [None, "max-mem", "max-abs-mem", "mean-mem", "last_mem"])
@pytest.mark.parametrize("cls", ["NonSpikingIFNode", "NonSpikingLIFNode"])
def test_nonspiking(cls, decode):
    a, b = getattr(F, cls)(decode=decode), getattr(neuron, cls)(decode=decode)
    x = torch.randn(5, 2, 3)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = a(xa), b(xb)
    if decode is None:
        ya, yb = torch.stack(ya), torch.stack(yb)
    close(ya, yb, "output", atol=1e-6)
    g = torch.randn_like(yb)
    (ya * g).sum().backward(), (yb * g).sum().backward()
    close(xa.grad, xb.grad, "grad x")


def test_reset_net_and_set_step_mode():
    net_a = torch.nn.Sequential(torch.nn.Linear(4, 4), F.LIFNode(), F.IFNode())
    net_b = torch.nn.Sequential(torch.nn.Linear(4, 4), neuron.LIFNode(), neuron.IFNode())
    net_b.load_state_dict(net_a.state_dict())
    functional.set_step_mode(net_a, "m")
    functional.set_step_mode(net_b, "m")
    assert net_a[1].step_mode == "m" and net_a[2].step_mode == "m"
    x = spiking_input((6, 2, 4))
    for _ in range(2):
        close(net_a(x), net_b(x), "output", rtol=0, atol=0)
        functional.reset_net(net_a)
        functional.reset_net(net_b)
        assert net_a[1].v == 0.0 and net_a[2].v == 0.0


def sj_flexsn(core, num_states, **kw):
    return neuron.FlexSN(core, num_states, **kw)


def test_flexsn_cores_against_spikingjelly():
    """The golden cores, on fresh random inputs, against SpikingJelly's own FlexSN (its 2.0.0
    constructor is ``FlexSN(core, num_states, static_inputs, step_mode, store_state_seqs)``)."""
    from .test_golden import load_core
    import json

    from .conftest import GOLDEN

    seen = set()
    for case in json.loads((GOLDEN / "flexsn.json").read_text()):
        meta, p = case["meta"], case["params"]
        if case["neuron"] in seen or meta["static_input_names"]:
            continue
        seen.add(case["neuron"])
        core = load_core(case, surrogate)
        ni, ns, no = p["num_inputs"], p["num_states"], p["num_outputs"]
        a = F.FlexSN(core, ni, ns, no, store_state_seqs=True)
        b = sj_flexsn(core, ns, store_state_seqs=True)
        xs = [torch.randn(9, 3, 2) + 1.0 for _ in range(ni)]
        xa = [x.clone().requires_grad_() for x in xs]
        xb = [x.clone().requires_grad_() for x in xs]
        ya, yb = a(*xa), b(*xb)
        ya = [ya] if no == 1 else list(ya)
        yb = [yb] if isinstance(yb, torch.Tensor) else list(yb)
        for o, (p_, q_) in enumerate(zip(ya, yb)):
            close(p_, q_, f"{case['neuron']} output {o}", atol=1e-5)
        for j in range(ns):
            close(a.states[j], b.states[j], f"{case['neuron']} state {j}", atol=1e-5)
        gs = [torch.randn_like(y) for y in yb]
        sum((y * g).sum() for y, g in zip(ya, gs)).backward()
        sum((y * g).sum() for y, g in zip(yb, gs)).backward()
        for i in range(ni):
            close(xa[i].grad, xb[i].grad, f"{case['neuron']} grad of input {i}", atol=1e-4)
    assert len(seen) >= 4
