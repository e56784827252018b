"""Train a spiking MLP on scikit-learn's handwritten digits with flexsn's LIF neurons.

Linear(64, 128) → LIF → Linear(128, 10) → LIF, T = 8 steps of rate-coded (Bernoulli) input,
firing rates against one-hot targets (MSE), Adam. Prints seconds per epoch (and the same network
with SpikingJelly's LIFNode when it is installed), writes a PNG with the loss and accuracy curves
and a spike raster, and ends with `test accuracy: NN.N%`.

    python examples/python/train_digits.py --epochs 15 --png digits.png
"""

import argparse
import json
import os
import time

# torch's OpenMP threads otherwise spin between ops and take the cores from flexsn's kernel
# threads on a small machine; must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from flexsn.torch import LIFNode  # noqa: E402

T = 8


def net(node_cls):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(64, 128), node_cls(tau=2.0, step_mode="m"),
        nn.Linear(128, 10), node_cls(tau=2.0, step_mode="m"),
    )  # fmt: skip


def reset(model):
    for m in model.modules():
        if hasattr(m, "reset") and m is not model:
            m.reset()


def encode(x, gen):
    """Rate coding: each pixel (0..1) fires with its intensity as probability at every step."""
    return (torch.rand((T, *x.shape), generator=gen) < x).float()


def run_epoch(model, opt, x, y, gen, batch, desc):
    model.train()
    perm = torch.randperm(len(x), generator=gen)
    losses = []
    start = time.perf_counter()
    for i in tqdm(range(0, len(x), batch), desc=desc, leave=False):
        idx = perm[i : i + batch]
        rate = model(encode(x[idx], gen)).mean(0)
        loss = nn.functional.mse_loss(rate, nn.functional.one_hot(y[idx], 10).float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        reset(model)
        losses.append(loss.item())
    return losses, time.perf_counter() - start


@torch.no_grad()
def accuracy(model, x, y, gen):
    model.eval()
    rate = model(encode(x, gen)).mean(0)
    reset(model)
    return (rate.argmax(1) == y).float().mean().item()


@torch.no_grad()
def raster(model, x, gen):
    """Hidden-layer spikes [T, neurons] of one sample."""
    spikes = model[1](model[0](encode(x[:1], gen)))
    reset(model)
    return spikes[:, 0]


def train(node_cls, data, epochs, batch, label):
    xtr, xte, ytr, yte = data
    gen = torch.Generator().manual_seed(0)
    model = net(node_cls)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    hist = {"loss": [], "batch_loss": [], "test_acc": [], "epoch_s": []}
    for e in range(epochs):
        losses, secs = run_epoch(model, opt, xtr, ytr, gen, batch, f"{label} epoch {e + 1}")
        acc = accuracy(model, xte, yte, gen)
        hist["batch_loss"] += losses
        hist["loss"].append(sum(losses) / len(losses))
        hist["test_acc"].append(acc)
        hist["epoch_s"].append(secs)
        print(f"{label} epoch {e + 1}: loss {hist['loss'][-1]:.4f}, test accuracy "
              f"{100 * acc:.1f}%, {secs:.2f} s")  # fmt: skip
    return model, hist


def plot(path, hist, spikes):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    ax[0].plot(hist["batch_loss"])
    ax[0].set(title="training loss (per batch)", xlabel="batch", ylabel="MSE")
    ax[1].plot(range(1, len(hist["test_acc"]) + 1), [100 * a for a in hist["test_acc"]], "o-")
    ax[1].set(title="test accuracy", xlabel="epoch", ylabel="%")
    t, n = spikes.nonzero(as_tuple=True)
    ax[2].scatter(t.numpy(), n.numpy(), marker="|", s=12, linewidths=0.8)
    ax[2].set(title="hidden-layer spikes of one sample", xlabel="time step", ylabel="neuron")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--png", default="train_digits.png", help="where to write the curves")
    ap.add_argument("--no-spikingjelly", action="store_true", help="skip the SpikingJelly run")
    ap.add_argument("--history", help="write the flexsn run's history here (JSON)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    data = (xtr, xte, ytr, yte)

    model, hist = train(LIFNode, data, args.epochs, args.batch, "flexsn")
    line = f"seconds per epoch: flexsn {sum(hist['epoch_s']) / len(hist['epoch_s']):.2f}"
    if not args.no_spikingjelly:
        try:
            from spikingjelly.activation_based.neuron import LIFNode as SJLIFNode
        except ImportError:
            SJLIFNode = None
        if SJLIFNode is not None:
            _, sj = train(SJLIFNode, data, 1, args.batch, "spikingjelly")
            line += f", spikingjelly {sj['epoch_s'][0]:.2f} (1 epoch, same network)"
    print(line)
    plot(args.png, hist, raster(model, xte, torch.Generator().manual_seed(1)))
    print(f"wrote {args.png}")
    if args.history:
        with open(args.history, "w") as f:
            json.dump(hist, f)
    print(f"test accuracy: {100 * hist['test_acc'][-1]:.1f}%")


if __name__ == "__main__":
    main()
