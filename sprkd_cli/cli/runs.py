"""runs list | show | export: browse the result store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..choices import EXPORT_FORMATS, RUN_KINDS, RUN_STATUSES
from . import arguments as arg
from .app import SprkdCommand, SprkdGroup, console, fmt, open_store_from, print_json
from .derive import choice

app = typer.Typer(cls=SprkdGroup, no_args_is_help=True, help="Browse and export the runs in the store.")

@app.command("list", cls=SprkdCommand)
def list_runs(
    ctx: typer.Context,
    method: Annotated[Optional[str], typer.Option(help="Only this method (teacher: the teachers).")] = None,
    arm: Annotated[Optional[str], typer.Option(help="Only this arm (teacher: the teachers).")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Only this dataset.")] = None,
    status: Annotated[Optional[choice(RUN_STATUSES)], typer.Option(help="Only runs of this status.")] = None,
    kind: Annotated[Optional[choice(RUN_KINDS)], typer.Option(help="Only teacher or only student runs.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs, newest first (0: all).")] = 50,
    as_json: arg.Json = False,
) -> None:
    """The runs in the store, newest first, with the arms each belongs to (compare's --arm names; teachers:
    teacher)."""
    from rich.markup import escape
    from rich.table import Table

    from ..errors import UserError
    from ..services.runs import check_filters, run_arms, run_row, select_runs, shown_method

    if not 0 <= limit < 2**63:
        raise UserError(f"--limit must be >= 0 and below 2^63 (0: all; got {limit:.3g})")
    check_filters(method=method, dataset=dataset, status=status, kind=kind)
    store = open_store_from(ctx)
    runs = select_runs(store, method=method, arm=arm, dataset=dataset, status=status, kind=kind,
                       limit=limit or None, brief=True)
    arms = store.arms_of_runs([r.id for r in runs])
    if as_json:
        print_json([run_row(r, run_arms(r, arms)) for r in runs])
        return
    table = Table()
    for column in ("id", "arm", "method", "dataset", "model", "seed", "status", "test_acc", "created"):
        table.add_column(column, justify="right" if column in ("seed", "test_acc") else "left")
    for r in runs:
        status_text = {"finished": "[green]finished[/green]", "failed": "[red]failed[/red]",
                       "crashed": "[red]crashed[/red]",
                       "interrupted": "[yellow]interrupted[/yellow]"}.get(r.status, r.status)
        table.add_row(r.id, escape(", ".join(run_arms(r, arms))), shown_method(r), r.dataset, r.model, str(r.seed),
                      status_text, fmt(r.summary.get("test_acc")), r.created_at.strftime("%Y-%m-%d %H:%M:%S"))
    console().print(table)


@app.command("show", cls=SprkdCommand)
def show(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run id or unique prefix.")],
    events: Annotated[bool, typer.Option("--events", help=
        "Also list the run's event log (saddles stored, ASR, approach, NHE, PGD).")] = False,
    as_json: arg.Json = False,
) -> None:
    """One run: its config, provenance, summary, per-epoch metrics, saddle points and event counts."""
    from rich.table import Table

    from ..services.runs import describe_run

    r = describe_run(open_store_from(ctx), run, events=events)
    if as_json:
        print_json(r)
        return
    out = console()
    method = "" if r["kind"] == "teacher" else f" · {r['method']}"
    out.print(f"[bold]run {r['id']}[/bold]  {r['kind']}{method} · {r['dataset']} · {r['model']} · "
              f"seed {r['seed']} · {r['status']}")
    if r["error"]:
        out.print(f"[red]error:[/red] {r['error']}")
    out.print(f"trained on {r['device']} in {r['precision']}")
    out.print(f"config hash {r['config_hash']}; teachers {', '.join(r['teacher_ids']) or '–'}; "
              f"commit {(r['git_commit'] or '–')[:12]}{' (dirty)' if r['git_dirty'] else ''}; "
              f"artifacts {r['artifact_dir']}")
    if r["arms"]:
        out.print("arms: " + ", ".join(r["arms"]) + ("  (NAME:tune: a grid run of compare --tune)"
                                                   if any(a.endswith(":tune") for a in r["arms"]) else ""))
    for t in r["tuned"]:
        grid = " x ".join(f"{k} {','.join(map(str, v))}" for k, v in t["grid"].items())
        chosen = ", ".join(f"{k}={v}" for k, v in t["chosen"].items())
        out.print(f"tuned for arm {t['arm']}: {chosen}, chosen on validation from the grid {grid} "
                  f"(seeds {','.join(map(str, t['seeds']))}; {len(t['scores'])} points)")
    hyper = {k: v for k, v in r["config"].items() if k not in ("data", "kind", "method", "dataset", "model", "seed")}
    out.print("config: " + ", ".join(f"{k}={v}" for k, v in hyper.items()))
    if r["summary"]:
        out.print("summary: " + ", ".join(f"{k}={fmt(v)}" for k, v in r["summary"].items()))
    table = Table(title="metrics per epoch")
    columns = ("epoch", "train_loss", "val_loss", "val_acc", "test_loss", "test_acc")
    for column in columns:
        table.add_column(column, justify="right")
    for row in r["metrics"]:
        best = row["epoch"] == r["summary"].get("best_epoch")
        table.add_row(*(fmt(row.get(c)) for c in columns), style="bold" if best else None)
    out.print(table)
    if r["hessian_reports"]:
        out.print(_hessian_table(r["hessian_reports"]))
    if r["saddle_points"]:
        out.print(_saddle_table(r["saddle_points"]))
    if r["event_counts"]["events"]:
        out.print("events: " + ", ".join(f"{k} {v}" for k, v in r["event_counts"].items()))
    if events:
        out.print(_event_table(r["events"]))


def _saddle_table(rows: list[dict]):
    from rich.table import Table

    table = Table(title="saddle candidates (sprkd; strong under a rule's default: ratio S- >= 0.4 S+, magnitude S- >= "
                        "7)")
    for column in ("saddle", "step", "epoch", "probe_loss", "S-", "S+", "S-/S+", "ratio", "magnitude", "eigenvalues"):
        table.add_column(column, justify="left" if column == "eigenvalues" else "right")
    for row in rows:
        table.add_row(str(row["saddle_id"]), str(row["step"]), str(row["epoch"]), fmt(row["probe_loss"]),
                      fmt(row["s_neg"]), fmt(row["s_pos"]), fmt(row["ratio"]),
                      "yes" if row.get("passes_ratio") else "no", "yes" if row.get("passes_magnitude") else "no",
                      ", ".join(f"{v:.4g}" for v in row["eigenvalues"]))
    return table


def _event_table(rows: list[dict]):
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="events")
    for column in ("step", "epoch", "kind", "details"):
        table.add_column(column, justify="left" if column in ("kind", "details") else "right")
    for row in rows:
        details = ", ".join(f"{k}={_short(v)}" for k, v in row["payload"].items())
        table.add_row("–" if row["step"] is None else str(row["step"]),
                      "–" if row["epoch"] is None else str(row["epoch"]), row["kind"], escape(details))
    return table


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and len(value) > 6:
        return f"[{len(value)} items]"
    return str(value)


def _hessian_table(rows: list[dict]):
    from rich.table import Table

    table = Table(title="Hessian reports (sprkd hessian-report --compare for densities)")
    columns = ("report_id", "step", "top_eigenvalue", "bottom_eigenvalue", "trace", "n_hvp", "seconds")
    for column in columns:
        table.add_column(column.replace("_eigenvalue", " λ").replace("report_id", "report"), justify="right")
    for row in rows:
        table.add_row(*("final" if c == "step" and row[c] is None else fmt(row[c]) for c in columns))
    return table


@app.command("export", cls=SprkdCommand)
def export(
    ctx: typer.Context,
    fmt_: Annotated[choice(EXPORT_FORMATS), typer.Option("--format", help=
        "File format (parquet: with --output).")] = "csv",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help=
        "File to write ('-': stdout) \\[default: stdout]. Never the store or another SQLite database.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the --output file if it exists.")] = False,
    metrics: Annotated[bool, typer.Option("--metrics", help=
        "Export every metric row of the runs (long format: run_id, step, epoch, split, name, value) instead of one row "
        "per run and arm.")] = False,
    method: Annotated[Optional[str], typer.Option(help="Only this method (teacher: the teachers).")] = None,
    arm: Annotated[Optional[str], typer.Option(help="Only this arm (teacher: the teachers).")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Only this dataset.")] = None,
    status: Annotated[Optional[choice(RUN_STATUSES)], typer.Option(help="Only runs of this status.")] = None,
    kind: Annotated[Optional[choice(RUN_KINDS)], typer.Option(help="Only teacher or only student runs.")] = None,
) -> None:
    """One row per run and arm (a run two arms share is a row of each; teachers are the arm teacher): its
    arm, its columns, its summary numbers and its config flattened into config.* columns; for pandas, R or
    a spreadsheet (in Python: sprkd_cli.api.load_runs)."""
    from ..api import load_metrics, load_runs, write_frame
    from ..errors import UserError
    from ..services.outputs import check_output, write_output
    from ..services.runs import check_filters
    from ..store import store_url

    check_filters(method=method, dataset=dataset, status=status, kind=kind)
    if output is not None and str(output) == "-":
        output = None
    if fmt_ == "parquet" and output is None:
        raise UserError("--format parquet writes a binary file: give --output FILE")
    if output is not None:  # before the store is opened: a wrong path changes nothing anywhere
        check_output(output, store_url((ctx.find_root().obj or {}).get("db")), force=force)
    store = open_store_from(ctx)
    filters = {"method": method, "arm": arm, "dataset": dataset, "status": status, "kind": kind}
    frame = load_metrics(store, **filters) if metrics else load_runs(store, **filters)
    import io

    buffer = io.BytesIO() if fmt_ == "parquet" else io.StringIO()
    write_frame(frame, buffer, fmt_)
    data = buffer.getvalue()
    if fmt_ == "json":
        data += "\n"
    if output is None:
        typer.echo(data, nl=False)
        return
    write_output(output, data)
    console().print(f"wrote {len(frame)} rows to {output}")
