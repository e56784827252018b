"""``FlexSN``: SpikingJelly's FlexSN with a core traced and compiled by flexsn."""

import torch
from torch import nn

from .. import _flexsn
from ..errors import FlexSNValueError
from . import _common as C
from ._scan import normalize_backend, run
from ._trace import trace


class FlexSN(C.HoldsCore, nn.Module):
    """A multi-step neuron from a single-step ``core`` (SpikingJelly's constructor).

    ``core(*inputs, *states) -> (*outputs, *updated_states)`` is traced once, here, into a step
    graph and compiled into fused forward and backward scan kernels. ``backend`` is ``'auto'``
    (the inputs' device), ``'cpu'``, ``'cuda'`` or ``'interp'`` (flexsn's interpreter, the
    reference); SpikingJelly's names (``'triton'``, ``'inductor'``, ``'torch'``, ``'hop'``) mean
    ``'auto'``. Tensors captured by the core that require grad are learnable params and receive
    ``.grad``. ``example_inputs`` and ``requires_grad`` are accepted for compatibility (tracing
    needs no example; gradients follow the tensors' ``requires_grad``). ``save_policy`` (also
    on every built-in neuron) is what training keeps for backward: ``'states'``,
    ``'checkpoint'`` or ``'checkpoint:K'`` (see :class:`._common.HoldsCore`).
    """

    def __init__(
        self,
        core,
        num_inputs,
        num_states,
        num_outputs,
        example_inputs=None,
        requires_grad=None,
        step_mode="m",
        backend="auto",
        store_state_seqs=False,
        example_outputs=None,
        save_policy="states",
    ):
        super().__init__()
        self.core = core
        self.num_inputs, self.num_states, self.num_outputs = num_inputs, num_states, num_outputs
        self.step_mode = C.check_step_mode(step_mode)
        if step_mode == "m" and num_inputs < 1:
            raise FlexSNValueError(
                "step_mode 'm' needs num_inputs >= 1 (T is read from the first input)"
            )
        if requires_grad is not None and len(requires_grad) != num_inputs + num_states:
            raise FlexSNValueError(
                f"`requires_grad` has {len(requires_grad)} entries for "
                f"{num_inputs + num_states} core arguments"
            )
        self.backend = normalize_backend(backend)
        self.save_policy = save_policy
        self.example_outputs = example_outputs
        t = trace(core, num_inputs, num_states, num_outputs)
        self._trace_spec = (t.name, t.inputs, t.states, t.params, t.nodes, t.outputs, t.next_states)
        self._captured = t.captured
        self._store_state_seqs = bool(store_state_seqs)
        self.states = None
        self.state_seqs = None
        self._build()

    def _make_core(self):
        spec = self._trace_spec
        return C.CompiledCore(lambda backend: _flexsn.Core.from_trace(*spec, backend))

    @property
    def store_state_seqs(self):
        return self._store_state_seqs

    @store_state_seqs.setter
    def store_state_seqs(self, value):
        self._store_state_seqs = bool(value)
        self.state_seqs = None

    def reset(self):
        """Forgets the states (the next call starts from zeros) and the stored sequences."""
        self.states = None
        self.state_seqs = None

    @staticmethod
    def init_states(num_states, step_mode, *args):
        """Zeros shaped like the first input's per-step slice (SpikingJelly's rule)."""
        x = args[0]
        if step_mode == "s":
            return [torch.zeros_like(x) for _ in range(num_states)]
        if x.shape[0] > 0:
            return [torch.zeros_like(x[0]) for _ in range(num_states)]
        return [x.new_zeros(x.shape[1:]) for _ in range(num_states)]

    def extra_repr(self):
        return (
            f"num_inputs={self.num_inputs}, num_states={self.num_states}, "
            f"num_outputs={self.num_outputs}, step_mode={self.step_mode}, "
            f"backend={self.backend}, store_state_seqs={self._store_state_seqs}"
        )

    def forward(self, *args):
        if len(args) != self.num_inputs:
            raise FlexSNValueError(f"expected {self.num_inputs} inputs, got {len(args)}")
        if self.step_mode == "s":
            outs, states, _ = self._run([a.unsqueeze(0) for a in args], single=True)
            self.states = states
            outs = [o[0] for o in outs]
            return outs[0] if len(outs) == 1 else tuple(outs)
        outs, states, seqs = self._run(list(args), single=False)
        self.states = states
        if self._store_state_seqs:
            self.state_seqs = seqs
        return outs[0] if len(outs) == 1 else list(outs)

    def _run(self, inputs, single):
        names = self._trace_spec[1]
        x0 = inputs[0]
        for i, x in enumerate(inputs):
            if not isinstance(x, torch.Tensor) or x.dim() < 1:
                raise FlexSNValueError(f"input `{names[i]}` must be a tensor [T, *shape]")
            if x.shape != x0.shape:
                raise FlexSNValueError(
                    f"input `{names[i]}` has shape {list(x.shape)}, but input `{names[0]}` has "
                    f"{list(x0.shape)}"
                )
        t, step_shape = x0.shape[0], x0.shape[1:]
        n = C.numel(step_shape)
        states = self.states
        if states is None:
            states = self.init_states(self.num_states, "m", x0)
        states = list(states)
        state_names = [s[0] for s in self._trace_spec[2]]
        for name, s in zip(state_names, states):
            if not isinstance(s, torch.Tensor) or s.shape != step_shape:
                got = list(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                raise FlexSNValueError(
                    f"state `{name}` has shape {got}, the inputs' per-step shape is {list(step_shape)}"
                )
        params = self._captured
        pnames = [p[0] for p in self._trace_spec[3]]
        backend = C.device_backend(
            self.backend,
            (names[0], x0),
            [*zip(state_names, states), *zip(pnames, params)],
            same_dtype=zip(names[1:], inputs[1:]),
        )
        core = self._core.get(backend)
        if t == 0 or n == 0:
            return self._empty(t, step_shape, x0, states)
        kinds = [p[1] for p in self._trace_spec[3]]
        flat_p = [C.param_flat(nm, p, k, step_shape, n) for nm, p, k in zip(pnames, params, kinds)]
        outs, seqs, finals = run(
            core, t, n, [C.as_flat(x, t * n) for x in inputs], [C.as_flat(s, n) for s in states],
            flat_p, self._store_state_seqs and not single, self._checkpoint,
        )  # fmt: skip
        outs = [o.reshape(t, *step_shape) for o in outs]
        finals = [f.reshape(step_shape) for f in finals]
        seqs = None if seqs is None else [s.reshape(t, *step_shape) for s in seqs]
        return outs, finals, seqs

    def _empty(self, t, step_shape, x0, states):
        if self.example_outputs is not None:
            templates = list(self.example_outputs)
            outs = [x0.new_empty((t, *e.shape)) for e in templates]
        else:
            outs = [x0.new_empty((t, *step_shape)) for _ in range(self.num_outputs)]
        seqs = [s.new_empty((t, *s.shape)) for s in states]
        return outs, [s.clone() for s in states], seqs
