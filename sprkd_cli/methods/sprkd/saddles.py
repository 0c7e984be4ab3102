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

RULES = ("ratio", "magnitude", "both")


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


def ritz_values(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """All Ritz values (ascending) of a Lanczos run's tridiagonal matrix."""
    import scipy.linalg

    if len(alpha) == 1:
        return np.asarray(alpha, dtype=float)
    return scipy.linalg.eigh_tridiagonal(alpha, beta[: len(alpha) - 1], eigvals_only=True)


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
    """Probe loss and the saddle score of `model` on `probe`: Lanczos for the `top_n` largest and
    `top_n` smallest algebraic eigenvalues, of which the `top_n` of largest magnitude are kept.
    Returns (probe_loss, score, lanczos iterations)."""
    import torch.nn.functional as F

    from ...hessian import HessianOperator, lanczos

    with HessianOperator(model, F.cross_entropy, probe, mode=mode, hvp=hvp) as op:
        result = lanczos(op, k_top=top_n, k_bottom=top_n, seed=seed)
        loss = op.loss()
    candidates = _extremes(ritz_values(result.alpha, result.beta), top_n)
    return float(loss), score(largest_magnitude(candidates, top_n)), result.iterations


def _extremes(ascending: np.ndarray, n: int) -> np.ndarray:
    """The n smallest and n largest of an ascending array, each value once."""
    if len(ascending) <= 2 * n:
        return ascending
    return np.concatenate([ascending[:n], ascending[-n:]])
