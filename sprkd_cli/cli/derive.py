"""The commands' flags, derived from the declarations (config.TrainConfig, each method's package,
hessian_request.HessianRequest, stats_request.StatsRequest).

An option is declared once, with its default, type, help, choices and check; here it becomes a Typer
parameter. Training options keep their default on the command line; method options default to "not
given" (the method's own default applies, which can differ between methods: --kd-weight is 0.9 for kd
and 0 for sprkd), and their help says each method's default. A tuple option (stats --metric, --methods) is a
repeated flag, or one text joined by its declared separator; not given, it is the declared default.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Literal, Optional

import typer
from rich.markup import escape

from ..config import TrainConfig
from ..methods import registry
from ..options import Declared, declared_fields, default_of, flag_name, value_type


def choice(values: tuple[str, ...]):
    """The type of an option with fixed values: the parser refuses any other (exit 2, one line), and
    --help lists them."""
    return Literal[tuple(values)]


def _param(name: str, kind: type, declared: Declared, default, help_text: str, *, optional: bool) -> inspect.Parameter:
    decls = [flag_name(name, declared), *declared.names]
    if kind is bool:
        name = decls[0].lstrip("-").replace("-", "_")
        annotation, default = bool, False
    elif kind is tuple:  # not given (None): the declared default, which the help says when there is one
        annotation = Optional[str] if declared.sep else Optional[list[str]]
        if default:
            help_text += f" Default: {', '.join(default)}."
        default = None
    else:
        value = choice(declared.choices) if declared.choices is not None else kind
        annotation = Optional[value] if optional else value
    info = typer.Option(*decls, help=escape(help_text), rich_help_panel=declared.panel)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, info])


def declared_params(cls, keep: Callable[[Declared], bool] = lambda declared: True) -> list[inspect.Parameter]:
    """The flags of `cls`'s declared fields (those `keep` keeps), each with its declared default."""
    return [_param(f.name, value_type(f), declared, default_of(f), declared.help, optional=default_of(f) is None)
            for f, declared in declared_fields(cls) if declared.cli and keep(declared)]


def training_params(scope: str) -> list[inspect.Parameter]:
    """TrainConfig's flags for `scope` (teacher: all of them; student: all but saddle tracking)."""
    return declared_params(TrainConfig, lambda declared: declared.scope in ("all", scope))


def shared_params(names: tuple[str, ...], panel: str) -> list[inspect.Parameter]:
    """TrainConfig's flags `names` for a command that measures a stored run (hessian-report): not given
    (None) by default, which means the run's own value."""
    params = []
    for f, declared in declared_fields(TrainConfig):
        if f.name in names:
            params.append(_param(f.name, value_type(f), replace(declared, panel=panel), None,
                                 f"{declared.help} [default: the run's own]", optional=True))
    return params


def _method_option_table() -> dict[str, list[tuple[str, object, Declared, type]]]:
    """option name -> [(method, default, declaration, type)] over every method that declares it."""
    table: dict[str, list] = {}
    for method, cls in registry().items():
        for f, declared in declared_fields(cls):
            table.setdefault(f.name, []).append((method, default_of(f), declared, value_type(f)))
    return table


def method_params() -> list[inspect.Parameter]:
    """One flag per method option (shared names, e.g. --temperature, are one flag), default: not given."""
    params = []
    training = {f.name for f, _ in declared_fields(TrainConfig)}
    for name, rows in _method_option_table().items():
        if name in training:
            continue
        _, _, declared, kind = rows[0]
        if kind is bool:
            help_text = f"{declared.help} ({', '.join(m for m, *_ in rows)})"
        else:
            by_default: dict[str, list[str]] = {}
            for method, default, _, _ in rows:
                by_default.setdefault(f"{default:g}" if isinstance(default, float) else str(default), []).append(method)
            defaults = "; ".join(f"{', '.join(ms)}: {d}" for d, ms in by_default.items())
            help_text = f"{declared.help} (default {defaults})"
        params.append(_param(name, kind, declared, None, help_text, optional=True))
    return params


def training_values(given: dict) -> dict:
    """The TrainConfig fields among a command's parsed flags."""
    names = {f.name for f, d in declared_fields(TrainConfig) if d.cli}
    return {k: v for k, v in given.items() if k in names}


def method_values(given: dict) -> dict:
    """The method options given on the command line (None: not given; a switch flips its option's default,
    e.g. --no-nhe sets nhe to False and --asr-revive sets asr_revive to True)."""
    out = {}
    for name, rows in _method_option_table().items():
        declared = rows[0][2]
        if rows[0][3] is bool:
            switch = flag_name(name, declared).lstrip("-").replace("-", "_")
            out[name] = (not rows[0][1]) if given.get(switch) else None
        elif name in given:
            out[name] = given[name]
    return out


def command(name: str, doc: str, params: list[inspect.Parameter], body: Callable[..., None]):
    """A Typer command `name` whose flags are `params`; body(ctx, **values) runs it."""

    def run(ctx: typer.Context, **values):
        return body(ctx, **values)

    ctx_param = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    run.__signature__ = inspect.Signature([ctx_param, *params])
    run.__name__ = name.replace("-", "_")
    run.__doc__ = doc
    return run
