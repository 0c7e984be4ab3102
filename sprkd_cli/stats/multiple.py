"""Multiple-comparison adjustment (Holm step-down)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..choices import CORRECTIONS


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni step-down adjusted p-values, in the input order.

    With the m non-NaN p-values sorted ascending, p_(1) <= ... <= p_(m):
    p̃_(i) = min(1, max_{j <= i} (m - j + 1)·p_(j)).
    NaN entries stay NaN and do not count towards m.  Values outside [0, 1] raise ValueError.
    """
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be a 1-D sequence, got shape {p.shape}")
    valid = ~np.isnan(p)
    if np.any((p[valid] < 0.0) | (p[valid] > 1.0)):
        raise ValueError("p-values must lie in [0, 1]")
    idx = np.flatnonzero(valid)
    m = idx.size
    order = idx[np.argsort(p[idx], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    adjusted = np.full(p.shape, math.nan)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted.tolist()




def adjust(pvalues: Sequence[float], correction: str = "holm") -> list[float]:
    """`pvalues` adjusted for multiple testing: holm (step-down), bonferroni (m·p, capped at 1) or none; NaN
    entries stay NaN and do not count towards m."""
    if correction == "holm":
        return holm(pvalues)
    p = np.asarray(pvalues, dtype=float)
    if correction == "bonferroni":
        m = int(np.sum(~np.isnan(p)))
        return np.minimum(p * m, 1.0).tolist()
    if correction == "none":
        return p.tolist()
    raise ValueError(f"unknown correction {correction!r}; valid: {', '.join(CORRECTIONS)}")
