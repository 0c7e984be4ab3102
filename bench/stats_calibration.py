"""Calibration of every test `sprkd stats` offers, measured by simulation.

For n = 3, 5 and 10 runs per arm and 2,000 repetitions each (--reps), two arms drawn from one
distribution (the null) give each test's type-I error at alpha = 0.05 with its Monte-Carlo standard
error, sqrt(p(1 − p)/reps); the same with the second arm shifted by one sd gives its power. A test
whose type-I error is above 0.05 by more than its Monte-Carlo error is labelled "above nominal".

- Welch's t-test, the paired t-test, Mann–Whitney U, Wilcoxon signed-rank: N(0, 1) against N(0, 1)
  (null) and N(1, 1) (one sd); pairs are independent draws.
- ASO: a "claim" is ε_min < τ in either direction (τ = 0.5, Dror et al.'s threshold, and the stricter
  0.2), at confidence 0.95 with 1,000 bootstrap resamples, on the same data.
- Brown–Forsythe: N(0, 1) against N(0, 1) (null) and N(0, 2²) (its power is for a doubled sd, not a shift).
- epochs_to:X: the log-rank test (its permutation p, as stats computes it, with 999 random relabellings
  where there are more splits; and the asymptotic χ² p for comparison) and the paired signed-rank test
  with censored runs ranked slowest, on epochs = ⌈exp(N(log 8, 0.5²))⌉ censored at epoch 20 (null), and
  with log-epochs shifted by one sd (0.5).

"above nominal": the type-I error exceeds 0.05 by more than one Monte-Carlo error (z: by how many).

Run: python bench/stats_calibration.py [--reps 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sprkd_cli.stats import brown_forsythe, paired_ttest, summarize, welch_ttest  # noqa: E402
from sprkd_cli.stats.aso import aso  # noqa: E402
from sprkd_cli.stats.ranks import mann_whitney, wilcoxon_paired  # noqa: E402
from sprkd_cli.stats.survival import Censored, logrank, logrank_asymptotic, paired_rank_test  # noqa: E402

ALPHA = 0.05
LOGRANK_PERMUTATIONS = 999  # stats uses 9,999 where a pair has more splits; fewer here for time (still exact-valid)
BUDGET = 20  # epochs: a run not at the threshold by then is censored


def _epochs(rng: np.random.Generator, n: int, shift: float) -> list:
    times = np.ceil(np.exp(rng.normal(math.log(8) + shift, 0.5, n))).astype(int)
    return [int(t) if t <= BUDGET else Censored(BUDGET) for t in times]


def rates(n: int, effect: bool, reps: int, seed: int, check: int = 20) -> dict[str, float]:
    """Share of `reps` simulated pairs of arms on which each test rejects (or ASO claims an order). The tests
    that scipy computes along an axis run on all repetitions at once; on the first `check` repetitions
    sprkd's own functions must reach the same decisions (they are thin over the same scipy calls)."""
    from scipy import stats

    rng = np.random.default_rng([seed, n, int(effect)])
    x = rng.normal(0.0, 1.0, (reps, n))
    y = rng.normal(1.0 if effect else 0.0, 1.0, (reps, n))
    spread = rng.normal(0.0, 2.0 if effect else 1.0, (reps, n))
    p = {
        "Welch t-test": stats.ttest_ind(x, y, axis=1, equal_var=False).pvalue,
        "paired t-test": stats.ttest_rel(x, y, axis=1).pvalue,
        "Mann–Whitney U": stats.mannwhitneyu(x, y, axis=1, method="exact").pvalue,
        "Wilcoxon signed-rank": stats.wilcoxon(x - y, axis=1, method="exact").pvalue,
        "Brown–Forsythe (power: sd × 2)": stats.levene(x, spread, axis=1, center="median").pvalue,
    }
    ours = {
        "Welch t-test": lambda i: welch_ttest(summarize(x[i]), summarize(y[i])).p,
        "paired t-test": lambda i: paired_ttest(x[i] - y[i]).p,
        "Mann–Whitney U": lambda i: mann_whitney(x[i], y[i]).p,
        "Wilcoxon signed-rank": lambda i: wilcoxon_paired(x[i] - y[i]).p,
        "Brown–Forsythe (power: sd × 2)": lambda i: brown_forsythe({"a": dict(enumerate(x[i])),
                                                                     "b": dict(enumerate(spread[i]))})[0]["p"],
    }
    for name, mine in ours.items():
        for i in range(min(check, reps)):
            if not math.isclose(mine(i), p[name][i], rel_tol=1e-9):
                raise AssertionError(f"{name}: sprkd's p {mine(i)} differs from scipy's {p[name][i]} (rep {i})")
    out = {name: float(np.mean(values < ALPHA)) for name, values in p.items()}
    claims_5 = claims_2 = 0
    lr = lr_asymptotic = paired = 0
    for i in range(reps):
        eps = min(aso(x[i], y[i], seed=i).eps_min, aso(y[i], x[i], seed=i).eps_min)
        claims_5 += eps < 0.5
        claims_2 += eps < 0.2
        a, b = _epochs(rng, n, 0.0), _epochs(rng, n, 0.5 if effect else 0.0)
        lr += logrank(a, b, permutations=LOGRANK_PERMUTATIONS)[1] < ALPHA  # a NaN p (nothing to test): none
        lr_asymptotic += logrank_asymptotic(a, b)[1] < ALPHA
        paired += paired_rank_test(list(zip(a, b))).p < ALPHA
    out |= {"ASO, ε_min < 0.5": claims_5 / reps, "ASO, ε_min < 0.2": claims_2 / reps,
            "log-rank (epochs_to), permutation p": lr / reps,
            "log-rank, asymptotic χ² p (not used)": lr_asymptotic / reps,
            "paired signed-rank, censored slowest": paired / reps}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", default="3,5,10", help="runs per arm, comma-separated")
    args = parser.parse_args()
    sizes = [int(s) for s in args.n.split(",")]
    start = time.perf_counter()
    table = {n: (rates(n, False, args.reps, args.seed), rates(n, True, args.reps, args.seed)) for n in sizes}
    names = list(table[sizes[0]][0])
    print(f"type-I error at alpha {ALPHA} ± its Monte-Carlo error, and power at one sd; {args.reps} repetitions "
          f"per cell, seed {args.seed}")
    header = "| test | " + " | ".join(f"n={n}: type-I | n={n}: power" for n in sizes) + " | |"
    print(header)
    print("|---" * (1 + 2 * len(sizes)) + "|---|")
    for name in names:
        cells, above = [], []
        for n in sizes:
            null, alt = table[n][0][name], table[n][1][name]
            se = math.sqrt(null * (1 - null) / args.reps)
            cells += [f"{null:.3f} ± {se:.3f}", f"{alt:.3f}"]
            if null - ALPHA > se:
                above.append(f"n={n} (z = {(null - ALPHA) / se:.1f})")
        label = f"above nominal at {', '.join(above)}" if above else ""
        print(f"| {name} | " + " | ".join(cells) + f" | {label} |")
    print(f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
