"""Almost Stochastic Order (del Barrio, Cuesta-Albertos & Matrán 2018; Dror, Shlomov & Reichart 2019): how far
one arm's scores are from being stochastically larger than the other's, with a bootstrap upper bound ε_min.

The numerics follow the deepsig package's `aso` (Ulmer, Hardmeier & Frellsen 2022): the same grid of t, the
same empirical quantile function and the same bootstrap of the violation ratio, vectorised here. One
difference: deepsig leaves the first grid point out of the violation integral (not out of the distance); here
every point counts in both, so ε_W2(A, B) + ε_W2(B, A) = 1 exactly."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._common import check_fraction, finite_array, json_safe

DT = 0.005
"""The step of the grid of t in (0, 1) over which the quantile functions are integrated (deepsig's default)."""
BOOTSTRAP = 1000
"""Bootstrap resamples for the standard deviation of the violation ratio (deepsig's default)."""


@dataclass(frozen=True)
class AsoResult:
    """violation_ratio: ε_W2(A, B), the share of the squared Wasserstein-2 distance between the two quantile
    functions where A's quantile is below B's (0: A is stochastically larger everywhere; 1: smaller
    everywhere). eps_min: its upper confidence bound at `confidence` (clipped to [0, 1]); below 0.5, A's scores
    are almost stochastically larger than B's (the smaller, the closer to plain stochastic order)."""

    violation_ratio: float
    eps_min: float
    confidence: float
    sigma: float
    bootstrap: int

    def to_dict(self) -> dict[str, Any]:
        return json_safe(self)


@functools.lru_cache(maxsize=64)
def _segments(n: int, m: int, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The grid t = dt, 2dt, ... < 1 grouped into runs where both empirical quantile functions are constant:
    (index into sorted a, index into sorted b, points in the run). F⁻¹(t) = x_(⌈n·t⌉) as deepsig's quantile
    function; summing over runs weighted by their points equals summing over the grid, in far fewer terms."""
    t = np.arange(dt, 1, dt)
    ia = np.clip(np.ceil(n * t).astype(int) - 1, 0, n - 1)
    ib = np.clip(np.ceil(m * t).astype(int) - 1, 0, m - 1)
    change = np.flatnonzero(np.r_[True, (ia[1:] != ia[:-1]) | (ib[1:] != ib[:-1])])
    counts = np.diff(np.r_[change, t.size])
    return ia[change], ib[change], counts.astype(float)


def violation_ratio(a: np.ndarray, b: np.ndarray, dt: float = DT, *, deepsig_grid: bool = False) -> np.ndarray | float:
    """ε_W2(A, B) = ∫_{F⁻¹(t) < G⁻¹(t)} (F⁻¹ − G⁻¹)² dt / ∫ (F⁻¹ − G⁻¹)² dt, F and G the empirical distributions
    of `a` and `b` (the last axis: several samples at once), integrated on the grid t = dt, 2dt, ... < 1. 0.5
    where the two quantile functions are equal (as deepsig). `deepsig_grid`: leave the first grid point out
    of the violation integral, as deepsig 1.2.8 does (for checking against it)."""
    ia, ib, counts = _segments(a.shape[-1], b.shape[-1], dt)
    f = np.sort(a, axis=-1)[..., ia]
    g = np.sort(b, axis=-1)[..., ib]
    diff2 = (g - f) ** 2
    total = diff2 @ counts
    violation_counts = counts.copy()
    if deepsig_grid:
        violation_counts[0] -= 1.0
    violated = np.where(f < g, diff2, 0.0) @ violation_counts
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(total > 0, violated / np.where(total > 0, total, 1.0), 0.5)
    return float(ratio) if np.ndim(ratio) == 0 else ratio


def aso(scores_a: Sequence[float], scores_b: Sequence[float], confidence: float = 0.95, comparisons: int = 1,
        bootstrap: int = BOOTSTRAP, seed: int = 0, dt: float = DT, *, deepsig_grid: bool = False) -> AsoResult:
    """ε_min of A over B: ε_W2(A, B) + Φ⁻¹(c)·σ̂/√(nm/(n+m)), clipped to [0, 1], σ̂ the sd of √(nm/(n+m))·(ε* − ε)
    over `bootstrap` resamples ε* (each arm resampled with replacement, as deepsig draws from the empirical
    quantile function). c is `confidence`, Bonferroni-adjusted for `comparisons`: 1 − (1 − confidence)/comparisons
    (deepsig 1.2.8 adds (1 − confidence)/comparisons to confidence instead, a smaller adjustment)."""
    check_fraction(confidence, "confidence")
    if comparisons < 1:
        raise ValueError(f"comparisons must be >= 1, got {comparisons}")
    a = finite_array(scores_a, "scores_a")
    b = finite_array(scores_b, "scores_b")
    if a.size == 0 or b.size == 0:
        raise ValueError("ASO needs at least one score per arm")
    level = 1.0 - (1.0 - confidence) / comparisons
    ratio = violation_ratio(a, b, dt, deepsig_grid=deepsig_grid)
    rng = np.random.default_rng(seed)
    samples = violation_ratio(a[rng.integers(0, a.size, (bootstrap, a.size))],
                              b[rng.integers(0, b.size, (bootstrap, b.size))], dt, deepsig_grid=deepsig_grid)
    const = math.sqrt(a.size * b.size / (a.size + b.size))
    sigma = float(np.std(const * (samples - ratio)))
    from scipy import special

    z = float(special.ndtri(level))
    return AsoResult(ratio, float(np.clip(ratio + z * sigma / const, 0.0, 1.0)), level, sigma, bootstrap)
