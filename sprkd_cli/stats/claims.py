"""The seeds' claims as per-run numbers (docs/methods.md: the claims as metrics), and the Brown–Forsythe test
of equal spread between arms. Curves are per-epoch values in epoch order (epoch 1 first)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np

from .multiple import holm


def epochs_to(val_acc: Sequence[float], threshold: float) -> int | None:
    """The first epoch (1-based) whose validation accuracy is >= `threshold`; None when none is (censored)."""
    return next((epoch for epoch, acc in enumerate(val_acc, start=1) if acc >= threshold), None)


def auc_val_acc(val_acc: Sequence[float]) -> float:
    """Mean validation accuracy over the run's epochs (the area under its curve, per epoch)."""
    if len(val_acc) == 0:
        raise ValueError("auc_val_acc needs at least one epoch")
    return float(np.mean(np.asarray(val_acc, dtype=float)))


def sd_last(values: Sequence[float], k: int) -> float:
    """Sample standard deviation (n − 1) of the last `k` values; `k` >= 2 and at most len(values)."""
    if k < 2 or k > len(values):
        raise ValueError(f"sd over the last {k} values needs 2 <= k <= {len(values)}")
    return float(np.std(np.asarray(values[-k:], dtype=float), ddof=1))


MIN_SPREAD_RUNS = 3
"""Runs per arm the Brown–Forsythe test needs: with 2, the deviations from the median are equal by
construction and the test is degenerate."""


def brown_forsythe(values: Mapping[str, Mapping[int, float]], tol: float = 0.0) -> list[dict]:
    """For each pair of arms, in compare_arms' order: the Brown–Forsythe test of equal variances
    (Levene's test centred on the median, scipy.stats.levene(center='median')) of the per-seed values,
    with Holm-adjusted p-values across the pairs. NaN, with the reason in "refused", where an arm has fewer
    than MIN_SPREAD_RUNS values or both arms' values are equal within `tol` (no variation)."""
    from scipy import stats

    rows = []
    for a, b in itertools.combinations(values, 2):
        xa, xb = list(values[a].values()), list(values[b].values())
        statistic = p = math.nan
        refused = None
        few = [f"{name} has {len(x)}" for name, x in ((a, xa), (b, xb)) if len(x) < MIN_SPREAD_RUNS]
        if few:
            refused = (f"{a} − {b}: the Brown–Forsythe test needs at least {MIN_SPREAD_RUNS} runs per arm "
                       f"({', '.join(few)}; with 2 the deviations from the median are equal by construction)")
        elif np.ptp(xa) <= tol and np.ptp(xb) <= tol:
            refused = f"{a} − {b}: no variation across seeds in either arm (within {tol:.3g}): no test of spread"
        else:
            result = stats.levene(xa, xb, center="median")
            statistic, p = float(result.statistic), float(result.pvalue)
        rows.append({"a": a, "b": b, "statistic": statistic, "p": p, "refused": refused})
    for row, adjusted in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = adjusted
    return rows
