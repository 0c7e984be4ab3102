"""Hessian-vector products on a fixed probe set, two ways.

Both compute `H v = sum_b w_b H_b v` with `H_b` the Hessian of batch `b`'s loss
with respect to the selected parameters and `w_b = n_b / N`:

* `DoubleBackwardHVP` (reverse over reverse): the first-order gradients
  `g_b = grad L_b` are built once with `create_graph=True`; then
  `H v = grad_theta (sum_b w_b g_b . v)`, one backward pass through the kept graphs;
  matmat runs one such pass per column.
* `ForwardOverReverseHVP` (forward over reverse, `torch.func`):
  `H v = d/de grad L(theta + e v) |_{e=0}`, a `jvp` of `grad` of a
  `functional_call`. The jvp is linearised once per batch (`torch.func.linearize`
  traces it and folds everything that depends only on `theta`), so each product only
  runs the tangent computation; matmat `vmap`s it over the columns.

Neither touches any `.grad` attribute: gradients come from `torch.autograd.grad` or
`torch.func.grad` only. Every forward pass of batch `b` runs under the same fixed RNG
seed, so stochastic layers (dropout in `train` mode) see the same mask in every
product and H stays one fixed symmetric matrix; the caller's RNG state is untouched.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from .layout import FlatLayout

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]


class HVPUnavailableError(RuntimeError):
    """The requested HVP kind cannot differentiate this model (e.g. no forward-mode rule)."""


def full_precision(device: torch.device):
    """Autocast off on `device`'s type for the block: Hessian quantities and probe losses are measured in
    the model's float32 (or the operator's float64) even inside a mixed-precision run (--precision)."""
    return torch.autocast(device.type, enabled=False)


@contextlib.contextmanager
def seeded_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with `device`'s default generator seeded to `seed`, then put
    the generator's previous state back."""
    if device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        generator = torch.cuda.default_generators[index]
    else:
        generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        yield
    finally:
        generator.set_state(state)


class DoubleBackwardHVP:
    """Reverse-over-reverse HVP through first-order graphs kept for the whole probe."""

    kind = "double"

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batches: Sequence[Batch],
        weights: Sequence[float],
        seeds: Sequence[int],
        params: Sequence[torch.Tensor],
        layout: FlatLayout,
    ) -> None:
        self._params = list(params)
        self._layout = layout
        self._outputs: list[torch.Tensor] = []
        device = self._params[0].device
        gradient = [torch.zeros_like(p) for p in self._params]
        loss = 0.0
        for (x, y), w, seed in zip(batches, weights, seeds):
            with seeded_rng(seed, device):
                batch_loss = w * loss_fn(model(x), y)
            grads = torch.autograd.grad(
                batch_loss, self._params, create_graph=True, allow_unused=True, materialize_grads=True
            )
            self._outputs.extend(grads)
            for total, g in zip(gradient, grads):
                total.add_(g.detach())
            loss += float(batch_loss.detach())
        self.loss = loss
        self.gradient = layout.flatten(gradient)
        # Gradients that do not depend on theta (parameters entering the loss linearly
        # or not at all) have no graph: their rows of H are zero.
        self._live = [i for i, g in enumerate(self._outputs) if g.requires_grad]

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """`H v` for a flat `v`."""
        if not self._live:
            return torch.zeros_like(v)
        tangent = self._layout.unflatten(v)
        hv = torch.autograd.grad(
            [self._outputs[i] for i in self._live],
            self._params,
            # the same tangent for every batch's gradient (the batch weights are in g)
            grad_outputs=[tangent[i % len(self._params)] for i in self._live],
            retain_graph=True,
            allow_unused=True,
            materialize_grads=True,
        )
        return self._layout.flatten(hv)

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """`H V` for `(dim, m)` columns, one backward per column (a batched backward,
        `is_grads_batched`, was slower per column on CPU)."""
        return torch.stack([self.matvec(v) for v in V.T.contiguous()], dim=1)

    def release(self) -> None:
        """Drop the kept graphs (frees the probe's activations)."""
        self._outputs = []
        self._live = []


class ForwardOverReverseHVP:
    """Forward-over-reverse HVP with `torch.func` (jvp of grad of a functional_call).

    Raises `HVPUnavailableError` at construction when `torch.func` cannot
    differentiate the model, e.g. an operator without a forward-mode (jvp) rule such as
    a custom `autograd.Function` without `jvp`.
    """

    kind = "func"

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batches: Sequence[Batch],
        weights: Sequence[float],
        seeds: Sequence[int],
        params: Sequence[torch.Tensor],
        layout: FlatLayout,
        constants: dict[str, torch.Tensor],
    ) -> None:
        self._layout = layout
        self._weights = list(weights)
        self._seeds = list(seeds)
        self._device = params[0].device
        primals = {n: p.detach() for n, p in zip(layout.names, params)}
        self._tangent_maps: list[Callable[[dict], dict]] = []
        gradient = torch.zeros(layout.dim, dtype=params[0].dtype, device=self._device)
        loss = 0.0
        try:
            for (x, y), w, seed in zip(batches, weights, seeds):
                batch_loss = _functional_loss(model, loss_fn, constants, x, y, seed, self._device)
                g, tangent_map = _linearized_jvp(torch.func.grad(batch_loss), primals)
                self._tangent_maps.append(tangent_map)
                gradient += w * layout.flatten([g[n] for n in layout.names])
                with torch.no_grad():
                    loss += w * float(batch_loss(primals))
        except Exception as error:  # an operator without a forward-mode rule, typically
            raise HVPUnavailableError(
                "hvp='func' (torch.func forward over reverse) cannot differentiate this "
                f"model: {type(error).__name__}: {error} -- typically an operator without "
                "a forward-mode (jvp) rule, such as a custom autograd.Function without "
                "jvp, or an in-place buffer update (BatchNorm in train mode). "
                "Use hvp='double' (or 'auto', which falls back to it)."
            ) from error
        self.loss = loss
        self.gradient = gradient

    def _hvp(self, tangents: dict[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for tangent_map, w, seed in zip(self._tangent_maps, self._weights, self._seeds):
            with seeded_rng(seed, self._device):
                hv = tangent_map(tangents)
            flat = self._layout.flatten([hv[n] for n in self._layout.names])
            total = w * flat if total is None else total.add_(flat, alpha=w)
        return total

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """`H v` for a flat `v`."""
        return self._hvp(self._layout.as_dict(v))

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """`H V` for `(dim, m)` columns, `vmap` over the columns."""
        batched = torch.func.vmap(
            lambda v: self._hvp(self._layout.as_dict(v)), in_dims=1, out_dims=1, randomness="same"
        )
        return batched(V)

    def release(self) -> None:
        """Drop the linearised graphs."""
        self._tangent_maps = []


def _functional_loss(
    model: nn.Module,
    loss_fn: LossFn,
    constants: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    seed: int,
    device: torch.device,
) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """`theta -> loss_fn(model(x; theta, constants), y)` with the batch's fixed RNG seed."""

    def loss(params: dict[str, torch.Tensor]) -> torch.Tensor:
        with seeded_rng(seed, device):
            out = torch.func.functional_call(model, (params, constants), (x,))
        return loss_fn(out, y)

    return loss


def _linearized_jvp(
    grad_fn: Callable[[dict], dict], primals: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], Callable[[dict], dict]]:
    """The gradient at `primals` and `v -> jvp(grad_fn, primals, v)`.

    The jvp is traced once with `torch.func.linearize`; when it cannot be traced the
    returned map calls `torch.func.jvp` each time instead (recomputing the primal
    forward and backward in every product).
    """

    def direct(tangents: dict) -> dict:
        return torch.func.jvp(grad_fn, (primals,), (tangents,))[1]

    with warnings.catch_warnings():
        # torch internals warn here: constant folding about its get_attr nodes, and the
        # first forward-mode call about torch.jit.script while loading decompositions.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            return torch.func.linearize(grad_fn, primals)
        except Exception:
            gradient, _ = torch.func.jvp(grad_fn, (primals,), (primals,))
            return gradient, direct


def micro_batches(
    batches: Sequence[Batch], weights: Sequence[float], seeds: Sequence[int], size: int
) -> tuple[list[Batch], list[float], list[int]]:
    """The probe batches cut into pieces of at most `size` examples, each weighted by its share of
    its batch (`w_b * m / n_b`) and run under its batch's seed. For a loss that is a batch mean the
    weighted sum of the pieces' losses is the probe loss, so their Hessians sum to H (exactly in
    `eval` mode; in `train` mode a piece has its own batch statistics and dropout masks)."""
    out: tuple[list[Batch], list[float], list[int]] = ([], [], [])
    for (x, y), w, seed in zip(batches, weights, seeds):
        n = len(y)
        for start in range(0, n, size):
            xs, ys = x[start:start + size], y[start:start + size]
            out[0].append((xs, ys))
            out[1].append(w * len(ys) / n)
            out[2].append(seed)
    return out


class RecomputedHVP:
    """HVPs in bounded memory: every product recomputes each micro-batch's gradient graph and drops it
    before the next, so at most one micro-batch's graph is alive (peak memory set by the micro-batch,
    not the probe set) at the price of a forward and backward pass per micro-batch and product.

    `kind` `"double"`: `H_c v = grad_theta (grad L_c . v)` through the micro-batch's graph;
    `"func"`: `torch.func.jvp` of `torch.func.grad` (forward over reverse), not linearised.
    """

    def __init__(
        self,
        kind: str,
        model: nn.Module,
        loss_fn: LossFn,
        chunks: Sequence[Batch],
        weights: Sequence[float],
        seeds: Sequence[int],
        params: Sequence[torch.Tensor],
        layout: FlatLayout,
        constants: dict[str, torch.Tensor] | None = None,
        micro_batch: int | None = None,
    ) -> None:
        if kind not in ("double", "func"):
            raise ValueError(f"kind must be 'double' or 'func', got {kind!r}")
        self.kind = kind
        self.micro_batch = micro_batch
        self._model, self._loss_fn = model, loss_fn
        self._chunks, self._weights, self._seeds = list(chunks), list(weights), list(seeds)
        self._params = list(params)
        self._layout = layout
        self._constants = constants or {}
        self._device = self._params[0].device
        self._primals = {n: p.detach() for n, p in zip(layout.names, self._params)}
        gradient = torch.zeros(layout.dim, dtype=self._params[0].dtype, device=self._device)
        loss = 0.0
        for (x, y), w, seed in zip(self._chunks, self._weights, self._seeds):
            with seeded_rng(seed, self._device):
                chunk_loss = w * loss_fn(model(x), y)
            grads = torch.autograd.grad(chunk_loss, self._params, allow_unused=True, materialize_grads=True)
            gradient += layout.flatten(grads)
            loss += float(chunk_loss.detach())
        self.loss = loss
        self.gradient = gradient
        if kind == "func":
            try:
                self._chunk_hvp(0, [self._layout.as_dict(torch.zeros_like(gradient))])
            except Exception as error:
                raise HVPUnavailableError(
                    "hvp='func' (torch.func forward over reverse) cannot differentiate this "
                    f"model: {type(error).__name__}: {error}. Use hvp='double' (or 'auto')."
                ) from error

    def _chunk_hvp(self, c: int, columns: list[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
        """`w_c H_c v` of micro-batch `c` for every tangent in `columns` (one graph for them all)."""
        (x, y), w, seed = self._chunks[c], self._weights[c], self._seeds[c]
        if self.kind == "func":
            f = _functional_loss(self._model, self._loss_fn, self._constants, x, y, seed, self._device)
            out = []
            for tangents in columns:
                hv = torch.func.jvp(torch.func.grad(f), (self._primals,), (tangents,))[1]
                out.append(self._layout.flatten([hv[n] for n in self._layout.names]).mul_(w))
            return out
        with seeded_rng(seed, self._device):
            chunk_loss = w * self._loss_fn(self._model(x), y)
        grads = torch.autograd.grad(chunk_loss, self._params, create_graph=True, allow_unused=True,
                                    materialize_grads=True)
        live = [i for i, g in enumerate(grads) if g.requires_grad]
        if not live:
            return [torch.zeros(self._layout.dim, dtype=self._params[0].dtype, device=self._device) for _ in columns]
        out = []
        for k, tangents in enumerate(columns):
            tangent = [tangents[name] for name in self._layout.names]
            hv = torch.autograd.grad([grads[i] for i in live], self._params, grad_outputs=[tangent[i] for i in live],
                                     retain_graph=k + 1 < len(columns), allow_unused=True, materialize_grads=True)
            out.append(self._layout.flatten(hv))
        return out

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """`H v` for a flat `v`: the sum over micro-batches, one graph at a time."""
        return self.matmat(v.unsqueeze(1))[:, 0]

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """`H V` for `(dim, m)` columns: each micro-batch's graph built once for all columns."""
        columns = [self._layout.as_dict(v) for v in V.T.contiguous()]
        total = torch.zeros_like(V)
        for c in range(len(self._chunks)):
            for j, hv in enumerate(self._chunk_hvp(c, columns)):
                total[:, j] += hv
        return total

    def release(self) -> None:
        self._chunks = []
