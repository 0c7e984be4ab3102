"""The no-teacher control: cross-entropy on the labels alone."""

from __future__ import annotations

import torch.nn.functional as F

from ..contract import Method, MethodContext, MethodOptions


class SGD(Method):
    def __init__(self, options: MethodOptions | None = None):
        self.options = options

    @classmethod
    def prepare(cls, context: MethodContext) -> SGD:
        return cls(context.options)

    def loss(self, model, x, y, index):
        return F.cross_entropy(model(x), y)
