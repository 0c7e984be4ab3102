"""Phase 3b: negative Hessian eigensteps, in two forms.

elementwise (the default): λ is the smaller of the Hessian's two eigenvalues of largest magnitude; when
it is negative it is λmin, with unit eigenvector v, and every tensor moves by θ ← θ − (g ⊙ v ⊙ v)/|λ|,
g the mini-batch gradient.

eigenvector: with (λmin, v) the most negative eigenpair, θ ← θ + α·s·v, s = −sign(gᵀv) (+1 when
gᵀv = 0), α = scale·|λmin|; with the probe-loss rule the step is kept only if the probe loss
decreases, α is halved up to `max_halvings` times first, and then the parameters are put back exactly
as they were."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...hessian import HessianOperator, ProbeSet, lanczos
from .probe import probe_loss, restore, save


@dataclass
class Eigenpair:
    value: float
    vector: list[torch.Tensor]  # shaped like the parameters, unit 2-norm over all of them
    iterations: int
    converged: bool
    hvp: str = "double"  # the HVP kind the operator used (what "auto" chose)


def most_negative(model: torch.nn.Module, probe: ProbeSet, mode: str = "eval", hvp: str = "double",
                  seed: int = 0, max_iter: int | None = None) -> Eigenpair:
    """λmin and its eigenvector by Lanczos (smallest algebraic) on the probe Hessian."""
    with HessianOperator(model, F.cross_entropy, probe, mode=mode, hvp=hvp) as op:
        result = lanczos(op, k_top=0, k_bottom=1, seed=seed, max_iter=max_iter)
        vector = [t.detach().clone() for t in op.unflatten(result.bottom_vectors[0])]
    return Eigenpair(float(result.bottom_values[0]), vector, result.iterations, bool(result.bottom_converged[0]),
                     op.kind)


def leading_pair(model: torch.nn.Module, probe: ProbeSet, mode: str = "eval", hvp: str = "double",
                 seed: int = 0, max_iter: int | None = None) -> Eigenpair:
    """λ = the smaller of the two eigenvalues of largest magnitude (by Lanczos), with λmin's eigenvector:
    when λ < 0 it is λmin (every eigenvalue of larger magnitude than the most negative one is positive)."""
    with HessianOperator(model, F.cross_entropy, probe, mode=mode, hvp=hvp) as op:
        result = lanczos(op, k_top=0, k_bottom=1, k_magnitude=min(2, op.dim), seed=seed, max_iter=max_iter)
        vector = [t.detach().clone() for t in op.unflatten(result.bottom_vectors[0])]
        kind = op.kind
    value = float(min(result.magnitude_values))
    converged = bool(result.magnitude_converged.all() and result.bottom_converged[0])
    return Eigenpair(value, vector, result.iterations, converged, kind)


@torch.no_grad()
def elementwise_step(params: list[torch.Tensor], grads: list[torch.Tensor], pair: Eigenpair) -> float:
    """θ ← θ − (g ⊙ v ⊙ v)/|λ| over every tensor; returns the weight 1/|λ|."""
    weight = 1.0 / abs(pair.value)
    for p, g, v in zip(params, grads, pair.vector):
        p.sub_(g * v * v, alpha=weight)
    return weight


@dataclass
class StepOutcome:
    kept: bool
    alpha: float  # the step length of the last try
    halvings: int
    sign: float
    loss_before: float | None  # None when the step was kept unmeasured (always)
    loss_after: float | None  # the probe loss now (loss_before when reverted)


def direction_sign(grads: list[torch.Tensor], vector: list[torch.Tensor]) -> float:
    """s = −sign(gᵀv), +1 when gᵀv = 0."""
    dot = float(sum((g.double() * v.double()).sum() for g, v in zip(grads, vector)))
    return -1.0 if dot > 0 else 1.0


@torch.no_grad()
def eigenstep(model: torch.nn.Module, params: list[torch.Tensor], grads: list[torch.Tensor], pair: Eigenpair,
              probe: ProbeSet, scale: float, mode: str = "eval", max_halvings: int = 3,
              loss_before: float | None = None,
              on_halve: Callable[[float, float, float], None] | None = None, always: bool = False) -> StepOutcome:
    """Try θ + α·s·v, halving α while the probe loss does not decrease; keep or restore exactly. With
    `always` the first try is kept whatever the loss (and no loss is measured).

    `on_halve(alpha_tried, loss_tried, next_alpha)` is told of every halving."""
    sign = direction_sign(grads, pair.vector)
    alpha = scale * abs(pair.value)
    if always:
        for p, v in zip(params, pair.vector):
            p.add_(v, alpha=sign * alpha)
        return StepOutcome(True, alpha, 0, sign, loss_before, None)
    loss_before = probe_loss(model, probe, mode) if loss_before is None else loss_before
    saved = save(params)
    for halving in range(max_halvings + 1):
        for p, start, v in zip(params, saved, pair.vector):
            p.copy_(start).add_(v, alpha=sign * alpha)
        loss = probe_loss(model, probe, mode)
        if loss < loss_before:
            return StepOutcome(True, alpha, halving, sign, loss_before, loss)
        if halving < max_halvings:
            if on_halve is not None:
                on_halve(alpha, loss, alpha / 2)
            alpha /= 2
    restore(params, saved)
    return StepOutcome(False, alpha, max_halvings, sign, loss_before, loss_before)
