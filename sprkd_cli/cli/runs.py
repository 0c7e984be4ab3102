"""runs list | show | export: browse the result store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import options as o
from .app import SprkdGroup, console, fmt, open_store_from, print_json

app = typer.Typer(cls=SprkdGroup, no_args_is_help=True, help="Browse and export the runs in the store.")

@app.command("list")
def list_runs(
    ctx: typer.Context,
    method: Annotated[Optional[str], typer.Option(help="Only this method.")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Only this dataset.")] = None,
    status: Annotated[Optional[str], typer.Option(help="Only this status: running, finished, failed, interrupted, crashed.")] = None,
    kind: Annotated[Optional[str], typer.Option(help="Only teacher or student runs.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs, newest first (0: all).")] = 50,
    as_json: o.Json = False,
) -> None:
    """The runs in the store, newest first."""
    from rich.table import Table

    from ..errors import UserError
    from ..services.lifecycle import read_runs
    from ..services.runs import check_filters, run_row

    if not 0 <= limit < 2**63:
        raise UserError(f"--limit must be >= 0 and below 2^63 (0: all; got {limit:.3g})")
    check_filters(method=method, dataset=dataset, status=status, kind=kind)
    runs = read_runs(open_store_from(ctx), method=method, dataset=dataset, status=status, kind=kind,
                     limit=limit or None, brief=True)
    if as_json:
        print_json([run_row(r) for r in runs])
        return
    table = Table()
    for column in ("id", "kind", "method", "dataset", "model", "seed", "status", "test_acc", "created"):
        table.add_column(column, justify="right" if column in ("seed", "test_acc") else "left")
    for r in runs:
        status_text = {"finished": "[green]finished[/green]", "failed": "[red]failed[/red]",
                       "crashed": "[red]crashed[/red]", "interrupted": "[yellow]interrupted[/yellow]"}.get(r.status, r.status)
        table.add_row(r.id, r.kind, r.method, r.dataset, r.model, str(r.seed), status_text,
                      fmt(r.summary.get("test_acc")), r.created_at.strftime("%Y-%m-%d %H:%M:%S"))
    console().print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run id or unique prefix.")],
    events: Annotated[bool, typer.Option("--events", help="Also list the run's event log (saddles stored, ASR, approach, NHE, PGD).")] = False,
    as_json: o.Json = False,
) -> None:
    """One run: its config, provenance, summary, per-epoch metrics, saddle points and event counts."""
    from rich.table import Table

    from ..services.runs import describe_run

    r = describe_run(open_store_from(ctx), run, events=events)
    if as_json:
        print_json(r)
        return
    out = console()
    out.print(f"[bold]run {r['id']}[/bold]  {r['kind']} · {r['method']} · {r['dataset']} · {r['model']} · "
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

    table = Table(title="saddle candidates (sprkd; strong under a rule's default: ratio S- >= 0.4 S+, magnitude S- >= 7)")
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
        table.add_row("–" if row["step"] is None else str(row["step"]), "–" if row["epoch"] is None else str(row["epoch"]),
                      row["kind"], escape(details))
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


@app.command("export")
def export(
    ctx: typer.Context,
    fmt_: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="File to write ('-': stdout) \\[default: stdout]. Never the store or another SQLite database.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the --output file if it exists.")] = False,
    metrics: Annotated[bool, typer.Option("--metrics", help="Export every metric row (long format) instead of one row per run.")] = False,
    method: Annotated[Optional[str], typer.Option(help="Only this method.")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Only this dataset.")] = None,
    status: Annotated[Optional[str], typer.Option(help="Only this status.")] = None,
) -> None:
    """Runs (or their metrics) as CSV or JSON, for pandas, R or a spreadsheet."""
    import pandas as pd

    from ..errors import UserError
    from ..services.outputs import check_output, write_output
    from ..services.runs import check_filters, export_rows
    from ..store import store_url

    if fmt_ not in ("csv", "json"):
        raise UserError(f"unknown --format '{fmt_}'; valid formats: csv, json")
    check_filters(method=method, dataset=dataset, status=status)
    if output is not None and str(output) == "-":
        output = None
    if output is not None:  # before the store is opened: a wrong path changes nothing anywhere
        check_output(output, store_url((ctx.find_root().obj or {}).get("db")), force=force)
    columns, rows = export_rows(open_store_from(ctx), metrics=metrics, method=method, dataset=dataset, status=status)
    frame = pd.DataFrame(rows, columns=columns)
    text = frame.to_csv(index=False) if fmt_ == "csv" else frame.to_json(orient="records", date_format="iso", indent=1) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        write_output(output, text)
        console().print(f"wrote {len(frame)} rows to {output}")
