"""Side by side with SpikingJelly 2.0.0 on random inputs: every built-in and every golden core,
outputs, input gradients and param gradients, both step modes, reset_net and set_step_mode."""

import pytest
import torch

import flexsn.torch as F

from .conftest import close

sj = pytest.importorskip("spikingjelly.activation_based")
from spikingjelly.activation_based import functional, neuron, surrogate  # noqa: E402

SURROGATES = [
    "Sigmoid",
    "ATan",
    "Erf",
    "PiecewiseQuadratic",
    "PiecewiseLeakyReLU",
    "Rect",
    "SoftSign",
]

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


@pytest.mark.parametrize("spiking", [True, False])
@pytest.mark.parametrize("name", [n for n in __import__("flexsn").surrogate.NAMES])
def test_every_surrogate_in_a_core(name, spiking):
    """Each surrogate class of SpikingJelly, in a traced core, against SpikingJelly's FlexSN;
    flexsn's class of the same name traces to the same graph."""
    import flexsn.surrogate as fsg

    cls = getattr(surrogate, name)
    required = (3,) if name == "MultiLevelSpikeCount" else ()  # its count has no default
    try:
        sg = cls(*required, spiking=spiking)
    except TypeError:  # FakeNumericalGradient has no `spiking` argument
        if not spiking:
            pytest.skip(f"{name} has no spiking=False form")
        sg = cls()
    if not spiking:
        try:
            sg.primitive_function(torch.zeros(1), **sg._sg_params)
        except NotImplementedError:
            pytest.skip(f"{name} has no primitive function in SpikingJelly")

    # SpikingJelly's FlexSN refuses cores that capture modules in a closure: a global it is.
    src = "def core(x, v):\n    h = 0.5 * v + x\n    s = SG(h - 1.0)\n    return s, h - s\n"
    env_sj, env_f = {"SG": sg}, {}
    exec(src, env_sj)
    core = env_sj["core"]
    if required:
        env_f["SG"] = getattr(fsg, name)(*required, spiking=spiking)
    else:
        env_f["SG"] = getattr(fsg, name)(
            **{k: getattr(sg, k) for k in sg._sg_params}, spiking=spiking
        )
    exec(src, env_f)
    flexsn_core = env_f["core"]
    a = F.FlexSN(core, 1, 1, 1)
    body = lambda m: m._core.get("cpu").text().split("\n", 1)[1]  # noqa: E731 (without the name)
    assert body(a) == body(F.FlexSN(flexsn_core, 1, 1, 1))
    b = neuron.FlexSN(core, 1)
    x = torch.randn(6, 3, 5) * 1.5 + 0.5
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = a(xa), b(xb)
    close(ya, yb, "output", atol=1e-5)
    g = torch.randn_like(yb)
    (ya * g).sum().backward()
    (yb * g).sum().backward()
    close(xa.grad, xb.grad, "grad x", atol=1e-4)


def psn_pair(name, *args, **kw):
    a = getattr(F, name)(*args, **kw)
    b = getattr(neuron, name)(*args, **kw)
    b.load_state_dict(a.state_dict())
    return a, b


def compare_psn(a, b, xs):
    xa = [x.clone().requires_grad_() for x in xs]
    xb = [x.clone().requires_grad_() for x in xs]
    ya, yb = [a(x) for x in xa], [b(x) for x in xb]
    for p, q in zip(ya, yb):
        close(p, q, "spikes", atol=0, rtol=0)
    gs = [torch.randn_like(y) for y in yb]
    sum((y * g).sum() for y, g in zip(ya, gs)).backward()
    sum((y * g).sum() for y, g in zip(yb, gs)).backward()
    for i, (p, q) in enumerate(zip(xa, xb)):
        close(p.grad, q.grad, f"grad of input {i}")
    for name, p in a.named_parameters():
        close(p.grad, dict(b.named_parameters())[name].grad, f"grad of {name}", atol=1e-4)


def test_psn():
    a, b = psn_pair("PSN", 6)
    compare_psn(a, b, [torch.randn(6, 3, 4) * 2 + 1])


@pytest.mark.parametrize("lam", [0.0, 0.4, 1.0])
def test_masked_psn_multi_step(lam):
    a, b = psn_pair("MaskedPSN", 3, 6, lambda_init=lam, step_mode="m")
    compare_psn(a, b, [torch.randn(6, 2, 5) * 2 + 1])


def test_masked_psn_single_step():
    a, b = psn_pair("MaskedPSN", 2, 4, lambda_init=1.0, step_mode="s")
    compare_psn(a, b, [torch.randn(2, 5) * 2 + 1 for _ in range(4)])
    with pytest.raises(OverflowError):
        a(torch.randn(2, 5))


@pytest.mark.parametrize("exp_init", [True, False])
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_sliding_psn(exp_init, step_mode):
    a, b = psn_pair("SlidingPSN", 3, exp_init=exp_init, step_mode=step_mode)
    xs = ([torch.randn(7, 2, 3) * 2 + 1] if step_mode == "m"
          else [torch.randn(2, 3) * 2 + 1 for _ in range(5)])  # fmt: skip
    compare_psn(a, b, xs)
