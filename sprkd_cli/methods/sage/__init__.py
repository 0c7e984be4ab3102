"""sage: Synthetic Adaptive Guided Embeddings (docs/methods.md, "sage"). The student's body trains on the
teacher's embedding vectors of the training inputs, with rounds that add UMAP-guided synthetic vectors
near the examples it finds hardest, labelled by the teacher (method.py)."""

from __future__ import annotations

from dataclasses import dataclass

from ...options import at_least, between, option
from ..kd import KDOptions

SAGE_PANEL = "sage method"


@dataclass
class SAGEOptions(KDOptions):
    name = "sage"
    rank = 3
    plain = False  # its student must take the teacher's embedding width: asked for by name
    sage_rounds: int = option(3, "Rounds of synthesis.", panel=SAGE_PANEL, check=at_least(0))
    sage_every: int = option(1, "A round every N epochs.", panel=SAGE_PANEL, check=at_least(1))
    sage_umap_max: int = option(5000, "UMAP is fitted on at most this many real vectors plus all anchors.",
                                panel=SAGE_PANEL, check=at_least(1))
    sage_percentile: float = option(90.0, "Anchors: real examples at or above this percentile of student loss.",
                                    panel=SAGE_PANEL, check=between(0, 100))
    sage_per_anchor: int = option(2, "Synthetic points per anchor.", panel=SAGE_PANEL, check=at_least(1))
    sage_k: int = option(5, "Neighbours in the 2-D map an anchor picks from.", panel=SAGE_PANEL, check=at_least(1))
    sage_synth: str = option("inverse", "inverse (UMAP inverse transform of the 2-D point) or interpolate (the two "
                                        "original vectors); token sequences always interpolate.", panel=SAGE_PANEL,
                             choices=("inverse", "interpolate"))
    sage_max_synth: int = option(5000, "A round adds at most min(10% of the training set, this) synthetic vectors.",
                                 panel=SAGE_PANEL, check=at_least(0))

    @classmethod
    def load(cls):
        from .method import SAGE

        return SAGE


OPTIONS = SAGEOptions
