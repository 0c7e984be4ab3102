"""stats: t-tests across stored seeds."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..choices import AT
from . import options as o
from .derive import choice
from .app import SprkdCommand, console, fmt, fmt_p, open_store_from, print_json


METRIC_HELP = (
    "One value per run, tested across seeds. SPLIT_NAME: test_acc, test_loss, val_acc, val_loss, train_loss (at "
    "--at's epoch). The claims (docs/methods.md): epochs_to:X, the first epoch whose val accuracy is >= X (runs that "
    "never get there are censored: left out, counted, warned about); auc_val_acc, the mean val accuracy over the "
    "run's epochs; val_loss_sd:K, the sd of val loss over the last K epochs (with the Brown–Forsythe test); "
    "hessian.top1, hessian.trace, hessian.min: largest eigenvalue, trace and smallest eigenvalue of the run's "
    "stored Hessian report on its own probe set and --at weights (compare --hessian or hessian-report --weights "
    "... --trace makes it); noise_acc:S, test accuracy with Gaussian noise of sd S x each feature's training sd "
    "on the test inputs (a fixed draw), stored by --eval-noise S.")


def register(app: typer.Typer) -> None:
    app.command("stats", cls=SprkdCommand)(stats)


def stats(
    ctx: typer.Context,
    methods: Annotated[Optional[str], typer.Option("--methods", "--arms", help="Comma-separated arms to compare pairwise: compare's arm names, or methods (the arm of a method's plain runs) (default: every arm with finished runs).")] = None,
    dataset: o.Dataset = "digits",
    metric: Annotated[str, typer.Option(help=METRIC_HELP)] = "test_acc",
    at: Annotated[choice(AT), typer.Option(help="The weights the value is of: best-val (the epoch of best validation accuracy) or final. The curve metrics (epochs_to, auc_val_acc, val_loss_sd) are of the whole run.")] = "best-val",
    spread: Annotated[bool, typer.Option("--spread", help="Add the Brown–Forsythe test of equal variances between arms (scipy.stats.levene, median-centred), Holm-adjusted across the pairs; always on with val_loss_sd:K.")] = False,
    student: Annotated[Optional[str], typer.Option(help="Only students of this model.")] = None,
    teacher: Annotated[Optional[str], typer.Option(help="Only students of this teacher run (sgd runs have none and stay in).")] = None,
    mcnemar: Annotated[Optional[tuple[str, str]], typer.Option(metavar="RUN_A RUN_B", help="Instead: McNemar's exact test on two runs' per-example test predictions (same dataset and split).")] = None,
    as_json: o.Json = False,
) -> None:
    """Welch and paired t-tests for each pair of methods over their stored seeds, Holm-adjusted, with
    Cohen's d and d_z, the 95% CI of the difference and a low-power warning. The latest finished run
    of each (method, seed) is used. With --mcnemar RUN_A RUN_B: McNemar's exact test on two runs."""
    if mcnemar is not None:
        from ..services.analysis import mcnemar_runs

        result = mcnemar_runs(open_store_from(ctx), *mcnemar)
        print_json(result) if as_json else _print_mcnemar(result)
        return
    from ..services.analysis import StatsRequest, method_stats

    request = StatsRequest.parse(methods, dataset, metric, at, student=student, teacher=teacher, spread=spread)
    result = method_stats(open_store_from(ctx), request)
    if as_json:
        print_json(result["pairs"])
        return
    _print_stats(result, dataset, metric, at)


def _print_stats(result: dict, dataset: str, metric: str, at: str) -> None:
    from rich.table import Table

    out = console()
    empty = [arm["method"] for arm in result["arms"] if arm["n"] == 0 and not arm["censored"]]
    for name in empty:
        out.print(f"arm {name} has no finished runs of {dataset} here")
    if len(result["arms"]) - len(empty) < 2:  # nothing to compare: no tables of empty rows and their warnings
        return
    whole_run = metric.startswith(("epochs_to:", "auc_val_acc", "val_loss_sd:"))
    arms = Table(title=f"{dataset}: {metric}" + (" (whole run)" if whole_run else f" at {at}"))
    censoring = any(arm["censored"] for arm in result["arms"])
    for column in ("arm", "n", "mean", "sd", "seeds") + (("censored",) if censoring else ()):
        arms.add_column(column, justify="left" if column in ("arm", "seeds") else "right")
    for arm in result["arms"]:
        arms.add_row(arm["method"], str(arm["n"]), fmt(arm["mean"]), fmt(arm["sd"]), ",".join(map(str, arm["seeds"])),
                     *((str(arm["censored"]),) if censoring else ()))
    out.print(arms)
    pairs = Table(title="pairwise tests (diff = a − b; Holm across the pairs)")
    for column in ("a − b", "diff", "95% CI", "p Welch", "p Holm", "p paired (pairs)", "p Holm paired", "d", "d_z"):
        pairs.add_column(column, justify="left" if column == "a − b" else "right")
    for p in result["pairs"]:
        pairs.add_row(f"{p['a']} − {p['b']}", fmt(p["diff"]), f"[{fmt(p['ci_low'])}, {fmt(p['ci_high'])}]",
                      fmt_p(p["p_welch"]), fmt_p(p["p_holm"]), f"{fmt_p(p['p_paired'])} ({p['n_pairs']})",
                      fmt_p(p["p_holm_paired"]), fmt(p["cohens_d"], 2), fmt(p["cohens_dz"], 2))
    out.print(pairs)
    if any("p_brown_forsythe" in p for p in result["pairs"]):
        spread = Table(title="Brown–Forsythe test of equal variances (median-centred Levene; Holm across the pairs)")
        for column in ("a − b", "sd a", "sd b", "W", "p", "p Holm"):
            spread.add_column(column, justify="left" if column == "a − b" else "right")
        for p in result["pairs"]:
            spread.add_row(f"{p['a']} − {p['b']}", fmt(p["sd_a"]), fmt(p["sd_b"]), fmt(p["bf_statistic"], 3),
                           fmt_p(p["p_brown_forsythe"]), fmt_p(p["p_holm_brown_forsythe"]))
        out.print(spread)
    for warning in dict.fromkeys(w for p in result["pairs"] for w in p["warnings"]):
        out.print(f"[yellow]warning:[/yellow] {warning}")


def _print_mcnemar(r: dict) -> None:
    out = console()
    out.print(f"McNemar exact test, {r['dataset']} test split, {r['n']} examples")
    out.print(f"  A {r['run_a']} ({r['method_a']}, seed {r['seed_a']}): acc {fmt(r['acc_a'])}")
    out.print(f"  B {r['run_b']} ({r['method_b']}, seed {r['seed_b']}): acc {fmt(r['acc_b'])}")
    out.print(f"  A right, B wrong: {r['b']}; A wrong, B right: {r['c']}; exact two-sided p = {fmt_p(r['p_value'])}")
    for warning in r["warnings"]:
        out.print(f"[yellow]warning:[/yellow] {warning}")
