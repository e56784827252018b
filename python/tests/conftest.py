"""Shared fixtures: the golden data of tests/golden (SpikingJelly 2.0.0 reference results)."""

import json
import pathlib

import pytest
import torch

GOLDEN = pathlib.Path(__file__).resolve().parents[2] / "tests" / "golden"


def golden(family):
    """The cases of one golden file, with ids for pytest."""
    cases = json.loads((GOLDEN / f"{family}.json").read_text())
    return pytest.mark.parametrize("case", cases, ids=[c["name"] for c in cases])


def tensor(case, key, values, requires_grad=False):
    """A golden tensor with its recorded shape."""
    shape = case["tensor_shapes"][key]
    t = torch.tensor(values, dtype=torch.float32).reshape(shape)
    return t.requires_grad_(requires_grad)


def close(actual, expected, what, rtol=1e-4, atol=1e-5):
    torch.testing.assert_close(
        actual.detach(), expected, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}"
    )


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
