"""examples/python/train_digits.py runs for one epoch and its loss falls."""

import json
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "python" / "train_digits.py"


def test_one_epoch_loss_falls(tmp_path):
    hist, png = tmp_path / "hist.json", tmp_path / "digits.png"
    r = subprocess.run(
        [sys.executable, str(EXAMPLE), "--epochs", "1", "--no-spikingjelly",
         "--history", str(hist), "--png", str(png)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1].startswith("test accuracy: ")
    losses = json.loads(hist.read_text())["batch_loss"]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.95 * first, (first, last)  # seeded: the same run every time
    assert png.stat().st_size > 10_000
