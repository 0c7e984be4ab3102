"""The KD term's soft targets: p = softmax(t/T) of teacher logits t and Σ p log p per example (the
constant part of KL(p ‖ softmax(s/T)), which only its value needs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.modes import train_mode


def soft_targets(logits: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """p = softmax(logits/T) and Σ p log p per example."""
    log_p = F.log_softmax(logits / temperature, dim=1)
    p = log_p.exp()
    return p, (p * log_p).sum(dim=1)


@torch.no_grad()
def teacher_targets(teacher: torch.nn.Module, x: torch.Tensor, temperature: float,
                    chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """soft_targets of a teacher in eval mode over `x` (in chunks), on the teacher's device; the
    teacher's mode is restored."""
    device = next(teacher.parameters()).device
    with train_mode(teacher, False):
        logits = torch.cat([teacher(x[i:i + chunk].to(device)) for i in range(0, len(x), chunk)])
    return soft_targets(logits, temperature)


def ensemble_targets(teachers: list[torch.nn.Module], x: torch.Tensor,
                     temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean over `teachers` of their softmax(t/T), and its Σ p log p per example."""
    p = torch.stack([teacher_targets(t, x, temperature)[0] for t in teachers]).mean(0)
    return p, torch.special.xlogy(p, p).sum(dim=1)
