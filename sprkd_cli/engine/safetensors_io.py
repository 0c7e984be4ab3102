"""Tensors on disk as safetensors, the one file format sprkd writes and reads for weights, training
states and saddle snapshots: loading parses a JSON header and raw tensors, nothing is unpickled, so a
file cannot run code."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import UserError
from ..store import artifacts


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` (contiguous CPU copies) with `metadata` strings in the header, through a temporary
    name, so a reader sees the previous file or this one, never half, and a failed write (a full disk)
    leaves no partial file: it raises an OSError naming `path` and the system's reason. `path` may be a
    remote location (store.artifacts): the file goes up in one piece, which is atomic there anyway."""
    if artifacts.is_remote(path):
        from safetensors.torch import save

        artifacts.write_bytes(path, save({k: v.detach().contiguous().cpu() for k, v in tensors.items()},
                                         metadata=metadata))
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_name(path.name + ".partial")
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(target), metadata=metadata)
        os.replace(target, path)
    except (SafetensorError, OSError) as exc:
        try:
            os.unlink(target)
        except OSError:
            pass
        raise _write_error(exc, path) from None


def _write_error(exc: Exception, path: Path) -> OSError:
    """`exc` (an OSError, or safetensors' error wrapping one: "IoError(Os { code: 28, ... })") as an
    OSError about `path`."""
    import errno
    import re

    if isinstance(exc, OSError) and exc.errno is not None:
        return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))
    found = re.search(r"code: (\d+)", str(exc))
    code = int(found.group(1)) if found else errno.EIO
    return OSError(code, os.strerror(code) if found else " ".join(str(exc).split()), str(path))


def read_tensors(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of the file at `path`. `what` names it in the error a user sees when it is
    missing or not a safetensors file (a pickle is refused without being run)."""
    if artifacts.is_remote(path):
        return _read_remote(path, what)
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
    if artifacts.is_remote(path):  # the header only: two ranged reads, not the whole file
        try:
            (size,) = struct.unpack("<Q", artifacts.read_bytes(path, 0, 8))
            header = json.loads(artifacts.read_bytes(path, 8, 8 + size)) if size < 100_000_000 else {}
            return {str(k): str(v) for k, v in (header.get("__metadata__") or {}).items()}
        except (OSError, struct.error, ValueError, AttributeError):
            return {}
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (OSError, SafetensorError):
        return {}


def _read_remote(url: str, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """read_tensors of a remote location: the whole file fetched, then parsed from memory."""
    from safetensors.torch import load

    try:
        data = artifacts.read_bytes(url)
    except FileNotFoundError:
        raise UserError(f"{what} {url} is missing; the run's artifacts were moved or deleted") from None
    try:
        (size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + size])
        return load(data), dict(header.get("__metadata__") or {})
    except (SafetensorError, struct.error, ValueError, AttributeError) as exc:
        raise UserError(f"{what} {url} is not a safetensors file ({exc}); sprkd does not load pickled "
                        "files, which can run code") from None
