"""hessian-report: curvature of a stored run's loss landscape, and reports side by side."""

from __future__ import annotations

from typing import Annotated

import typer

from . import arguments as arg
from .app import SprkdCommand, console, fmt, open_store_from, print_json, progress

# training options that hessian-report takes too, declared once in config.TrainConfig (default: the run's own)
SHARED_OPTIONS = ("probe_micro_batch",)


def register(app: typer.Typer) -> None:
    """The command's flags: the run arguments and --compare, then HessianRequest's declared fields, --json,
    and SHARED_OPTIONS."""
    import inspect

    from ..hessian_request import PROBE, HessianRequest
    from .derive import declared_params, shared_params

    signature = inspect.signature(hessian_report, eval_str=True)
    params = [p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    own = [p for p in params if p.name != "as_json"]
    as_json = [p for p in params if p.name == "as_json"]
    hessian_report.__signature__ = signature.replace(
        parameters=own + declared_params(HessianRequest) + as_json + shared_params(SHARED_OPTIONS, PROBE))
    app.command("hessian-report", cls=SprkdCommand)(hessian_report)


def hessian_report(
    ctx: typer.Context,
    runs: Annotated[list[str], typer.Argument(help="Run id (or unique prefix); several with --compare.")],
    compare: Annotated[bool, typer.Option("--compare", help=
        "Show the stored reports of the runs side by side, with one figure of their densities.")] = False,
    *,
    as_json: arg.Json = False,
    **values,
) -> None:
    """Eigenvalues (top and bottom, with residuals), trace and eigenvalue density of the loss Hessian
    of a run's final model (or its best-val one: --weights) on the run's fixed probe set; stored in the
    run's record."""
    from ..engine.threads import set_threads
    from ..errors import UserError
    from ..hessian_request import HessianRequest
    from ..options import declared_fields
    from ..services.hessian import compare_runs, report_run

    store = open_store_from(ctx)
    if compare:
        result = compare_runs(store, runs)
        print_json(result) if as_json else _print_compare(result)
        return
    if len(runs) != 1:
        raise UserError("give one run, or several with --compare")
    request = HessianRequest(**{f.name: values[f.name] for f, _ in declared_fields(HessianRequest)},
                             micro_batch=values.get("probe_micro_batch"))
    set_threads()
    from ..activity import listening

    with progress(not as_json, interval=0) as bar:  # few, long steps: each one's start is a line
        task = bar.add_task(f"Hessian of run {runs[0]}", total=None, info="loading the run")
        with listening(lambda what: what and bar.update(task, info=what)):
            result = report_run(store, runs[0], request)
    if as_json:
        print_json({k: v for k, v in result.items() if k != "probe"} | {"probe_sizes": result["probe"]["sizes"]})
        return
    _print_report(result)


def _print_report(r: dict) -> None:
    from rich.table import Table

    out = console()
    table = Table(title=f"Hessian of run {r['run_id']} (report {r['report_id']}): {r['dim']:,} parameters, "
                        f"probe loss {r['loss']:.4f}")
    for column in ("", "eigenvalue", "residual ‖Hv−λv‖", "converged"):
        table.add_column(column, justify="left" if not column else "right")
    n_top = len(r["top_eigenvalues"])
    for i, value in enumerate(r["top_eigenvalues"] + r["bottom_eigenvalues"]):
        label = f"top {i + 1}" if i < n_top else f"bottom {i - n_top + 1}"
        table.add_row(label, f"{value:.6g}", f"{r['residuals'][i]:.2e}",
                      "yes" if r["converged"][i] else "[red]no[/red]")
    out.print(table)
    if r["trace"] is not None:
        out.print(f"trace ({r['trace_method']}): {r['trace']:.6g} ± {r['trace_se']:.2g} (se, {r['trace_n_hvp']} HVPs)")
    if r["plot"]:
        out.print(f"density ({r['density_runs']} SLQ runs × {r['density_steps']} steps): {r['plot']}")
    out.print(f"{r['n_hvp']} HVPs ({r['hvp_kind']}, {r['dtype']}, {r['mode']} mode) in {r['seconds']:.2f}s, "
              f"{r['hvp_seconds']:.2f}s of them in HVPs; Lanczos {r['iterations']} iterations")


def _print_compare(result: dict) -> None:
    from rich.table import Table

    table = Table(title="Hessian reports side by side (latest report of each run)")
    for column in ("run", "method", "report", "top eigenvalue", "bottom eigenvalue", "trace", "negative density"):
        table.add_column(column, justify="left" if column in ("run", "method") else "right")
    for row in result["runs"]:
        trace = "–" if row["trace"] is None else f"{row['trace']:.4g} ± {row['trace_se']:.2g}"
        table.add_row(row["run_id"], row["method"], str(row["report_id"]), fmt(row["top_eigenvalue"]),
                      fmt(row["bottom_eigenvalue"]), trace, fmt(row["negative_mass"]))
    out = console()
    out.print(table)
    from ..services.hessian import NEGATIVE_RTOL

    out.print(f"negative density: the share of the SLQ density below −{NEGATIVE_RTOL:g} × the spectrum's largest "
              "|eigenvalue| (nodes closer to 0 are round-off around the near-zero bulk)")
    if result["plot"]:
        out.print(f"densities: {result['plot']}")
