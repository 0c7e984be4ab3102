"""Hinton knowledge distillation: a·CE(y, s) + b·T²·KL(softmax(t/T) ‖ softmax(s/T))."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UserError
from .base import Method


@torch.no_grad()
def teacher_log_probs(teacher: torch.nn.Module, x: torch.Tensor, temperature: float, chunk: int = 4096) -> torch.Tensor:
    """log softmax(t/T) of a frozen teacher in eval mode over `x`, in chunks; its mode is restored."""
    was_training = teacher.training
    teacher.eval()
    try:
        return torch.cat([F.log_softmax(teacher(x[i:i + chunk]) / temperature, dim=1) for i in range(0, len(x), chunk)])
    finally:
        teacher.train(was_training)


def kd_loss(student_logits, labels, teacher_log_p, temperature: float, ce_weight: float, kd_weight: float):
    """KL(p_t ‖ p_s) at temperature T, batch-mean, scaled by T² so its gradients keep their size."""
    kl = F.kl_div(F.log_softmax(student_logits / temperature, dim=1), teacher_log_p,
                  reduction="batchmean", log_target=True)
    return ce_weight * F.cross_entropy(student_logits, labels) + kd_weight * temperature**2 * kl


class KD(Method):
    name = "kd"
    needs_teacher = True
    defaults = {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9}

    @classmethod
    def validate(cls, options):
        if options["temperature"] <= 0:
            raise UserError(f"--temperature must be > 0 (got {options['temperature']})")
        if options["ce_weight"] < 0 or options["kd_weight"] < 0:
            raise UserError("--ce-weight and --kd-weight must be >= 0")

    def __init__(self, options: dict, teacher: torch.nn.Module, data):
        self.temperature = options["temperature"]
        self.ce_weight = options["ce_weight"]
        self.kd_weight = options["kd_weight"]
        # Inputs are not augmented, so the teacher's targets are computed once, not per batch.
        self.cached = teacher_log_probs(teacher, data.x_train, self.temperature)

    def loss(self, model, x, y, index):
        return kd_loss(model(x), y, self.cached[index], self.temperature, self.ce_weight, self.kd_weight)
