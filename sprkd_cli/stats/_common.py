"""Input validation and JSON helpers shared by the statistics modules."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def finite_array(values: Sequence[float], name: str = "values") -> np.ndarray:
    """Return `values` as a 1-D float array, raising ValueError on NaN or infinity."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of numbers, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name} contains non-finite values (NaN or inf) at positions {np.flatnonzero(bad).tolist()}")
    return arr


def sample_sd(x: np.ndarray) -> float:
    """Sample SD, sqrt(Σ(x - mean)² / (n - 1)), for n >= 2; exactly 0.0 when all values are equal.

    The exact zero matters: floating-point round-off in the mean would otherwise give a
    tiny positive SD and a meaningless, huge t statistic for constant data.
    """
    if np.all(x == x[0]):
        return 0.0
    return float(np.std(x, ddof=1))


def check_fraction(value: float, name: str) -> None:
    """Raise ValueError unless `0 < value < 1` (a confidence level, power or alpha)."""
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}")


def json_safe(obj: Any) -> Any:
    """Convert a dataclass/dict/list of numbers to JSON-safe Python values.

    Non-finite floats (NaN, ±inf) become `None`; numpy scalars become Python scalars.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: json_safe(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
