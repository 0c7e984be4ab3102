"""Dataset registry. Every dataset becomes in-memory train/val/test tensors split by a seed."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import UserError, unknown_name
from ..specs import parse_spec
from .source import DEFAULT_IMAGE_SIZE, DataSource

if TYPE_CHECKING:
    from .splits import Splits

# name -> (module:loader in this package, kind). The one list of dataset names, importable without torch
# (stats and runs check names with it); a loader's module loads on first use. Image datasets read files:
# they get a DataSource (data dir, image size, --download, progress); text ones a tokenizer.
LOADERS: dict[str, tuple[str, str]] = {
    "digits": ("tabular:load_digits", "table"),
    "synthetic": ("tabular:load_synthetic", "table"),
    "sst2": ("text:load_sst2", "text"),
    "qnli": ("text:load_qnli", "text"),
    "malaria": ("malaria:load_malaria", "image"),
    "mnist": ("vision:load_mnist", "image"),
    "fashion-mnist": ("vision:load_fashion_mnist", "image"),
    "cifar10": ("vision:load_cifar10", "image"),
    "cifar100": ("vision:load_cifar100", "image"),
}


def dataset_names() -> list[str]:
    return sorted(LOADERS)


def check_dataset_name(spec: str) -> str:
    """The dataset name of `spec`, which must be a registered one (its options are not checked)."""
    name, _ = parse_spec(spec)
    if name not in LOADERS:
        raise unknown_name("dataset", name, LOADERS)
    return name


def _loader(name: str):
    module, _, function = LOADERS[name][0].partition(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), function)


def __getattr__(attr: str):
    if attr == "Splits":  # torch: loaded when asked for
        from .splits import Splits

        return Splits
    raise AttributeError(attr)


def load_dataset(spec: str, split_seed: int = 0, *, data_dir: str | None = None, model: str | None = None,
                 image_size: int | None = None, download: bool = False, progress=None,
                 cache_dir: str | None = None) -> Splits:
    """Load `spec` (e.g. `digits`, `synthetic:n=400,classes=3`) split by `split_seed`. Text datasets are
    tokenised by the tokenizer of `model` (an `hf:` transformer) and read from `data_dir`. Image datasets
    are read from `data_dir` (default ./data), downloaded only if `download`; malaria is resized to
    `image_size`; `progress(what, done, total)` hears how decoding goes. What is derived from the files
    (decoded images, token tensors) is cached in `cache_dir` (see source.cache_root), never in `data_dir`."""
    name = check_dataset_name(spec)
    if image_size is not None and name not in DEFAULT_IMAGE_SIZE:
        raise UserError(f"--image-size applies to {', '.join(DEFAULT_IMAGE_SIZE)} only (images of varying size); "
                        f"{name} has one size")
    kind = LOADERS[name][1]
    if kind == "image":
        source = DataSource(data_dir=data_dir, cache_dir=cache_dir, image_size=image_size, download=download,
                            progress=progress)
        return _loader(name)(spec, parse_spec(spec)[1], split_seed, source)
    if kind == "text":
        from ..models.hf import hf_name

        tokenizer = hf_name(model) if model else None
        return _loader(name)(spec, parse_spec(spec)[1], split_seed, data_dir=data_dir, tokenizer=tokenizer,
                             cache_dir=cache_dir)
    return _loader(name)(spec, parse_spec(spec)[1], split_seed)


__all__ = ["DataSource", "Splits", "check_dataset_name", "load_dataset", "dataset_names"]
