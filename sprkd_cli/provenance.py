"""What produced a run: the source commit (and whether it was dirty) and library versions."""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from pathlib import Path

from . import __version__

SOURCE_DIR = Path(__file__).resolve().parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(SOURCE_DIR), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@lru_cache(maxsize=1)
def provenance() -> dict:
    import numpy
    import torch

    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "git_commit": commit,
        "git_dirty": bool(status) if status is not None else None,
        "versions": {"sprkd": __version__, "python": platform.python_version(), "torch": torch.__version__,
                     "numpy": numpy.__version__},
    }
