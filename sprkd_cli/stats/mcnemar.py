"""McNemar's exact test on paired per-example predictions of two runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# scipy.special, not scipy.stats: the same functions (scipy.stats.t.sf is special.stdtr, ...),
# without scipy.stats' half-second import
from scipy import special

from ._common import json_safe


@dataclass(frozen=True)
class McNemarResult:
    """Discordant counts, exact two-sided p-value and the two accuracies.

    b: examples A got right and B got wrong; c: B right and A wrong; n: number of examples.
    """

    b: int
    c: int
    n: int
    p_value: float
    acc_a: float
    acc_b: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return json_safe(self)


def _int_array(x: Sequence[int], name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iub":
        raise ValueError(f"{name} must contain integers (class indices), got dtype {arr.dtype}")
    return arr


def mcnemar_exact(pred_a: Sequence[int], pred_b: Sequence[int], labels: Sequence[int]) -> McNemarResult:
    """McNemar's exact test for two runs evaluated on the same examples (same seed and split).

    With b = #(A right, B wrong) and c = #(A wrong, B right), under H0 b ~ Binomial(b + c, 1/2);
    the exact two-sided p = min(1, 2·P(X <= min(b, c))), X ~ Binomial(b + c, 1/2),
    which is scipy.stats.binomtest(b, b + c, 0.5).pvalue; p = 1 when b + c = 0.
    Raises ValueError when the three sequences differ in length, are empty or are not integers.
    """
    a = _int_array(pred_a, "pred_a")
    bb = _int_array(pred_b, "pred_b")
    y = _int_array(labels, "labels")
    if not (a.size == bb.size == y.size):
        raise ValueError(
            f"pred_a, pred_b and labels must have the same length, got {a.size}, {bb.size} and {y.size}"
        )
    if y.size == 0:
        raise ValueError("mcnemar_exact needs at least one example")
    right_a = a == y
    right_b = bb == y
    b = int(np.sum(right_a & ~right_b))
    c = int(np.sum(~right_a & right_b))
    p = 1.0 if b + c == 0 else min(1.0, float(2.0 * special.bdtr(min(b, c), b + c, 0.5)))
    return McNemarResult(b, c, int(y.size), p, float(right_a.mean()), float(right_b.mean()))
