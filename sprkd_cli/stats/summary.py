"""Per-arm summary: n, mean, sample SD and the t-based confidence interval of the mean."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
# scipy.special, not scipy.stats: the same functions (scipy.stats.t.sf is special.stdtr, ...),
# without scipy.stats' half-second import
from scipy import special

from ._common import check_fraction, finite_array, json_safe, sample_sd


@dataclass(frozen=True)
class ArmSummary:
    """Summary of one method's per-seed values."""

    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN -> None)."""
        return json_safe(self)


def summarize(values: Sequence[float], confidence: float = 0.95) -> ArmSummary:
    """Summarize one arm.

    mean = Σx/n, sd = sqrt(Σ(x - mean)² / (n - 1)) and the CI of the mean is
    mean ± t_{(1+confidence)/2, n-1} · sd/√n.  With n = 1 the SD and CI are NaN;
    with n = 0 everything except n is NaN.  NaN or infinite inputs raise ValueError.
    """
    check_fraction(confidence, "confidence")
    x = finite_array(values)
    n = int(x.size)
    if n == 0:
        return ArmSummary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(np.mean(x))
    if n == 1:
        return ArmSummary(1, mean, math.nan, math.nan, math.nan)
    sd = sample_sd(x)
    half = float(special.stdtrit(n - 1, (1.0 + confidence) / 2.0)) * sd / math.sqrt(n)
    return ArmSummary(n, mean, sd, mean - half, mean + half)
