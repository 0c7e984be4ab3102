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
    """Summary of one arm's per-seed values (one per run)."""

    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN -> None)."""
        return json_safe(self)


UNBOUNDED = (-math.inf, math.inf)


def ci_method(bounds: tuple[float, float] = UNBOUNDED) -> str:
    """How summarize's and compare_arms' intervals are made, in words (for captions and JSON)."""
    if bounds == UNBOUNDED:
        return "t interval"
    lo, hi = (f"{b:g}" if math.isfinite(b) else ("−∞" if b < 0 else "∞") for b in bounds)
    return f"t interval, cut to the metric's range [{lo}, {hi}]"


def clip(low: float, high: float, bounds: tuple[float, float]) -> tuple[float, float]:
    """An interval cut to `bounds`: a value outside a metric's range cannot be its mean, so cutting it off
    leaves the interval's coverage exactly as it was."""
    if math.isnan(low):
        return low, high
    return max(low, bounds[0]), min(high, bounds[1])


def summarize(values: Sequence[float], confidence: float = 0.95,
              bounds: tuple[float, float] = UNBOUNDED) -> ArmSummary:
    """Summarize one arm.

    mean = Σx/n, sd = sqrt(Σ(x - mean)² / (n - 1)) and the CI of the mean is
    mean ± t_{(1+confidence)/2, n-1} · sd/√n, cut to `bounds` (the metric's range; an accuracy's is
    [0, 1]).  With n = 1 the SD and CI are NaN; with n = 0 everything except n is NaN.  NaN or infinite
    inputs raise ValueError.
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
    return ArmSummary(n, mean, sd, *clip(mean - half, mean + half, bounds))
