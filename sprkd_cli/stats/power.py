"""Exact power of the two-sided two-sample t-test and the seeds per arm it needs."""

from __future__ import annotations

import math

import numpy as np

# scipy.special, not scipy.stats: the same functions (scipy.stats.t.sf is special.stdtr, ...),
# without scipy.stats' half-second import
from scipy import special

from ._common import check_fraction

MAX_SEEDS = 10_000
"""Largest per-arm sample size `seeds_for_power` searches."""


def two_sample_power(d: float, n: int | np.ndarray, alpha: float = 0.05) -> float | np.ndarray:
    """Power of a two-sided two-sample t-test with `n` values per arm at effect size `d`.

    df = 2n - 2, noncentrality λ = |d|·sqrt(n/2), c = t_{1-α/2, df};
    power = P(T'_{df,λ} > c) + P(T'_{df,λ} < -c), the second term computed as
    P(T'_{df,-λ} > c) (symmetry of the noncentral t), which stays finite for large λ.
    `n` may be an integer or an array of integers (each >= 2).
    """
    check_fraction(alpha, "alpha")
    n_arr = np.asarray(n, dtype=float)
    if np.any(n_arr < 2):
        raise ValueError("the two-sample t-test needs n >= 2 per arm")
    df = 2.0 * n_arr - 2.0
    ncp = abs(d) * np.sqrt(n_arr / 2.0)
    crit = special.stdtrit(df, 1.0 - alpha / 2.0)
    result = (1.0 - special.nctdtr(df, ncp, crit)) + (1.0 - special.nctdtr(df, -ncp, crit))
    return float(result) if np.ndim(result) == 0 else result


def seeds_for_power(d: float, power: float = 0.8, alpha: float = 0.05) -> int | None:
    """Smallest n per arm (searching n = 2, 3, ... upward) with `two_sample_power(d, n, alpha) >= power`.

    The search evaluates consecutive n in vectorized blocks of doubling size (64, 128, ...).

    Returns None when d is 0 or not finite, or when more than MAX_SEEDS (10,000) seeds
    per arm would be needed.  E.g. d = 0.5 -> 64 and d = 0.8 -> 26 at alpha 0.05, power 0.8.
    """
    check_fraction(power, "power")
    check_fraction(alpha, "alpha")
    if not math.isfinite(d) or d == 0.0:
        return None
    start, block = 2, 64
    while start <= MAX_SEEDS:
        ns = np.arange(start, min(start + block, MAX_SEEDS + 1))
        reached = np.flatnonzero(two_sample_power(d, ns, alpha) >= power)
        if reached.size:
            return int(ns[reached[0]])
        start, block = start + block, 2 * block
    return None
