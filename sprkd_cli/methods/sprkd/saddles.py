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

RULES = ("ratio", "magnitude", "both")


def saddle_ratio(s_neg: float, s_pos: float) -> float:
    """S−/S+ (inf when S+ is 0 and S− is not; 0 when both are)."""
    if s_pos > 0:
        return s_neg / s_pos
    return float("inf") if s_neg > 0 else 0.0


@dataclass(frozen=True)
class SaddleScore:
    eigenvalues: list[float]  # the top_n of largest magnitude, largest magnitude first
    s_neg: float
    s_pos: float

    @property
    def ratio(self) -> float:
        return saddle_ratio(self.s_neg, self.s_pos)


def score(eigenvalues: list[float]) -> SaddleScore:
    import numpy as np

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
    magnitude, by the Hessian package's Lanczos, run until those Ritz values, at whichever end of the
    spectrum they lie, have converged. Returns (probe_loss, score, lanczos iterations)."""
    import torch.nn.functional as F

    from ...hessian import HessianOperator, lanczos

    with HessianOperator(model, F.cross_entropy, probe, mode=mode, hvp=hvp) as op:
        result = lanczos(op, k_top=0, k_bottom=0, k_magnitude=top_n, seed=seed)
        loss = op.loss()
    return float(loss), score(result.magnitude_values.tolist()), result.iterations


def rule_score(s: SaddleScore, rule: str) -> float:
    """How strongly a candidate meets `rule`: S-/S+ for ratio (and both), S- for magnitude."""
    return s.s_neg if rule == "magnitude" else s.ratio


def choose_saddle(points: list, rule: str, alpha: float, beta: float, pick: str, fallback: str):
    """The saddle a teacher gives the ASR, from its stored candidates (objects with step, probe_loss,
    eigenvalues, s_neg, s_pos): among those `rule` makes strong, the lowest-loss (`pick` lowest-loss) or the
    latest (last). None strong: with `fallback` last, its latest candidate; best, its highest-scoring one; none,
    None.
    Returns (point or None, fell_back)."""
    def scored(p):
        return SaddleScore(list(p.eigenvalues), p.s_neg, p.s_pos)

    strong = [p for p in points if is_strong(scored(p), rule, alpha, beta)]
    if strong:
        chosen = (min(strong, key=lambda p: (p.probe_loss, p.step)) if pick == "lowest-loss"
                  else max(strong, key=lambda p: p.step))
        return chosen, False
    if fallback == "best" and points:
        return max(points, key=lambda p: (rule_score(scored(p), rule), -p.step)), True
    if fallback == "last" and points:
        return max(points, key=lambda p: p.step), True
    return None, False
