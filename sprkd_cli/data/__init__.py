"""Dataset registry. Every dataset becomes in-memory train/val/test tensors split by a seed."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import unknown_name
from ..specs import parse_spec
from .splits import Splits
from .tabular import load_digits, load_synthetic

LOADERS: dict[str, Callable[..., Splits]] = {
    "digits": load_digits,
    "synthetic": load_synthetic,
}


def dataset_names() -> list[str]:
    return sorted(LOADERS)


def check_dataset_name(spec: str) -> str:
    """The dataset name of `spec`, which must be a registered one (its options are not checked)."""
    name, _ = parse_spec(spec)
    if name not in LOADERS:
        raise unknown_name("dataset", name, LOADERS)
    return name


def load_dataset(spec: str, split_seed: int = 0) -> Splits:
    """Load `spec` (e.g. `digits`, `synthetic:n=400,classes=3`) split by `split_seed`."""
    name = check_dataset_name(spec)
    return LOADERS[name](spec, parse_spec(spec)[1], split_seed)


__all__ = ["Splits", "check_dataset_name", "load_dataset", "dataset_names"]
