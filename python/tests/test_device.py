"""Devices and dtypes: the raw-launch path that runs CUDA tensors (tested here through the
generated CUDA kernels emulated as host C++, and on a GPU when one is present), float16/bfloat16
inputs, and clear errors without a CUDA driver."""

import pytest
import torch

import flexsn
import flexsn.surrogate as fsg
from flexsn import _flexsn
from flexsn.torch import FlexSN, IzhikevichNode, KLIFNode, LIFNode, ParametricLIFNode
from flexsn.torch._scan import Compiled

from .conftest import close

EMULATED = "cuda-emulated:f32"
GPU = torch.cuda.is_available()


def two_state_core(x, c, v):
    """Two states, two outputs and a per-neuron learnable param (captured below)."""
    c = c * 0.5 + x
    h = v * torch.sigmoid(TAU) + c
    s = fsg.Sigmoid(alpha=3.0, spiking=False)(h - 1.0)
    return s, h * 0.25, c, h - s


TAU = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 3))


def modules():
    """Fresh module pairs to compare; each gets a second copy that runs on the interpreter."""
    return {
        "lif": lambda: LIFNode(step_mode="m", store_v_seq=True),
        "plif": lambda: ParametricLIFNode(init_tau=3.0, step_mode="m", store_v_seq=True),
        "two_state": lambda: FlexSN(two_state_core, 1, 2, 2, store_state_seqs=True),
        "izhikevich": lambda: IzhikevichNode(step_mode="m"),  # states v and w
        "klif": lambda: KLIFNode(step_mode="m"),  # learnable k
    }


def on_raw_launches(m, key):
    """``m`` with its CPU core replaced by the core compiled for ``key`` (a raw-launch core),
    so that every CPU call goes the way CUDA tensors go."""
    m._core._by_backend["cpu"] = Compiled(m._core._compile(key), key)
    return m


def emulated_or_skip(m):
    try:
        return on_raw_launches(m, EMULATED)
    except flexsn.FlexSNError as e:  # no C++ compiler for the emulated kernels
        pytest.skip(f"emulated CUDA unavailable: {e}")


def grads_of(m, x, weights):
    """Outputs, stored sequences, states and the gradients of a loss over all of them."""
    x = x.detach().requires_grad_()
    y = m(x)
    ys = y if isinstance(y, (list, tuple)) else [y]
    seqs = (m.state_seqs or []) if isinstance(m, FlexSN) else [getattr(m, "v_seq", None)]
    seqs = [s for s in seqs if s is not None]
    states = m.states if isinstance(m, FlexSN) else [getattr(m, k) for k, _ in m._states]
    loss = sum((o * w).sum() for o, w in zip(ys, weights))
    loss = loss + sum((s**2).sum() * 0.1 for s in seqs) + sum(s.sum() * 0.3 for s in states)
    params = [p for p in m.parameters()] + ([TAU] if isinstance(m, FlexSN) else [])
    g = torch.autograd.grad(loss, [x, *params])
    return [*ys, *seqs, *states], g


@pytest.mark.parametrize("name", list(modules()))
def test_raw_launch_path_matches_the_interpreter(name):
    """Forward (both step modes), stored sequences, final states, and input and param
    gradients through the raw-launch path equal the interpreter's."""
    make = modules()[name]
    x = torch.randn(6, 2, 3) * 1.5 + 0.5
    weights = [torch.randn(6, 2, 3) for _ in range(2)]
    raw, ref = emulated_or_skip(make()), make()
    ref.backend = "interp"
    for m in (raw, ref):
        m.load_state_dict(raw.state_dict())
    (got, g_got), (want, g_want) = grads_of(raw, x, weights), grads_of(ref, x, weights)
    for k, (a, b) in enumerate(zip(got, want)):
        close(a, b, f"{name} result {k}")
    for k, (a, b) in enumerate(zip(g_got, g_want)):
        close(a, b, f"{name} gradient {k}", rtol=1e-4, atol=1e-4)
    # A second call continues from the states; without grad it runs the inference scan.
    first = lambda y: y[0] if isinstance(y, list) else y
    with torch.no_grad():
        close(first(raw(x)), first(ref(x)), f"{name} second call")
    if not isinstance(raw, FlexSN):
        raw.reset(), ref.reset()
        raw.step_mode = ref.step_mode = "s"
        close(raw(x[0]), ref(x[0]), f"{name} single step")


def test_raw_launch_upstream_subsets():
    """Only some upstream gradients present (just the final state; just one output)."""
    raw = emulated_or_skip(FlexSN(two_state_core, 1, 2, 2))
    ref = FlexSN(two_state_core, 1, 2, 2, backend="interp")
    x = torch.randn(4, 2, 3) + 0.5
    for pick in (lambda ys, m: m.states[1].sum(), lambda ys, m: (ys[1] * 2.0).sum()):
        gs = []
        for m in (raw, ref):
            m.reset()
            xr = x.clone().requires_grad_()
            gs.append(torch.autograd.grad(pick(m(xr), m), [xr, TAU], allow_unused=True))
        for a, b in zip(*gs):
            close(a, b, "subset gradient", atol=1e-4)


@pytest.mark.parametrize("n", [1, 31, 33, 70])
def test_raw_launch_pads_its_state_rows_for_any_n(n):
    """The state buffers kept between forward and backward have padded rows (N rounded up to
    128 bytes); results and gradients still equal the interpreter's for N that is and is not a
    multiple of the padding."""
    raw = emulated_or_skip(FlexSN(two_state_core, 1, 2, 2, store_state_seqs=True))
    ref = FlexSN(two_state_core, 1, 2, 2, store_state_seqs=True, backend="interp")
    core = raw._core._by_backend["cpu"].core
    assert core.row_pitch(n, "f32") == -(-n // 32) * 32
    assert core.row_pitch(n, "f16") == -(-n // 64) * 64
    assert ref._core._compile("interp").row_pitch(n, "f32") == n
    x = torch.randn(5, n, 3) * 1.5 + 0.5
    weights = [torch.randn(5, n, 3) for _ in range(2)]
    (got, g_got), (want, g_want) = grads_of(raw, x, weights), grads_of(ref, x, weights)
    for k, (a, b) in enumerate(zip(got, want)):
        close(a, b, f"N={n} result {k}")
    for k, (a, b) in enumerate(zip(g_got, g_want)):
        close(a, b, f"N={n} gradient {k}", rtol=1e-4, atol=1e-4)


def test_bad_row_pitches_are_clear_errors():
    core = _flexsn.Core.builtin("lif", [], "cpu")
    t, n = 2, 3
    spec = core.scan_arguments("train", t, n)
    bufs = [torch.zeros(max(length, 1) * 4) for _, _, length in spec]
    raw = [(b.data_ptr(), length, d) for b, (_, d, length) in zip(bufs, spec)]
    seq = next(k for k, (name, _, _) in enumerate(spec) if name == "v sequence")

    def launch(pitches):
        core.launch("train", t, n, 0, raw, pitches=pitches)

    launch(None)
    with pytest.raises(ValueError, match="one per buffer"):
        launch([None])
    with pytest.raises(ValueError, match="less than N"):
        launch([n - 1 if k == seq else None for k in range(len(raw))])
    with pytest.raises(ValueError, match="not \\[T, N\\]"):
        launch([n if k == 1 else None for k in range(len(raw))])
    with pytest.raises(ValueError, match="expected 8 float32"):
        launch([4 if k == seq else None for k in range(len(raw))])


def test_float16_and_bfloat16_inputs_on_the_cpu():
    """CPU: computed in float32, returned in the input dtype, gradients in it too."""
    for dtype in (torch.float16, torch.bfloat16):
        x = (torch.randn(5, 4) * 1.5 + 0.5).to(dtype)
        m, ref = LIFNode(step_mode="m"), LIFNode(step_mode="m")
        xr = x.clone().requires_grad_()
        y = m(xr)
        assert y.dtype == dtype and m.v.dtype == dtype
        close(y.float(), ref(x.float()), f"{dtype} spikes", rtol=0, atol=0)
        close(m.v.float(), ref.v.to(dtype).float(), f"{dtype} v")
        y.sum().backward()
        assert xr.grad is not None and xr.grad.dtype == dtype
        # Single step, and a FlexSN core.
        s = LIFNode()(x[0])
        assert s.dtype == dtype
        f = FlexSN(two_state_core, 1, 2, 2)(x.reshape(5, 2, 2)[:, :, :1].expand(5, 2, 3))
        assert all(o.dtype == dtype for o in f)
    with pytest.raises(TypeError, match="first input is torch.float16"):
        FlexSN(lambda a, b, v: (a + b + v, v), 2, 1, 1)(
            torch.zeros(2, 3, dtype=torch.float16), torch.zeros(2, 3)
        )


def test_backend_keys_and_missing_driver_are_clear_errors():
    with pytest.raises(ValueError, match="unknown backend"):
        _flexsn.Core.builtin("lif", [], "cuda:zero:f32")
    with pytest.raises(ValueError, match="unknown backend"):
        _flexsn.Core.builtin("lif", [], "cuda-emulated:f64")
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        FlexSN(lambda x, v: (x + v, v), 1, 1, 1, backend="cuda")(torch.zeros(2, 3))
    core = _flexsn.Core.builtin("lif", [], "cpu")
    with pytest.raises(ValueError, match="unknown scan"):
        core.scan_arguments("sideways", 2, 3)
    with pytest.raises(ValueError, match="host backends take f32"):
        x = torch.zeros(6)
        core.launch("infer", 2, 3, 0, [(x.data_ptr(), 6, "f16")] + [(0, 0, "f32")] * 3)
    if not GPU:
        # No driver (or no device): compiling for CUDA says so, as a FlexSNError.
        with pytest.raises(flexsn.FlexSNError, match="(?i)cuda"):
            _flexsn.Core.builtin("lif", [], "cuda:0:f32")


@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_tensors_match_the_interpreter(dtype):
    """On a GPU: every module on CUDA tensors (device memory, torch's current stream) against
    the interpreter on the same values on the CPU."""
    tol = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 1e-1}[dtype]
    stream = torch.cuda.Stream()
    for name, make in modules().items():
        x = (torch.randn(6, 2, 3) * 1.5 + 0.5).to(dtype).float()
        weights = [torch.randn(6, 2, 3) for _ in range(2)]
        gpu, ref = make().cuda(), make()
        ref.backend = "interp"
        ref.load_state_dict({k: v.cpu() for k, v in gpu.state_dict().items()})
        TAU.data = TAU.data.cuda()
        with torch.cuda.stream(stream):
            got, g_got = grads_of(gpu, x.to(dtype).cuda(), [w.cuda().to(dtype) for w in weights])
        stream.synchronize()
        TAU.data = TAU.data.cpu()
        want, g_want = grads_of(ref, x, weights)
        for k, (a, b) in enumerate(zip(got, want)):
            assert a.device.type == "cuda" and a.dtype == dtype
            close(a.float().cpu(), b, f"{name} {dtype} result {k}", rtol=tol, atol=tol)
        for k, (a, b) in enumerate(zip(g_got, g_want)):
            a = a.float().cpu()
            if dtype == torch.float32:
                close(a, b, f"{name} gradient {k}", rtol=tol, atol=tol)
            else:
                # 16-bit state sequences move a surrogate's input by a rounding step: compare
                # the whole gradient, not every element.
                err = ((a - b).norm() / b.norm().clamp_min(1e-6)).item()
                assert err < tol, f"{name} {dtype} gradient {k}: relative error {err}"
