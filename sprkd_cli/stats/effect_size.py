"""Standardized effect sizes: Cohen's d (average-variance form) and d_z (paired)."""

from __future__ import annotations

import math

from .summary import ArmSummary
from .ttests import PairedTTest


def cohens_d(a: ArmSummary, b: ArmSummary) -> float:
    """Cohen's d for Welch's setting: (mean_a - mean_b) / sqrt((sd_a² + sd_b²) / 2).

    NaN when either SD is undefined (n < 2) or both SDs are 0.
    """
    denom = math.sqrt((a.sd**2 + b.sd**2) / 2.0)
    if math.isnan(denom) or denom == 0.0:
        return math.nan
    return (a.mean - b.mean) / denom


def cohens_dz(paired: PairedTTest) -> float:
    """Cohen's d_z: mean(d) / sd(d) of the paired differences d_i = a_i - b_i.

    NaN with fewer than 2 pairs or when sd(d) = 0.
    """
    if math.isnan(paired.sd) or paired.sd == 0.0:
        return math.nan
    return paired.mean / paired.sd
