"""Flat-vector view of a list of parameters.

Every vector the Hessian engine handles is a flat tensor of length `dim` (the total
number of selected parameter entries), laid out parameter by parameter in the order of
`names`. These helpers convert between that layout and per-parameter tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class FlatLayout:
    """Parameter names and shapes defining the flat layout `v = concat(vec(p_1), ...)`."""

    def __init__(self, names: Sequence[str], shapes: Sequence[torch.Size]) -> None:
        self.names = list(names)
        self.shapes = [torch.Size(s) for s in shapes]
        self.numels = [s.numel() for s in self.shapes]
        self.dim = sum(self.numels)

    def unflatten(self, v: torch.Tensor) -> list[torch.Tensor]:
        """Split a flat `(dim,)` vector into views shaped like the parameters."""
        if v.shape != (self.dim,):
            raise ValueError(f"expected a flat vector of shape ({self.dim},), got {tuple(v.shape)}")
        return [chunk.view(shape) for chunk, shape in zip(v.split(self.numels), self.shapes)]

    def as_dict(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """Flat vector to `{name: tensor}` (the form `torch.func` works with)."""
        return dict(zip(self.names, self.unflatten(v)))

    @staticmethod
    def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """Concatenate per-parameter tensors into one flat vector."""
        return torch.cat([t.reshape(-1) for t in tensors])
