"""Training methods behind one small interface: a loss on a mini-batch of training examples."""

from __future__ import annotations

from ..errors import UserError, unknown_name
from .base import Method
from .kd import KD
from .sgd import SGD
from .sage import SAGE
from .sprkd import SPRKD

METHODS: dict[str, type[Method]] = {m.name: m for m in (SGD, KD, SPRKD, SAGE)}


def method_names() -> list[str]:
    return list(METHODS)


def method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise unknown_name("method", name, METHODS)
    return METHODS[name]


def parse_methods(text: str | None) -> list[str]:
    """A --methods value: comma-separated known method names; not given (or empty) means every method that
    needs no more than a plain teacher (sprkd, whose teachers need tracked saddles, is asked for by name)."""
    if not text:
        return [name for name, cls in METHODS.items() if not cls.needs_saddles and not cls.needs_matched_student]
    names = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not names:
        raise UserError(f"bad --methods '{text}': give comma-separated methods, e.g. {','.join(METHODS)}")
    for name in names:
        method_class(name)
    return names


def method_options(name: str, given: dict) -> dict:
    """The method's own options: its defaults overridden by what was given (None = not given)."""
    cls = method_class(name)
    options = dict(cls.defaults)
    options.update({k: v for k, v in given.items() if k in cls.defaults and v is not None})
    cls.validate(options)
    return options


__all__ = ["Method", "METHODS", "method_class", "method_names", "method_options", "parse_methods", "UserError"]
