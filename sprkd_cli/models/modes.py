"""A model's train/eval mode for the length of a block, every module's own mode put back after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def train_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Run the block with `model` and all its submodules in train (True) or eval (False) mode; after
    it, also when it raises, each module gets back the mode it had (modules whose modes differed keep
    their difference)."""
    saved = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for module, was_training in saved:
            module.training = was_training
