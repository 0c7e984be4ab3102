"""Pieces every command shares: user errors as one line, the store, JSON or Rich output, progress."""

from __future__ import annotations

import errno
import json
import math
import sys
from contextlib import contextmanager

import click
import typer
from typer.core import TyperCommand, TyperGroup

from ..errors import Interrupted, UserError, os_error_message

try:  # Typer >= 0.2x carries its own copy of click; its usage errors are of that copy's class
    from typer._click.exceptions import UsageError as _TyperUsageError

    USAGE_ERRORS: tuple[type[Exception], ...] = (click.UsageError, _TyperUsageError)
except ImportError:
    USAGE_ERRORS = (click.UsageError,)


class _PlainFlags:
    """--help shows no type for a flag (`--json`, `--help`): a flag takes no value."""

    def get_params(self, ctx: click.Context):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class SprkdCommand(_PlainFlags, TyperCommand):
    """Every sprkd command: its flags listed without a type."""


class SprkdGroup(_PlainFlags, TyperGroup):
    """Prints a UserError, a usage error of a command, an OSError (its path and reason) or a database
    error of the store (naming it) as one line on stderr and exits with code 2, without a traceback; an
    interrupted run (SIGINT, SIGTERM) as one line, exiting with 130 or 143."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            _say(ctx, f"error: {exc}")
            ctx.exit(2)
        except USAGE_ERRORS as exc:  # click's own (a bad number, a misspelt flag): one line too
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            message = _refused_choice(" ".join(exc.format_message().split()))
            _say(ctx, f"error: {message} (see '{where} --help')")
            ctx.exit(2)
        except Interrupted as exc:
            _say(ctx, str(exc))
            ctx.exit(exc.exit_code)
        except OSError as exc:  # a path the system refused (too long, a folder, no space left): which, and why
            if exc.errno == errno.EPIPE:  # stdout closed early (| head): click's own handling
                raise
            _say(ctx, f"error: {os_error_message(exc)}")
            ctx.exit(2)
        except Exception as exc:
            error = _store_error(ctx, exc)
            if error is None:
                raise
            _say(ctx, f"error: {error}")
            ctx.exit(2)


def _given_store(ctx: click.Context) -> str | None:
    """The store as the user named it (--db, else $SPRKD_DB), whether or not it could be opened."""
    import os

    root = ctx.find_root()
    return (root.obj or {}).get("db") or root.params.get("db") or os.environ.get("SPRKD_DB")


def _say(ctx: click.Context, line: str) -> None:
    """`line` on stderr, with every secret of the store's URL masked (a driver's message may quote it)."""
    from ..redact import scrub

    click.echo(scrub(line, _given_store(ctx)), err=True)


def _refused_choice(message: str) -> str:
    """The parser's refusal of a value outside an option's choices, worded as sprkd words its own
    (`bad --mode 'x'; valid: eval, train`); any other message as it is."""
    import re

    match = re.fullmatch(r"Invalid value for '(?P<flag>[^']+)': (?:Value error, )?(?P<value>'.*'|\".*\") is not one "
                         r"of (?P<choices>'.*')\.", message)
    if match is None:
        return message
    choices = ", ".join(c.strip().strip("'") for c in match["choices"].split(","))
    return f"bad {match['flag']} {match['value']}; valid: {choices}"


def _store_error(ctx: click.Context, exc: Exception) -> UserError | None:
    """A database error of the command's store (damaged, locked, ...) as a UserError naming the store;
    None for any other exception. The store's modules are only looked at when loaded."""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    sqlite3 = sys.modules.get("sqlite3")
    if not ((sa_exc is not None and isinstance(exc, sa_exc.DBAPIError))
            or (sqlite3 is not None and isinstance(exc, sqlite3.Error))):
        return None
    from ..store import store_error, store_url

    return store_error(store_url((ctx.find_root().obj or {}).get("db")), exc)


def open_store_from(ctx: typer.Context):
    from ..store import open_store

    obj = ctx.find_root().obj or {}
    return open_store(obj.get("db"), obj.get("artifacts"))


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def print_json(document) -> None:
    """One JSON document on stdout and nothing else (NaN and inf become null)."""
    try:  # the common case, without walking the document first
        text = json.dumps(document, default=str, allow_nan=False)
    except (ValueError, TypeError):  # a NaN or inf somewhere, or a key json cannot take
        text = json.dumps(_json_safe(document), default=str)
    sys.stdout.write(text + "\n")


def console():
    """Rich output on stdout; when piped, 120 columns (or $COLUMNS, when it is a whole number from 40 to
    10000; anything else is ignored) rather than Rich's 80."""
    from rich.console import Console

    return Console(width=columns(sys.stdout, 120))


def columns(stream, default: int) -> int | None:
    """The width to draw in on `stream`: $COLUMNS when it is a whole number from 40 to 10000; else, on a
    terminal, the terminal's width (None: Rich asks it), elsewhere `default`. ("abc", "1e3", "0" and "-5"
    are not widths a table can be drawn in, and Rich would take some of them.)"""
    import os

    text = os.environ.get("COLUMNS", "").strip()
    if text.isdigit() and 40 <= int(text) <= 10_000:
        return int(text)
    if not stream.isatty():
        return default
    if "COLUMNS" not in os.environ:
        return None
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError):
        return default


@contextmanager
def progress(enabled: bool, interval: float = 5.0):
    """Progress on stderr: Rich bars on a terminal; elsewhere (a log file, a pipe) plain lines, at most one
    per task every `interval` seconds (see PlainProgress); nothing when not `enabled` (--json)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    err = Console(stderr=True, width=columns(sys.stderr, 80))
    if enabled and not err.is_terminal:
        yield PlainProgress(interval)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[info]}"), console=err, transient=True, disable=not enabled) as bar:
        yield bar


class PlainProgress:
    """Rich Progress's add_task / update / remove_task as plain lines on stderr, for a log: a line when a
    task's count moves (an epoch or a run finished) or its info changes, at most one per task every
    `interval` seconds (a task's own `plain_interval`, e.g. 0: every change), and always its last count;
    no control characters."""

    def __init__(self, interval: float):
        import time

        self.interval, self.clock, self.started = interval, time.monotonic, time.monotonic()
        self.tasks: dict[int, dict] = {}

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields) -> int:
        task_id = len(self.tasks)
        self.tasks[task_id] = {"description": description, "total": total, "completed": completed,
                               "info": fields.get("info", ""), "printed": None, "at": -float("inf"),
                               "every": fields.get("plain_interval", self.interval)}
        return task_id

    def remove_task(self, task_id: int) -> None:
        self.tasks.pop(task_id, None)

    def update(self, task_id: int, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, info: str | None = None,
               **_) -> None:
        task = self.tasks.get(task_id)
        if task is None:
            return
        for key, value in (("total", total), ("completed", completed), ("description", description), ("info", info)):
            if value is not None:
                task[key] = value
        if advance:
            task["completed"] += advance
        shown = (task["description"], task["completed"], task["total"], task["info"])
        done = task["total"] is not None and task["completed"] >= task["total"] > 0
        if shown == task["printed"] or (self.clock() - task["at"] < task["every"] and not done):
            return
        task["printed"], task["at"] = shown, self.clock()
        count = f" {task['completed']:g}/{task['total']:g}" if task["total"] is not None else ""
        info = f" {task['info']}" if task["info"] else ""
        line = f"[{self.clock() - self.started:6.0f}s] {task['description']}{count}{info}"
        sys.stderr.write("".join(ch for ch in line if ch.isprintable()) + "\n")
        sys.stderr.flush()


def fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_p(p) -> str:
    if p is None or (isinstance(p, float) and not math.isfinite(p)):
        return "–"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.4f}"
