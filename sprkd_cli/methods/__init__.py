"""Training methods, one package each (methods/contract.py says what a method is).

The registry and every method's options import without torch; a method's implementation loads on first
use (`method_class`)."""

from __future__ import annotations

from .registry import (
    check_used,
    declared_options,
    method_class,
    method_names,
    method_options,
    options_class,
    parse_methods,
    plain_methods,
    registry,
)

__all__ = ["check_used", "method_class", "method_names", "method_options", "options_class", "parse_methods",
           "plain_methods", "registry", "declared_options"]
