"""The strong-saddle test of a probe Hessian (phase 1 of sprkd).

Of the Hessian's `top_n` eigenvalues of largest magnitude, S− = Σ|λ| over the negative ones and
S+ = Σλ over the positive ones. The point is a strong saddle when

    ratio:      S− ≥ α·S+
    magnitude:  S− ≥ β
    both:       S− ≥ α·S+ and S− ≥ β

and, in every rule, S− > 0: a point without negative curvature among them is no saddle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...config import SADDLE_RULES as RULES


@dataclass(frozen=True)
class SaddleScore:
    eigenvalues: list[float]  # the top_n of largest magnitude, largest magnitude first
    s_neg: float
    s_pos: float

    @property
    def ratio(self) -> float:
        """S−/S+ (inf when S+ is 0 and S− is not)."""
        if self.s_pos > 0:
            return self.s_neg / self.s_pos
        return float("inf") if self.s_neg > 0 else 0.0


def largest_magnitude(values: np.ndarray, top_n: int) -> list[float]:
    """The `top_n` values of largest |value|, largest first."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(-np.abs(values), kind="stable")
    return values[order[:top_n]].tolist()


def score(eigenvalues: list[float]) -> SaddleScore:
    values = np.asarray(eigenvalues, dtype=float)
    return SaddleScore(list(map(float, values)), float(-values[values < 0].sum()), float(values[values > 0].sum()))


def is_strong(s: SaddleScore, rule: str, alpha: float, beta: float) -> bool:
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if not s.s_neg > 0:
        return False
    ratio_ok = s.s_neg >= alpha * s.s_pos
    magnitude_ok = s.s_neg >= beta
    return {"ratio": ratio_ok, "magnitude": magnitude_ok, "both": ratio_ok and magnitude_ok}[rule]


def measure_saddle(model, probe, top_n: int, mode: str = "eval", hvp: str = "double", seed: int = 0):
    """Probe loss and the saddle score of `model` on `probe`: the `top_n` eigenvalues of largest
    magnitude, by Lanczos (full re-orthogonalisation) run until those Ritz values, at whichever end
    of the spectrum they lie, have converged (residual bound <= 1e-4 max|theta| in float32).
    Returns (probe_loss, score, lanczos iterations)."""
    import torch
    import torch.nn.functional as F

    from ...hessian import HessianOperator
    from ...hessian.lanczos import DEFAULT_TOL, lanczos_tridiagonal
    from ...hessian.sampling import gaussian

    def converged(krylov) -> bool:
        if krylov.steps < min(top_n, op.dim) or (krylov.beta[-1] == 0.0 and krylov.steps < op.dim):
            return False
        theta, _, residuals = krylov.ritz()
        wanted = np.argsort(-np.abs(theta), kind="stable")[:top_n]
        return bool(np.all(residuals[wanted] <= DEFAULT_TOL[op.dtype] * np.max(np.abs(theta))))

    with HessianOperator(model, F.cross_entropy, probe, mode=mode, hvp=hvp) as op:
        generator = torch.Generator().manual_seed(seed)
        start = gaussian(op.dim, generator, op.dtype, op.device)
        krylov = lanczos_tridiagonal(op, start, min(op.dim, 300), "full", generator, converged)
        loss = op.loss()
    theta, _, _ = krylov.ritz()
    return float(loss), score(largest_magnitude(theta, top_n)), krylov.steps
