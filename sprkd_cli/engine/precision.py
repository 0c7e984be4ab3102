"""--precision: fp32, or mixed precision by autocast (bf16; fp16 with a gradient scaler).

Under bf16 or fp16 each training step's forward pass and loss, and evaluation's forward passes, run in
torch.autocast: matrix products and convolutions in the low-precision type, the parameters, optimiser
state and gradients in float32. fp16's narrow range needs its loss scaled (torch.amp.GradScaler), whose
state is part of the training state (--resume). What measures the loss surface (the Hessian engine,
sprkd's probe loss) runs with autocast off (hessian.hvp.full_precision), whatever the run's precision."""

from __future__ import annotations

import contextlib
import warnings

import torch

from ..config import PRECISIONS
from ..errors import UserError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """UserError (one line) when this torch has no autocast to `precision` on `device`'s type."""
    if precision not in PRECISIONS:
        raise UserError(f"bad --precision '{precision}'; valid: {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return
    with warnings.catch_warnings():  # older torch warns and disables autocast for a dtype it lacks
        warnings.simplefilter("ignore")
        try:
            with torch.autocast(device.type, dtype=DTYPES[precision]):
                supported = torch.is_autocast_enabled(device.type)
        except (RuntimeError, ValueError):
            supported = False
    if not supported:
        raise UserError(f"--precision {precision}: torch {torch.__version__} has no {precision} autocast on "
                        f"{device.type}; use --precision fp32" + (" or bf16" if precision == "fp16" else ""))


def autocast(precision: str, device: torch.device):
    """The context of forward passes and losses: torch.autocast to `precision` (nothing for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16's loss scaler (None for fp32 and bf16, whose range is float32's)."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None
