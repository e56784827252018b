"""The host buffer cache: large CPU float32 tensors that flexsn creates are lent to torch
zero-copy and reused once torch has let go of every reference to them, never before."""

import copy
import io
import pickle
import threading

import pytest
import torch

import flexsn
from flexsn.torch import LIFNode
from flexsn.torch._scan import HOST_CACHE_MIN_BYTES, empty

#: A [T, N] shape of exactly the smallest cached size (8 MiB), and a tensor to take the device of.
SHAPE = (8, HOST_CACHE_MIN_BYTES // 32)
CPU = torch.zeros(1)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts from an empty cache with the default limit, and leaves it so."""
    flexsn.empty_host_cache()
    limit = flexsn.host_cache_info()["limit_bytes"]
    yield
    flexsn.set_host_cache_limit(limit)
    flexsn.empty_host_cache()


def info():
    return flexsn.host_cache_info()


def test_a_freed_tensor_is_reused_by_the_next_request_of_its_size():
    a = empty(SHAPE, CPU)
    assert (a.shape, a.dtype, a.device.type) == (torch.Size(SHAPE), torch.float32, "cpu")
    assert a.is_contiguous() and a.data_ptr() % (2 << 20) == 0
    assert info()["in_use_bytes"] == HOST_CACHE_MIN_BYTES
    ptr = a.data_ptr()
    del a
    assert (info()["cached_bytes"], info()["in_use_bytes"]) == (HOST_CACHE_MIN_BYTES, 0)
    hits = info()["hits"]
    b = empty(SHAPE, CPU)
    assert b.data_ptr() == ptr
    assert info()["hits"] == hits + 1 and info()["cached_bytes"] == 0


def test_a_live_view_keeps_its_buffer_from_reuse():
    a = empty(SHAPE, CPU)
    ptr = a.data_ptr()
    view = a[1:]
    del a
    b = empty(SHAPE, CPU)
    assert b.data_ptr() != ptr
    view.fill_(1.0)
    b.fill_(2.0)
    assert bool((view == 1.0).all())
    del view
    assert info()["cached_bytes"] == HOST_CACHE_MIN_BYTES
    assert empty(SHAPE, CPU).data_ptr() == ptr


def test_saved_tensors_and_grads_keep_their_buffers():
    # An output kept by autograd for backward, and a gradient kept in `.grad`.
    node = LIFNode(step_mode="m")
    x = torch.rand(SHAPE, requires_grad=True)
    y = node(x)
    loss = (y * y).sum()  # saves y for backward
    y_ptr = y.data_ptr()
    del y
    assert empty(SHAPE, CPU).data_ptr() != y_ptr
    loss.backward()
    grad = x.grad.clone()
    assert empty(SHAPE, CPU).fill_(float("nan")).data_ptr() != x.grad.data_ptr()
    assert torch.equal(x.grad, grad)


def lif_run(x, policy):
    """LIF forward and backward of `x` under save policy `policy`: every result tensor (with
    `'states'` the state sequence too)."""
    seqs = policy == "states"
    node = LIFNode(step_mode="m", store_v_seq=seqs, save_policy=policy)
    xr = x.detach().requires_grad_()
    y = node(xr)
    (y * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
    v = node.v_seq if seqs else node.v
    return y.detach().clone(), v.detach().clone(), xr.grad.clone()


# (policy, T, rows kept per state): with `checkpoint:2` at T = 16, 8 rows (8 MiB, cached too).
@pytest.mark.parametrize("policy, t, rows", [("states", 8, 9), ("checkpoint:2", 16, 8)])
def test_scan_results_do_not_depend_on_what_reused_memory_held(policy, t, rows):
    n = SHAPE[1]
    x = torch.rand(t, n) * 3
    flexsn.set_host_cache_limit(0)
    fresh = lif_run(x, policy)
    flexsn.set_host_cache_limit(1 << 30)
    # Fill the cache with NaN-poisoned buffers of every size the scans ask for.
    poisoned = [empty(s, CPU).fill_(float("nan")) for s in [(t, n), (t, n), (rows, n)] * 2]
    del poisoned
    hits = info()["hits"]
    reused = lif_run(x, policy)
    assert info()["hits"] >= hits + 3
    for a, b, what in zip(fresh, reused, ["spikes", "v", "grad"]):
        assert torch.equal(a, b), what


def test_pooled_outputs_pickle_save_and_deepcopy():
    y = LIFNode(step_mode="m")(torch.rand(SHAPE) * 3)
    assert info()["in_use_bytes"] > 0
    assert torch.equal(pickle.loads(pickle.dumps(y)), y)
    f = io.BytesIO()
    torch.save({"y": y, "view": y[2:]}, f)
    f.seek(0)
    loaded = torch.load(f)
    assert torch.equal(loaded["y"], y) and torch.equal(loaded["view"], y[2:])
    c = copy.deepcopy(y)
    assert torch.equal(c, y) and c.data_ptr() != y.data_ptr()


def test_a_tensor_freed_on_another_thread_returns_to_the_cache():
    box = [empty(SHAPE, CPU)]
    ptr = box[0].data_ptr()
    worker = threading.Thread(target=box.clear)
    worker.start()
    worker.join()
    assert (info()["cached_bytes"], info()["in_use_bytes"]) == (HOST_CACHE_MIN_BYTES, 0)
    assert empty(SHAPE, CPU).data_ptr() == ptr


def test_threads_lending_and_freeing_at_once_keep_the_books():
    def work():
        for _ in range(10):
            a = empty(SHAPE, CPU)
            a[0, 0] = 1.0
            del a

    workers = [threading.Thread(target=work) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    i = info()
    assert i["in_use_bytes"] == 0 and i["hits"] + i["misses"] >= 40
    assert i["cached_bytes"] == i["cached_buffers"] * HOST_CACHE_MIN_BYTES <= 4 * (8 << 20)


def test_limit_zero_caches_nothing():
    assert flexsn.set_host_cache_limit(0) > 0
    a = empty(SHAPE, CPU)
    del a
    assert info()["cached_bytes"] == 0 and info()["cached_buffers"] == 0
    assert info()["in_use_bytes"] == 0


def test_the_limit_evicts_the_least_recently_freed():
    flexsn.set_host_cache_limit(2 * HOST_CACHE_MIN_BYTES)
    a, b, c = (empty(SHAPE, CPU) for _ in range(3))
    pb, pc = b.data_ptr(), c.data_ptr()
    del a, b, c  # a is freed first, so it goes
    assert info()["cached_bytes"] == 2 * HOST_CACHE_MIN_BYTES
    c2 = empty(SHAPE, CPU)
    b2 = empty(SHAPE, CPU)
    assert (c2.data_ptr(), b2.data_ptr()) == (pc, pb)  # the most recently freed first
    del c2, b2
    assert flexsn.set_host_cache_limit(0) == 2 * HOST_CACHE_MIN_BYTES
    assert info()["cached_bytes"] == 0


def test_empty_host_cache_frees_only_free_buffers():
    kept = empty(SHAPE, CPU)
    del_me = empty(SHAPE, CPU)
    del del_me
    flexsn.empty_host_cache()
    assert info()["cached_bytes"] == 0 and info()["in_use_bytes"] == HOST_CACHE_MIN_BYTES
    kept.fill_(3.0)
    assert float(kept.sum()) == 3.0 * kept.numel()


def test_small_tensors_come_from_torch():
    before = info()
    small = empty((4, 1024), CPU)
    assert small.shape == (4, 1024) and info() == before


def test_impossible_sizes_raise_typed_errors():
    with pytest.raises(flexsn.FlexSNValueError, match="too many"):
        flexsn._flexsn.host_empty([1 << 62, 8])
    with pytest.raises(flexsn.FlexSNMemoryError, match="could not allocate"):
        flexsn._flexsn.host_empty([1 << 45])  # 128 TiB: more than any address space holds
    assert info()["in_use_bytes"] == 0


def test_the_api_is_exported_from_flexsn_torch():
    import flexsn.torch as ft

    assert ft.host_cache_info is flexsn.host_cache_info
    assert set(flexsn.host_cache_info()) == {
        "cached_bytes", "in_use_bytes", "limit_bytes", "cached_buffers", "hits", "misses",
    }  # fmt: skip
