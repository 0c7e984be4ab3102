"""Hinton knowledge distillation: a·CE(y, s) + b·T²·KL(softmax(t/T) ‖ softmax(s/T))."""

from __future__ import annotations

import torch

from .base import Method
from .targets import ensemble_targets, teacher_targets


class KDLoss(torch.autograd.Function):
    """a·CE(y, s) + b·T²·KL(p_t ‖ softmax(s/T)), batch means, with its gradient written out:
    ∂/∂s = [a·(softmax(s) − onehot(y)) + b·T·(softmax(s/T) − p_t)] / n.
    One node instead of autograd's dozen: small students are dispatch-bound. Computed in float32 from
    low-precision logits (--precision bf16/fp16), as autocast computes softmax and cross-entropy; the
    gradient goes back in the logits' dtype."""

    @staticmethod
    def forward(ctx, logits, labels, p_teacher, neg_entropy, temperature, ce_weight, kd_weight):
        ctx.logits_dtype = logits.dtype
        logits = logits.float()
        n = logits.shape[0]
        log_p = logits.log_softmax(dim=1)
        log_q = (logits / temperature).log_softmax(dim=1)
        ce = -log_p.gather(1, labels.unsqueeze(1)).sum()
        kl = neg_entropy.sum() - (p_teacher * log_q).sum()
        ctx.save_for_backward(log_p, log_q, labels, p_teacher)
        ctx.constants = (n, temperature, ce_weight, kd_weight)
        return (ce_weight * ce + kd_weight * temperature**2 * kl) / n

    @staticmethod
    def backward(ctx, grad_output):
        log_p, log_q, labels, p_teacher = ctx.saved_tensors
        n, temperature, ce_weight, kd_weight = ctx.constants
        grad = log_p.exp().mul_(ce_weight)
        grad.scatter_add_(1, labels.unsqueeze(1), torch.full_like(labels, -ce_weight, dtype=grad.dtype).unsqueeze(1))
        grad.add_(log_q.exp().sub_(p_teacher), alpha=kd_weight * temperature)
        grad = grad.mul_(grad_output / n).to(ctx.logits_dtype)
        return grad, None, None, None, None, None, None


def kd_loss(student_logits, labels, p_teacher, neg_entropy, temperature: float, ce_weight: float, kd_weight: float):
    return KDLoss.apply(student_logits, labels, p_teacher, neg_entropy, temperature, ce_weight, kd_weight)


class KD(Method):
    name = "kd"
    needs_teacher = True
    takes_augmented = True
    takes_ensemble = True

    def __init__(self, options: dict, teacher: torch.nn.Module, data, augmented: bool = False,
                 teachers: list[torch.nn.Module] | None = None):
        """Several `teachers` (`--teacher A,B`): ensemble KD, the KD term's target being the mean of the
        teachers' softmax(t/T), as sprkd's KD term does."""
        self.temperature = options["temperature"]
        self.ce_weight = options["ce_weight"]
        self.kd_weight = options["kd_weight"]
        self.teachers = teachers or [teacher]
        # Unaugmented inputs are the same every epoch: the teacher's targets are computed once, not per
        # batch. Augmented ones (--augment) differ every time, so the teacher sees each batch as it is.
        self.augmented = augmented
        if not augmented:
            self.p_teacher, self.neg_entropy = self.targets(data.x_train)

    def targets(self, x):
        if len(self.teachers) == 1:
            return teacher_targets(self.teachers[0], x, self.temperature)
        return ensemble_targets(self.teachers, x, self.temperature)

    def loss(self, model, x, y, index):
        if self.augmented:
            p_teacher, neg_entropy = self.targets(x)
        else:
            p_teacher, neg_entropy = self.p_teacher[index], self.neg_entropy[index]
        return kd_loss(model(x), y, p_teacher, neg_entropy, self.temperature, self.ce_weight, self.kd_weight)
