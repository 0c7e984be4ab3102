"""The KD loss: a·CE(y, s) + b·T²·KL(softmax(t/T) ‖ softmax(s/T)), one autograd node (sprkd's and
sage's KD terms use it too)."""

from __future__ import annotations

import torch


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
