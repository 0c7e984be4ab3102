"""Welch's two-sample t-test and the paired t-test."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

# scipy.special, not scipy.stats: the same functions (scipy.stats.t.sf is special.stdtr, ...),
# without scipy.stats' half-second import
from scipy import special

from ._common import check_fraction, finite_array, sample_sd
from .summary import ArmSummary


class WelchTTest(NamedTuple):
    """Welch t statistic, Welch–Satterthwaite df, two-sided p and the CI of mean_a - mean_b."""

    t: float
    df: float
    p: float
    ci_low: float
    ci_high: float


class PairedTTest(NamedTuple):
    """Paired t-test on the differences d_i = a_i - b_i."""

    n: int
    mean: float
    sd: float
    t: float
    df: float
    p: float


_NAN_WELCH = WelchTTest(math.nan, math.nan, math.nan, math.nan, math.nan)


def welch_ttest(a: ArmSummary, b: ArmSummary, confidence: float = 0.95) -> WelchTTest:
    """Welch's unequal-variance t-test from two arm summaries.

    With v_a = sd_a²/n_a and v_b = sd_b²/n_b:
    se = sqrt(v_a + v_b), t = (mean_a - mean_b)/se,
    df = (v_a + v_b)² / (v_a²/(n_a - 1) + v_b²/(n_b - 1))  (Welch–Satterthwaite),
    p = 2·P(T_df > |t|), CI = (mean_a - mean_b) ± t_{(1+confidence)/2, df}·se.
    Everything is NaN when an arm has fewer than 2 values or both SDs are 0 (se = 0).
    """
    check_fraction(confidence, "confidence")
    if a.n < 2 or b.n < 2:
        return _NAN_WELCH
    va = a.sd**2 / a.n
    vb = b.sd**2 / b.n
    se = math.sqrt(va + vb)
    if se == 0.0:
        return _NAN_WELCH
    diff = a.mean - b.mean
    t = diff / se
    df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    p = float(2.0 * special.stdtr(df, -abs(t)))
    half = float(special.stdtrit(df, (1.0 + confidence) / 2.0)) * se
    return WelchTTest(t, df, p, diff - half, diff + half)


def paired_ttest(differences: Sequence[float]) -> PairedTTest:
    """Paired t-test on per-pair differences d_i = a_i - b_i.

    t = mean(d) / (sd(d)/√n) with df = n - 1 and p = 2·P(T_df > |t|).
    t, df and p are NaN with fewer than 2 pairs; t and p are NaN when sd(d) = 0.
    """
    d = finite_array(differences, "differences")
    n = int(d.size)
    if n < 2:
        mean = float(d[0]) if n == 1 else math.nan
        return PairedTTest(n, mean, math.nan, math.nan, math.nan, math.nan)
    mean = float(np.mean(d))
    sd = sample_sd(d)
    df = float(n - 1)
    if sd == 0.0:
        return PairedTTest(n, mean, sd, math.nan, df, math.nan)
    t = mean / (sd / math.sqrt(n))
    return PairedTTest(n, mean, sd, t, df, float(2.0 * special.stdtr(df, -abs(t))))
