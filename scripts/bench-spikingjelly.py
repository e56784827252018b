"""LIF forward and forward+backward: SpikingJelly's ``LIFNode`` (torch, CPU) against the native
``flexsn bench`` kernels, in one session, per T and thread count, with the ratio
(SpikingJelly's time / flexsn's; > 1: flexsn faster).

Usage (SpikingJelly and torch installed, e.g. ``target/py/venv`` of ``scripts/python-env.sh``):

    python scripts/bench-spikingjelly.py --flexsn target/release/flexsn [--t 4 --t 64]
        [--threads 1 --threads 2] [--n 1048576] [--min-s 0.5]

Both sides run one configuration after the other (SpikingJelly, then flexsn), so each pair
shares the machine's load of that moment. SpikingJelly's side is the median of repeated calls
after a warm-up: ``node.reset(); node(x)`` under ``no_grad`` for forward, and the same with
``(node(x) * g).sum().backward()`` for forward+backward (``g`` a fixed upstream gradient).
flexsn's side is ``flexsn bench --neuron lif --json`` (the kernels' median; bench's rows also
give the same-run memory copy).
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import timeit

# torch's OpenMP threads otherwise spin after each op and take the cores from the other side.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402


def median_seconds(fn, min_s):
    """Median of repeated runs of ``fn`` (after one warm-up), at least 3, about ``min_s`` s."""
    fn()
    timer = timeit.Timer(fn)
    runs = max(3, math.ceil(min_s / max(timer.timeit(1), 1e-9)))
    return statistics.median(timer.repeat(repeat=runs, number=1))


def spikingjelly_ms(t, n, threads, min_s):
    """SpikingJelly ``LIFNode`` (defaults, multi-step): (forward ms, forward+backward ms)."""
    from spikingjelly.activation_based import neuron

    torch.set_num_threads(threads)
    node = neuron.LIFNode(step_mode="m")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(t, n, generator=gen) + 1.0
    g = torch.randn(t, n, generator=gen)

    def fwd():
        node.reset()
        with torch.no_grad():
            node(x)

    def fwd_bwd():
        node.reset()
        xr = x.detach().requires_grad_()
        (node(xr) * g).sum().backward()

    return 1e3 * median_seconds(fwd, min_s), 1e3 * median_seconds(fwd_bwd, min_s)


def flexsn_ms(exe, t, n, threads, min_s):
    """``flexsn bench`` rows for LIF: {phase: (median ms, ratio to the same-run copy)}."""
    cmd = [
        exe, "bench", "--neuron", "lif", "--t", str(t), "--n", str(n),
        "--threads", str(threads), "--min-ms", str(int(min_s * 1e3)), "--json",
    ]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {r["phase"]: (r["median_ms"], r["ratio"]) for r in rows}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flexsn", required=True, help="the flexsn binary (a release build)")
    ap.add_argument("--t", type=int, action="append", help="time steps (repeatable; 4, 64)")
    ap.add_argument("--threads", type=int, action="append", help="threads (repeatable; 1, 2)")
    ap.add_argument("--n", type=int, default=1 << 20, help="neurons (default 2^20)")
    ap.add_argument("--min-s", type=float, default=0.5, help="measuring time per figure")
    a = ap.parse_args(argv)
    print(
        "T  threads  SJ fwd ms  SJ fwd+bwd ms  flexsn fwd ms  flexsn fwd+bwd ms  "
        "fwd ratio  fwd+bwd ratio  flexsn fwd+bwd / copy"
    )
    for t in a.t or [4, 64]:
        for th in a.threads or [1, 2]:
            sj_f, sj_fb = spikingjelly_ms(t, a.n, th, a.min_s)
            fx = flexsn_ms(a.flexsn, t, a.n, th, a.min_s)
            (fx_f, _), (fx_fb, copy) = fx["forward"], fx["forward_backward"]
            print(
                f"{t:<3}{th:>7}  {sj_f:>9.1f}  {sj_fb:>13.1f}  {fx_f:>13.1f}  {fx_fb:>17.1f}  "
                f"{sj_f / fx_f:>8.1f}x  {sj_fb / fx_fb:>12.1f}x  {copy:>21.2f}"
            )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
