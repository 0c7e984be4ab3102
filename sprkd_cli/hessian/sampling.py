"""Seeded random probe vectors.

Vectors are drawn on the CPU from a private `torch.Generator` and then cast and
moved, so a seed gives the same directions on any device and in either dtype, and the
global RNG is never consumed.
"""

from __future__ import annotations

import torch

_BIT = torch.arange(8, dtype=torch.uint8)


def gaussian(dim: int, generator: torch.Generator, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A standard normal vector of length `dim` (drawn in float64)."""
    return torch.randn(dim, generator=generator, dtype=torch.float64).to(device, dtype)


def rademacher(
    dim: int, m: int, generator: torch.Generator, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """`(dim, m)` independent random signs (+1/-1), so `E[z z^T] = I`.

    The signs are the bits of uniform random bytes (8 per draw), and each column is
    contiguous in memory (the result is the transpose of a row-major `(m, dim)`).
    """
    count = dim * m
    random_bytes = torch.randint(0, 256, ((count + 7) // 8,), generator=generator, dtype=torch.uint8)
    bits = random_bytes[:, None].bitwise_right_shift(_BIT).bitwise_and_(1)
    signs = bits.view(-1)[:count].view(m, dim).to(dtype).mul_(2).sub_(1)
    return signs.to(device).T
