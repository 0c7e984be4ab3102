"""Tests for sprkd_cli.stats against scipy and hand computations."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from sprkd_cli.stats import (
    ArmSummary,
    McNemarResult,
    PairResult,
    compare_arms,
    holm,
    mcnemar_exact,
    power_note,
    seeds_for_power,
    summarize,
    two_sample_power,
)

# Two arms with partially overlapping seeds: shared seeds are 2, 3, 4, 5.
KD = {0: 0.712, 1: 0.705, 2: 0.721, 3: 0.699, 4: 0.716, 5: 0.708}
CE = {2: 0.701, 3: 0.694, 4: 0.703, 5: 0.690, 6: 0.707, 7: 0.688, 8: 0.696}


def _only(results: list[PairResult]) -> PairResult:
    assert len(results) == 1
    return results[0]


# --- summarize -------------------------------------------------------------------------


def test_summarize_matches_scipy_t_interval() -> None:
    x = [0.71, 0.73, 0.70, 0.74, 0.72]
    s = summarize(x)
    assert s.n == 5
    assert s.mean == pytest.approx(np.mean(x))
    assert s.sd == pytest.approx(np.std(x, ddof=1))
    lo, hi = stats.t.interval(0.95, 4, loc=np.mean(x), scale=stats.sem(x))
    assert (s.ci_low, s.ci_high) == pytest.approx((lo, hi))


def test_summarize_single_value_and_empty() -> None:
    one = summarize([0.5])
    assert (one.n, one.mean) == (1, 0.5)
    assert math.isnan(one.sd) and math.isnan(one.ci_low) and math.isnan(one.ci_high)
    empty = summarize([])
    assert empty.n == 0 and math.isnan(empty.mean)
    assert one.to_dict() == {"n": 1, "mean": 0.5, "sd": None, "ci_low": None, "ci_high": None}


def test_summarize_constant_values_have_exactly_zero_sd() -> None:
    s = summarize([0.1, 0.1, 0.1])
    assert s.sd == 0.0
    assert s.ci_low == s.ci_high == s.mean


def test_summarize_rejects_nan() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        summarize([0.7, float("nan")])


# --- Welch and paired t-tests ------------------------------------------------------------


def test_welch_t_and_p_equal_scipy() -> None:
    r = _only(compare_arms({"kd": KD, "ce": CE}))
    ref = stats.ttest_ind(list(KD.values()), list(CE.values()), equal_var=False)
    assert (r.n_a, r.n_b) == (6, 7)
    assert r.t_welch == pytest.approx(ref.statistic, rel=1e-12)
    assert r.p_welch == pytest.approx(ref.pvalue, rel=1e-10)
    assert r.df_welch == pytest.approx(ref.df, rel=1e-12)
    assert r.diff == pytest.approx(np.mean(list(KD.values())) - np.mean(list(CE.values())))


def test_welch_matches_scipy_on_random_arms() -> None:
    rng = np.random.default_rng(0)
    for n_a, n_b in [(2, 2), (3, 8), (10, 4), (25, 25)]:
        a = rng.normal(0.7, 0.02, n_a)
        b = rng.normal(0.69, 0.05, n_b)
        r = _only(compare_arms({"a": dict(enumerate(a)), "b": dict(enumerate(b))}))
        ref = stats.ttest_ind(a, b, equal_var=False)
        assert r.t_welch == pytest.approx(ref.statistic, rel=1e-10)
        assert r.p_welch == pytest.approx(ref.pvalue, rel=1e-9)


def test_paired_test_uses_only_shared_seeds() -> None:
    r = _only(compare_arms({"kd": KD, "ce": CE}))
    shared = [2, 3, 4, 5]
    ref = stats.ttest_rel([KD[s] for s in shared], [CE[s] for s in shared])
    assert r.n_pairs == 4
    assert r.paired_seeds == shared
    assert r.t_paired == pytest.approx(ref.statistic, rel=1e-10)
    assert r.p_paired == pytest.approx(ref.pvalue, rel=1e-9)
    assert r.df_paired == 3
    assert any("seeds only in kd: [0, 1], only in ce: [6, 7, 8]" in w for w in r.warnings)


def test_paired_test_nan_with_fewer_than_two_pairs() -> None:
    r = _only(compare_arms({"a": {0: 0.1, 1: 0.2, 2: 0.3}, "b": {2: 0.2, 3: 0.25, 4: 0.1}}))
    assert r.n_pairs == 1 and r.paired_seeds == [2]
    assert math.isnan(r.t_paired) and math.isnan(r.p_paired) and math.isnan(r.cohens_dz)
    assert any("share 1 seed(s)" in w for w in r.warnings)
    assert not math.isnan(r.p_welch)


def test_welch_ci_equals_hand_computation() -> None:
    a = np.array(list(KD.values()))
    b = np.array(list(CE.values()))
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    diff = a.mean() - b.mean()
    half = stats.t.ppf(0.975, df) * se
    r = _only(compare_arms({"kd": KD, "ce": CE}))
    assert r.df_welch == pytest.approx(df, rel=1e-12)
    assert (r.ci_low, r.ci_high) == pytest.approx((diff - half, diff + half), rel=1e-10)
    r90 = _only(compare_arms({"kd": KD, "ce": CE}, confidence=0.90))
    half90 = stats.t.ppf(0.95, df) * se
    assert (r90.ci_low, r90.ci_high) == pytest.approx((diff - half90, diff + half90), rel=1e-10)


@pytest.mark.skipif(
    not hasattr(stats.ttest_ind([1.0, 2.0], [1.0, 3.0]), "confidence_interval"),
    reason="scipy < 1.11 has no ttest_ind(...).confidence_interval()",
)
def test_welch_ci_equals_scipy_confidence_interval() -> None:
    ref = stats.ttest_ind(list(KD.values()), list(CE.values()), equal_var=False).confidence_interval(0.95)
    r = _only(compare_arms({"kd": KD, "ce": CE}))
    assert (r.ci_low, r.ci_high) == pytest.approx((ref.low, ref.high), rel=1e-10)


# --- Holm --------------------------------------------------------------------------------


def test_holm_textbook_example() -> None:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_enforces_monotonicity() -> None:
    # Sorted: 0.01*3 = 0.03, 0.04*2 = 0.08, 0.045*1 = 0.045 -> raised to 0.08.
    assert holm([0.04, 0.01, 0.045]) == pytest.approx([0.08, 0.03, 0.08])


def test_holm_caps_at_one() -> None:
    # 0.2*3 = 0.6, 0.6*2 = 1.2 -> 1, 0.7*1 = 0.7 -> max(1.2, 0.7) capped at 1.
    assert holm([0.2, 0.6, 0.7]) == pytest.approx([0.6, 1.0, 1.0])
    assert holm([0.5]) == [0.5]


def test_holm_nan_kept_and_not_counted() -> None:
    out = holm([0.01, float("nan"), 0.04])
    assert out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.04)
    assert math.isnan(out[1])
    assert all(math.isnan(p) for p in holm([float("nan"), float("nan")]))
    assert holm([]) == []


def test_holm_rejects_invalid_p() -> None:
    with pytest.raises(ValueError):
        holm([0.5, 1.5])


def test_compare_arms_holm_across_all_pairs_in_order() -> None:
    rng = np.random.default_rng(1)
    values = {m: dict(enumerate(rng.normal(mu, 0.01, 6)))
              for m, mu in [("m0", 0.70), ("m1", 0.71), ("m2", 0.69), ("m3", 0.70)]}
    results = compare_arms(values)
    assert [(r.a, r.b) for r in results] == [
        ("m0", "m1"), ("m0", "m2"), ("m0", "m3"), ("m1", "m2"), ("m1", "m3"), ("m2", "m3"),
    ]
    raw = [r.p_welch for r in results]
    assert [r.p_holm for r in results] == pytest.approx(holm(raw))
    assert [r.p_holm_paired for r in results] == pytest.approx(holm([r.p_paired for r in results]))
    # Holm never lowers a p-value, and the smallest p is multiplied by the family size 6.
    i = int(np.argmin(raw))
    assert results[i].p_holm == pytest.approx(min(1.0, 6 * raw[i]))
    assert all(r.p_holm >= r.p_welch for r in results)


# --- effect sizes --------------------------------------------------------------------------


def test_cohens_d_hand_computed() -> None:
    # a: mean 2.5, var 5/3; b: mean 4, var 4 -> d = -1.5 / sqrt((5/3 + 4) / 2).
    r = _only(compare_arms({"a": {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}, "b": {0: 2.0, 1: 4.0, 2: 6.0}}))
    assert r.cohens_d == pytest.approx(-1.5 / math.sqrt((5 / 3 + 4) / 2))
    assert r.cohens_d == pytest.approx(-0.8911327886790069)


def test_cohens_dz_hand_computed() -> None:
    # Differences 1, 2, 3, 5: mean 2.75, var (1.75² + 0.75² + 0.25² + 2.25²)/3 = 8.75/3.
    r = _only(compare_arms({"a": {0: 1.0, 1: 2.0, 2: 4.0, 3: 7.0}, "b": {0: 0.0, 1: 0.0, 2: 1.0, 3: 2.0}}))
    assert r.cohens_dz == pytest.approx(2.75 / math.sqrt(8.75 / 3))
    assert r.t_paired == pytest.approx(r.cohens_dz * math.sqrt(4))


# --- power ---------------------------------------------------------------------------------


def test_seeds_for_power_textbook_values() -> None:
    assert seeds_for_power(0.5) == 64
    assert seeds_for_power(0.8) == 26
    assert seeds_for_power(-0.5) == 64
    assert seeds_for_power(0.5, power=0.9) == 86


def test_seeds_for_power_is_the_smallest_n() -> None:
    n = seeds_for_power(1.2)
    assert n is not None
    assert two_sample_power(1.2, n) >= 0.8 > two_sample_power(1.2, n - 1)


def test_seeds_for_power_undefined_cases() -> None:
    assert seeds_for_power(0.0) is None
    assert seeds_for_power(float("nan")) is None
    assert seeds_for_power(0.01) is None  # ~157,000 per arm > 10,000


def test_two_sample_power_at_zero_effect_is_alpha() -> None:
    assert two_sample_power(0.0, 10, alpha=0.05) == pytest.approx(0.05)


def test_two_sample_power_large_effect_is_finite() -> None:
    # Large noncentrality, where scipy's nct.cdf lower tail can return NaN.
    p = two_sample_power(12.0, np.arange(2, 10))
    assert np.all(np.isfinite(p)) and np.all(p > 0.99)
    assert seeds_for_power(12.0) == 2


# --- McNemar -------------------------------------------------------------------------------


def test_mcnemar_counts_and_pvalue() -> None:
    labels = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1]
    # positions 0-6: A right, B wrong (b = 7); 7-8: A wrong, B right (c = 2);
    # 9-11 both right, 12-13 both wrong.
    pred_a = [0, 1, 2, 0, 1, 2, 0, 0, 0, 0, 1, 2, 1, 2]
    pred_b = [1, 2, 0, 1, 2, 0, 1, 1, 2, 0, 1, 2, 2, 0]
    r = mcnemar_exact(pred_a, pred_b, labels)
    assert isinstance(r, McNemarResult)
    assert (r.b, r.c, r.n) == (7, 2, 14)
    assert r.p_value == pytest.approx(stats.binomtest(7, 9, 0.5).pvalue, rel=1e-12)
    assert r.p_value == pytest.approx(2 * (1 + 9 + 36) / 2**9)  # 2·P(X <= 2), X ~ Bin(9, 1/2)
    assert r.acc_a == pytest.approx(10 / 14) and r.acc_b == pytest.approx(5 / 14)
    swapped = mcnemar_exact(pred_b, pred_a, labels)
    assert (swapped.b, swapped.c, swapped.p_value) == (2, 7, r.p_value)


def test_mcnemar_equal_discordant_counts_gives_one() -> None:
    r = mcnemar_exact(np.array([1, 0, 1, 0]), np.array([0, 1, 0, 1]), np.array([1, 1, 0, 0]))
    assert (r.b, r.c) == (2, 2)  # A right on examples 0 and 3, B right on 1 and 2
    assert r.p_value == pytest.approx(stats.binomtest(2, 4, 0.5).pvalue) == 1.0


def test_mcnemar_no_discordant_pairs() -> None:
    r = mcnemar_exact([0, 1, 1], [0, 1, 1], [0, 1, 0])
    assert (r.b, r.c, r.p_value) == (0, 0, 1.0)


def test_mcnemar_length_mismatch() -> None:
    with pytest.raises(ValueError, match="same length"):
        mcnemar_exact([0, 1, 1], [0, 1], [0, 1, 0])


def test_mcnemar_rejects_non_integer_predictions() -> None:
    with pytest.raises(ValueError, match="integers"):
        mcnemar_exact([0.2, 0.9], [0, 1], [0, 1])


# --- warnings and edge cases ---------------------------------------------------------------


def test_low_power_flag_and_warning_text() -> None:
    r = _only(compare_arms({"kd": {0: 0.71, 1: 0.73, 2: 0.72}, "ce": {0: 0.70, 1: 0.72, 2: 0.69}}))
    assert r.low_power is True
    assert r.seeds_for_80_power == seeds_for_power(r.cohens_d)
    assert r.seeds_for_80_power is not None
    assert not any("low power" in w for w in r.warnings)  # one note per table, not one per pair
    note = power_note([r])
    assert note == (f"low power: fewer than 5 seeds in kd 3, ce 3; for 80% power (two-sided t-test, alpha 0.05) a "
                    f"t-test needs {r.seeds_for_80_power} seeds per arm at |d| = {abs(r.cohens_d):.3g} (kd − ce)")


def test_no_low_power_warning_with_five_seeds() -> None:
    rng = np.random.default_rng(2)
    r = _only(compare_arms({m: dict(enumerate(rng.normal(0.7, 0.01, 5))) for m in ("a", "b")}))
    assert r.low_power is False
    assert not any(w.startswith("low power") for w in r.warnings)


def test_low_power_uses_requested_power_and_alpha() -> None:
    r = _only(compare_arms({"a": {0: 1.0, 1: 2.0, 2: 3.0}, "b": {0: 2.0, 1: 3.0, 2: 4.5}}, power=0.9, alpha=0.01))
    assert r.seeds_for_80_power == seeds_for_power(r.cohens_d, power=0.9, alpha=0.01)
    note = power_note([r], power=0.9, alpha=0.01)
    assert "90% power" in note and "alpha 0.01" in note


def test_power_note_names_the_largest_and_smallest_effect() -> None:
    values = {"a": {0: 1.0, 1: 2.0, 2: 3.0}, "b": {0: 2.0, 1: 3.0, 2: 4.5}, "c": {0: 1.1, 1: 2.2, 2: 3.0}}
    results = compare_arms(values)
    note = power_note(results)
    big = max(results, key=lambda r: abs(r.cohens_d))
    small = min(results, key=lambda r: abs(r.cohens_d))
    assert (f"{big.seeds_for_80_power} seeds per arm at |d| = {abs(big.cohens_d):.3g} ({big.a} − {big.b}), "
            "the largest") in note
    assert (f"{small.seeds_for_80_power} seeds per arm at |d| = {abs(small.cohens_d):.3g} ({small.a} − {small.b}), "
            "the smallest") in note
    assert power_note(compare_arms({m: dict(enumerate(range(5))) for m in "xy"})) is None


def test_zero_variance_in_both_arms() -> None:
    values = {"a": {0: 0.7, 1: 0.7, 2: 0.7}, "b": {0: 0.6, 1: 0.6, 2: 0.6}, "c": {0: 0.5, 1: 0.6, 2: 0.55}}
    ab, ac, bc = compare_arms(values)
    assert math.isnan(ab.t_welch) and math.isnan(ab.p_welch) and math.isnan(ab.p_holm)
    assert math.isnan(ab.cohens_d) and ab.seeds_for_80_power is None
    assert ab.no_variation and ab.no_variation_paired
    assert any("no variation across seeds: both arms' values are equal" in w for w in ab.warnings)
    assert any("no variation across seeds in the paired differences" in w for w in ab.warnings)
    # The NaN p-value is not counted in the Holm family: two valid p-values remain.
    assert ac.p_holm == pytest.approx(holm([ac.p_welch, bc.p_welch])[0])
    assert not ac.no_variation  # only one arm is constant


def test_spreads_within_the_tolerance_are_no_variation() -> None:
    # float32 rounding noise: per-seed differences 0.00782123 and 0.00782121
    a = {0: 0.9, 1: 0.85}
    b = {0: 0.9 - 0.00782123, 1: 0.85 - 0.00782121}
    exact = _only(compare_arms({"a": a, "b": b}))
    assert exact.p_paired < 1e-3  # what the paired t-test makes of the noise
    r = _only(compare_arms({"a": a, "b": b}, tol=1e-6))
    assert r.no_variation_paired and math.isnan(r.p_paired) and math.isnan(r.cohens_dz)
    assert not r.no_variation and r.p_welch == exact.p_welch
    with pytest.raises(ValueError):
        compare_arms({"a": a, "b": b}, tol=-1.0)


def test_one_test_example_apart_is_variation_even_when_the_sd_is_below_the_step() -> None:
    step = 1 / 359  # accuracies on 359 test examples
    a = {s: 0.9582 for s in range(4)} | {4: 0.9582 + step}  # one seed one example better: sd 0.00124 < step / 2
    b = {s: 0.9694 + (s % 2) * step for s in range(5)}
    r = _only(compare_arms({"a": a, "b": b}, tol=step / 2))
    assert not r.no_variation and not r.no_variation_paired and r.p_welch < 0.01
    flat = _only(compare_arms({"a": {s: 0.9582 for s in range(5)}, "b": {s: 0.9694 for s in range(5)}},
                                 tol=step / 2))
    assert flat.no_variation and math.isnan(flat.p_welch)


def test_method_with_zero_or_one_value() -> None:
    values = {"a": {0: 0.7, 1: 0.71, 2: 0.69}, "one": {0: 0.5}, "none": {}}
    results = compare_arms(values)
    assert len(results) == 3
    for r in results:
        assert math.isnan(r.p_welch) and math.isnan(r.ci_low) and math.isnan(r.p_paired)
        assert r.low_power
        assert any("need at least 2 per arm" in w for w in r.warnings)
    assert results[0].n_b == 1 and results[1].n_b == 0


def test_nan_input_rejected() -> None:
    with pytest.raises(ValueError, match=r"values\['b'\]\[1\]"):
        compare_arms({"a": {0: 0.7, 1: 0.71}, "b": {0: 0.6, 1: float("nan")}})


def test_to_dict_is_json_safe() -> None:
    r = compare_arms({"a": {0: 0.7, 1: 0.71, 2: 0.69}, "one": {0: 0.5}})[0]
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["p_welch"] is None and d["seeds_for_80_power"] is None
    assert d["paired_seeds"] == [0] and d["a"] == "a" and isinstance(d["warnings"], list)
    assert isinstance(summarize([1.0, 2.0]), ArmSummary)


def test_invalid_levels_rejected() -> None:
    with pytest.raises(ValueError):
        compare_arms({"a": KD, "b": CE}, confidence=95)
    with pytest.raises(ValueError):
        seeds_for_power(0.5, power=1.0)


def test_module_imports_only_numpy_scipy_stdlib() -> None:
    code = ("import sys, sprkd_cli.stats; "
            "print(sorted(m for m in ('torch', 'pandas', 'scipy.stats') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- epochs to a threshold as censored time-to-event data ------------------------------------

from sprkd_cli.stats.survival import (  # noqa: E402
    Censored,
    _logrank_chi2,
    kaplan_meier,
    logrank,
    logrank_asymptotic,
    paired_rank_test,
)

# Freireich et al. (1963) remission times in weeks, the textbook example of Kleinbaum & Klein, Survival
# Analysis: A Self-Learning Text (3rd ed., 2012), chapter 2: 6-MP (9 relapses, 12 censored) and placebo (21
# relapses). Their log-rank statistic: 16.79 on 1 df; their Kaplan–Meier table for 6-MP: S = 0.8571, 0.8067,
# 0.7529, 0.6902, 0.6275, 0.5378, 0.4482 at weeks 6, 7, 10, 13, 16, 22, 23; medians 23 (6-MP) and 8 (placebo).
SIX_MP = [6, 6, 6, 7, 10, 13, 16, 22, 23] + [Censored(t) for t in (6, 9, 10, 11, 17, 19, 20, 25, 32, 32, 34, 35)]
PLACEBO = [1, 1, 2, 2, 3, 4, 4, 5, 5, 8, 8, 8, 8, 11, 11, 12, 12, 15, 17, 22, 23]


def _logrank_by_hand(a, b) -> float:
    """Σ(O − E) over the event times, squared, over Σ V (the hypergeometric variance): Mantel–Cox."""
    def at_risk(arm, t):
        return sum((v.at if isinstance(v, Censored) else v) >= t for v in arm)

    def events(arm, t):
        return sum(not isinstance(v, Censored) and v == t for v in arm)

    o_e = var = 0.0
    for t in sorted({v for v in a + b if not isinstance(v, Censored)}):
        na, nb, da, d = at_risk(a, t), at_risk(b, t), events(a, t), events(a, t) + events(b, t)
        n = na + nb
        o_e += da - d * na / n
        var += d * (na / n) * (nb / n) * (n - d) / (n - 1) if n > 1 else 0.0
    return o_e**2 / var


def test_logrank_equals_the_textbook_example() -> None:
    chi2, p = logrank_asymptotic(SIX_MP, PLACEBO)
    assert round(chi2, 2) == 16.79
    ref = stats.logrank(stats.CensoredData(uncensored=[6, 6, 6, 7, 10, 13, 16, 22, 23],
                                           right=[6, 9, 10, 11, 17, 19, 20, 25, 32, 32, 34, 35]),
                        stats.CensoredData(uncensored=PLACEBO))
    assert chi2 == pytest.approx(ref.statistic**2, rel=1e-12) and p == pytest.approx(ref.pvalue, rel=1e-9)
    assert chi2 == pytest.approx(_logrank_by_hand(SIX_MP, PLACEBO), rel=1e-12)
    assert p == pytest.approx(stats.chi2.sf(chi2, 1), rel=1e-9)
    assert logrank(PLACEBO, SIX_MP)[0] == pytest.approx(chi2, rel=1e-12)
    # the vectorised statistic the permutation p uses is the same Mantel–Cox sum
    times = np.array([float(v.at) if isinstance(v, Censored) else v for v in SIX_MP + PLACEBO])
    events = np.array([not isinstance(v, Censored) for v in SIX_MP + PLACEBO])
    labels = np.r_[np.ones(len(SIX_MP)), np.zeros(len(PLACEBO))][None, :]
    assert _logrank_chi2(times, events, labels)[0] == pytest.approx(chi2, rel=1e-12)
    # 42 runs: 9,999 random relabellings, none as extreme: p = 1/10,000
    assert logrank(SIX_MP, PLACEBO)[1] == pytest.approx(1 / 10_000)


def test_logrank_permutation_p_enumerates_every_split() -> None:
    # 3 + 3 runs: all 20 splits by hand, each split's chi-square from scipy
    a, b = [3, Censored(4), 1], [2, 3, 4]
    import itertools

    pooled = a + b

    def scipy_chi2(x, y):
        def data(arm):
            return stats.CensoredData(uncensored=[v for v in arm if not isinstance(v, Censored)],
                                      right=[v.at for v in arm if isinstance(v, Censored)])

        return stats.logrank(data(x), data(y)).statistic ** 2

    observed = scipy_chi2(a, b)
    null = []
    for chosen in itertools.combinations(range(6), 3):
        x = [pooled[i] for i in chosen]
        y = [pooled[i] for i in range(6) if i not in chosen]
        null.append(scipy_chi2(x, y))
    assert logrank(a, b) == (pytest.approx(observed), pytest.approx(np.mean([c >= observed - 1e-9 for c in null])))


def test_kaplan_meier_equals_the_textbook_table_and_medians() -> None:
    km = kaplan_meier(SIX_MP)
    assert (km.n, km.reached, km.censored) == (21, 9, 12)
    table = dict(zip(km.times, km.survival))
    assert [round(table[t], 4) for t in (6, 7, 10, 13, 16, 22, 23)] == [
        0.8571, 0.8067, 0.7529, 0.6902, 0.6275, 0.5378, 0.4482]
    assert km.median == 23 and kaplan_meier(PLACEBO).median == 8


def test_kaplan_meier_median_interval_from_the_log_log_greenwood_band() -> None:
    # by hand: S(t) and Greenwood's Σ d/(n(n−d)); band S^exp(±z·se/log S), se = sqrt(Σ)/|log S|
    km = kaplan_meier(PLACEBO)
    z = stats.norm.ppf(0.975)
    s, greenwood, low, high = 1.0, 0.0, [], []
    times = sorted(set(PLACEBO))
    for t in times:
        n, d = sum(v >= t for v in PLACEBO), PLACEBO.count(t)
        s *= 1 - d / n
        if s in (0.0, 1.0):
            low.append(s), high.append(s)
            continue
        greenwood += d / (n * (n - d))
        half = z * math.sqrt(greenwood) / abs(math.log(s))
        low.append(s ** math.exp(half)), high.append(s ** math.exp(-half))
    first = lambda curve: next(t for t, v in zip(times, curve) if v <= 0.5)  # noqa: E731
    assert (km.ci_low, km.ci_high) == (first(low), first(high))
    assert km.ci_low < km.median < km.ci_high


def test_one_arm_reaches_and_the_other_never_does() -> None:
    # digits-scale: five seeds reach the threshold at epochs 5, 6, 5, 7, 6; five never do in 20 epochs
    fast = [5, 6, 5, 7, 6]
    never = [Censored(20)] * 5
    chi2, p = logrank(fast, never)
    # by hand: t=5: 5 and 5 at risk, 2 events, E = 1, V = 2·(1/2)(1/2)(8/9); t=6: 3 and 5, 2 events, E = 3/4,
    # V = 2·(3/8)(5/8)(6/7); t=7: 1 and 5, 1 event, E = 1/6, V = (1/6)(5/6); O = 5
    o_e = 5 - (1 + 3 / 4 + 1 / 6)
    var = 2 * 0.25 * 8 / 9 + 2 * (3 / 8) * (5 / 8) * (6 / 7) + (1 / 6) * (5 / 6)
    assert chi2 == pytest.approx(o_e**2 / var, rel=1e-12)
    assert logrank_asymptotic(fast, never)[1] == pytest.approx(stats.chi2.sf(o_e**2 / var, 1), rel=1e-9)
    # of the 252 ways to split the 10 runs into two arms of 5, only this one and its mirror are as extreme
    assert p == pytest.approx(2 / 252, rel=1e-12)
    a, b = kaplan_meier(fast), kaplan_meier(never)
    assert (a.reached, a.censored, a.median) == (5, 0, 6)
    assert (b.reached, b.censored) == (0, 5) and math.isinf(b.median)
    paired = paired_rank_test(list(zip(fast, never)))
    # every seed: the censored run is slower: all five differences negative, exact p = 2/2^5
    assert (paired.used, paired.undetermined) == (5, 0)
    assert paired.p == pytest.approx(2 / 32, rel=1e-12)


def test_paired_rank_test_orders_what_can_be_ordered() -> None:
    # finished pairs give their differences; a censored run at c >= the other's epoch is the slower one (a
    # difference above every observed one); c below the other's epoch cannot be ordered; both censored: a tie
    pairs = [(3, 5), (4, 4.5), (2, Censored(10)), (Censored(8), 9), (Censored(10), Censored(10)), (6, 8.5)]
    result = paired_rank_test(pairs)
    assert (result.n_pairs, result.used, result.undetermined, result.both_censored) == (6, 4, 1, 1)
    ref = stats.wilcoxon([3 - 5, 4 - 4.5, -(2.5 + 1), 6 - 8.5], method="exact")  # 2.5: the largest |d|
    assert result.p == pytest.approx(ref.pvalue, rel=1e-12)
    assert math.isnan(logrank([Censored(4)] * 3, [Censored(4)] * 3)[0])


def test_intervals_are_cut_to_the_metric_range() -> None:
    # two seeds of an accuracy: the t interval of the mean runs far past 1 (compare printed [0.2789, 1.2699])
    x = [0.6, 0.95]
    plain = summarize(x)
    assert plain.ci_high > 1.0
    cut = summarize(x, bounds=(0.0, 1.0))
    assert (plain.ci_low < 0.0 and (cut.ci_low, cut.ci_high) == (0.0, 1.0)
            and (cut.mean, cut.sd) == (plain.mean, plain.sd))
    r = _only(compare_arms({"a": {0: 0.6, 1: 0.95}, "b": {0: 0.1, 1: 0.12}}, bounds=(0.0, 1.0)))
    free = _only(compare_arms({"a": {0: 0.6, 1: 0.95}, "b": {0: 0.1, 1: 0.12}}))
    assert (free.ci_high > 1.0 and free.ci_low < -1.0 and (r.ci_low, r.ci_high) == (-1.0, 1.0)
            and r.p_welch == free.p_welch)
    from sprkd_cli.stats.summary import ci_method

    assert ci_method((0.0, 1.0)) == "t interval, cut to the metric's range [0, 1]"


# --- rank tests and Almost Stochastic Order ------------------------------------------------------

from sprkd_cli.stats.aso import aso, violation_ratio  # noqa: E402
from sprkd_cli.stats.ranks import mann_whitney, wilcoxon_paired  # noqa: E402


def test_rank_tests_equal_scipy_exact() -> None:
    a, b = [0.71, 0.73, 0.70, 0.745, 0.72], [0.69, 0.705, 0.68, 0.715, 0.675]
    ref = stats.mannwhitneyu(a, b, alternative="two-sided", method="exact")
    got = mann_whitney(a, b)
    assert (got.statistic, got.n) == (ref.statistic, 10) and got.p == pytest.approx(ref.pvalue, rel=1e-12)
    d = [x - y for x, y in zip(a, b)]
    assert wilcoxon_paired(d).p == pytest.approx(stats.wilcoxon(d, method="exact").pvalue, rel=1e-12)
    # within the tolerance: a tie, and a zero difference dropped
    assert wilcoxon_paired([1e-9, 0.02, 0.03, -0.01], tol=1e-6).n == 3
    assert math.isnan(mann_whitney([0.5, 0.5], [0.5 + 1e-12, 0.5], tol=1e-6).p)


def test_rank_test_with_ties_uses_the_exact_permutation_distribution() -> None:
    a, b = [1.0, 2.0, 2.0, 3.0], [2.0, 3.0, 4.0, 4.0]
    # by hand: every split of the 8 values into 4 and 4 (70), U of each, two-sided as scipy counts it
    import itertools

    pooled = a + b

    def u(x, y):
        return sum((xi > yi) + 0.5 * (xi == yi) for xi in x for yi in y)

    observed = u(a, b)
    us = []
    for idx in itertools.combinations(range(8), 4):
        x = [pooled[i] for i in idx]
        y = [pooled[i] for i in range(8) if i not in idx]
        us.append(u(x, y))
    mean = 8.0
    extreme = sum(abs(v - mean) >= abs(observed - mean) - 1e-12 for v in us) / len(us)
    assert mann_whitney(a, b).p == pytest.approx(extreme, rel=1e-12)


# deepsig 1.2.8 (pip install deepsig, in a scratch venv), aso(a, b, seed=s, show_progress=False) for
# s = 0, 2000, ..., 18000 with its defaults (confidence 0.95, 1000 bootstrap iterations, dt 0.005), and
# deepsig.aso.compute_violation_ratio(a, b, dt=0.005):
DEEPSIG = {
    "overlap": {"a": [0.1, 0.5, 0.3, 0.8, 0.6], "b": [0.2, 0.4, 0.7, 0.35, 0.55],
                "violation_ratio": 0.3525179856115107, "eps_mean": 0.9816, "eps_sd": 0.006},
    "normal10": {"a": [0.689053, -0.022748, 0.086936, -1.941467, 2.299707, 1.644166, 0.174577, 1.273807, 0.781211,
                       -0.053823],
                 "b": [0.345584, 0.821618, 0.330437, -1.303157, 0.905356, 0.446375, -0.536953, 0.581118, 0.364572,
                       0.294132],
                 "violation_ratio": 0.14156227895548254, "eps_mean": 0.6219, "eps_sd": 0.0118},
}


@pytest.mark.parametrize("case", sorted(DEEPSIG))
def test_aso_equals_deepsig(case) -> None:
    ref = DEEPSIG[case]
    a, b = np.array(ref["a"]), np.array(ref["b"])
    assert violation_ratio(a, b, deepsig_grid=True) == pytest.approx(ref["violation_ratio"], rel=1e-12)
    eps = [aso(a, b, seed=s, deepsig_grid=True).eps_min for s in range(10)]
    # two means of 10 bootstrap runs each: within 4 standard errors of their difference
    se = math.sqrt(ref["eps_sd"] ** 2 / 10 + np.var(eps, ddof=1) / 10)
    assert abs(np.mean(eps) - ref["eps_mean"]) < 4 * se + 1e-4


def test_aso_against_deepsig_live_when_installed() -> None:
    deepsig = pytest.importorskip("deepsig")
    for ref in DEEPSIG.values():
        assert violation_ratio(np.array(ref["a"]), np.array(ref["b"]), deepsig_grid=True) == pytest.approx(
            deepsig.aso.compute_violation_ratio(np.array(ref["a"]), np.array(ref["b"]), dt=0.005), rel=1e-12)


def test_aso_limits_symmetry_and_bonferroni() -> None:
    low, high = [0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]
    assert aso(high, low).eps_min == 0.0 and aso(low, high).eps_min == 1.0  # stochastic order, both ways
    a, b = np.array(DEEPSIG["normal10"]["a"]), np.array(DEEPSIG["normal10"]["b"])
    assert violation_ratio(a, b) + violation_ratio(b, a) == pytest.approx(1.0, abs=1e-12)
    one, three = aso(a, b, seed=1), aso(a, b, seed=1, comparisons=3)
    assert three.confidence == pytest.approx(1 - 0.05 / 3) and three.eps_min > one.eps_min
    assert one.sigma == three.sigma  # the same bootstrap; only the quantile changes


def test_signed_rank_is_exact_with_and_without_ties() -> None:
    from sprkd_cli.stats.survival import signed_rank

    d = np.array([0.3, -0.1, 0.25, 0.6, 0.45, -0.05, 0.2])
    ref = stats.wilcoxon(d, method="exact")
    t, p = signed_rank(d)
    assert t == pytest.approx(float(np.sum(stats.rankdata(np.abs(d))[d > 0]))) and p == pytest.approx(ref.pvalue)
    # ties: |d| = 1, 1, 2, 2, 3 -> ranks 1.5, 1.5, 3.5, 3.5, 5; all 32 sign patterns by hand
    tied = np.array([1.0, -1.0, 2.0, 2.0, 3.0])
    ranks = [1.5, 1.5, 3.5, 3.5, 5.0]
    import itertools

    null = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=5)]
    t_obs = 1.5 + 3.5 + 3.5 + 5.0
    expected = min(1.0, 2 * min(np.mean([v <= t_obs for v in null]), np.mean([v >= t_obs for v in null])))
    assert signed_rank(tied) == (t_obs, pytest.approx(expected, rel=1e-12))
