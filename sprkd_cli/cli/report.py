"""report: one self-contained HTML page of a comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import arguments as arg
from .app import SprkdCommand, console, open_store_from, print_json


def register(app: typer.Typer) -> None:
    app.command("report", cls=SprkdCommand)(report)


def report(
    ctx: typer.Context,
    dataset: arg.Dataset = arg.DEFAULT_DATASET,
    arms: Annotated[Optional[str], typer.Option("--arms", "--methods", help=
        "Comma-separated arms (compare's arm names, or methods) \\[default: every arm of the dataset with finished "
        "runs].")] = None,
    runs: Annotated[Optional[str], typer.Option(help=
        "Instead of --dataset and --arms: comma-separated run ids (or unique prefixes), grouped by their arm.")] = None,
    student: Annotated[Optional[str], typer.Option(help="Only students of this model.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help=
        "The HTML file \\[default: reports/ in the artifact root].")] = None,
    as_json: arg.Json = False,
) -> None:
    """One self-contained HTML page (no network; plots embedded) of a comparison: the comparison table, the
    statistics (tests named), learning curves per arm, Hessian eigenvalues and densities, sprkd's saddle,
    NHE and PGD events per epoch, the tuning grids and chosen values, and each run's provenance."""
    from ..services.report import ReportRequest, write_report
    from ..specs import parse_list

    request = ReportRequest(dataset=None if runs else dataset, arms=tuple(parse_list(arms)) if arms else (),
                            run_ids=tuple(parse_list(runs)) if runs else (), student=student)
    result = write_report(open_store_from(ctx), request, str(output) if output else None)
    if as_json:
        print_json(result)
        return
    console().print(f"report of {result['runs']} runs (arms {', '.join(result['arms'])}): {result['path']}",
                    soft_wrap=True)
