"""The registered dataset and method names, importable without torch, so that commands that only read
the store (stats, runs) check their arguments without loading the numeric stack. The registries
(data.LOADERS, methods.METHODS) are the source; tests/test_store.py checks these lists match them."""

from __future__ import annotations

from .errors import UserError, unknown_name
from .specs import parse_spec

DATASETS = ("cifar10", "cifar100", "digits", "fashion-mnist", "malaria", "mnist", "qnli", "sst2", "synthetic")
METHODS = ("sgd", "kd", "sprkd", "sage")
# What --methods means when not given: the methods that need no more than a plain teacher (sprkd needs
# tracked saddles, sage a student built for the teacher's embedding; both are asked for by name).
PLAIN_METHODS = ("sgd", "kd")


def check_dataset_name(spec: str) -> str:
    """The dataset name of `spec`, which must be a registered one (its options are not checked)."""
    name, _ = parse_spec(spec)
    if name not in DATASETS:
        raise unknown_name("dataset", name, DATASETS)
    return name


def parse_methods(text: str | None) -> list[str]:
    """A --methods value: comma-separated known method names; not given (or empty): PLAIN_METHODS."""
    if not text:
        return list(PLAIN_METHODS)
    names = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not names:
        raise UserError(f"bad --methods '{text}': give comma-separated methods, e.g. {','.join(METHODS)}")
    for name in names:
        if name not in METHODS:
            raise unknown_name("method", name, METHODS)
    return names
