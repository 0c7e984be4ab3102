"""The base optimiser and learning-rate schedule, the same for every method."""

import torch

from ..errors import UserError


def make_optimizer(name: str, params, *, lr: float, weight_decay: float, momentum: float, betas,
                   fused: bool = False) -> torch.optim.Optimizer:
    """`fused` (a GPU's parameters): Adam and AdamW as one fused kernel per step, their step counts on the
    device (no read back to the host per parameter); on the CPU the default implementation, whose numbers
    sprkd's tests pin."""
    extra = {"fused": True} if fused else {}
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, **extra)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, **extra)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise UserError(f"unknown optimizer '{name}'; valid optimizers: adam, adamw, sgd")


def make_schedule(name: str, optimizer: torch.optim.Optimizer, total_steps: int):
    """Per-step schedule: cosine decay to 0 over the run, or constant."""
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise UserError(f"unknown schedule '{name}'; valid schedules: constant, cosine")
