"""Phase 3a: move each student tensor onto its injected target by the decaying transformation

    S_i ← (1 − w_t)·S_i + w_t·T_i,   w_t = 1 − 2^(−t/10)/2,

until ‖S_i − T_i‖₂/√numel ≤ ε (per tensor), or for all tensors after `max_steps` approach steps."""

from __future__ import annotations

import math

import torch


def weight(t: int) -> float:
    return 1.0 - 2.0 ** (-t / 10) / 2.0


def distance(s: torch.Tensor, t: torch.Tensor) -> float:
    """‖s − t‖₂ / √numel: the RMS distance."""
    return float(torch.linalg.vector_norm(s.detach() - t)) / math.sqrt(s.numel())


class Approach:
    def __init__(self, params: list[torch.Tensor], targets: list[torch.Tensor], eps: float, max_steps: int):
        self.params, self.targets, self.eps, self.max_steps = params, targets, eps, max_steps
        self.targeting = [distance(p, t) > eps for p, t in zip(params, targets)]
        self.steps = 0
        self.stopped_by_limit = False
        if max_steps <= 0:
            self._stop_all()

    @property
    def active(self) -> bool:
        return any(self.targeting)

    def distances(self) -> list[float]:
        return [distance(p, t) for p, t in zip(self.params, self.targets)]

    @torch.no_grad()
    def step(self, t: int) -> None:
        """One approach step at training step `t` (1-based)."""
        w = weight(t)
        for i, (p, target) in enumerate(zip(self.params, self.targets)):
            if self.targeting[i]:
                p.mul_(1.0 - w).add_(target, alpha=w)
                self.targeting[i] = distance(p, target) > self.eps
        self.steps += 1
        if self.active and self.steps >= self.max_steps:
            self._stop_all()

    def _stop_all(self) -> None:
        self.stopped_by_limit = self.active
        self.targeting = [False] * len(self.targeting)
