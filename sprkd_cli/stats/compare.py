"""Pairwise comparison of methods over seeds (docs/methods.md: statistics)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ._common import check_fraction, json_safe
from .effect_size import cohens_d, cohens_dz
from .multiple import holm
from .power import MAX_SEEDS, seeds_for_power
from .summary import UNBOUNDED, ArmSummary, clip, summarize
from .ttests import WelchTTest, paired_ttest, welch_ttest

MIN_SEEDS = 5
"""Arms with fewer seeds than this get a low-power note."""

_NO_WELCH = WelchTTest(math.nan, math.nan, math.nan, math.nan, math.nan)


@dataclass(frozen=True)
class PairResult:
    """Comparison of method `a` against method `b`; `diff` and all effects are a - b.

    ci_low/ci_high: Welch CI of mean_a - mean_b at the requested confidence, cut to the metric's range.
    p_holm / p_holm_paired: Holm adjustment of p_welch / p_paired across all pairs of one call.
    seeds_for_80_power: per-arm seeds a two-sided two-sample t-test needs for the requested
    power (80% by default) at |cohens_d|; None when d is 0, nan or more than 10,000 are needed.
    no_variation / no_variation_paired: each arm's values / the paired differences all lie within the
    tolerance `tol` of each other (largest minus smallest; no variation across seeds): the test, its effect
    size and interval are NaN.
    """

    a: str
    b: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    sd_a: float
    sd_b: float
    diff: float
    ci_low: float
    ci_high: float
    t_welch: float
    df_welch: float
    p_welch: float
    n_pairs: int
    paired_seeds: list[int]
    t_paired: float
    df_paired: float
    p_paired: float
    p_holm: float
    p_holm_paired: float
    cohens_d: float
    cohens_dz: float
    low_power: bool
    seeds_for_80_power: int | None
    warnings: list[str] = field(default_factory=list)
    no_variation: bool = False
    no_variation_paired: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN -> None)."""
        return json_safe(self)


def _checked(values: Mapping[str, Mapping[int, float]]) -> dict[str, dict[int, float]]:
    """Copy `values` as plain floats, raising ValueError on NaN/inf or a non-mapping arm."""
    out: dict[str, dict[int, float]] = {}
    for method, by_seed in values.items():
        if not isinstance(by_seed, Mapping):
            raise ValueError(f"values[{method!r}] must map seed -> value, got {type(by_seed).__name__}")
        arm: dict[int, float] = {}
        for seed, value in by_seed.items():
            x = float(value)
            if not math.isfinite(x):
                raise ValueError(f"values[{method!r}][{seed!r}] is not finite: {value!r}")
            arm[seed] = x
        out[method] = arm
    return out


def _fmt_power(power: float) -> str:
    return f"{power * 100:g}%"


def power_note(pairs: list[PairResult], power: float = 0.8, alpha: float = 0.05) -> str | None:
    """One note on power for a table of pairs, when some arm has fewer than MIN_SEEDS values: the seeds per
    arm a two-sided two-sample t-test needs for `power` at `alpha` at the largest and at the smallest
    observed |Cohen's d| among the pairs. None when no arm is short of seeds."""
    short = [p for p in pairs if p.low_power]
    if not short:
        return None
    counts = {}
    for p in pairs:
        counts.setdefault(p.a, p.n_a)
        counts.setdefault(p.b, p.n_b)
    few = ", ".join(f"{arm} {n}" for arm, n in counts.items() if n < MIN_SEEDS)
    head = f"low power: fewer than {MIN_SEEDS} seeds in {few}; "
    target = f"for {_fmt_power(power)} power (two-sided t-test, alpha {alpha:g})"
    known = [p for p in pairs if math.isfinite(p.cohens_d) and p.cohens_d != 0.0]
    if not known:
        return head + f"the seeds needed {target} cannot be estimated: no pair has a defined, nonzero Cohen's d"

    def needs(p: PairResult) -> str:
        n = f"{p.seeds_for_80_power}" if p.seeds_for_80_power is not None else f"more than {MAX_SEEDS:,}"
        return f"{n} seeds per arm at |d| = {abs(p.cohens_d):.3g} ({p.a} − {p.b})"

    largest = max(known, key=lambda p: abs(p.cohens_d))
    smallest = min(known, key=lambda p: abs(p.cohens_d))
    if largest is smallest:
        return head + f"{target} a t-test needs {needs(largest)}"
    return (head + f"{target} a t-test needs {needs(largest)}, the largest observed effect, and "
            f"{needs(smallest)}, the smallest")


def _compare_pair(
    a: str,
    b: str,
    arm_a: dict[int, float],
    arm_b: dict[int, float],
    sum_a: ArmSummary,
    sum_b: ArmSummary,
    confidence: float,
    power: float,
    alpha: float,
    tol: float = 0.0,
    bounds: tuple[float, float] = UNBOUNDED,
) -> PairResult:
    """One pair, before the Holm adjustment (p_holm fields are NaN here)."""
    warnings: list[str] = []
    for name, s in ((a, sum_a), (b, sum_b)):
        if s.n < 2:
            warnings.append(
                f"{name} has {s.n} value(s); Welch's t-test, its CI and Cohen's d need at least 2 per arm (reported as "
                "nan)"
            )
    flat = sum_a.n >= 2 and sum_b.n >= 2 and _spread(arm_a.values()) <= tol and _spread(arm_b.values()) <= tol
    if flat:
        warnings.append(
            f"{a} − {b}: no variation across seeds: both arms' values are equal within {tol:.3g} "
            "(in place of Welch's test, Cohen's d and the interval)"
        )
    welch = _NO_WELCH if flat else welch_ttest(sum_a, sum_b, confidence)

    shared = sorted(set(arm_a) & set(arm_b))
    only_a = sorted(set(arm_a) - set(arm_b))
    only_b = sorted(set(arm_b) - set(arm_a))
    paired = paired_ttest([arm_a[s] - arm_b[s] for s in shared])
    if paired.n < 2:
        warnings.append(
            f"{a} and {b} share {paired.n} seed(s); the paired t-test and d_z need at least 2 (reported as nan)"
        )
    elif only_a or only_b:
        warnings.append(
            f"the paired t-test uses only the {paired.n} seeds present in both arms; "
            f"seeds only in {a}: {only_a}, only in {b}: {only_b}"
        )
    flat_paired = paired.n >= 2 and _spread([arm_a[s] - arm_b[s] for s in shared]) <= tol
    if flat_paired:
        warnings.append(
            f"{a} − {b}: no variation across seeds in the paired differences: equal within {tol:.3g} on every "
            "shared seed (in place of the paired t-test and d_z)"
        )
        paired = paired._replace(t=math.nan, p=math.nan)

    d = math.nan if flat else cohens_d(sum_a, sum_b)
    needed = seeds_for_power(d, power, alpha)
    low_power = sum_a.n < MIN_SEEDS or sum_b.n < MIN_SEEDS

    return PairResult(
        a=a,
        b=b,
        n_a=sum_a.n,
        n_b=sum_b.n,
        mean_a=sum_a.mean,
        mean_b=sum_b.mean,
        sd_a=sum_a.sd,
        sd_b=sum_b.sd,
        diff=sum_a.mean - sum_b.mean,
        ci_low=clip(welch.ci_low, welch.ci_high, (bounds[0] - bounds[1], bounds[1] - bounds[0]))[0],
        ci_high=clip(welch.ci_low, welch.ci_high, (bounds[0] - bounds[1], bounds[1] - bounds[0]))[1],
        t_welch=welch.t,
        df_welch=welch.df,
        p_welch=welch.p,
        n_pairs=paired.n,
        paired_seeds=shared,
        t_paired=paired.t,
        df_paired=paired.df,
        p_paired=paired.p,
        p_holm=math.nan,
        p_holm_paired=math.nan,
        cohens_d=d,
        cohens_dz=math.nan if flat_paired else cohens_dz(paired),
        low_power=low_power,
        seeds_for_80_power=needed,
        warnings=warnings,
        no_variation=flat,
        no_variation_paired=flat_paired,
    )


def compare_arms(
    values: Mapping[str, Mapping[int, float]],
    confidence: float = 0.95,
    power: float = 0.8,
    alpha: float = 0.05,
    tol: float = 0.0,
    bounds: tuple[float, float] = UNBOUNDED,
) -> list[PairResult]:
    """Compare every pair of arms; `values[arm][seed]` is one metric value per run.

    Pairs follow the order the arms are given: (a0, a1), (a0, a2), ..., (a1, a2), ...
    Each pair gets Welch's t-test and CI of the mean difference, the paired t-test on the
    shared seeds, Cohen's d and d_z, and the seeds needed for `power` at `alpha`;
    p_welch and p_paired are then Holm-adjusted across all pairs of this call.
    `bounds` is the metric's range: each CI of a difference is cut to [lo − hi, hi − lo].
    Undefined tests (n < 2; no variation: sds, or paired differences' sd, <= `tol`) are NaN with a
    warning; NaN/inf inputs raise ValueError. The low-power note is one per table: power_note.
    """
    if not tol >= 0.0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    check_fraction(confidence, "confidence")
    check_fraction(power, "power")
    check_fraction(alpha, "alpha")
    arms = _checked(values)
    summaries = {m: summarize(list(arm.values()), confidence, bounds) for m, arm in arms.items()}
    raw = [
        _compare_pair(a, b, arms[a], arms[b], summaries[a], summaries[b], confidence, power, alpha, tol, bounds)
        for a, b in itertools.combinations(arms, 2)
    ]
    p_holm = holm([r.p_welch for r in raw])
    p_holm_paired = holm([r.p_paired for r in raw])
    return [replace(r, p_holm=h, p_holm_paired=hp) for r, h, hp in zip(raw, p_holm, p_holm_paired)]


def _spread(values) -> float:
    """Largest minus smallest (0 for fewer than two values): values one whole accuracy step apart are
    variation, even when their sd is below the step."""
    values = list(values)
    return max(values) - min(values) if len(values) > 1 else 0.0
