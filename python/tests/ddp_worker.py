"""Run by test_ddp.py: a Linear → LIFNode → Linear → PLIF network under DistributedDataParallel
on 2 gloo CPU processes, each on half of a batch. Writes the all-reduced gradients of rank 0
and the single-process gradients on the whole batch to the file given as argv[1]."""

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from flexsn.torch import LIFNode, ParametricLIFNode

WORLD = 2


def make_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 8),
        LIFNode(step_mode="m", tau=2.0),
        torch.nn.Linear(8, 4),
        ParametricLIFNode(step_mode="m", v_reset=None),
    )


def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 4 * WORLD, 6, generator=g) * 2.0 + 0.5  # [T, batch, features]
    w = torch.randn(5, 4 * WORLD, 4, generator=g)
    return x, w


def loss_of(net, x, w):
    return (net(x) * w).sum()


def worker(rank, port, out):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    net = torch.nn.parallel.DistributedDataParallel(make_net())
    x, w = data()
    half = slice(rank * 4, rank * 4 + 4)
    loss_of(net, x[:, half], w[:, half]).backward()
    if rank == 0:
        torch.save({k: p.grad for k, p in net.module.named_parameters()}, out + ".ddp")
    dist.barrier()
    # Every result is written. torch's gloo teardown now and then aborts in a destructor
    # ("terminate called without an active exception") after all work is done, so the workers
    # leave without it rather than let a teardown race fail the run.
    os._exit(0)


def main():
    out, port = sys.argv[1], int(sys.argv[2])
    mp.spawn(worker, args=(port, out), nprocs=WORLD, join=True)
    net = make_net()
    x, w = data()
    (loss_of(net, x, w) / WORLD).backward()  # DDP averages the ranks' gradients
    torch.save({k: p.grad for k, p in net.named_parameters()}, out + ".single")


if __name__ == "__main__":
    main()
