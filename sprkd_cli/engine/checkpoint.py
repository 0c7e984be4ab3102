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


def check_fits(model: torch.nn.Module, tensors: dict[str, torch.Tensor], what: str) -> None:
    """UserError unless `tensors` has exactly the model's tensors, each of its shape (`what` names them)."""
    from ..errors import UserError

    own = model.state_dict()
    missing, extra = [k for k in own if k not in tensors], [k for k in tensors if k not in own]
    if missing or extra:
        raise UserError(f"{what} does not fit the model: "
                        + "; ".join(part for part in (f"missing {', '.join(missing[:3])}" if missing else "",
                                                      f"unknown {', '.join(extra[:3])}" if extra else "") if part))
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise UserError(f"{what} does not fit the model: {name} is {tuple(tensor.shape)} there and "
                            f"{tuple(own[name].shape)} in the model (weights of another architecture?)")


def load_weights(model: torch.nn.Module, path: Path) -> None:
    tensors = read_tensors(path, "checkpoint")[0]
    check_fits(model, tensors, f"checkpoint {path}")
    model.load_state_dict(tensors)
