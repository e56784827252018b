"""Every golden case through the Python API: built-in modules and FlexSN with the cases' own
Python core source, forward and backward, against SpikingJelly's recorded results."""

import functools
import math
import textwrap

import pytest
import torch

import flexsn.surrogate as fsg
from flexsn.torch import (
    FlexSN,
    IFNode,
    LIFNode,
    NonSpikingIFNode,
    NonSpikingLIFNode,
    ParametricLIFNode,
)

from .conftest import close, golden, tensor


def make_surrogate(spec):
    spec = dict(spec)
    name = spec.pop("name")
    return getattr(fsg, name)(**spec)


def make_node(case):
    p = dict(case["params"])
    kw = dict(
        v_threshold=p["v_threshold"],
        v_reset=p["v_reset"],
        detach_reset=p["detach_reset"],
        surrogate_function=make_surrogate(p["surrogate"]),
        step_mode="m",
        store_v_seq=p["store_v_seq"],
    )
    if case["neuron"] == "IFNode":
        return IFNode(**kw)
    if case["neuron"] == "LIFNode":
        return LIFNode(tau=p["tau"], decay_input=p["decay_input"], **kw)
    return ParametricLIFNode(init_tau=p["init_tau"], decay_input=p["decay_input"], **kw)


def run_node_case(case):
    node = make_node(case)
    x = tensor(case, "x_seq", case["inputs"]["x_seq"], requires_grad=True)
    v0 = None
    if case["v_init"] is not None:
        v0 = tensor(case, "v_init", case["v_init"], requires_grad=True)
        node.v = v0
    spikes = node(x)
    outs = case["outputs"]
    close(spikes, tensor(case, "spike_seq", outs["spike_seq"]), "spike_seq", rtol=0, atol=0)
    close(node.v, tensor(case, "v_final", outs["v_final"]), "v_final")
    got = {"spike_seq": spikes, "v_final": node.v}
    if outs["v_seq"] is not None:
        close(node.v_seq, tensor(case, "v_seq", outs["v_seq"]), "v_seq")
        got["v_seq"] = node.v_seq
    loss = sum((got[k] * tensor(case, k, g)).sum()
               for k, g in case["grad_outputs"].items() if g is not None)  # fmt: skip
    loss.backward()
    grads = case["grads"]
    close(x.grad, tensor(case, "x_seq", grads["x_seq"]), "grad x_seq")
    if v0 is not None:
        close(v0.grad, tensor(case, "v_init", grads["v_init"]), "grad v_init")
    if case["neuron"] == "ParametricLIFNode":
        close(node.w.grad, tensor(case, "w", grads["w"]), "grad w", atol=1e-4)


@golden("ifnode")
def test_ifnode(case):
    run_node_case(case)


@golden("lifnode")
def test_lifnode(case):
    run_node_case(case)


@golden("plif")
def test_plif(case):
    run_node_case(case)


@golden("nonspiking")
def test_nonspiking(case):
    p = case["params"]
    node = (NonSpikingIFNode(decode=p["decode"]) if case["neuron"] == "NonSpikingIFNode"
            else NonSpikingLIFNode(tau=p["tau"], decode=p["decode"]))  # fmt: skip
    x = tensor(case, "x_seq", case["inputs"]["x_seq"], requires_grad=True)
    out = node(x)
    if isinstance(out, list):
        out = torch.stack(out)
    close(out, tensor(case, "output", case["outputs"]["output"]), "output")
    (out * tensor(case, "output", case["grad_outputs"]["output"])).sum().backward()
    close(x.grad, tensor(case, "x_seq", case["grads"]["x_seq"]), "grad x_seq")


def load_core(case, surrogates):
    """The case's core, made by its Python generator source (which holds the core's source as
    written and derives the closed-over constants) with the case's arguments."""
    meta = case["meta"]
    env = {"torch": torch, "math": math, "surrogate": surrogates}
    for name, expr in meta["surrogate_globals"].items():
        env[name] = eval(expr, {"surrogate": surrogates})
    src = meta["core_generator_source"] or meta["core_source"]
    assert textwrap.indent(meta["core_source"].strip(), "    ") in src or src == meta["core_source"]
    exec(compile(src, f"<core {case['name']}>", "exec"), env)
    fn = env[src.split("def ", 1)[1].split("(", 1)[0]]
    return fn(**case["params"]["core_kwargs"]) if meta["core_generator_source"] else fn


def run_flexsn_case(case, surrogates, backend="auto"):
    meta, p = case["meta"], case["params"]
    core = load_core(case, surrogates)
    statics = {}
    for name in meta["static_input_names"]:
        statics[name] = tensor(case, name, case["parameters"][name], requires_grad=True)
    if statics:
        core = functools.partial(core, **statics)
    m = FlexSN(core, p["num_inputs"], p["num_states"], p["num_outputs"],
               store_state_seqs=True, backend=backend)  # fmt: skip
    xs = [tensor(case, k, case["inputs"][k], requires_grad=True) for k in meta["input_names"]]
    s0 = None
    if case["state_init"] is not None:
        s0 = [tensor(case, f"{k}_init", case["state_init"][k], requires_grad=True)
              for k in meta["state_names"]]  # fmt: skip
        m.states = s0
    outs = m(*xs)
    outs = [outs] if p["num_outputs"] == 1 else outs
    loss = 0
    for name, o in zip(meta["output_names"], outs):
        close(o, tensor(case, name, case["outputs"][name]), f"output {name}")
        loss = loss + (o * tensor(case, name, case["grad_outputs"][name])).sum()
    gseq = case["grad_outputs"]["state_seqs"] or {}
    for name, seq, fin in zip(meta["state_names"], m.state_seqs, m.states):
        close(seq, tensor(case, f"{name}_seq", case["state_seqs"][name]), f"state_seq {name}")
        close(fin, tensor(case, f"{name}_final", case["final_states"][name]), f"final {name}")
        if name in gseq:
            loss = loss + (seq * tensor(case, f"{name}_seq", gseq[name])).sum()
    loss.backward()
    grads = case["grads"]
    for name, x in zip(meta["input_names"], xs):
        close(x.grad, tensor(case, name, grads[name]), f"grad {name}")
    for j, name in enumerate(meta["state_names"]):
        if s0 is not None:
            close(
                s0[j].grad, tensor(case, f"{name}_init", grads[f"{name}_init"]), f"grad {name}_init"
            )
    for name, t in statics.items():
        close(t.grad, tensor(case, name, grads[name]), f"grad {name}", atol=1e-4)


@golden("flexsn")
def test_flexsn_flexsn_surrogates(case):
    run_flexsn_case(case, fsg)


@golden("flexsn")
def test_flexsn_interpreter(case):
    run_flexsn_case(case, fsg, backend="interp")


@golden("flexsn")
def test_flexsn_spikingjelly_surrogates(case):
    sj = pytest.importorskip("spikingjelly.activation_based.surrogate")
    run_flexsn_case(case, sj)


def run_psn_case(case):
    from flexsn.torch import PSN, MaskedPSN, SlidingPSN

    p = dict(case["params"])
    sg = make_surrogate(p.pop("surrogate"))
    cls = {"PSN": PSN, "MaskedPSN": MaskedPSN, "SlidingPSN": SlidingPSN}[case["neuron"]]
    m = cls(surrogate_function=sg, **p)
    with torch.no_grad():
        for name, values in case["parameters"].items():
            getattr(m, name).copy_(tensor(case, name, values))
        for name, values in (case.get("buffers") or {}).items():
            getattr(m, name).copy_(tensor(case, name, values))
    x = tensor(case, "x_seq", case["inputs"]["x_seq"], requires_grad=True)
    y = m(x)
    close(y, tensor(case, "spike_seq", case["outputs"]["spike_seq"]), "spike_seq", rtol=0, atol=0)
    (y * tensor(case, "spike_seq", case["grad_outputs"]["spike_seq"])).sum().backward()
    close(x.grad, tensor(case, "x_seq", case["grads"]["x_seq"]), "grad x_seq")
    for name in ("weight", "bias"):
        close(
            getattr(m, name).grad,
            tensor(case, name, case["grads"][name]),
            f"grad {name}",
            atol=1e-4,
        )


@golden("psn")
def test_psn(case):
    run_psn_case(case)


@golden("masked_psn")
def test_masked_psn(case):
    run_psn_case(case)


@golden("sliding_psn")
def test_sliding_psn(case):
    run_psn_case(case)
