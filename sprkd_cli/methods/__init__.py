"""Training methods behind one small interface: a loss on a mini-batch of training examples.

The registry and every method's options (methods/options.py) import without torch; a method's class
loads on first use (`method_class`)."""

from __future__ import annotations

from .options import METHOD_OPTIONS, method_class, method_names, method_options, options_class, parse_methods, plain_methods

__all__ = ["METHOD_OPTIONS", "method_class", "method_names", "method_options", "options_class", "parse_methods",
           "plain_methods"]
