"""--device: auto picks cuda, then mps, then cpu; a device that is not there is a user error."""

from __future__ import annotations

import torch

from ..config import DEVICES
from ..errors import UserError


def _mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def resolve_device(name: str) -> torch.device:
    if name not in DEVICES:
        raise UserError(f"unknown device '{name}'; valid devices: {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible to torch here; use --device cpu (or auto)")
    if name == "mps" and not _mps_available():
        raise UserError("--device mps: Apple's MPS backend is not available here; use --device cpu (or auto)")
    return torch.device(name)
