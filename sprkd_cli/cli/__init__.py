"""The `sprkd` command. Only Typer, Rich and the standard library are imported here: `sprkd --help`
stays instant; torch and friends load inside the command that needs them."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..errors import UserError
from .app import SprkdGroup


def _unusable(exc: UserError):
    """A method package named in $SPRKD_METHODS that cannot be loaded: one error line, exit status 2 (the
    commands' flags are derived from the methods, so nothing can run without it)."""
    import sys

    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None


try:
    from . import hessian, report, runs, stats, train
except UserError as exc:
    _unusable(exc)

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
        "--db", envvar="SPRKD_DB",
        help="Result store: a SQLAlchemy URL or a SQLite file path \\[default: ./runs.db].")] = None,
    artifacts: Annotated[Optional[str], typer.Option(
        "--artifacts", envvar="SPRKD_ARTIFACTS", show_envvar=False,
        help="Artifact root (checkpoints, training states, saddle snapshots, plots): a folder or an fsspec URL "
             "such as s3://bucket/prefix (pip install 'sprkd\\[s3]') \\[env SPRKD_ARTIFACTS; default: runs/ beside "
             "a SQLite store, else ./runs].")] = None,
    threads: Annotated[Optional[str], typer.Option(
        "--threads", envvar="SPRKD_THREADS", show_envvar=False, metavar="N",
        help="CPU threads of each process that trains or measures \\[env SPRKD_THREADS, else OMP_NUM_THREADS; "
             "default: the cores other work leaves free, shared between the sprkd processes training on this "
             "machine].")] = None,
    slots: Annotated[Optional[str], typer.Option(
        "--slots", envvar="SPRKD_SLOTS", show_envvar=False, metavar="N",
        help="How many sprkd processes train at once on this machine; a run waits for a free slot before its "
             "first epoch, 0 for no cap \\[env SPRKD_SLOTS; default: one per core, a run training beside others "
             "only while a core is idle].")] = None,
    no_caps: Annotated[bool, typer.Option(
        "--no-caps", help="Lift the sanity caps on sizes: --epochs above 100000, more than 100 --seeds, "
                          "--batch-size above 10^6.")] = False,
) -> None:
    import os

    from ..options import NO_CAPS_ENV

    if artifacts is not None:
        if not artifacts.strip():
            raise UserError("--artifacts is empty; give a folder or a URL such as s3://bucket/prefix (or leave it "
                            "out: $SPRKD_ARTIFACTS, else runs/ beside the store)")
    if threads is not None:
        if not threads.strip().isdigit() or int(threads) < 1:
            raise UserError(f"--threads (or SPRKD_THREADS) must be a whole number >= 1 (got {threads!r})")
        os.environ["SPRKD_THREADS"] = threads.strip()  # read by engine.threads, here and in compare's workers
    if slots is not None:
        if not slots.strip().isdigit():
            raise UserError(f"--slots (or SPRKD_SLOTS) must be a whole number >= 0, 0 for no cap (got {slots!r})")
        os.environ["SPRKD_SLOTS"] = slots.strip()  # read by engine.threads, here and in compare's workers
    if no_caps:
        os.environ[NO_CAPS_ENV] = "1"  # read by the options' checks, here and in compare's workers
    _warnings_as_one_line()
    ctx.obj = {"db": db, "artifacts": artifacts}  # the store's, handed on to compare's workers and Ray tasks


def _warnings_as_one_line() -> None:
    """A library's warning (PIL's on a huge image, a deprecation) as one line `warning: ...` on stderr,
    without the file, line and source text Python prints with it."""
    import sys
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {' '.join(str(message).split())}", file=file or sys.stderr)

    warnings.showwarning = show


def _register() -> None:
    try:
        train.register(app)
    except UserError as exc:
        _unusable(exc)
    stats.register(app)
    hessian.register(app)
    report.register(app)
    app.add_typer(runs.app, name="runs")


_register()


def main() -> None:
    from ..engine.threads import mark_start

    mark_start()  # the thread count is chosen from what the machine does while the command starts
    app()
