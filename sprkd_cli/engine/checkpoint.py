"""Checkpoints as safetensors: tensors only, nothing is unpickled when they load."""

from pathlib import Path

import torch

from .safetensors_io import read_metadata, read_tensors, write_tensors


def save_weights(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """`metadata`: strings stored in the file's header (see checkpoint_metadata)."""
    write_tensors(path, state, metadata)


def checkpoint_metadata(path: Path) -> dict[str, str]:
    """The header strings save_weights stored (empty when none, or the file is missing or not safetensors)."""
    return read_metadata(path)


def load_weights(model: torch.nn.Module, path: Path) -> None:
    model.load_state_dict(read_tensors(path, "checkpoint")[0])
