"""Arms: a named method with overrides of its options (teachers included), as `compare --arm` takes
them: `NAME=METHOD[:key=value,...]`, or a bare `METHOD` (an arm named after it). `teacher=RUN[+RUN...]`
names the arm's teachers. Importable without torch."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import UserError
from .methods import options_class
from .options import declared_fields, parse_value

TEACHER = "teacher"  # a teacher's method and arm as listings show them
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


@dataclass(frozen=True)
class Arm:
    name: str
    method: str
    options: dict = field(default_factory=dict)  # the method options this arm sets
    teachers: tuple[str, ...] | None = None  # teacher run refs (ids or unique prefixes); None: compare's


def parse_arm(text: str) -> Arm:
    """`rkd=kd:temperature=1,ce_weight=0`, `sprkd`, `ens=sprkd:teacher=3f9a+7c21`."""
    head, _, rest = text.strip().partition(":")
    name, sep, method = head.partition("=")
    name, method = name.strip(), (method if sep else name).strip()
    if not NAME.fullmatch(name):
        raise UserError(f"bad --arm '{text}': write NAME=METHOD[:key=value,...] with a name of letters, digits, "
                        "'.', '_', '+' or '-'")
    cls = options_class(method)
    valid = {f.name for f, _ in declared_fields(cls)}
    options: dict = {}
    teachers = None
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UserError(f"bad option '{item}' in arm '{text}': write key=value")
        if key in options or (key == "teacher" and teachers is not None):
            raise UserError(f"option {key} is given twice in arm '{text}'; give it once")
        if key == "teacher":
            teachers = tuple(r.strip() for r in raw.split("+") if r.strip())
            if not teachers:
                raise UserError(f"bad teacher= in arm '{text}': give run ids joined by '+'")
        elif key in valid:
            options[key] = parse_value(cls, key, raw.strip(), text)
        else:
            raise UserError(f"unknown option '{key}' in arm '{text}'; options of {method}: "
                            f"{', '.join(sorted(valid | {'teacher'}))}")
    return Arm(name, method, options, teachers)


def parse_arms(methods: str | None, arms: list[str]) -> list[Arm]:
    """compare's arms: each method of `--methods` (an arm named after it), then each `--arm`. With neither,
    the plain methods. Names must differ."""
    from .methods import parse_methods

    chosen = [Arm(m, m) for m in (parse_methods(methods) if methods is not None or not arms else [])]
    chosen += [parse_arm(a) for a in arms]
    seen: set[str] = set()
    for arm in chosen:
        if arm.name in seen:
            raise UserError(f"two arms are named '{arm.name}'; give each --arm its own NAME=")
        seen.add(arm.name)
    return chosen


def shown_method(run) -> str:
    """A run's method as listings show it: a teacher's is "teacher" (it learns from the labels alone, as an
    sgd student does, but it is no run of the sgd arm)."""
    return TEACHER if run.kind == "teacher" else run.method


def teacher_refs(text: str | None) -> list[str] | None:
    """A --teacher value (run ids or unique prefixes, comma-separated) as a list; None when not given."""
    if text is None:
        return None
    refs = [r.strip() for r in text.split(",") if r.strip()]
    if not refs:
        raise UserError(f"bad --teacher '{text}': give a run id, or several separated by commas")
    return refs
