"""Model registry. Every model is an `EmbedBody`: `embed` (its input layer) then `body` (the rest)."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import unknown_name
from ..specs import parse_spec, typed_options
from .base import EmbedBody, count_parameters
from .cnn import SmallCNN
from .mlp import MLP

# name -> (builder, default options). Presets are the same builders with other defaults.
REGISTRY: dict[str, tuple[Callable[..., EmbedBody], dict]] = {
    "mlp": (MLP, {"width": 128, "depth": 2, "dropout": 0.0}),
    "mlp-large": (MLP, {"width": 512, "depth": 2, "dropout": 0.0}),
    "mlp-small": (MLP, {"width": 32, "depth": 1, "dropout": 0.0}),
    "cnn": (SmallCNN, {"channels": 16}),
}


def model_names() -> list[str]:
    return sorted(REGISTRY)


def check_model(spec: str) -> dict:
    """Validate a model spec before any work is done; returns its options."""
    name, raw = parse_spec(spec)
    if name not in REGISTRY:
        raise unknown_name("model", name, REGISTRY)
    return typed_options(spec, raw, REGISTRY[name][1])


def build_model(spec: str, input_shape: tuple[int, ...], n_classes: int) -> EmbedBody:
    options = check_model(spec)
    builder = REGISTRY[parse_spec(spec)[0]][0]
    return builder(input_shape=tuple(input_shape), n_classes=n_classes, **options)


__all__ = ["EmbedBody", "build_model", "check_model", "count_parameters", "model_names"]
