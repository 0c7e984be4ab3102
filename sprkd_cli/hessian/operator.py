"""The Hessian of the probe loss as a linear operator on flat parameter vectors.

`H = sum_b (n_b / N) d^2 L_b / d theta^2` over the probe batches, with `theta` the
selected parameters (all trainable ones, or those under `param_filter`). Use it as a
context manager: entering puts the model in the probe mode, turns autocast off (a mixed-precision
run's Hessian is measured in full precision) and builds the HVP machinery; leaving releases it and
restores every submodule's `training` flag and every buffer, also when the block raises. Parameter
values and `.grad` attributes are never touched.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import math
import statistics
import time
from collections.abc import Sequence
from types import TracebackType

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..models.modes import train_mode
from .hvp import (
    DoubleBackwardHVP,
    ForwardOverReverseHVP,
    HVPUnavailableError,
    LossFn,
    RecomputedHVP,
    full_precision,
    micro_batches,
)
from .layout import FlatLayout
from .probe import ProbeSet

MODES = ("eval", "train")
HVP_KINDS = ("auto", "func", "double")
DTYPES = (torch.float32, torch.float64)
AUTO_TIMING_ROUNDS = 4  # hvp="auto" times each kind on 2 vectors this many times
# hvp="auto"'s choice per kind of problem in this process (the model's module classes, parameter shapes, probe
# sizes, device, dtype, mode): func's setup traces the model once per probe batch, seconds of work that a process
# measuring many runs of one model (compare --hessian) would otherwise repeat for every report.
_auto_choices: dict[tuple, tuple[str, str | None]] = {}
# The default micro-batch: the largest power of two of examples with examples x model parameters at most
# this (a bert-base of 110M parameters: 16 examples; a model under 4M parameters: the whole default probe set).
MICRO_BATCH_BUDGET = 2**31
_micro_batch_default: contextvars.ContextVar[int | None] = contextvars.ContextVar("probe_micro_batch", default=None)


def default_micro_batch(n_params: int) -> int:
    """Examples per micro-batch for a model of `n_params` parameters (see MICRO_BATCH_BUDGET)."""
    return 2 ** max(0, int(math.floor(math.log2(max(1, MICRO_BATCH_BUDGET // max(1, n_params))))))


@contextlib.contextmanager
def micro_batch_default(size: int | None):
    """Within the block, operators built without `micro_batch` use `size` (None or 0: the default from
    the model's size): for callers that build their operators out of reach, e.g. saddle checks."""
    token = _micro_batch_default.set(size)
    try:
        yield
    finally:
        _micro_batch_default.reset(token)


class HessianOperator:
    """Matrix-free Hessian `H` of `loss_fn(model(x), y)` on a fixed probe set.

    Its arguments:

    - `model`: the network; it is left exactly as found (mode, buffers, grads, values).
    - `loss_fn`: `loss_fn(logits, y)` returning the mean loss over the batch.
    - `probe`: the fixed probe batches.
    - `mode`: `"eval"` or `"train"`, the module mode during the probe.
    - `hvp`: `"double"` (double backward), `"func"` (forward over reverse with
      `torch.func`) or `"auto"` (time both, keep the faster that works).
    - `dtype`: `torch.float32` or `torch.float64`; a model of another dtype is
      probed through a converted deep copy.
    - `param_filter`: restrict `theta` to parameters under this module name
      (`"fc1"` selects `fc1.weight` and `fc1.bias`, not `fc10.weight`)
      or to one parameter by its full name.
    - `max_block`: most columns one batched HVP handles in `matmat`.
    - `micro_batch`: most probe examples whose graph is held at once. When the whole probe set
      fits, the gradient graphs are built once and kept (fastest); otherwise every product
      recomputes them one micro-batch at a time (memory bounded by one micro-batch; each
      product then costs a forward and backward pass more). `None` or 0: the value set by
      `micro_batch_default`, else `default_micro_batch` of the model's size in
      `eval` mode and the whole probe set in `train` mode (whose batch statistics and
      dropout masks are a batch's; split into micro-batches they are each micro-batch's).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        probe: ProbeSet,
        mode: str = "eval",
        hvp: str = "auto",
        dtype: torch.dtype = torch.float32,
        param_filter: str | None = None,
        max_block: int = 32,
        micro_batch: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if hvp not in HVP_KINDS:
            raise ValueError(f"hvp must be one of {HVP_KINDS}, got {hvp!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.model = model
        self.loss_fn = loss_fn
        self.probe = probe
        self.mode = mode
        self.requested_hvp = hvp
        self.dtype = dtype
        self.param_filter = param_filter
        self.max_block = max_block
        if micro_batch is not None and micro_batch < 0:
            raise ValueError(f"micro_batch must be >= 0, got {micro_batch}")
        self.requested_micro_batch = micro_batch or _micro_batch_default.get() or None
        self.micro_batch: int | None = None  # examples per micro-batch when graphs are recomputed; None: kept
        selected = _select_parameters(model, param_filter)
        self.layout = FlatLayout([n for n, _ in selected], [p.shape for _, p in selected])
        self.device = selected[0][1].device
        self.kind: str | None = None
        self.func_error: str | None = None
        self.n_hvp = 0
        self.hvp_seconds = 0.0
        self.setup_seconds = 0.0
        self._backend: DoubleBackwardHVP | ForwardOverReverseHVP | RecomputedHVP | None = None
        self._saved_buffers: list[tuple[torch.Tensor, torch.Tensor]] = []

    # -- layout -----------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Number of selected parameter entries (the side of H)."""
        return self.layout.dim

    @property
    def names(self) -> list[str]:
        """Qualified names of the selected parameters, in flat-vector order."""
        return self.layout.names

    def unflatten(self, v: torch.Tensor) -> list[torch.Tensor]:
        """Flat `(dim,)` vector to tensors shaped like the selected parameters."""
        return self.layout.unflatten(v)

    def flatten(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-parameter tensors (in `names` order) to one flat vector."""
        return self.layout.flatten(tensors)

    # -- context ----------------------------------------------------------------------

    def __enter__(self) -> HessianOperator:
        if self._backend is not None:
            raise RuntimeError("this HessianOperator is already active")
        start = time.perf_counter()
        self._saved_buffers = [(b, b.detach().clone()) for b in self.model.buffers()]
        self._context = contextlib.ExitStack()  # the probe mode, autocast and the attention kernels, undone on leaving
        try:
            self._context.enter_context(full_precision(self.device))
            # scaled_dot_product_attention's fused kernels (flash, memory-efficient) have no second
            # derivative: inside the operator attention runs as its differentiable math composition
            self._context.enter_context(sdpa_kernel(SDPBackend.MATH))
            self._backend = self._build()
        except BaseException:
            self._restore()
            raise
        self.kind = self._backend.kind
        self.setup_seconds = time.perf_counter() - start
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        """Release the HVP graphs; put back every module's mode, every buffer and the attention kernels."""
        if self._backend is not None:
            self._backend.release()
            self._backend = None
        self._context.close()
        with torch.no_grad():
            for buffer, saved in self._saved_buffers:
                buffer.copy_(saved)
        self._saved_buffers = []

    def _micro_batch_size(self) -> int | None:
        """Examples per micro-batch, or None to keep the whole probe set's graphs."""
        size = self.requested_micro_batch
        if size is None and self.mode == "eval":
            size = default_micro_batch(sum(p.numel() for p in self.model.parameters()))
        return None if size is None or size >= sum(self.probe.sizes) else size

    def _build(self) -> DoubleBackwardHVP | ForwardOverReverseHVP | RecomputedHVP:
        """Prepare the probe model and data, then the HVP backend `hvp` asks for."""
        work = self.model
        if any(t.is_floating_point() and t.dtype != self.dtype for t in _tensors(work)):
            work = copy.deepcopy(work).to(self.dtype)
        self._context.enter_context(train_mode(work, self.mode == "train"))
        named = dict(work.named_parameters())
        params = [named[n] for n in self.names]
        batches = [(self._cast(x), self._cast(y)) for x, y in self.probe.batches]
        selected = set(self.names)
        constants = {n: p.detach() for n, p in named.items() if n not in selected}
        constants.update({n: b for n, b in work.named_buffers()})
        self.micro_batch = self._micro_batch_size()
        if self.micro_batch is not None:  # "auto": double backward, the kind every model supports
            chunks, weights, seeds = micro_batches(batches, self.probe.weights, self.probe.batch_seeds(),
                                                   self.micro_batch)
            kind = "func" if self.requested_hvp == "func" else "double"
            return RecomputedHVP(kind, work, self.loss_fn, chunks, weights, seeds, params, self.layout, constants,
                                 micro_batch=self.micro_batch)
        common = (work, self.loss_fn, batches, self.probe.weights, self.probe.batch_seeds(), params, self.layout)
        if self.requested_hvp == "double":
            return DoubleBackwardHVP(*common)
        if self.requested_hvp == "func":
            return ForwardOverReverseHVP(*common, constants)
        return self._choose(common, constants)

    def _choose(
        self,
        common: tuple,
        constants: dict[str, torch.Tensor],
    ) -> DoubleBackwardHVP | ForwardOverReverseHVP:
        """`auto`: keep func only if it works (matvec and vmapped matmat) and is faster.

        Both kinds are timed alternately on the same vectors (after a warm-up product)
        and compared by their median product time; a problem this process chose for
        already (`_auto_choices`) takes that kind without timing.
        """
        key = self._problem_key(common)
        if key in _auto_choices:
            kind, self.func_error = _auto_choices[key]
            if kind == "func":
                try:
                    return ForwardOverReverseHVP(*common, constants)
                except HVPUnavailableError as error:
                    self.func_error = str(error)
            return DoubleBackwardHVP(*common)
        double = DoubleBackwardHVP(*common)
        generator = torch.Generator().manual_seed(0)
        vectors = torch.randn(2, self.dim, generator=generator, dtype=self.dtype).to(self.device)
        try:
            func = ForwardOverReverseHVP(*common, constants)
            func.matmat(vectors.T)
        except Exception as error:  # no forward-mode rule, or an op vmap cannot batch
            self.func_error = f"{type(error).__name__}: {error}"
            _auto_choices[key] = ("double", self.func_error)
            return double
        backends = (double, func)
        seconds: tuple[list[float], list[float]] = ([], [])
        double.matvec(vectors[0])
        for _ in range(AUTO_TIMING_ROUNDS):
            for backend, times in zip(backends, seconds):
                for v in vectors:
                    self._sync()
                    start = time.perf_counter()
                    backend.matvec(v)
                    self._sync()
                    times.append(time.perf_counter() - start)
        double_median, func_median = (statistics.median(times) for times in seconds)
        chosen = func if func_median < double_median else double
        for backend in backends:
            if backend is not chosen:
                backend.release()
        _auto_choices[key] = (chosen.kind, None)
        return chosen

    def _problem_key(self, common: tuple) -> tuple:
        """What hvp="auto"'s choice depends on: the model's modules (their classes) and parameter shapes, the
        probe batches' sizes, the device, the dtype and the mode."""
        model, _, batches, _, _, params = common[:6]
        modules = tuple(f"{type(m).__module__}.{type(m).__qualname__}" for m in model.modules())
        return (modules, tuple(tuple(p.shape) for p in params),
                tuple(len(y) for _, y in batches), str(self.device), str(self.dtype), self.mode)

    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        """Move probe data to the model's device; floating data to the probe dtype."""
        return t.to(self.device, self.dtype if t.is_floating_point() else t.dtype)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # -- products ---------------------------------------------------------------------

    def _active(self) -> DoubleBackwardHVP | ForwardOverReverseHVP | RecomputedHVP:
        if self._backend is None:
            raise RuntimeError("use the HessianOperator inside a `with` block")
        return self._backend

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """`H v` for a flat vector `v` of shape `(dim,)`."""
        backend = self._active()
        v = v.to(self.device, self.dtype)
        if v.shape != (self.dim,):
            raise ValueError(f"expected shape ({self.dim},), got {tuple(v.shape)}")
        self._sync()
        start = time.perf_counter()
        hv = backend.matvec(v)
        self._sync()
        self.hvp_seconds += time.perf_counter() - start
        self.n_hvp += 1
        return hv

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """`H V` for columns `V` of shape `(dim, m)`, in blocks of `max_block`."""
        backend = self._active()
        V = V.to(self.device, self.dtype)
        if V.dim() != 2 or V.shape[0] != self.dim:
            raise ValueError(f"expected shape ({self.dim}, m), got {tuple(V.shape)}")
        self._sync()
        start = time.perf_counter()
        blocks = [backend.matmat(block) for block in V.split(self.max_block, dim=1)]
        self._sync()
        self.hvp_seconds += time.perf_counter() - start
        self.n_hvp += V.shape[1]
        return torch.cat(blocks, dim=1)

    def loss(self) -> float:
        """Probe loss: size-weighted mean of the batch losses."""
        return self._active().loss

    def gradient(self) -> torch.Tensor:
        """Flat gradient of the probe loss (`.grad` attributes are not touched)."""
        return self._active().gradient.clone()


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    return [*model.parameters(), *model.buffers()]


def _select_parameters(
    model: nn.Module, param_filter: str | None
) -> list[tuple[str, nn.Parameter]]:
    """Trainable parameters under the module (or parameter) name `param_filter`."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters")
    if param_filter is None:
        return trainable
    prefix = param_filter.rstrip(".")
    selected = [(n, p) for n, p in trainable if n == prefix or n.startswith(prefix + ".")]
    if not selected:
        parts = [n.split(".") for n, _ in trainable]
        modules = sorted({".".join(p[:i]) for p in parts for i in range(1, len(p))})
        valid = modules + [n for n, _ in trainable]
        raise ValueError(
            f"param_filter {param_filter!r} matches no trainable parameter; "
            f"valid prefixes: {', '.join(valid)}"
        )
    return selected
