"""``python -m flexsn.bench``: LIF forward and forward+backward, flexsn against SpikingJelly's
``LIFNode`` (torch backend on the CPU; its CuPy/Triton backends too when a GPU is present), at
T = 4, 16, 64 and N = 2^20 float32, with their ratio in the same run (on the CPU, and on the GPU
when one is present); then flexsn's Python-side overhead per call at N = 1024."""

import argparse
import os
import time

# torch's OpenMP threads otherwise spin after each op and take the cores from flexsn's kernel
# threads (and from each other) on a small machine; must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Both sides run the same torch ops around the neuron (`y * g`, its backward), whose [T, N]
# results torch takes from fresh mmap pages: faulting them in 4 KiB at a time costs more than
# the neurons at T = 64. PyTorch's own switch backs them with huge pages, for both sides alike
# (flexsn's own large buffers come from its host buffer cache, on huge pages, in any case). Set
# it to 0 to compare without.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch  # noqa: E402

from flexsn.torch import LIFNode


def best_seconds(fn, min_s, min_runs=3):
    """The fastest of repeated runs of ``fn`` (after one warm-up), for at least ``min_s``."""
    fn()
    times, start = [], time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_s:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def workload(node, x, g, backward):
    def run():
        node.reset()
        if backward:
            xr = x.detach().requires_grad_()
            (node(xr) * g).sum().backward()
        else:
            with torch.no_grad():
                node(x)
        if x.is_cuda:
            torch.cuda.synchronize(x.device)  # kernels are queued: time them, not the launch

    return run


def spikingjelly_nodes(device):
    """SpikingJelly LIF nodes to compare with, by backend name (none when not installed)."""
    try:
        from spikingjelly.activation_based import neuron
    except ImportError:
        return {}
    # SpikingJelly 2.0.0's LIFNode picks its CPU path itself (no `backend` argument).
    nodes = {"torch": neuron.LIFNode(step_mode="m").to(device)}
    for b in ["cupy", "triton"] if device == "cuda" else []:
        try:
            nodes[b] = neuron.LIFNode(step_mode="m", backend=b).to(device)
        except Exception as e:  # a backend whose library is missing: say so, keep going
            print(f"# SpikingJelly backend {b}: unavailable ({type(e).__name__}: {e})")
    return nodes


def table(device, args):
    """LIF forward and forward+backward rows on ``device``, flexsn beside SpikingJelly."""
    ours = LIFNode(step_mode="m")
    theirs = spikingjelly_nodes(device)
    print(
        f"# {device}: LIF (tau=2, Sigmoid surrogate), N = {args.n}, float32, "
        f"{args.threads} torch threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
        f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE')};"
    )
    print("# best of repeated runs; ratio = SpikingJelly time / flexsn time (> 1: flexsn faster)")
    print(
        f"{'pass':<10} {'T':>4} {'flexsn ms':>10} "
        + " ".join(f"{'sj-' + b + ' ms':>14} {'ratio':>7}" for b in theirs)
    )
    for backward in (False, True):
        for t in args.t:
            x = torch.randn(t, args.n, device=device) * 1.5 + 0.5
            g = torch.randn(t, args.n, device=device)
            ms = best_seconds(workload(ours, x, g, backward), args.min_s) * 1e3
            row = f"{'fwd+bwd' if backward else 'forward':<10} {t:>4} {ms:>10.2f} "
            for node in theirs.values():
                sj_ms = best_seconds(workload(node, x, g, backward), args.min_s) * 1e3
                row += f"{sj_ms:>14.2f} {sj_ms / ms:>7.2f}"
            print(row, flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1 << 20, help="neurons (default 2^20)")
    ap.add_argument("--t", type=int, nargs="*", default=[4, 16, 64], help="time steps")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--min-s", type=float, default=1.0, help="measure each row this long")
    ap.add_argument(
        "--devices", nargs="*", default=["cpu", "cuda"], help="cuda rows run when a GPU is present"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = [d for d in args.devices if d == "cpu" or torch.cuda.is_available()]
    for device in devices:
        table(device, args)
    # Python-side overhead: a call at N = 1024, T = 1, where the kernel itself is negligible.
    ours = LIFNode(step_mode="m")
    x = torch.randn(1, 1024) + 0.5
    g = torch.randn(1, 1024)
    for backward in (False, True):
        us = best_seconds(workload(ours, x, g, backward), args.min_s, 50) * 1e6
        print(
            f"# flexsn per-call time at T = 1, N = 1024 ({'fwd+bwd' if backward else 'forward'}): {us:.1f} us"
        )


if __name__ == "__main__":
    main()
