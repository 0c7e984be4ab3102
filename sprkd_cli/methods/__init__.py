"""Training methods behind one small interface: a loss on a mini-batch of training examples."""

from __future__ import annotations

from ..errors import UserError, unknown_name
from ..names import parse_methods
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


def method_options(name: str, given: dict) -> dict:
    """The method's own options: its defaults overridden by what was given (None = not given)."""
    cls = method_class(name)
    options = dict(cls.defaults)
    options.update({k: v for k, v in given.items() if k in cls.defaults and v is not None})
    cls.validate(options)
    return options


__all__ = ["Method", "METHODS", "method_class", "method_names", "method_options", "parse_methods", "UserError"]
