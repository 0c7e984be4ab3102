"""Tensors on disk as safetensors, the one file format sprkd writes and reads for weights, training
states and saddle snapshots: loading parses a JSON header and raw tensors, nothing is unpickled, so a
file cannot run code."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import UserError


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None,
                  atomic: bool = False) -> None:
    """Write `tensors` (contiguous CPU copies) with `metadata` strings in the header; `atomic`: through a
    temporary name, so a reader sees the previous file or this one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_name(path.name + ".partial") if atomic else path
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(target), metadata=metadata)
    if atomic:
        os.replace(target, path)


def read_tensors(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of the file at `path`. `what` names it in the error a user sees when it is
    missing or not a safetensors file (a pickle is refused without being run)."""
    if not path.exists():
        raise UserError(f"{what} {path} is missing; the run's artifacts were moved or deleted")
    if not path.is_file():
        raise UserError(f"{what} {path} is a {'folder' if path.is_dir() else 'special file'}, not a safetensors file")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{what} {path} is not a safetensors file ({exc}); sprkd does not load pickled "
                        "files, which can run code") from None


def read_metadata(path: Path) -> dict[str, str]:
    """The header strings of the file at `path` (empty when none, or it is missing or not safetensors)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (OSError, SafetensorError):
        return {}
