"""Collect one value per (method, seed) from the store and run the statistics on them."""

from __future__ import annotations

from ..errors import UserError
from ..stats_request import MetricSpec, StatsRequest, parse_metric
from ..store import Store
from .lifecycle import read_run


def arm_list(store: Store, text: str | None) -> list[str]:
    """stats' --methods/--arms: comma-separated arm names (a method's name is the arm of its plain runs);
    each must be a method or an arm some run belongs to. Not given: every method and stored arm."""
    from ..methods import method_names
    from ..specs import parse_list
    from ..tuning import is_tuning_arm

    # grid runs of compare --tune belong to "NAME:tune" arms: never compared
    known = list(dict.fromkeys([*method_names(), *(a for a in store.arm_names() if not is_tuning_arm(a))]))
    if text is None:
        return known
    names = parse_list(text)
    if not names:
        raise UserError(f"bad --methods '{text}': give comma-separated arms or methods, e.g. sgd,kd")
    for name in names:
        if name not in known:
            raise UserError(f"unknown arm or method '{name}'; valid: {', '.join(known)}")
    return names


def method_values(store: Store, dataset: str, methods: list[str], metric: str, at: str, *,
                  student: str | None = None, teacher: str | None = None) -> dict[str, dict[int, dict]]:
    """values[arm][seed] = {"value", "run_id"} from the latest finished student run of each (arm, seed); a
    method's name is the arm of its runs by `distill` (and of compare's arm named after it). A run whose
    value is censored (epochs_to:X never reached) has value None and "censored_at", its last epoch.

    `at` is best-val (the epoch of best validation accuracy; never chosen on test) or final: the epoch of
    a SPLIT_NAME value, and the weights of hessian.* and noise_acc:S. The curve metrics (epochs_to,
    auc_val_acc, val_loss_sd) are of the whole run."""
    chosen, _ = collect_runs(store, dataset, methods, student=student, teacher=teacher)
    return values_of(store, chosen, metric, at)


def collect_runs(store: Store, dataset: str, methods: list[str], *, student: str | None = None,
                 teacher: str | None = None) -> tuple[dict[str, dict[int, object]], dict[str, dict[str, int]]]:
    """(chosen, unfinished): chosen[arm][seed], the latest finished student run of each (arm, seed); and
    unfinished[arm] = {status: seeds}, the seeds with no finished run by the status of their latest run
    (failed, diverged, interrupted; "running" is also how a crashed run is stored): runs without a value
    for any metric. One listing of each arm's runs."""
    teacher_id = store.get_run(teacher).id if teacher else None
    chosen: dict[str, dict[int, object]] = {m: {} for m in methods}
    unfinished: dict[str, dict[str, int]] = {}
    for method in methods:
        latest: dict[int, str] = {}
        for run in store.list_runs(kind="student", arm=method, dataset=dataset, model=student, brief=True):
            if teacher_id and run.teacher_ids and teacher_id not in run.teacher_ids:
                continue
            latest.setdefault(run.seed, run.status)
            if run.status == "finished":
                chosen[method].setdefault(run.seed, run)  # newest first: the latest run per seed wins
        counts: dict[str, int] = {}
        for seed, status in latest.items():
            if seed not in chosen[method]:
                counts[status] = counts.get(status, 0) + 1
        unfinished[method] = counts
    return chosen, unfinished


def values_of(store: Store, chosen: dict[str, dict[int, object]], metric: str, at: str) -> dict[str, dict[int, dict]]:
    """method_values from collect_runs' chosen runs."""
    if at not in ("best-val", "final"):
        raise UserError(f"bad --at '{at}': use best-val or final")
    spec = parse_metric(metric)
    runs = list({r.id: r for per_seed in chosen.values() for r in per_seed.values()}.values())
    found = run_values(store, runs, spec, at)
    return {method: {seed: _entry(found[run.id], run.id) for seed, run in sorted(per_seed.items())}
            for method, per_seed in chosen.items()}


def _entry(value, run_id: str) -> dict:
    from ..stats.survival import Censored

    if isinstance(value, Censored):
        return {"value": None, "run_id": run_id, "censored_at": value.at}
    return {"value": value, "run_id": run_id}


def selected_epochs(store: Store, runs: list) -> dict[str, int]:
    """{run id: its best-val epoch under selection.RULE}: the stored best_epoch of a run selected by it,
    else the rule applied to the run's stored validation curve (runs of an earlier rule: first best
    accuracy, no tie-break)."""
    from ..selection import RULE, best_epoch

    out = {r.id: r.summary["best_epoch"] for r in runs if r.summary.get("selection") == RULE}
    older = [r.id for r in runs if r.id not in out]
    if older:
        accs, losses = store.metric_curves(older, "val", "acc"), store.metric_curves(older, "val", "loss")
        for run in runs:
            run_id = run.id
            if run_id in out or run_id not in accs or run_id not in losses:
                out.setdefault(run_id, run.summary["best_epoch"])
                continue
            out[run_id] = best_epoch({e + 1: pair for e, pair in enumerate(zip(accs[run_id], losses[run_id]))})
    return out


def run_values(store: Store, runs: list, spec: MetricSpec, at: str) -> dict[str, float | None]:
    """{run id: the metric's value} for finished runs (epochs_to:X never reached: stats.survival.Censored at
    the run's last epoch); a UserError names the first run that lacks what the metric needs, and how to make
    it."""
    from .. import stats

    if spec.kind == "split":
        best = selected_epochs(store, runs) if at == "best-val" else {}
        epoch_of = {r.id: best[r.id] if at == "best-val" else r.summary["epochs"] for r in runs}
        found = store.metric_at(list(epoch_of.items()), spec.split, spec.name)
        for run in runs:
            if (run.id, epoch_of[run.id]) not in found:
                raise UserError(f"run {run.id} has no metric {spec.text} at epoch {epoch_of[run.id]}; valid: "
                                "train_loss, val_loss, val_acc, test_loss, test_acc")
        return {r.id: found[(r.id, epoch_of[r.id])] for r in runs}
    if spec.kind == "noise_acc":
        key = f"noise_acc:{spec.param}" if at == "best-val" else f"final_noise_acc:{spec.param}"
        for run in runs:
            if key not in run.summary:
                raise UserError(f"run {run.id} has no {spec.text}; measure it with --eval-noise {spec.param} "
                                "(compare --eval-noise adds it to finished runs from their checkpoints)")
        return {r.id: r.summary[key] for r in runs}
    if spec.kind == "hessian":
        from .claims import claim_report, hessian_claims

        out = {}
        for run in runs:
            report = claim_report(store, store.get_run(run.id), at)
            if report is None:
                raise UserError(f"run {run.id} has no Hessian report with a trace on its {at} weights and own probe "
                                f"set; make it: sprkd hessian-report {run.id} --weights {at} --trace (or compare "
                                "--hessian, for best-val)")
            out[run.id] = hessian_claims(report)[spec.param]
        return out
    if spec.kind == "auc_val_acc" and all("auc_val_acc" in r.summary for r in runs):
        return {r.id: r.summary["auc_val_acc"] for r in runs}
    # from the stored per-epoch curve: epochs_to:X and val_loss_sd:K take any parameter, and runs
    # finished before auc_val_acc was stored with them have their curve
    split, name = ("val", "loss") if spec.kind == "val_loss_sd" else ("val", "acc")
    curves = store.metric_curves([r.id for r in runs], split, name)
    out = {}
    for run in runs:
        curve = curves.get(run.id, [])
        if spec.kind == "epochs_to":
            from ..stats.survival import Censored

            reached = stats.epochs_to(curve, spec.param)
            out[run.id] = Censored(len(curve)) if reached is None else reached
        elif spec.kind == "auc_val_acc":
            out[run.id] = run.summary["auc_val_acc"] if "auc_val_acc" in run.summary else stats.auc_val_acc(curve)
        else:
            if len(curve) < spec.param:
                raise UserError(f"run {run.id} has {len(curve)} epochs; {spec.text} needs K <= the epochs of every "
                                "run compared")
            out[run.id] = stats.sd_last(curve, spec.param)
    return out


def missing_policy(metric: str) -> str:
    """What happens to a run without a value of `metric` (one line, shown under its table)."""
    kind = parse_metric(metric).kind
    head = ("runs that did not finish (failed, diverged, interrupted, running or crashed) have no value: left out, "
            "counted per arm")
    if kind == "epochs_to":
        return (head + f"; a finished run that never reached {metric.partition(':')[2]} validation accuracy is "
                "censored at its last epoch: kept in the Kaplan–Meier medians and the tests, not dropped")
    if kind == "auc_val_acc":
        return head + "; every finished run has a value"
    return head + "; a finished run without a value stops stats with an error that names it and how to make it"


def method_stats(store: Store, request: StatsRequest) -> dict:
    """The pairwise tests of `request`'s arms on each of its metrics (see metric_table), their p-values
    adjusted by request.correction across the whole call. Without arms named: those with finished runs; with
    none at all, the plain methods (sgd, kd), which show their n = 0."""
    from ..methods import plain_methods

    arms = arm_list(store, ",".join(request.methods) if request.methods else None)
    chosen, unfinished = collect_runs(store, request.dataset, arms, student=request.student, teacher=request.teacher)
    tables = []
    for metric in request.metrics:
        values = values_of(store, chosen, metric, request.at)
        if not request.methods:
            values = ({arm: per_seed for arm, per_seed in values.items() if per_seed or unfinished.get(arm)}
                      or {arm: values[arm] for arm in plain_methods()})
        spread = request.spread or parse_metric(metric).kind == "val_loss_sd"
        tables.append(metric_table(values, metric=metric, test=request.test, spread=spread,
                                   unfinished={arm: unfinished.get(arm, {}) for arm in values},
                                   examples=examples_of(store, metric, values)))
    if request.test == "aso":
        add_aso(tables, request.correction)
    for table in tables:
        table.pop("values", None)
    family = adjust_family(tables, request.correction)
    return {"tables": tables, "pairs": [p for t in tables for p in t["pairs"]], "family": family,
            "warnings": [w for t in tables for w in t["warnings"]]}


# the unpaired and the paired p-value of each kind of table: each a family across the call
P_KEYS = {"t": ("p_welch", "p_paired"), "rank": ("p_mann_whitney", "p_wilcoxon"),
          "logrank": ("p_logrank", "p_paired_rank"), "aso": ("", "")}  # aso: no p-values (see add_aso)


def add_aso(tables: list[dict], correction: str, confidence: float = 0.95) -> None:
    """ε_min of each pair both ways (stats.aso: eps_min_ab, a's values almost stochastically larger than b's;
    eps_min_ba the reverse), at `confidence` Bonferroni-adjusted over every ASO pair of the call (unless
    `correction` is none): pairs get aso_confidence, aso_comparisons and the violation ratios."""
    from ..stats.aso import BOOTSTRAP, aso

    tested = [t for t in tables if t["kind"] == "aso"]
    comparisons = max(1, sum(len(t["pairs"]) for t in tested)) if correction != "none" else 1
    for table in tested:
        plain = table["values"]
        for pair in table["pairs"]:
            a, b = list(plain[pair["a"]].values()), list(plain[pair["b"]].values())
            if not a or not b:
                pair |= {"eps_min_ab": None, "eps_min_ba": None, "aso_confidence": None}
                continue
            ab = aso(a, b, confidence, comparisons)
            ba = aso(b, a, confidence, comparisons)
            pair |= {"eps_min_ab": ab.eps_min, "eps_min_ba": ba.eps_min, "violation_ratio_ab": ab.violation_ratio,
                     "violation_ratio_ba": ba.violation_ratio, "aso_confidence": ab.confidence,
                     "aso_comparisons": comparisons, "aso_bootstrap": BOOTSTRAP}
        table["aso_confidence"] = 1.0 - (1.0 - confidence) / comparisons
        table["aso_comparisons"] = comparisons


def adjust_family(tables: list[dict], correction: str) -> dict:
    """Adjust, across every table of one call, the unpaired p-values together (p_adj), the paired ones
    together (p_adj_paired) and the Brown–Forsythe ones together (p_adj_brown_forsythe), by `correction`.
    Returns the family's description: correction, sizes (non-NaN p-values) and metrics."""
    from ..stats.multiple import adjust

    pairs = [p for t in tables for p in t["pairs"]]
    sizes = {}
    for which, out in ((0, "p_adj"), (1, "p_adj_paired")):
        raw = [_nan(p.get(P_KEYS[p["test"]][which])) for p in pairs]
        for pair, value in zip(pairs, adjust(raw, correction)):
            pair[out] = _finite(value)
        sizes[out] = sum(x == x for x in raw)
    spread = [p for p in pairs if "p_brown_forsythe" in p]
    if spread:
        raw = [_nan(p["p_brown_forsythe"]) for p in spread]
        for pair, value in zip(spread, adjust(raw, correction)):
            pair["p_adj_brown_forsythe"] = _finite(value)
        sizes["p_adj_brown_forsythe"] = sum(x == x for x in raw)
    for pair in pairs:
        pair["correction"] = correction
    return {"correction": correction, "sizes": sizes, "metrics": [t["metric"] for t in tables],
            "pairs": max((len(t["pairs"]) for t in tables), default=0)}


RTOL = 1e-6
"""Values within RTOL × the metric's largest |value| are equal: well above float32 rounding (6e-8)."""


def examples_of(store: Store, metric: str, values: dict[str, dict[int, dict]]) -> int | None:
    """For an accuracy on a split (test_acc, val_acc, noise_acc:S): the most examples that split has in the
    compared runs (its step is 1/N); None for other metrics."""
    spec = parse_metric(metric)
    split = "test" if spec.kind == "noise_acc" else spec.split if spec.kind == "split" and spec.name == "acc" else None
    if split is None:
        return None
    sizes = []
    for per_seed in values.values():
        for v in list(per_seed.values())[:1]:  # one run per arm: an arm's runs share their split
            sizes.append(store.get_run(v["run_id"]).config.get("data", {}).get(f"n_{split}"))
    return max((n for n in sizes if n), default=None)


def metric_range(metric: str) -> tuple[float, float]:
    """The values a metric can take: [0, 1] for accuracies, [0, ∞) for losses and sds, else unbounded."""
    spec = parse_metric(metric)
    inf = float("inf")
    if spec.kind in ("auc_val_acc", "noise_acc") or (spec.kind == "split" and spec.name == "acc"):
        return 0.0, 1.0
    if spec.kind == "val_loss_sd" or (spec.kind == "split" and spec.name == "loss"):
        return 0.0, inf
    return -inf, inf


def tolerance(values: dict[str, dict[int, dict]], examples: int | None = None) -> tuple[float, str]:
    """(tol, how it was set): spreads and differences within tol count as no variation. RTOL × the largest
    |value| of the metric; for an accuracy on N examples at least half its step, 1/(2N)."""
    scale = max((abs(v["value"]) for per in values.values() for v in per.values() if v["value"] is not None),
                default=0.0)
    tol, how = RTOL * scale, f"{RTOL:g} × the largest |value|"
    if examples and 0.5 / examples > tol:
        tol, how = 0.5 / examples, f"half the accuracy's step on {examples} examples, 1/(2·{examples})"
    return tol, how


def metric_table(values: dict[str, dict[int, dict]], *, metric: str, test: str, spread: bool,
                 unfinished: dict[str, dict[str, int]] | None = None, examples: int | None = None) -> dict:
    """One metric's table: epochs_to:X as time-to-event data (survival_table), every other metric by pairwise
    (the t-tests or the rank tests), where spreads and differences within `tolerance` are no variation."""
    unfinished = unfinished or {}
    if parse_metric(metric).kind == "epochs_to":
        table = survival_table(values, metric=metric)
    else:
        tol, how = tolerance(values, examples)
        table = pairwise(values, spread=spread, metric=metric, test=test, tol=tol, bounds=metric_range(metric))
        table |= {"tol": tol, "tol_rule": how}
    for arm in table["arms"]:
        arm["unfinished"] = sum(unfinished.get(arm["method"], {}).values())
    counts = [f"{m} {', '.join(f'{n} {status}' for status, n in c.items())}" for m, c in unfinished.items() if c]
    table["unfinished"] = unfinished
    table["missing"] = missing_policy(metric)
    if counts:
        table["warnings"].insert(0, "not finished, so without a value and left out: " + "; ".join(counts))
    for pair in table["pairs"]:
        pair["metric"] = metric
    return table | {"metric": metric}


def survival_table(values: dict[str, dict[int, dict]], *, metric: str, confidence: float = 0.95) -> dict:
    """epochs_to:X as right-censored time-to-event data: per arm the runs, how many reached X, how many are
    censored (at their last epoch) and the Kaplan–Meier median epoch with its interval; per pair the log-rank
    test (p from the permutation distribution of the arm labels; the asymptotic χ² p too) and, on the seeds
    both arms have, the paired signed-rank test with censored runs ranked slower than
    every run that reached X (stats.survival)."""
    import itertools

    from ..stats.survival import Censored, kaplan_meier, logrank, logrank_asymptotic, paired_rank_test

    def value(v: dict):
        return Censored(v["censored_at"]) if v["value"] is None else v["value"]

    runs = {m: {seed: value(v) for seed, v in per_seed.items()} for m, per_seed in values.items()}
    curves = {m: kaplan_meier(list(per_seed.values()), confidence) for m, per_seed in runs.items()}
    arms = [{"method": m, "n": km.n, "reached": km.reached, "censored": km.censored, "median": km.median,
             "ci_low": km.ci_low, "ci_high": km.ci_high, "seeds": sorted(runs[m]),
             "run_ids": [values[m][s]["run_id"] for s in sorted(runs[m])],
             "km_times": km.times, "km_survival": km.survival} for m, km in curves.items()]
    threshold = metric.partition(":")[2]
    pairs = []
    for a, b in itertools.combinations(runs, 2):
        chi2, p = logrank(list(runs[a].values()), list(runs[b].values()))
        p_asymptotic = logrank_asymptotic(list(runs[a].values()), list(runs[b].values()))[1]
        shared = sorted(set(runs[a]) & set(runs[b]))
        paired = paired_rank_test([(runs[a][s], runs[b][s]) for s in shared])
        ka, kb = curves[a], curves[b]
        warnings = []
        if ka.n and kb.n and not (ka.reached or kb.reached):
            warnings.append(f"{a} − {b}: no run of either arm reached {threshold}; the log-rank test has nothing "
                            "to compare")
        if paired.undetermined:
            warnings.append(f"{a} − {b}: {paired.undetermined} shared seed(s) left out of the paired test: the "
                            "censored run stopped before the other reached the threshold, so they cannot be ordered")
        pairs.append({"test": "logrank", "a": a, "b": b, "n_a": ka.n, "n_b": kb.n, "reached_a": ka.reached,
                      "reached_b": kb.reached, "censored_a": ka.censored, "censored_b": kb.censored,
                      "median_a": _finite(ka.median), "median_b": _finite(kb.median),
                      "median_ci_a": [_finite(ka.ci_low), _finite(ka.ci_high)],
                      "median_ci_b": [_finite(kb.ci_low), _finite(kb.ci_high)],
                      "logrank_chi2": _finite(chi2), "p_logrank": _finite(p),
                      "p_logrank_asymptotic": _finite(p_asymptotic), "n_pairs": len(shared),
                      "paired_seeds": shared, "paired_rank_used": paired.used,
                      "paired_rank_both_censored": paired.both_censored,
                      "paired_rank_undetermined": paired.undetermined,
                      "paired_rank_statistic": _finite(paired.statistic), "p_paired_rank": _finite(paired.p),
                      "warnings": warnings})
    for arm in arms:
        for key in ("median", "ci_low", "ci_high"):
            arm[key] = _finite(arm[key])
    warnings = []
    if any(c.censored for c in curves.values()):
        counts = ", ".join(f"{m} {c.censored} of {c.n}" for m, c in curves.items() if c.censored)
        warnings.append(f"censored: runs that never reached {threshold} validation accuracy count as censored at "
                        f"their last epoch ({counts})")
    return {"kind": "logrank", "arms": arms, "pairs": pairs, "warnings": warnings}


def pairwise(values: dict[str, dict[int, dict]], *, spread: bool, metric: str, test: str, tol: float,
             bounds: tuple[float, float]) -> dict:
    """Each arm's n, mean, sd and seeds, and the pairwise tests (stats.compare_arms); with `spread`,
    each pair gets the Brown–Forsythe test of equal variances (bf_statistic, p_brown_forsythe); one note on
    power for the table (stats.power_note). Spreads within `tol` are no variation; intervals are cut to
    `bounds`, the metric's range (ci_method says how they were made)."""
    from ..stats import brown_forsythe, compare_arms, power_note, summarize
    from ..stats.summary import ci_method

    plain = {m: {seed: v["value"] for seed, v in per_seed.items()} for m, per_seed in values.items()}
    arms = []
    for method, per_seed in plain.items():
        arm = summarize(list(per_seed.values()), bounds=bounds) if per_seed else None
        arms.append({"method": method, "n": len(per_seed), "mean": arm.mean if arm else None,
                     "sd": arm.sd if arm else None, "ci_low": _finite(arm.ci_low) if arm else None,
                     "ci_high": _finite(arm.ci_high) if arm else None, "seeds": sorted(per_seed),
                     "run_ids": [values[method][s]["run_id"] for s in sorted(per_seed)]})
    results = compare_arms(plain, tol=tol, bounds=bounds)
    how = ci_method(bounds)
    pairs = [p.to_dict() | {"test": test, "ci_method": how} for p in results]
    if test == "rank":
        from ..stats.ranks import mann_whitney, wilcoxon_paired

        for pair in pairs:
            xa, xb = plain[pair["a"]], plain[pair["b"]]
            unpaired = mann_whitney(list(xa.values()), list(xb.values()), tol)
            paired = wilcoxon_paired([xa[s] - xb[s] for s in pair["paired_seeds"]], tol)
            pair |= {"u_mann_whitney": _finite(unpaired.statistic), "p_mann_whitney": _finite(unpaired.p),
                     "w_wilcoxon": _finite(paired.statistic), "p_wilcoxon": _finite(paired.p),
                     "n_wilcoxon": paired.n}
    for pair in pairs:
        del pair["p_holm"], pair["p_holm_paired"]  # the call's family is adjusted by adjust_family
    if spread:
        for pair, result in zip(pairs, brown_forsythe(plain, tol)):
            pair |= {"bf_statistic": _finite(result["statistic"]), "p_brown_forsythe": _finite(result["p"])}
            if result["refused"]:
                pair["bf_refused"] = result["refused"]
                pair["warnings"].append(result["refused"])
    note = power_note(results)
    return {"kind": test, "arms": arms, "pairs": pairs, "warnings": [note] if note else [], "ci_method": how,
            "values": plain}


def _finite(x: float) -> float | None:
    return x if x == x and x not in (float("inf"), float("-inf")) else None  # NaN, inf -> None, as in JSON


def _nan(x: float | None) -> float:
    return float("nan") if x is None else x


def mcnemar_runs(store: Store, ref_a: str, ref_b: str) -> dict:
    """McNemar's exact test on the stored test predictions of two runs, which must have been tested on
    the same examples (same dataset and split: the split fingerprints and the labels agree)."""
    from ..stats import mcnemar_exact

    run_a, run_b = read_run(store, ref_a), read_run(store, ref_b)
    if run_a.id == run_b.id:
        raise UserError(f"--mcnemar needs two different runs (both are {run_a.id})")
    rows = {}
    for run in (run_a, run_b):
        rows[run.id] = store.predictions(run.id, "test")
        if not rows[run.id]:
            raise UserError(f"run {run.id} ({run.status}) has no stored test predictions; McNemar needs finished runs")
    pa, pb = rows[run_a.id], rows[run_b.id]
    split_a, split_b = run_a.config.get("data", {}), run_b.config.get("data", {})
    if (run_a.dataset != run_b.dataset or split_a.get("fingerprint") != split_b.get("fingerprint") or len(pa) != len(pb)
            or any(x.label != y.label for x, y in zip(pa, pb))):
        raise UserError(
            f"runs {run_a.id} ({run_a.dataset}, split seed {split_a.get('split_seed')}, {len(pa)} test examples) and "
            f"{run_b.id} ({run_b.dataset}, split seed {split_b.get('split_seed')}, {len(pb)}) were not tested on the "
            "same examples; McNemar pairs predictions example by example: pick runs of one dataset and split seed")
    result = mcnemar_exact([p.predicted for p in pa], [p.predicted for p in pb], [p.label for p in pa])
    warnings = []
    if run_a.seed != run_b.seed:
        warnings.append(f"the runs have different seeds ({run_a.seed}, {run_b.seed}): the test compares these two "
                        "runs, and says nothing about seed-to-seed variation (use the t-tests for that)")
    return {"run_a": run_a.id, "run_b": run_b.id, "method_a": run_a.method, "method_b": run_b.method,
            "seed_a": run_a.seed, "seed_b": run_b.seed, "dataset": run_a.dataset, **result.to_dict(),
            "warnings": warnings}
