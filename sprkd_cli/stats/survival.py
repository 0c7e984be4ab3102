"""Epochs to a threshold as right-censored time-to-event data: a run that never reaches the threshold is
censored at its last epoch, not dropped. Kaplan–Meier medians, the log-rank test (both scipy.stats) and a
paired signed-rank test on the seeds two arms share.

scipy.stats is imported inside the functions: importing this module stays cheap."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._common import check_fraction, json_safe


@dataclass(frozen=True)
class Censored:
    """The value of a run that never reached the threshold: censored at epoch `at` (its last)."""

    at: int


@dataclass(frozen=True)
class KaplanMeier:
    """One arm: runs, how many reached the threshold (events) and how many are censored; the Kaplan–Meier
    median epoch and its confidence interval (inf: not reached, the curve or its bound stays above 1/2)."""

    n: int
    reached: int
    censored: int
    median: float
    ci_low: float
    ci_high: float
    times: list[float]
    survival: list[float]

    def to_dict(self) -> dict[str, Any]:
        return json_safe(self)


def _split(values: Sequence[float | Censored]) -> tuple[list[float], list[float]]:
    """(epochs of the runs that reached, epochs at which the others were censored)."""
    reached = [float(v) for v in values if not isinstance(v, Censored)]
    censored = [float(v.at) for v in values if isinstance(v, Censored)]
    return reached, censored


def _censored_data(values: Sequence[float | Censored]):
    from scipy import stats

    reached, censored = _split(values)
    return stats.CensoredData(uncensored=reached, right=censored)


def kaplan_meier(values: Sequence[float | Censored], confidence: float = 0.95) -> KaplanMeier:
    """Kaplan–Meier estimate of P(not yet reached at epoch t) (scipy.stats.ecdf on right-censored data), its
    median (the first epoch where the curve is <= 1/2) and the median's interval: the first epochs where the
    curve's pointwise log-log (Greenwood) confidence band's lower and upper limits are <= 1/2
    (Brookmeyer & Crowley's construction). inf where that never happens; NaN without runs."""
    check_fraction(confidence, "confidence")
    reached, censored = _split(values)
    n = len(reached) + len(censored)
    if not reached:  # no event: the curve stays at 1
        return KaplanMeier(n, 0, len(censored), math.inf if n else math.nan, math.inf if n else math.nan,
                           math.inf if n else math.nan, [], [])
    from scipy import stats

    sf = stats.ecdf(_censored_data(values)).sf
    times, surv = np.asarray(sf.quantiles, dtype=float), np.asarray(sf.probabilities, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "undefined at some observations": where S is 0 or 1
        band = sf.confidence_interval(confidence, method="log-log")
    low, high = np.asarray(band.low.probabilities), np.asarray(band.high.probabilities)
    # where S = 0 or 1 the log-log band is undefined (NaN): there the band is the point itself
    low = np.where(np.isnan(low), surv, low)
    high = np.where(np.isnan(high), surv, high)

    def first_at_or_below_half(curve: np.ndarray) -> float:
        hit = np.flatnonzero(curve <= 0.5 + 1e-12)
        return float(times[hit[0]]) if hit.size else math.inf

    return KaplanMeier(n, len(reached), len(censored), first_at_or_below_half(surv), first_at_or_below_half(low),
                       first_at_or_below_half(high), times.tolist(), surv.tolist())


PERMUTATIONS = 9999
"""Random relabellings for the log-rank permutation p when there are more splits than PERMUTATIONS + 1."""


def _logrank_chi2(times: np.ndarray, events: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mantel–Cox chi-square for each row of `labels` (1: arm a) over the pooled runs: Σ(O − E)² / ΣV over the
    distinct event times, V the hypergeometric variance. NaN where ΣV = 0."""
    at = np.unique(times[events])
    risk = (times[:, None] >= at[None, :]).astype(float)
    died = (events[:, None] & (times[:, None] == at[None, :])).astype(float)
    n, d = risk.sum(0), died.sum(0)
    n_a, d_a = labels @ risk, labels @ died
    share = n_a / n
    o_e = (d_a - d * share).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (d * share * (1 - share) * np.where(n > 1, (n - d) / np.maximum(n - 1, 1), 0.0)).sum(-1)
        return np.where(var > 0, o_e**2 / np.where(var > 0, var, 1.0), np.nan)


def _pooled(a: Sequence[float | Censored], b: Sequence[float | Censored]):
    """(times, reached) of the runs of a then b; None when either arm is empty or no run reached."""
    runs = [*a, *b]
    if not a or not b or all(isinstance(v, Censored) for v in runs):
        return None
    return (np.array([float(v.at) if isinstance(v, Censored) else float(v) for v in runs]),
            np.array([not isinstance(v, Censored) for v in runs]))


def logrank(a: Sequence[float | Censored], b: Sequence[float | Censored],
            permutations: int = PERMUTATIONS) -> tuple[float, float]:
    """The log-rank test (Mantel–Cox) of equal time-to-threshold distributions: (chi-square on 1 df, two-sided
    p). The chi-square is Σ(O − E)²/ΣV over the event times (equal to scipy.stats.logrank's z squared); p is
    from the permutation distribution of the arm labels (runs exchangeable under the null): every split of the
    pooled runs when there are at most `permutations` + 1, else `permutations` random ones (fixed seed) and
    p = (1 + #{χ² ≥ observed})/(1 + permutations). The asymptotic χ² p (logrank_asymptotic) is liberal at a
    handful of runs per arm (bench/stats_calibration.py). NaN when either arm has no run or no run of either
    arm reached the threshold."""
    pooled = _pooled(a, b)
    if pooled is None:
        return math.nan, math.nan
    times, events = pooled
    n, k = times.size, len(a)
    observed = float(_logrank_chi2(times, events, np.r_[np.ones(k), np.zeros(n - k)][None, :])[0])
    if not math.isfinite(observed):
        return math.nan, math.nan
    tol = 1e-9 * max(1.0, observed)
    if math.comb(n, k) <= permutations + 1:
        import itertools

        labels = np.zeros((math.comb(n, k), n))
        for row, chosen in enumerate(itertools.combinations(range(n), k)):
            labels[row, list(chosen)] = 1.0
        null = _logrank_chi2(times, events, labels)
        p = float(np.mean(np.nan_to_num(null, nan=0.0) >= observed - tol))
    else:
        rng = np.random.default_rng(0)
        labels = np.zeros((permutations, n))
        picks = np.argsort(rng.random((permutations, n)), axis=1)[:, :k]
        np.put_along_axis(labels, picks, 1.0, axis=1)
        null = _logrank_chi2(times, events, labels)
        p = float((1 + np.sum(np.nan_to_num(null, nan=0.0) >= observed - tol)) / (1 + permutations))
    return observed, p


def logrank_asymptotic(a: Sequence[float | Censored], b: Sequence[float | Censored]) -> tuple[float, float]:
    """The log-rank chi-square and its asymptotic p (χ² on 1 df), as scipy.stats.logrank gives them. NaN when
    either arm has no run or no run of either arm reached the threshold (nothing to compare)."""
    pooled = _pooled(a, b)
    if pooled is None:
        return math.nan, math.nan
    times, events = pooled
    k = len(a)
    chi2 = float(_logrank_chi2(times, events, np.r_[np.ones(k), np.zeros(times.size - k)][None, :])[0])
    if not math.isfinite(chi2):
        return math.nan, math.nan
    from scipy import special

    return chi2, float(special.chdtrc(1, chi2))


@dataclass(frozen=True)
class PairedRank:
    """The paired signed-rank test on epochs to the threshold (see paired_rank_test)."""

    n_pairs: int
    used: int
    both_censored: int
    undetermined: int
    statistic: float
    p: float


def paired_rank_test(pairs: Sequence[tuple[float | Censored, float | Censored]]) -> PairedRank:
    """Wilcoxon's signed-rank test on the per-seed differences a − b of epochs to the threshold, where a
    censored run counts as slower than every run that reached it: a seed where one run reached at epoch t and
    the other was censored at c >= t gets a difference larger in size than every observed one (ties among
    such seeds share their ranks). A seed where both are censored is a tie (dropped, as Wilcoxon drops zero
    differences); one where the censored run stopped before the other reached (c < t) cannot be ordered and
    is dropped. p is two-sided and exact, ties included, from the 2ⁿ sign patterns (signed_rank). NaN with no
    usable seed."""
    finite, sides, both, undetermined = [], [], 0, 0
    for x, y in pairs:
        cx, cy = isinstance(x, Censored), isinstance(y, Censored)
        if cx and cy:
            both += 1
        elif cx:
            if x.at >= y:
                sides.append(1.0)
            else:
                undetermined += 1
        elif cy:
            if y.at >= x:
                sides.append(-1.0)
            else:
                undetermined += 1
        else:
            finite.append(float(x) - float(y))
    big = (max((abs(d) for d in finite), default=0.0) + 1.0)
    d = np.asarray(finite + [s * big for s in sides], dtype=float)
    d = d[d != 0.0]
    if d.size == 0:
        return PairedRank(len(pairs), 0, both, undetermined, math.nan, math.nan)
    statistic, p = signed_rank(d)
    return PairedRank(len(pairs), int(d.size), both, undetermined, statistic, p)


EXACT_SIGNS = 16
"""Up to this many nonzero differences, signed_rank enumerates all 2ⁿ sign patterns."""


def signed_rank(d: np.ndarray) -> tuple[float, float]:
    """Wilcoxon's signed-rank test of nonzero differences `d`: (T+, the sum of the ranks of |d| over the
    positive differences, tied |d| sharing their mean rank; two-sided p). Up to EXACT_SIGNS values p is exact
    from all 2ⁿ sign patterns (ties included): min(1, 2·min(P(T ≤ t), P(T ≥ t))), scipy's convention; beyond,
    scipy.stats.wilcoxon's normal approximation with its tie correction."""
    from scipy import stats

    d = np.asarray(d, dtype=float)
    ranks = stats.rankdata(np.abs(d))
    t = float(ranks[d > 0].sum())
    if d.size > EXACT_SIGNS:
        return t, float(stats.wilcoxon(d, method="asymptotic").pvalue)
    signs = (np.arange(2 ** d.size)[:, None] >> np.arange(d.size)) & 1
    null = signs @ ranks
    eps = 1e-9 * max(1.0, float(ranks.sum()))
    p = 2.0 * min(np.mean(null <= t + eps), np.mean(null >= t - eps))
    return t, float(min(1.0, p))
