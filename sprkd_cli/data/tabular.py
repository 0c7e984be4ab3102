"""Small datasets that need no download: scikit-learn's digits, and generated data for tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..specs import typed_options
from .splits import Splits, splits_from_arrays


def digits_file() -> Path:
    """The digits file scikit-learn ships, found without importing scikit-learn (a slow import)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise UserError("the digits dataset comes with scikit-learn: pip install scikit-learn")
    return Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"


def load_digits(spec: str, options: dict, split_seed: int) -> Splits:
    """The 1,797 8x8 handwritten digits bundled with scikit-learn, as 1x8x8 images scaled to [0, 1]."""
    typed_options(spec, options, {})
    table = np.loadtxt(digits_file(), delimiter=",", dtype=np.float32)
    x = (table[:, :-1] / 16.0).reshape(-1, 1, 8, 8)
    return splits_from_arrays(spec, x, table[:, -1].astype(np.int64), split_seed)


def load_synthetic(spec: str, options: dict, split_seed: int) -> Splits:
    """Gaussian class clusters: `synthetic:n=600,features=16,classes=4,noise=1.0,data_seed=0`.

    The data are generated from `data_seed`; the split from the run's split seed."""
    o = typed_options(spec, options, {"n": 600, "features": 16, "classes": 4, "noise": 1.0, "data_seed": 0})
    if o["n"] < 10 * o["classes"] or o["features"] < 1 or o["classes"] < 2:
        raise UserError(f"'{spec}': need classes >= 2, features >= 1 and n >= 10 per class")
    rng = np.random.default_rng(o["data_seed"])
    centres = rng.normal(0.0, 2.0, size=(o["classes"], o["features"]))
    y = np.arange(o["n"]) % o["classes"]
    x = centres[y] + rng.normal(0.0, o["noise"], size=(o["n"], o["features"]))
    return splits_from_arrays(spec, x, y, split_seed)
