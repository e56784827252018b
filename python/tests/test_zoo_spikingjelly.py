"""The zoo modules side by side with SpikingJelly 2.0.0's classes on random inputs: outputs,
every memory, input gradients and KLIF's `k` gradient, both step modes, `v_seq`, CLIF's
`state_seqs`, reset_net and set_step_mode."""

import pytest
import torch

import flexsn.surrogate as fsg
import flexsn.torch as F

from .conftest import close

sj = pytest.importorskip("spikingjelly.activation_based")
from spikingjelly.activation_based import functional, neuron, surrogate

ZOO = [
    ("QIFNode", {"tau": 3.0, "v_c": 0.6, "a0": 0.9}),
    ("QIFNode", {"v_reset": None, "detach_reset": True}),
    ("EIFNode", {"tau": 3.0, "delta_T": 0.7, "theta_rh": 0.7, "v_reset": 0.0}),
    ("EIFNode", {"v_reset": None}),
    ("IzhikevichNode", {"tau": 2.5, "a": 0.12, "b": 0.2, "tau_w": 3.0}),
    ("IzhikevichNode", {"w_rest": 0.1, "a": 0.2, "b": 0.1, "detach_reset": True}),
    ("KLIFNode", {"tau": 2.5}),
    ("KLIFNode", {"scale_reset": True, "v_reset": None, "decay_input": False}),
    ("CUBALIFNode", {"c_decay": 0.6, "v_decay": 0.8}),
    ("CUBALIFNode", {"v_threshold": 1.0, "v_reset": None}),
    ("ComplementaryLIFNode", {"tau": 3.0, "v_threshold": 0.5}),
    ("ILIFNode", {"tau": 2.0}),
    ("ILIFNode", {"v_threshold": 0.5, "detach_reset": True}),
    ("HalfThresholdIFNode", {"v_threshold": 0.6}),
    ("TernaryIFNode", {}),
    ("TernaryIFNode", {"v_reset": None, "v_threshold": 0.6}),
    ("TernaryLIFNode", {"tau": 2.5, "decay_input": False}),
    ("TernaryLIFNode", {"v_reset": None}),
]

# The memories of each class besides `v`.
MEMORIES = {"IzhikevichNode": ("w",), "CUBALIFNode": ("c",), "ComplementaryLIFNode": ("m",)}


def zoo_pair(cls, kw, step_mode):
    kw = dict(kw)
    if cls == "ILIFNode":
        sg_a, sg_b = fsg.MultiLevelSpikeCount(4), surrogate.MultiLevelSpikeCount(4)
    else:
        sg_a, sg_b = fsg.ATan(), surrogate.ATan()
    if cls == "CUBALIFNode":  # SpikingJelly's constructor takes no step_mode
        a = F.CUBALIFNode(surrogate_function=sg_a, step_mode=step_mode, **kw)
        b = neuron.CUBALIFNode(surrogate_function=sg_b, **kw)
        b.step_mode = step_mode
    else:
        a = getattr(F, cls)(surrogate_function=sg_a, step_mode=step_mode, **kw)
        b = getattr(neuron, cls)(surrogate_function=sg_b, step_mode=step_mode, **kw)
    b.load_state_dict(a.state_dict())
    return a, b


def compare_zoo(cls, a, b, xs):
    ins_a = [x.clone().requires_grad_() for x in xs]
    ins_b = [x.clone().requires_grad_() for x in xs]
    ya = [a(x) for x in ins_a]
    yb = [b(x) for x in ins_b]
    for i, (p, q) in enumerate(zip(ya, yb)):
        close(p, q, f"{cls}: output of call {i}", rtol=0, atol=0)
    for name in ("v", *MEMORIES.get(cls, ())):
        close(getattr(a, name), getattr(b, name), f"{cls}: {name}", atol=1e-5)
    gs = [torch.randn_like(y) for y in yb]
    sum((y * g).sum() for y, g in zip(ya, gs)).backward()
    sum((y * g).sum() for y, g in zip(yb, gs)).backward()
    for i, (p, q) in enumerate(zip(ins_a, ins_b)):
        close(p.grad, q.grad, f"{cls}: grad of input {i}")
    if cls == "KLIFNode":
        close(a.k.grad, b.k.grad, f"{cls}: grad of k", atol=1e-4)


def zoo_input(cls, shape):
    scale = 2.5 if cls.startswith("Ternary") else 1.5
    return torch.randn(shape) * scale + (0.0 if cls.startswith("Ternary") else 0.4)


@pytest.mark.parametrize("cls,kw", ZOO, ids=[f"{c}-{i}" for i, (c, _) in enumerate(ZOO)])
def test_zoo_against_spikingjelly_multi_step(cls, kw):
    a, b = zoo_pair(cls, kw, "m")
    # Two calls: every memory carries over, as in SpikingJelly.
    compare_zoo(cls, a, b, [zoo_input(cls, (6, 3, 4)), zoo_input(cls, (5, 3, 4))])


@pytest.mark.parametrize("cls,kw", ZOO[::2], ids=[c for c, _ in ZOO[::2]])
def test_zoo_against_spikingjelly_single_step(cls, kw):
    a, b = zoo_pair(cls, kw, "s")
    compare_zoo(cls, a, b, [zoo_input(cls, (2, 5)) for _ in range(4)])


@pytest.mark.parametrize("cls", ["QIFNode", "IzhikevichNode", "ILIFNode", "TernaryLIFNode"])
def test_zoo_v_seq_against_spikingjelly(cls):
    a, b = zoo_pair(cls, {}, "m")
    a.store_v_seq = b.store_v_seq = True
    x = zoo_input(cls, (7, 9))
    a(x), b(x)
    close(a.v_seq, b.v_seq, f"{cls}: v_seq", atol=1e-5)


def test_clif_state_seqs_against_spikingjelly():
    a = F.ComplementaryLIFNode(step_mode="m", store_state_seqs=True)
    b = neuron.ComplementaryLIFNode(step_mode="m", store_state_seqs=True)
    x = zoo_input("ComplementaryLIFNode", (6, 4))
    close(a(x), b(x), "spikes", rtol=0, atol=0)
    for p, q, name in zip(a.state_seqs, b.state_seqs, ("v_seq", "m_seq")):
        close(p, q, name, atol=1e-5)


def test_zoo_reset_net_and_set_step_mode():
    mods_a = [F.IzhikevichNode(a=0.1, b=0.2), F.ComplementaryLIFNode(), F.HalfThresholdIFNode()]
    mods_b = [neuron.IzhikevichNode(a=0.1, b=0.2), neuron.ComplementaryLIFNode(),
              neuron.HalfThresholdIFNode()]  # fmt: skip
    net_a = torch.nn.Sequential(torch.nn.Linear(4, 4), *mods_a)
    net_b = torch.nn.Sequential(torch.nn.Linear(4, 4), *mods_b)
    net_b.load_state_dict(net_a.state_dict())
    functional.set_step_mode(net_a, "m")
    functional.set_step_mode(net_b, "m")
    assert all(m.step_mode == "m" for m in mods_a)
    x = zoo_input("IzhikevichNode", (6, 2, 4))
    for _ in range(2):
        close(net_a(x), net_b(x), "output", rtol=0, atol=0)
        functional.reset_net(net_a)
        functional.reset_net(net_b)
        for p, q in zip(mods_a, mods_b):
            for name in ("v", *MEMORIES.get(type(p).__name__, ())):
                assert getattr(p, name) == getattr(q, name), f"{type(p).__name__}.{name}"
