"""Phase 3c: Gaussian perturbations, in two forms.

tensor (the default): the one tensor the gate named gets θ_i ← θ_i + ξ, ξ ~ N(0, σ²) element-wise.
relative: every tensor gets θ_i ← θ_i + ξ_i, ξ_i ~ N(0, (σ·rms(θ_i))²).
With the probe-loss rule a perturbation is kept if the probe loss did not increase, else undone exactly."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...hessian import ProbeSet
from .probe import probe_loss, restore, save


@dataclass
class PerturbOutcome:
    kept: bool
    loss_before: float
    loss_after: float  # the probe loss now (loss_before when reverted)
    tried_loss: float


@torch.no_grad()
def perturb(params: list[torch.Tensor], sigma: float, generator: torch.Generator, relative: bool = True) -> None:
    """Add N(0, sd²) noise to each tensor, sd = sigma·rms(θ_i) (relative) or sigma; drawn in float64 on the
    CPU from `generator`, so the numbers do not depend on the device."""
    for p in params:
        sd = sigma * float(p.detach().double().pow(2).mean().sqrt()) if relative else sigma
        noise = torch.randn(p.shape, generator=generator, dtype=torch.float64).mul_(sd)
        p.add_(noise.to(p.device, p.dtype))


@torch.no_grad()
def perturbation_step(model: torch.nn.Module, params: list[torch.Tensor], probe: ProbeSet, sigma: float,
                      generator: torch.Generator, mode: str = "eval",
                      loss_before: float | None = None, relative: bool = True) -> PerturbOutcome:
    """Perturb `params`, keep the result if the probe loss did not increase, else undo it exactly."""
    loss_before = probe_loss(model, probe, mode) if loss_before is None else loss_before
    saved = save(params)
    perturb(params, sigma, generator, relative)
    loss = probe_loss(model, probe, mode)
    if loss <= loss_before:
        return PerturbOutcome(True, loss_before, loss, loss)
    restore(params, saved)
    return PerturbOutcome(False, loss_before, loss_before, loss)
