"""Options declared once: a dataclass field carries its default, type, help text, choices and check.

The run's TrainConfig (config.py) and each method's options class (methods/<name>/__init__.py) are made of
such fields; the CLI derives its flags from them (cli/derive.py), arms parse `key=value` against
them, and `check_options` validates a whole object the same way whichever way it was built.
Importable without torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from .errors import UserError

# A check returns None when the value is fine, else what is wrong ("must be > 0").
Check = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class Declared:
    help: str
    panel: str | None = None
    check: Check | None = None
    choices: tuple[str, ...] | None = None
    flag: str | None = None  # a bool that defaults to True: the switch that turns it off (e.g. --no-nhe)
    cli: bool = True  # a flag of the commands (False: set by the program, e.g. betas)
    scope: str = "all"  # training options: "teacher" for those of train-teacher alone (saddle tracking)
    names: tuple[str, ...] = ()  # the flag's further names (stats --methods is --arms too)
    sep: str | None = None  # a tuple option given as one text joined by sep (--methods sgd,kd); None: the flag repeats


def option(default: Any, help: str, *, panel: str | None = None, check: Check | None = None,
           choices: tuple[str, ...] | None = None, flag: str | None = None, cli: bool = True,
           scope: str = "all", names: tuple[str, ...] = (), sep: str | None = None,
           factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with its declaration in the metadata."""
    meta = {"declared": Declared(help, panel, check, choices, flag, cli, scope, names, sep)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


INT_LIMIT = 2**63  # integers are stored as 64-bit signed numbers
NO_CAPS_ENV = "SPRKD_NO_CAPS"  # set by `sprkd --no-caps`: the sanity caps on sizes (epochs, seeds) are lifted


def caps_lifted() -> bool:
    import os

    return os.environ.get(NO_CAPS_ENV, "") not in ("", "0")


def at_least(low: float) -> Check:
    return lambda v: None if v >= low else f"must be >= {low:g}"


def above(low: float) -> Check:
    return lambda v: None if v > low else f"must be > {low:g}"


def between(low: float, high: float) -> Check:
    return lambda v: None if low <= v <= high else f"must be in [{low:g}, {high:g}]"


def from_below(low: float, high: float) -> Check:
    """low <= v < high (a momentum, a decay factor: 1 would never forget)."""
    return lambda v: None if low <= v < high else f"must be in [{low:g}, {high:g})"


def capped(low: float, cap: float) -> Check:
    """low <= v, and v <= cap unless the caps are lifted (`sprkd --no-caps`): a value far beyond any sane
    experiment (--epochs 10^20) is a typo more often than a wish."""

    def check(v):
        if v < low:
            return f"must be >= {low:g}"
        if v > cap and not caps_lifted():
            return f"must be <= {cap:g} (sprkd --no-caps lifts this cap)"
        return None

    return check


def declared_fields(cls) -> list[tuple[Field, Declared]]:
    """The declared options of a dataclass, in declaration order."""
    return [(f, f.metadata["declared"]) for f in fields(cls) if "declared" in f.metadata]


def default_of(f: Field) -> Any:
    return f.default_factory() if f.default is MISSING else f.default


def value_type(f: Field) -> type:
    """The Python type of a field's values (from its annotation, which may be a string)."""
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    for name, kind in (("bool", bool), ("int", int), ("float", float), ("str", str), ("tuple", tuple)):
        if text.split("|")[0].split("[")[0].strip() == name:
            return kind
    return object


def flag_name(name: str, declared: Declared) -> str:
    return declared.flag or "--" + name.replace("_", "-")


def problem(name: str, declared: Declared, value: Any, kind: type) -> str | None:
    """What is wrong with one value of a declared option, or None."""
    if value is None:
        return None
    if declared.choices is not None:
        return None if value in declared.choices else f"'{value}' is not one of {', '.join(declared.choices)}"
    if kind is float and not math.isfinite(value):
        return f"must be a finite number (got {value})"
    if declared.check is not None and kind in (int, float):
        wrong = declared.check(value)
        if wrong:
            shown = f"{value:g}" if kind is float or abs(value) >= 10**15 else str(value)
            return f"{wrong} (got {shown})"
    if kind is int and not -INT_LIMIT < value < INT_LIMIT:
        return f"must be below 2^63 in size (got {value:.3g})"
    return None


def check_options(obj, where: Callable[[str, Declared], str] | None = None) -> None:
    """Raise UserError on the first declared field of `obj` whose value its declaration refuses.
    `where(name, declared)` names the option in the message (default: its flag)."""
    where = where or (lambda name, declared: flag_name(name, declared))
    for f, declared in declared_fields(type(obj)):
        wrong = problem(f.name, declared, getattr(obj, f.name), value_type(f))
        if wrong:
            label = where(f.name, declared)
            if declared.choices is not None:
                raise UserError(f"bad {label} '{getattr(obj, f.name)}'; valid: {', '.join(declared.choices)}")
            raise UserError(f"{label} {wrong}")


def coerce(cls, values: dict) -> dict:
    """`values` with ints given for float options made floats (2 and 2.0 are one setting, and hash as one)."""
    kinds = {f.name: value_type(f) for f, _ in declared_fields(cls)}
    return {k: float(v) if kinds.get(k) is float and isinstance(v, int) and not isinstance(v, bool) else v
            for k, v in values.items()}


def parse_value(cls, key: str, raw: str, context: str) -> Any:
    """A `key=value` string of an arm or spec, typed by `cls`'s declaration of `key`."""
    by_name = {f.name: f for f, _ in declared_fields(cls)}
    kind = value_type(by_name[key])
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise UserError(f"option {key}={raw} in '{context}' must be true or false")
    try:
        return kind(raw) if kind in (int, float, str) else raw
    except ValueError:
        raise UserError(f"option {key}={raw} in '{context}' must be a {kind.__name__}") from None
