"""Phase 3c: a Gaussian perturbation θ_i ← θ_i + ξ_i, ξ_i ~ N(0, (σ·rms(θ_i))²) per tensor, kept if
the probe loss did not increase, else undone exactly."""

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
def perturb(params: list[torch.Tensor], sigma: float, generator: torch.Generator) -> None:
    for p in params:
        rms = float(p.detach().double().pow(2).mean().sqrt())
        noise = torch.randn(p.shape, generator=generator, dtype=torch.float64).mul_(sigma * rms)
        p.add_(noise.to(p.device, p.dtype))


@torch.no_grad()
def perturbation_step(model: torch.nn.Module, params: list[torch.Tensor], probe: ProbeSet, sigma: float,
                      generator: torch.Generator, mode: str = "eval",
                      loss_before: float | None = None) -> PerturbOutcome:
    loss_before = probe_loss(model, probe, mode) if loss_before is None else loss_before
    saved = save(params)
    perturb(params, sigma, generator)
    loss = probe_loss(model, probe, mode)
    if loss <= loss_before:
        return PerturbOutcome(True, loss_before, loss, loss)
    restore(params, saved)
    return PerturbOutcome(False, loss_before, loss_before, loss)
