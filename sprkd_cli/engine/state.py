"""A training state (nested dicts, lists and tuples of tensors, numbers, strings and None) written as one
safetensors file: the tensors as tensors, the structure as JSON in the file's metadata. Loading parses
JSON and tensors only; nothing is unpickled, so a file cannot run code.

Used for --resume: the loop's whole state at an epoch end (engine.loop.fit) round-trips exactly."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import UserError
from .safetensors_io import read_tensors, write_tensors

FORMAT = "sprkd-state-1"


def _encode(obj, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        # a copy of each, so tensors that share storage (tied weights) are written apart
        tensors[key] = obj.detach().to("cpu", copy=True).contiguous()
        return {"T": key}
    if isinstance(obj, dict):
        return {"D": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"U": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "item") and getattr(obj, "shape", None) == ():  # a NumPy scalar
        return obj.item()
    raise TypeError(f"cannot store a {type(obj).__name__} in a training state")


def _decode(obj, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        (tag, body), = obj.items()
        if tag == "T":
            return tensors[body]
        if tag == "D":
            return {_decode(k, tensors): _decode(v, tensors) for k, v in body}
        if tag == "U":
            return tuple(_decode(v, tensors) for v in body)
        raise ValueError(f"unknown tag {tag!r}")
    return obj


def save_state(state: dict, path: Path) -> None:
    """Write `state` to `path` atomically (a reader sees the previous file or this one, never half)."""
    tensors: dict[str, torch.Tensor] = {}
    tree = json.dumps(_encode(state, tensors))
    write_tensors(path, tensors, {"format": FORMAT, "tree": tree})


def load_state(path: Path) -> dict:
    tensors, meta = read_tensors(path, "training state")
    if meta.get("format") != FORMAT:
        raise UserError(f"{path} is not a sprkd training state (format {meta.get('format')!r}, expected {FORMAT})")
    try:
        return _decode(json.loads(meta["tree"]), tensors)
    except (KeyError, ValueError, TypeError) as exc:
        raise UserError(f"training state {path} is damaged ({exc})") from None
