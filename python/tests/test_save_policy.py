"""The ``save_policy`` keyword: under ``checkpoint:K`` training keeps only the checkpoint rows,
and gradients equal those of ``states`` bit for bit."""

import copy
import functools
import math
import pickle

import pytest
import torch

import flexsn
import flexsn.surrogate as fsg
from flexsn.torch import FlexSN, LIFNode, ParametricLIFNode, neurons, zoo
from flexsn.torch._scan import buf

T, SHAPE = 7, (2, 3)
N = math.prod(SHAPE)


def two_state_core(x, c, v):
    """Two states and a per-neuron learnable param (captured below)."""
    c = c * 0.5 + x
    h = v * torch.sigmoid(TAU) + c
    s = fsg.Sigmoid(alpha=3.0, spiking=False)(h - 1.0)
    return s, c, h - s


TAU = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 3))

MAKERS = {
    "lif": lambda p: LIFNode(step_mode="m", save_policy=p),
    "plif": lambda p: ParametricLIFNode(init_tau=3.0, step_mode="m", save_policy=p),
    "two_state": lambda p: FlexSN(two_state_core, 1, 2, 1, save_policy=p),
}
STATES = {"lif": 1, "plif": 1, "two_state": 2}


def train_step(m, x, w):
    """Saved bytes (through the autograd saved-tensor hooks) and the gradients of a loss over
    the outputs and final states with respect to the input, initial states and params."""
    x = x.clone().requires_grad_()
    if isinstance(m, FlexSN):
        s0 = [torch.full(SHAPE, 0.1 * (i + 1), requires_grad=True) for i in range(2)]
        m.states = s0
    else:
        s0 = [torch.full(SHAPE, 0.2, requires_grad=True)]
        m.v = s0[0]
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = m(x)
    finals = m.states if isinstance(m, FlexSN) else [m.v]
    loss = (y * w).sum() + sum((f * (i + 2)).sum() for i, f in enumerate(finals))
    params = list(m.parameters()) + ([TAU] if isinstance(m, FlexSN) else [])
    return sum(saved), torch.autograd.grad(loss, [x, *s0, *params])


@pytest.mark.parametrize("name", list(MAKERS))
@pytest.mark.parametrize("k", [1, 3, T, T + 5])
def test_checkpoint_gradients_equal_states_and_save_less(name, k):
    x = torch.randn(T, *SHAPE) * 1.5 + 0.6
    w = torch.randn(T, *SHAPE)
    ref_bytes, ref = train_step(MAKERS[name]("states"), x, w)
    m = MAKERS[name](f"checkpoint:{k}")
    got_bytes, got = train_step(m, x, w)
    assert m.save_policy == f"checkpoint:{k}"
    for i, (a, b) in enumerate(zip(got, ref)):
        assert torch.equal(a, b), f"{name} checkpoint:{k} gradient {i} differs from states"
    # Per state, [T + 1, N] floats fall to ceil(T / K) rows of N.
    rows = (T + 1) - math.ceil(T / k)
    assert ref_bytes - got_bytes == STATES[name] * rows * N * 4


def test_default_checkpoint_and_setter():
    m = LIFNode(step_mode="m", save_policy="checkpoint")
    assert m.save_policy == "checkpoint" and m._checkpoint == flexsn_default()
    m.save_policy = "checkpoint:4"
    assert m._checkpoint == 4
    m.save_policy = "states"
    assert m._checkpoint is None


def flexsn_default():
    return flexsn._flexsn.save_policy_interval("checkpoint")


@pytest.mark.parametrize("bad", ["checkpoint:0", "checkpoint:x", "checkpoint:-2", "state", "",
                                 "checkpoint:", 3, None])  # fmt: skip
def test_bad_policies_are_rejected(bad):
    for make in (*MAKERS.values(), lambda p: zoo.IzhikevichNode(save_policy=p)):
        with pytest.raises(ValueError, match="save_policy"):
            make(bad)
    m = LIFNode()
    with pytest.raises(ValueError, match="save_policy"):
        m.save_policy = bad
    assert m.save_policy == "states"


def build(cls, policy):
    return cls(save_policy=policy)


def every_builtin():
    """Every built-in module of flexsn.torch with a state to save, built with ``policy``."""
    classes = [getattr(neurons, c) for c in (
        "IFNode", "LIFNode", "ParametricLIFNode", "NonSpikingIFNode", "NonSpikingLIFNode",
    )] + [getattr(zoo, c) for c in zoo.ZOO]  # fmt: skip
    makers = {c.__name__: functools.partial(build, c) for c in classes}
    makers["SimpleIFNode"] = lambda p: neurons.SimpleIFNode(save_policy=p)
    makers["SimpleLIFNode"] = lambda p: neurons.SimpleLIFNode(2.0, True, save_policy=p)
    return makers


@pytest.mark.parametrize("name", list(every_builtin()))
def test_every_builtin_takes_the_policy_and_keeps_it_in_copies(name):
    make = every_builtin()[name]
    x = torch.randn(T, *SHAPE) * 1.5 + 0.6
    grads = []
    for policy in ("states", "checkpoint:2"):
        m = make(policy)
        m.step_mode = "m"
        for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
            assert clone.save_policy == policy and clone._checkpoint == m._checkpoint
        xr = x.clone().requires_grad_()
        y = m(xr)
        y = torch.stack(y) if isinstance(y, list) else y
        grads.append(torch.autograd.grad((y * x).sum(), xr)[0])
    assert torch.equal(grads[0], grads[1]), name


def test_stored_sequences_under_checkpoint():
    """``store_v_seq`` returns every state, so those are kept; results are unchanged."""
    x = torch.randn(T, *SHAPE) + 0.6
    out = []
    for policy in ("states", "checkpoint:3"):
        m = LIFNode(step_mode="m", store_v_seq=True, save_policy=policy)
        xr = x.clone().requires_grad_()
        y = m(xr)
        out.append((y, m.v_seq, torch.autograd.grad((y + m.v_seq**2).sum(), xr)[0]))
    for a, b in zip(*out):
        assert torch.equal(a, b)


def test_pickled_flexsn_keeps_the_policy():
    m = FlexSN(two_state_core, 1, 2, 1, save_policy="checkpoint:5")
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert clone.save_policy == "checkpoint:5" and clone._checkpoint == 5


@pytest.mark.parametrize("name", list(MAKERS))
@pytest.mark.parametrize("k", [1, 3, T, T + 5])
def test_raw_launch_checkpoint_equals_states(name, k):
    """The raw-launch (CUDA tensor) path trains under ``checkpoint:K`` with the fused
    checkpoint kernels (here emulated as host C++): gradients equal those of ``states`` on the
    same path bit for bit, and only ``ceil(T/K)`` rows per state are saved."""
    from .test_device import emulated_or_skip

    x = torch.randn(T, *SHAPE) * 1.5 + 0.6
    w = torch.randn(T, *SHAPE)
    ref_m = emulated_or_skip(MAKERS[name]("states"))
    ref_bytes, ref = train_step(ref_m, x, w)
    got_bytes, got = train_step(emulated_or_skip(MAKERS[name](f"checkpoint:{k}")), x, w)
    for i, (a, b) in enumerate(zip(got, ref)):
        assert torch.equal(a, b), f"{name} checkpoint:{k} gradient {i} differs from states"
    # Per state, [T + 1, pitch] (rows padded) fall to ceil(T / K) dense rows of N.
    pitch = ref_m._core._by_backend["cpu"].core.row_pitch(N, "f32")
    floats = (T + 1) * pitch - math.ceil(T / k) * N
    assert ref_bytes - got_bytes == STATES[name] * floats * 4


def test_raw_launch_refuses_a_k_too_large_for_shared_memory():
    """A K whose segment does not fit the backward kernel's shared memory is refused at the
    training forward (before anything is saved), naming the policy."""
    from .test_device import emulated_or_skip

    t = 500
    m = emulated_or_skip(LIFNode(step_mode="m", save_policy="checkpoint:450"))
    with pytest.raises(flexsn.FlexSNError, match="checkpoint:450.*smaller K"):
        m(torch.randn(t, 2, requires_grad=True))


def test_native_module_checks_checkpoint_buffers():
    """The Rust side checks the checkpoint interval and the checkpoint buffers' length."""
    core = flexsn._flexsn.Core.builtin("lif", [], "cpu")
    x, v, s, f = torch.zeros(6), torch.zeros(2), torch.zeros(6), torch.zeros(2)
    cps = torch.zeros(4)  # ceil(3 / 2) rows of 2
    core.forward(3, 2, [buf(x)], [], [buf(v)], [buf(s)], [buf(f)], [buf(cps)], checkpoint=2)
    with pytest.raises(ValueError, match="expected 2 float32"):
        core.forward(3, 2, [buf(x)], [], [buf(v)], [buf(s)], [buf(f)], [buf(cps)], checkpoint=3)
    # The argument's name around the save policy's own words.
    with pytest.raises(ValueError, match=r"`checkpoint`: invalid save policy `checkpoint:0`"):
        core.forward(3, 2, [buf(x)], [], [buf(v)], [buf(s)], [buf(f)], [buf(cps)], checkpoint=0)
    states_bufs = torch.zeros(8)  # a `states` buffer handed to a checkpointed backward
    g_in, g_s0 = torch.zeros(6), torch.zeros(2)
    with pytest.raises(ValueError, match="expected 4 float32"):
        core.backward(3, 2, [buf(x)], [], [buf(v)], [buf(states_bufs)], [buf(s)], [None], [None],
                      [buf(g_in)], [buf(g_s0)], [], checkpoint=2)  # fmt: skip


def test_pickles_without_a_policy_load_as_states():
    m = LIFNode(step_mode="m", save_policy="checkpoint:2")
    state = m.__getstate__()
    del state["_save_policy"], state["_checkpoint"]
    old = LIFNode.__new__(LIFNode)
    old.__setstate__(state)
    assert old.save_policy == "states" and old._checkpoint is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", list(MAKERS))
def test_cuda_tensors_checkpoint_equals_states(name, dtype):
    """On a GPU: training on CUDA tensors under ``checkpoint:K`` (the fused kernels on device
    memory) gives the gradients of ``states`` on CUDA tensors, bit for bit, in every storage
    type (the recomputed states are rounded to it as the saved ones are)."""
    x = (torch.randn(T, *SHAPE) * 1.5 + 0.6).to(dtype)
    w = torch.randn(T, *SHAPE).to(dtype)

    def on_gpu(policy):
        m = MAKERS[name](policy).cuda()
        TAU.data = TAU.data.cuda()
        try:
            return cuda_train_step(m, x.cuda(), w.cuda())
        finally:
            TAU.data = TAU.data.cpu()

    ref = on_gpu("states")
    for k in (1, 3, T + 5):
        got = on_gpu(f"checkpoint:{k}")
        for i, (a, b) in enumerate(zip(got, ref)):
            assert torch.equal(a, b), f"{name} {dtype} checkpoint:{k} gradient {i}"


def cuda_train_step(m, x, w):
    """Gradients of a loss over the outputs and final states (CUDA tensors, any dtype)."""
    x = x.clone().requires_grad_()
    y = m(x)
    finals = m.states if isinstance(m, FlexSN) else [m.v]
    loss = (y.float() * w.float()).sum() + sum((f.float() * (i + 2)).sum()
                                              for i, f in enumerate(finals))  # fmt: skip
    params = list(m.parameters()) + ([TAU] if isinstance(m, FlexSN) else [])
    return torch.autograd.grad(loss, [x, *params])
