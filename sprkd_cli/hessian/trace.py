"""Stochastic trace estimators for H, using only Hessian-vector products.

* Hutchinson: `tr(H) = E[z^T H z]` for random signs `z`; the estimate is the mean
  of `m` samples and its standard error `sd / sqrt(m)`.
* Hutch++ (Meyer, Musco, Musco & Woodruff 2021): with a budget of `m` products, take
  `S` with `m/3` random-sign columns, `Q = qr(H S)` (an orthonormal basis that
  captures the top of the spectrum), and estimate

      tr(H) = tr(Q^T H Q) + tr((I - QQ^T) H (I - QQ^T))

  exactly in the first term (`m/3` products) and by Hutchinson with the deflated signs
  `(I - QQ^T) G` in the second (the remaining products). When a few eigenvalues
  dominate, the deflated remainder has far less variance than H itself. The standard
  error is that of the Hutchinson part.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .operator import HessianOperator
from .sampling import rademacher


@dataclass
class TraceEstimate:
    """A trace estimate with its standard error and cost."""

    value: float
    se: float
    n_hvp: int
    method: str
    seed: int
    seconds: float


def _quadratic_forms(op: HessianOperator, G: torch.Tensor) -> torch.Tensor:
    """`g_i^T H g_i` for every column `g_i` of `G` (float64), in column blocks."""
    return torch.cat(
        [
            torch.linalg.vecdot(block, op.matmat(block), dim=0).double()
            for block in G.split(op.max_block, dim=1)
        ]
    )


def _mean_and_se(samples: torch.Tensor) -> tuple[float, float]:
    """Sample mean and its standard error `sd / sqrt(m)`."""
    return float(samples.mean()), float(samples.std() / math.sqrt(len(samples)))


def hutchinson_trace(op: HessianOperator, n_hvp: int = 99, seed: int = 0) -> TraceEstimate:
    """Hutchinson's estimator with `n_hvp` (>= 2) Rademacher vectors from `seed`."""
    if n_hvp < 2:
        raise ValueError("Hutchinson needs n_hvp >= 2 (a standard error needs 2 samples)")
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    G = rademacher(op.dim, n_hvp, generator, op.dtype, op.device)
    value, se = _mean_and_se(_quadratic_forms(op, G))
    return TraceEstimate(value, se, n_hvp, "hutchinson", seed, time.perf_counter() - start)


def hutchpp_trace(op: HessianOperator, n_hvp: int = 99, seed: int = 0) -> TraceEstimate:
    """Hutch++ with a budget of `n_hvp` (>= 5) HVPs: `n_hvp // 3` for `H S`, as many
    for `Q^T H Q` and the rest (at least 2) for the deflated Hutchinson part."""
    if n_hvp < 5:
        raise ValueError("Hutch++ needs n_hvp >= 5 (two samples for the standard error)")
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    k = min(n_hvp // 3, op.dim)
    S = rademacher(op.dim, k, generator, op.dtype, op.device)
    Q, _ = torch.linalg.qr(op.matmat(S))
    exact_part = float(_quadratic_forms(op, Q).sum())
    G = rademacher(op.dim, n_hvp - 2 * k, generator, op.dtype, op.device)
    G = G - Q @ (Q.T @ G)
    value, se = _mean_and_se(_quadratic_forms(op, G))
    return TraceEstimate(exact_part + value, se, n_hvp, "hutchpp", seed, time.perf_counter() - start)
