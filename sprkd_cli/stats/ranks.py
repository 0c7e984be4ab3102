"""The rank tests a reviewer asks for at small n (scipy.stats): Mann–Whitney U for two arms, Wilcoxon's signed
rank for the seeds they share. Wilcoxon: exact p from all 2ⁿ sign patterns up to 16 differences, ties
included (survival.signed_rank). Mann–Whitney: exact without ties; with ties, the permutation distribution
(every split when C(n+m, n) <= 9,999, else 9,999 random ones from a fixed seed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ._common import finite_array
from .survival import signed_rank

PERMUTATIONS = 9999


class RankTest(NamedTuple):
    statistic: float
    p: float
    n: int  # values used (the paired test: nonzero differences)


def mann_whitney(a: Sequence[float], b: Sequence[float], tol: float = 0.0) -> RankTest:
    """Two-sided Mann–Whitney U test; values within `tol` of each other count as ties (rounded onto a grid of
    step tol). NaN with fewer than one value in an arm, or when every value is tied."""
    from scipy import stats

    x, y = finite_array(a, "a"), finite_array(b, "b")
    if x.size == 0 or y.size == 0:
        return RankTest(math.nan, math.nan, 0)
    if tol > 0:
        x, y = np.round(x / tol) * tol, np.round(y / tol) * tol
    pooled = np.concatenate([x, y])
    if np.all(pooled == pooled[0]):
        return RankTest(math.nan, math.nan, int(pooled.size))
    if np.unique(pooled).size == pooled.size:
        result = stats.mannwhitneyu(x, y, alternative="two-sided", method="exact")
    else:
        result = stats.mannwhitneyu(x, y, alternative="two-sided",
                                    method=stats.PermutationMethod(n_resamples=PERMUTATIONS,
                                                                   rng=np.random.default_rng(0)))
    return RankTest(float(result.statistic), float(result.pvalue), int(pooled.size))


def wilcoxon_paired(differences: Sequence[float], tol: float = 0.0) -> RankTest:
    """Two-sided Wilcoxon signed-rank test of paired differences; differences within `tol` of 0 are zeros and
    dropped (Wilcoxon's convention), and |differences| within tol of each other are ties. NaN with no nonzero
    difference."""
    d = finite_array(differences, "differences")
    if tol > 0:
        d = np.round(d / tol) * tol
    d = d[d != 0.0]
    if d.size == 0:
        return RankTest(math.nan, math.nan, 0)
    statistic, p = signed_rank(d)
    return RankTest(statistic, p, int(d.size))
