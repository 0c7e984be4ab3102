"""Model registry. Every model is an `EmbedBody`: `embed` (its input layer) then `body` (the rest)."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import unknown_name
from ..specs import parse_spec, typed_options
from .base import EmbedBody, count_parameters
from .cnn import SmallCNN
from .hf import hf_name
from .malaria import MalariaCNN
from .mlp import MLP
from .resnet import CifarResNet
from .wrn import WideResNet

# name -> (builder, default options). Presets are the same builders with other defaults.
REGISTRY: dict[str, tuple[Callable[..., EmbedBody], dict]] = {
    "mlp": (MLP, {"width": 128, "depth": 2, "dropout": 0.0}),
    "mlp-large": (MLP, {"width": 512, "depth": 2, "dropout": 0.0}),
    "mlp-small": (MLP, {"width": 32, "depth": 1, "dropout": 0.0}),
    "cnn": (SmallCNN, {"channels": 16}),
    "malaria-teacher": (MalariaCNN, {"c1": 4, "c2": 8, "hidden": 16, "dropout": 0.25, "softmax": False}),
    "malaria-student": (MalariaCNN, {"c1": 2, "c2": 4, "hidden": 8, "dropout": 0.25, "softmax": False}),
    "resnet20": (CifarResNet, {"depth": 20, "stem": 16, "width": 16}),
    "resnet56": (CifarResNet, {"depth": 56, "stem": 16, "width": 16}),
    "resnet8x4": (CifarResNet, {"depth": 8, "stem": 32, "width": 64}),
    "resnet32x4": (CifarResNet, {"depth": 32, "stem": 32, "width": 64}),
    "wrn-16-2": (WideResNet, {"depth": 16, "widen": 2, "dropout": 0.0}),
    "wrn-40-2": (WideResNet, {"depth": 40, "widen": 2, "dropout": 0.0}),
}


def model_names() -> list[str]:
    return sorted(REGISTRY)


def check_model(spec: str) -> dict:
    """Validate a model spec before any work is done; returns its options."""
    if hf_name(spec) is not None:  # hf:NAME_OR_PATH: a transformer, checked when it loads
        return {}
    name, raw = parse_spec(spec)
    if name not in REGISTRY:
        raise unknown_name("model", name, [*REGISTRY, "hf:NAME_OR_PATH"])
    return typed_options(spec, raw, REGISTRY[name][1])


def build_model(spec: str, input_shape: tuple[int, ...], n_classes: int) -> EmbedBody:
    options = check_model(spec)
    if hf_name(spec) is not None:
        from .hf import HFClassifier

        return HFClassifier(hf_name(spec), n_classes, tuple(input_shape))
    builder = REGISTRY[parse_spec(spec)[0]][0]
    return builder(input_shape=tuple(input_shape), n_classes=n_classes, **options)


__all__ = ["EmbedBody", "build_model", "check_model", "count_parameters", "model_names"]
