"""SpikingJelly's wider neuron zoo in flexsn.torch: every zoo.json case forward and backward
(every memory, its initial value's gradient, KLIF's `k`), and the modules' behaviour
(constructors, states, errors, copies, pickles, backends, step modes). test_zoo_spikingjelly.py
runs them against SpikingJelly's own classes."""

import copy
import pickle

import pytest
import torch

import flexsn
import flexsn.surrogate as fsg
import flexsn.torch as F

from .conftest import close, golden
from .test_golden import make_surrogate


def surrogate_of(spec):
    spec = dict(spec)
    if spec["name"] != "MultiLevelSpikeCount":
        return make_surrogate(spec)
    window = (spec["grad_min"], spec["grad_max"])
    return fsg.MultiLevelSpikeCount(
        int(spec["max_spike_count"]), spiking=spec["spiking"], grad_window=window
    )


def make_zoo(case):
    p = dict(case["params"])
    p["surrogate_function"] = surrogate_of(p.pop("surrogate"))
    store = p.pop("store_v_seq")
    cls = getattr(F, case["neuron"])
    if cls is F.ComplementaryLIFNode:
        return cls(**p)  # no `v_seq` in SpikingJelly's CLIF
    return cls(**p, store_v_seq=store)


def seq(case, values, requires_grad=False):
    t = torch.tensor(values, dtype=torch.float32).reshape(case["tensor_shapes"]["x_seq"])
    return t.requires_grad_(requires_grad)


def vec(values, requires_grad=False):
    return torch.tensor(values, dtype=torch.float32).requires_grad_(requires_grad)


@golden("zoo")
def test_zoo_golden(case):
    node = make_zoo(case)
    x = seq(case, case["inputs"]["x_seq"], requires_grad=True)
    inits = {}
    for name, values in (case["state_init"] or {}).items():
        inits[name] = vec(values, requires_grad=True)
        setattr(node, name, inits[name])
    if case["neuron"] == "KLIFNode":
        assert isinstance(node.k, torch.nn.Parameter)
        close(node.k.reshape(1), vec(case["parameters"]["k"]), "initial k", rtol=0, atol=0)
    spikes = node(x)
    outs, ups = case["outputs"], case["grad_outputs"]
    close(spikes, seq(case, outs["spike_seq"]), "spike_seq", rtol=0, atol=0)
    close(node.v, vec(outs["v_final"]), "v_final")
    loss = (spikes * seq(case, ups["spike_seq"])).sum()
    if outs["v_seq"] is not None:
        close(node.v_seq, seq(case, outs["v_seq"]), "v_seq")
        loss = loss + (node.v_seq * seq(case, ups["v_seq"])).sum()
    for name, values in outs["final_states"].items():
        close(getattr(node, name), vec(values), f"final {name}")
    for name, g in (ups["final_states"] or {}).items():
        loss = loss + (getattr(node, name) * vec(g)).sum()
    loss.backward()
    grads = case["grads"]
    close(x.grad, seq(case, grads["x_seq"]), "grad x_seq")
    for name, t in inits.items():
        close(t.grad, vec(grads[f"{name}_init"]), f"grad {name}_init")
    if case["neuron"] == "KLIFNode":
        close(node.k.grad.reshape(1), vec(grads["k"]), "grad k", atol=1e-4)


def test_zoo_constructors_and_states():
    q = F.QIFNode()
    assert (q.tau, q.v_c, q.a0, q.v_threshold, q.v_rest, q.v_reset) == (
        2.0,
        0.8,
        1.0,
        1.0,
        0.0,
        -0.1,
    )
    assert q.v == -0.1 and q.detach_reset is False and q.step_mode == "s"
    iz = F.IzhikevichNode(w_rest=0.25)
    assert iz.v == 0.0 and iz.w == 0.25 and iz.v_rest == -0.1
    c = F.CUBALIFNode()
    assert (c.c_decay, c.v_decay, c.v_threshold, c.c) == (0.5, 0.75, 0.5, 0.0)
    assert isinstance(c.surrogate_function, fsg.Rect)
    clif = F.ComplementaryLIFNode()
    assert clif.v == 0.0 and clif.m == 0.0 and clif.v_reset is None
    ilif = F.ILIFNode()
    assert ilif.tau == 4.0 / 3.0 and ilif.surrogate_function == fsg.MultiLevelSpikeCount(4)
    h = F.HalfThresholdIFNode(0.6)
    assert h.v == pytest.approx(0.3) and h.v_reset is None
    k = F.KLIFNode()
    assert [n for n, _ in k.named_parameters()] == ["k"] and k.k.item() == 1.0
    # States of another shape start again from their initial values, as in SpikingJelly.
    iz = F.IzhikevichNode(w_rest=0.25, a=0.1, step_mode="m")
    iz(torch.ones(3, 2, 4))
    assert iz.w.shape == (2, 4)
    iz.v, iz.w = torch.zeros(5), torch.zeros(5)
    iz(torch.zeros(1, 3))
    fresh = F.IzhikevichNode(w_rest=0.25, a=0.1, step_mode="m")
    fresh(torch.zeros(1, 3))
    close(iz.w, fresh.w, "w after a new shape", rtol=0, atol=0)


def test_zoo_bad_arguments_are_typed_errors():
    with pytest.raises(TypeError):
        F.QIFNode(tau=2)  # SpikingJelly asserts a float
    with pytest.raises(ValueError, match="tau"):
        F.EIFNode(tau=0.5)
    with pytest.raises(ValueError, match="a0"):
        F.IzhikevichNode(a0=-1.0)
    with pytest.raises(ValueError, match="v_reset"):
        F.QIFNode(v_reset=2.0)  # must be below v_threshold
    with pytest.raises(ValueError, match="MultiLevelSpikeCount"):
        F.ILIFNode(surrogate_function=fsg.Sigmoid())
    with pytest.raises(ValueError):
        F.ILIFNode(surrogate_function=fsg.MultiLevelSpikeCount(4, spiking=False))
    with pytest.raises(ValueError, match="v_threshold"):
        F.HalfThresholdIFNode(-1.0)
    with pytest.raises(ValueError, match="v_reset"):
        F.TernaryIFNode(v_reset=1.5)
    with pytest.raises(TypeError):
        F.TernaryLIFNode(decay_input=1)
    with pytest.raises(TypeError):
        fsg.MultiLevelSpikeCount(2.5)
    with pytest.raises(ValueError):
        fsg.MultiLevelSpikeCount(0)
    with pytest.raises(ValueError):
        fsg.MultiLevelSpikeCount(4, grad_window=(2.0, 1.0))
    with pytest.raises(TypeError, match="float32"):
        F.CUBALIFNode()(torch.zeros(3, dtype=torch.float64))
    assert issubclass(flexsn.FlexSNValueError, ValueError)
    from flexsn import _flexsn

    with pytest.raises(ValueError, match="unknown"):
        _flexsn.builtin_states("QIFNod", [])
    with pytest.raises(ValueError, match="tau"):
        _flexsn.builtin_initial_params("KLIFNode", ["tau=0.5"])


def test_zoo_copies_pickles_and_backends():
    x = torch.randn(5, 2, 3) + 0.8
    for name in F.zoo.ZOO:
        m = getattr(F, name)(step_mode="m")
        m(x)
        m.reset()
        for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
            close(clone(x), m(x), f"copy of {name}", rtol=0, atol=0)
            for state in ("v", "w", "c", "m"):
                if hasattr(m, state) and not isinstance(getattr(m, state), torch.nn.Parameter):
                    close(getattr(clone, state), getattr(m, state), f"{name}.{state}")
            m.reset()
        interp = copy.deepcopy(m)
        interp.backend = "interp"
        interp._build()
        close(interp(x), m(x), f"{name} on the interpreter", rtol=0, atol=0)


def test_klif_k_is_learned():
    m = F.KLIFNode(step_mode="m")
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x = torch.rand(6, 4) * 2
    m(x).sum().backward()
    assert m.k.grad is not None and m.k.grad.item() != 0.0
    before = m.k.item()
    opt.step()
    assert m.k.item() != before
    assert "k" in m.state_dict()


def test_single_step_matches_multi_step_and_appends_v_seq():
    x = torch.randn(4, 3) + 0.6
    for name in ("IzhikevichNode", "TernaryLIFNode", "ILIFNode"):
        s = getattr(F, name)(store_v_seq=True)
        m = getattr(F, name)(step_mode="m", store_v_seq=True)
        ys = torch.stack([s(xt) for xt in x])
        close(ys, m(x), f"{name} spikes", rtol=0, atol=0)
        close(s.v_seq, m.v_seq, f"{name} v_seq")
        s.reset()
        assert s.v_seq is None
    clif = F.ComplementaryLIFNode(step_mode="m", store_state_seqs=True)
    clif(x)
    assert [q.shape for q in clif.state_seqs] == [x.shape, x.shape]
    close(clif.state_seqs[1][-1], clif.m, "m_seq ends at m")
    # As SpikingJelly's CLIF, no `v_seq` whatever `store_v_seq` says.
    clif = F.ComplementaryLIFNode()
    clif.store_v_seq = True
    clif(x[0])
    clif.multi_step_forward(x)
    assert clif.v_seq is None
