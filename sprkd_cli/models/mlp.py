"""Fully connected networks of `depth` hidden layers of `width` units."""

import math

from torch import nn

from ..errors import UserError
from .base import EmbedBody


class MLP(EmbedBody):
    def __init__(self, *, input_shape: tuple[int, ...], n_classes: int, width: int, depth: int, dropout: float):
        super().__init__()
        if width < 1 or depth < 1 or not 0.0 <= dropout < 1.0:
            raise UserError(f"mlp needs width >= 1, depth >= 1 and 0 <= dropout < 1 (got {width}, {depth}, {dropout})")
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width))
        layers: list[nn.Module] = []
        for _ in range(depth - 1):
            layers += [nn.ReLU(), *([nn.Dropout(dropout)] if dropout else []), nn.Linear(width, width)]
        layers += [nn.ReLU(), *([nn.Dropout(dropout)] if dropout else []), nn.Linear(width, n_classes)]
        self.body = nn.Sequential(*layers)
