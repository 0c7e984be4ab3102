"""stats: t-tests across stored seeds."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from . import arguments as arg
from .app import SprkdCommand, console, fmt, fmt_p, open_store_from, print_json


def register(app: typer.Typer) -> None:
    """The command's flags: StatsRequest's declared fields, --dataset after its first (--methods), then
    --mcnemar and --json."""
    import inspect

    from ..stats_request import StatsRequest
    from .derive import declared_params

    signature = inspect.signature(stats, eval_str=True)
    own = {p.name: p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD}
    first, *rest = declared_params(StatsRequest)
    stats.__signature__ = signature.replace(
        parameters=[own["ctx"], first, own["dataset"], *rest, own["mcnemar"], own["as_json"]])
    app.command("stats", cls=SprkdCommand)(stats)


def stats(
    ctx: typer.Context,
    *,
    dataset: arg.Dataset = arg.DEFAULT_DATASET,
    mcnemar: Annotated[Optional[tuple[str, str]], typer.Option(metavar="RUN_A RUN_B", help=
        "Instead: McNemar's exact test on two runs' per-example test predictions (same dataset and split).")] = None,
    as_json: arg.Json = False,
    **values,
) -> None:
    """Pairwise tests of arms over their stored seeds, p-values adjusted across the call (Holm by
    default): Welch and paired t-tests with Cohen's d and d_z and the 95% CI of the difference (or, with
    --test rank, Mann–Whitney and Wilcoxon signed-rank), and one note on power per table. The latest
    finished run of each (arm, seed) is used. With --mcnemar RUN_A RUN_B: McNemar's exact test on two runs."""
    if mcnemar is not None:
        from ..services.analysis import mcnemar_runs

        result = mcnemar_runs(open_store_from(ctx), *mcnemar)
        print_json(result) if as_json else _print_mcnemar(result)
        return
    from ..options import declared_fields
    from ..services.analysis import method_stats
    from ..stats_request import StatsRequest

    request = StatsRequest.parse(dataset, **{f.name: values[f.name] for f, _ in declared_fields(StatsRequest)})
    result = method_stats(open_store_from(ctx), request)
    if as_json:
        print_json(result["pairs"])
        return
    out = console()
    for table in result["tables"]:
        _print_table(out, table, result["family"], dataset, request.at)


def _family(family: dict, key: str) -> str:
    """How the column's p-values were adjusted: by what, over how many tests of the call."""
    if family["correction"] == "none":
        return "no correction"
    metrics = len(family["metrics"])
    over = f"{family['sizes'].get(key, 0)} p-values of the call"
    if metrics > 1 and key != "p_adj_brown_forsythe":
        over += f", {metrics} metrics × {family['pairs']} pairs"
    return f"{family['correction'].capitalize()} over {over}"


def _print_table(out, table: dict, family: dict, dataset: str, at: str) -> None:
    metric = table["metric"]
    empty = [arm["method"] for arm in table["arms"] if arm["n"] == 0 and not arm.get("unfinished")]
    for name in empty:
        out.print(f"arm {name} has no finished runs of {dataset} here")
    if len(table["arms"]) - len(empty) < 2:  # nothing to compare: no tables of empty rows and their warnings
        return
    whole_run = metric.startswith(("epochs_to:", "auc_val_acc", "val_loss_sd:"))
    title = f"{dataset}: {metric}" + (" (whole run)" if whole_run else f" at {at}")
    if table["kind"] == "logrank":
        _print_survival(out, table, family, title)
    else:
        _print_pairs(out, table, family, title)
    if "tol" in table:
        out.print(f"[dim]no variation: spreads and paired differences within {table['tol']:.3g} "
                  f"({table['tol_rule']})[/dim]")
    out.print(f"[dim]runs without a value: {table['missing']}[/dim]")
    for warning in dict.fromkeys([*table["warnings"], *(w for p in table["pairs"] for w in p["warnings"])]):
        out.print(f"[yellow]warning:[/yellow] {warning}")


def _not_finished(arm: dict) -> tuple[str, ...]:
    return (str(arm.get("unfinished", 0)),)


def _print_pairs(out, table: dict, family: dict, title: str) -> None:
    from rich.table import Table

    unfinished = any(arm.get("unfinished") for arm in table["arms"])
    arms = Table(title=title)
    for column in ("arm", "n", "mean", "sd", "seeds") + (("not finished",) if unfinished else ()):
        arms.add_column(column, justify="left" if column in ("arm", "seeds") else "right")
    for arm in table["arms"]:
        arms.add_row(arm["method"], str(arm["n"]), fmt(arm["mean"]), fmt(arm["sd"]), ",".join(map(str, arm["seeds"])),
                     *(_not_finished(arm) if unfinished else ()))
    out.print(arms)
    if table["kind"] == "rank":
        _print_rank(out, table, family)
    elif table["kind"] == "aso":
        _print_aso(out, table, family)
    else:
        _print_t(out, table, family)
    if any("p_brown_forsythe" in p for p in table["pairs"]):
        _print_spread(out, table, family)


def _print_t(out, table: dict, family: dict) -> None:
    from rich.table import Table

    pairs = Table(title=f"pairwise tests (diff = a − b; 95% CI: {table['ci_method']}; {_family(family, 'p_adj')})")
    for column in ("a − b", "diff", "95% CI", "p Welch", "p adj", "p paired (pairs)", "p adj paired", "d", "d_z"):
        pairs.add_column(column, justify="left" if column == "a − b" else "right")
    for p in table["pairs"]:
        ci = "no variation" if p["no_variation"] else f"[{fmt(p['ci_low'])}, {fmt(p['ci_high'])}]"
        paired = "no variation" if p["no_variation_paired"] else fmt_p(p["p_paired"])
        pairs.add_row(f"{p['a']} − {p['b']}", fmt(p["diff"]), ci, fmt_p(p["p_welch"]), fmt_p(p["p_adj"]),
                      f"{paired} ({p['n_pairs']})", fmt_p(p["p_adj_paired"]), fmt(p["cohens_d"], 2),
                      fmt(p["cohens_dz"], 2))
    out.print(pairs)


def _print_rank(out, table: dict, family: dict) -> None:
    from rich.table import Table

    pairs = Table(title=f"pairwise tests (Mann–Whitney U; paired: Wilcoxon signed-rank; diff = a − b; "
                        f"{_family(family, 'p_adj')})")
    for column in ("a − b", "diff", "U", "p Mann–Whitney", "p adj", "p Wilcoxon (pairs)", "p adj paired"):
        pairs.add_column(column, justify="left" if column == "a − b" else "right")
    for p in table["pairs"]:
        pairs.add_row(f"{p['a']} − {p['b']}", fmt(p["diff"]), fmt(p["u_mann_whitney"], 1), fmt_p(p["p_mann_whitney"]),
                      fmt_p(p["p_adj"]), f"{fmt_p(p['p_wilcoxon'])} ({p['n_wilcoxon']})", fmt_p(p["p_adj_paired"]))
    out.print(pairs)
    out.print("[dim]p exact: Mann–Whitney without ties (with ties, its permutation distribution), Wilcoxon from every "
              "sign pattern; values within the tolerance below are ties, and Wilcoxon drops zero differences[/dim]")


def _print_aso(out, table: dict, family: dict) -> None:
    from rich.table import Table

    level = table.get("aso_confidence")
    adjusted = (f", Bonferroni over {table['aso_comparisons']} pairs of the call"
                if table.get("aso_comparisons", 1) > 1 else "")
    pairs = Table(title=f"Almost Stochastic Order (ε_min at confidence {fmt(level, 4)}{adjusted})")
    for column in ("a − b", "diff", "ε_min(a > b)", "ε_min(b > a)", "reading"):
        pairs.add_column(column, justify="left" if column in ("a − b", "reading") else "right")
    for p in table["pairs"]:
        pairs.add_row(f"{p['a']} − {p['b']}", fmt(p["diff"]), fmt(p["eps_min_ab"], 3), fmt(p["eps_min_ba"], 3),
                      _aso_reading(p))
    out.print(pairs)
    out.print("[dim]ε_min(a > b): an upper confidence bound on how far a's values are from being stochastically larger "
              "than b's (0: larger at every quantile; 1: smaller at every quantile). Below 0.5, a's values are almost "
              "stochastically larger (Dror et al. 2019); the stricter 0.2 is often recommended. Larger values: "
              "better for accuracies, worse for losses. ε_min is not a p-value: with a handful of seeds, two arms "
              "from one distribution often fall below either threshold (bench/stats_calibration.py)[/dim]")


def _aso_reading(p: dict) -> str:
    ab, ba = p.get("eps_min_ab"), p.get("eps_min_ba")
    if ab is None or ba is None:
        return "–"
    if ab < 0.5:
        return f"{p['a']} almost stochastically larger" + (" (ε < 0.2)" if ab < 0.2 else "")
    if ba < 0.5:
        return f"{p['b']} almost stochastically larger" + (" (ε < 0.2)" if ba < 0.2 else "")
    return "neither"


def _print_spread(out, table: dict, family: dict) -> None:
    from rich.table import Table

    spread = Table(title="Brown–Forsythe test of equal variances (median-centred Levene; "
                         f"{_family(family, 'p_adj_brown_forsythe')})")
    for column in ("a − b", "sd a", "sd b", "W", "p", "p adj"):
        spread.add_column(column, justify="left" if column == "a − b" else "right")
    for p in table["pairs"]:
        spread.add_row(f"{p['a']} − {p['b']}", fmt(p["sd_a"]), fmt(p["sd_b"]),
                       "refused" if p.get("bf_refused") else fmt(p["bf_statistic"], 3),
                       fmt_p(p["p_brown_forsythe"]), fmt_p(p["p_adj_brown_forsythe"]))
    out.print(spread)


def _epochs(value) -> str:
    return "not reached" if value is None else f"{value:g}"


def _print_survival(out, table: dict, family: dict, title: str) -> None:
    from rich.table import Table

    threshold = table["metric"].partition(":")[2]
    unfinished = any(arm.get("unfinished") for arm in table["arms"])
    arms = Table(title=title + ", censored time-to-event")
    for column in ("arm", "runs", f"reached {threshold}", "censored", "median epoch (KM)", "95% CI", "seeds") + \
            (("not finished",) if unfinished else ()):
        arms.add_column(column, justify="left" if column in ("arm", "seeds") else "right")
    for arm in table["arms"]:
        ci = "–" if arm["reached"] == 0 else f"[{_epochs(arm['ci_low'])}, {_epochs(arm['ci_high'])}]"
        arms.add_row(arm["method"], str(arm["n"]), str(arm["reached"]), str(arm["censored"]), _epochs(arm["median"]),
                     ci, ",".join(map(str, arm["seeds"])), *(_not_finished(arm) if unfinished else ()))
    out.print(arms)
    pairs = Table(title=f"pairwise tests (log-rank, p by permuting the arm labels; paired: Wilcoxon signed-rank, "
                        f"censored ranked slowest; {_family(family, 'p_adj')})")
    for column in ("a − b", "reached a/b", "log-rank χ²", "p", "p adj", "p paired (pairs)", "p adj paired"):
        pairs.add_column(column, justify="left" if column == "a − b" else "right")
    for p in table["pairs"]:
        pairs.add_row(f"{p['a']} − {p['b']}", f"{p['reached_a']}/{p['n_a']}, {p['reached_b']}/{p['n_b']}",
                      fmt(p["logrank_chi2"], 3), fmt_p(p["p_logrank"]), fmt_p(p["p_adj"]),
                      f"{fmt_p(p['p_paired_rank'])} ({p['paired_rank_used']})", fmt_p(p["p_adj_paired"]))
    out.print(pairs)
    out.print("[dim]median epoch: Kaplan–Meier, where the share of runs not yet at the threshold falls to 1/2 (not "
              "reached: it stays above); 95% CI from the log-log Greenwood band[/dim]")


def _print_mcnemar(r: dict) -> None:
    out = console()
    out.print(f"McNemar exact test, {r['dataset']} test split, {r['n']} examples")
    out.print(f"  A {r['run_a']} ({r['method_a']}, seed {r['seed_a']}): acc {fmt(r['acc_a'])}")
    out.print(f"  B {r['run_b']} ({r['method_b']}, seed {r['seed_b']}): acc {fmt(r['acc_b'])}")
    out.print(f"  A right, B wrong: {r['b']}; A wrong, B right: {r['c']}; exact two-sided p = {fmt_p(r['p_value'])}")
    for warning in r["warnings"]:
        out.print(f"[yellow]warning:[/yellow] {warning}")
