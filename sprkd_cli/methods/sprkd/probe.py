"""The probe loss that gates NHE and PGD, and exact save/restore of parameters."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...hessian import ProbeSet
from ...hessian.hvp import seeded_rng

_SEED_STRIDE = 1_000_003  # the Hessian operator's per-batch seeds, so both see the same dropout masks


@torch.no_grad()
def probe_loss(model: torch.nn.Module, probe: ProbeSet, mode: str = "eval") -> float:
    """Size-weighted mean cross-entropy over the probe batches in `mode`; every module's mode and
    every buffer are restored after, and the global RNG is untouched."""
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.clone()) for b in model.buffers()]
    model.train(mode == "train")
    try:
        device = next(model.parameters()).device
        base = abs(probe.seed or 0) * _SEED_STRIDE
        total = 0.0
        for b, ((x, y), w) in enumerate(zip(probe.batches, probe.weights)):
            with seeded_rng(base + b, device):
                total += w * float(F.cross_entropy(model(x.to(device)), y.to(device)))
        return total
    finally:
        for module, training in modes:
            module.training = training
        for buffer, saved in buffers:
            buffer.copy_(saved)


def save(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


@torch.no_grad()
def restore(params: list[torch.Tensor], saved: list[torch.Tensor]) -> None:
    """Put the saved values back, bit for bit."""
    for p, s in zip(params, saved):
        p.copy_(s)
