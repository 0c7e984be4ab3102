"""The interface every method implements."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn


class Method:
    name: ClassVar[str]
    needs_teacher: ClassVar[bool] = False
    defaults: ClassVar[dict] = {}

    @classmethod
    def validate(cls, options: dict) -> None:
        """Raise UserError for option values that make no sense."""

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, index: Tensor) -> Tensor:
        """Mean training loss on the mini-batch `x, y`; `index` are its rows in the training set."""
        raise NotImplementedError
