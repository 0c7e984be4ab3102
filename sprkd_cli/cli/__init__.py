"""The `sprkd` command. Only Typer, Rich and the standard library are imported here: `sprkd --help`
stays instant; torch and friends load inside the command that needs them."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .app import SprkdGroup
from . import hessian, report, runs, stats, train

app = typer.Typer(
    cls=SprkdGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Experiment runner and result store for knowledge distillation: train teachers, distil students "
         "with sgd, kd, sprkd or sage, measure loss-landscape curvature, compare methods over seeds, and "
         "test the differences.",
)


@app.callback()
def _global(
    ctx: typer.Context,
    db: Annotated[Optional[str], typer.Option(
        "--db", envvar="SPRKD_DB", help="Result store: a SQLAlchemy URL or a SQLite file path \\[default: ./runs.db].")] = None,
    artifacts: Annotated[Optional[str], typer.Option(
        "--artifacts", envvar="SPRKD_ARTIFACTS", show_envvar=False,
        help="Artifact root (checkpoints, training states, saddle snapshots, plots): a folder or an fsspec URL "
             "such as s3://bucket/prefix (pip install 'sprkd\\[s3]') \\[env SPRKD_ARTIFACTS; default: runs/ beside "
             "a SQLite store, else ./runs].")] = None,
) -> None:
    if artifacts:
        import os

        os.environ["SPRKD_ARTIFACTS"] = artifacts  # read by the store, and passed on to subprocesses and Ray tasks
    ctx.obj = {"db": db}


train.register(app)
stats.register(app)
hessian.register(app)
report.register(app)
app.add_typer(runs.app, name="runs")


def main() -> None:
    app()
