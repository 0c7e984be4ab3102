"""The probe loss that gates NHE and PGD, and exact save/restore of parameters."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...hessian import ProbeSet
from ...hessian.hvp import full_precision, seeded_rng
from ...models.modes import train_mode


@torch.no_grad()
def probe_loss(model: torch.nn.Module, probe: ProbeSet, mode: str = "eval") -> float:
    """Size-weighted mean cross-entropy over the probe batches in `mode`, each batch under the seed the
    Hessian operator gives it (the same dropout masks); every module's mode and every buffer are
    restored after, and the global RNG is untouched. Full precision (autocast off), whatever --precision."""
    buffers = [(b, b.clone()) for b in model.buffers()]
    device = next(model.parameters()).device
    try:
        with train_mode(model, mode == "train"), full_precision(device):
            total = 0.0
            for seed, (x, y), w in zip(probe.batch_seeds(), probe.batches, probe.weights):
                with seeded_rng(seed, device):
                    total += w * float(F.cross_entropy(model(x.to(device)), y.to(device)))
            return total
    finally:
        for buffer, saved in buffers:
            buffer.copy_(saved)


def save(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


@torch.no_grad()
def restore(params: list[torch.Tensor], saved: list[torch.Tensor]) -> None:
    """Put the saved values back, bit for bit."""
    for p, s in zip(params, saved):
        p.copy_(s)
