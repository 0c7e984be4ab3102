"""Checkpoints as safetensors: tensors only, nothing is unpickled when they load."""

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import UserError


def save_weights(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """`metadata`: strings stored in the file's header (see checkpoint_metadata)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(path), metadata=metadata)


def checkpoint_metadata(path: Path) -> dict[str, str]:
    """The header strings save_weights stored (empty when none, or the file is missing or not safetensors)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (OSError, SafetensorError):
        return {}


def load_weights(model: torch.nn.Module, path: Path) -> None:
    if not path.exists():
        raise UserError(f"checkpoint {path} is missing; the run's artifacts were moved or deleted")
    try:
        state = load_file(str(path))
    except SafetensorError as exc:
        raise UserError(f"checkpoint {path} is not a safetensors file ({exc}); sprkd does not load pickled "
                        "checkpoints, which can run code") from None
    model.load_state_dict(state)
