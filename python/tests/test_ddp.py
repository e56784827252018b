"""DistributedDataParallel: 2 gloo CPU processes give the single-process gradients."""

import pathlib
import socket
import subprocess
import sys

import torch

from .conftest import close


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_gradients_equal_single_process(tmp_path):
    worker = pathlib.Path(__file__).with_name("ddp_worker.py")
    out = str(tmp_path / "grads")
    r = subprocess.run([sys.executable, str(worker), out, str(free_port())],
                       capture_output=True, text=True, timeout=240)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    ddp, single = torch.load(out + ".ddp"), torch.load(out + ".single")
    assert set(ddp) == set(single) and "3.w" in ddp
    for k in single:
        close(ddp[k], single[k], f"gradient of {k}", atol=1e-5)
