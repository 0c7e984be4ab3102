"""Eigenvalue density of H by stochastic Lanczos quadrature (SLQ).

For a unit vector `v`, `v^T f(H) v = sum_i (v . u_i)^2 f(lambda_i)` is an integral of
`f` against a discrete measure on the eigenvalues. `m` Lanczos steps from `v` give
its `m`-point Gauss quadrature: nodes = the Ritz values `theta_k` of `T_m`, weights =
`tau_k^2` with `tau_k` the first component of the k-th eigenvector of `T_m`
(Golub & Meurant). With `v = z / ||z||` for random signs `z`, `E[(v . u_i)^2] = 1/n`,
so averaging the quadratures of several runs estimates the spectral density
`(1/n) sum_i delta(t - lambda_i)` (Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao
2019; PyHessian). Its first moment times `n` estimates `tr(H)`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .lanczos import basis_buffers, lanczos_tridiagonal
from .operator import HessianOperator
from .sampling import rademacher

_NO_REORTH_FACTOR = 50  # slq_density(reorth='auto'): no re-orthogonalisation when dim > this * steps

@dataclass
class DensityEstimate:
    """SLQ nodes and weights, one row per run; each row's weights sum to 1.

    A run that ends early (the Krylov space became invariant, exact quadrature) is
    padded with zero-weight nodes at 0.
    """

    nodes: np.ndarray
    weights: np.ndarray
    dim: int
    n_hvp: int
    seed: int
    seconds: float
    reorth: str = "partial"  # re-orthogonalisation of its Lanczos runs

    def trace(self) -> float:
        """`n * mean_r sum_k w_rk theta_rk`, the SLQ estimate of `tr(H)`."""
        return float(self.dim * np.mean(np.sum(self.weights * self.nodes, axis=1)))


def slq_density(
    op: HessianOperator,
    runs: int = 10,
    steps: int = 80,
    seed: int = 0,
    reorth: str = "auto",
) -> DensityEstimate:
    """`runs` Lanczos quadratures of `steps` steps (clipped to `dim`) from
    normalised Rademacher vectors drawn from `seed`.

    `reorth` is `"partial"`, `"full"` or `"none"` (see :mod:`.lanczos`); `"auto"`
    (default) takes `"none"` when the Krylov space cannot come near exhaustion
    (`dim > 50 * steps`: the quadrature stays accurate and a step costs no pass over the
    basis) and `"partial"` otherwise, where runs must end exactly when the space becomes
    invariant and the nodes must be the spectrum once `steps` reaches `dim`.
    """
    if runs < 1 or steps < 1:
        raise ValueError("runs and steps must be at least 1")
    if reorth == "auto":
        reorth = "none" if op.dim > _NO_REORTH_FACTOR * steps else "partial"
    start_time, start_hvp = time.perf_counter(), op.n_hvp
    generator = torch.Generator().manual_seed(seed)
    steps = min(steps, op.dim)
    nodes, weights = np.zeros((runs, steps)), np.zeros((runs, steps))
    buffers = basis_buffers(op, steps, reorth, ring=reorth == "none")  # no basis kept without re-orthogonalisation
    for r in range(runs):
        z = rademacher(op.dim, 1, generator, op.dtype, op.device)[:, 0]
        krylov = lanczos_tridiagonal(op, z, steps, reorth, buffers=buffers)
        theta, S, _ = krylov.ritz()
        nodes[r, : krylov.steps] = theta
        weights[r, : krylov.steps] = S[0] ** 2
    weights /= weights.sum(axis=1, keepdims=True)
    return DensityEstimate(
        nodes, weights, op.dim, op.n_hvp - start_hvp, seed, time.perf_counter() - start_time, reorth
    )


def smooth_density(
    density: DensityEstimate, sigma: float | None = None, grid_points: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-smoothed density `mean_r sum_k w_rk N(t; theta_rk, sigma^2)` on a grid.

    `sigma` defaults to 1% of the node range; the grid spans the nodes +- 5 sigma,
    so the density integrates to 1 over it (up to the grid resolution).
    """
    live = density.weights > 0
    lo, hi = float(density.nodes[live].min()), float(density.nodes[live].max())
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    sigma = 0.01 * span if sigma is None else sigma
    if sigma <= 0:
        raise ValueError("sigma must be positive")
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, grid_points)
    nodes, weights = density.nodes[live], density.weights[live] / len(density.nodes)
    kernel = np.exp(-0.5 * ((grid[:, None] - nodes[None, :]) / sigma) ** 2)
    values = kernel @ weights / (sigma * np.sqrt(2 * np.pi))
    return grid, values
