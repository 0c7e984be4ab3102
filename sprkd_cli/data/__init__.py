"""Dataset registry. Every dataset becomes in-memory train/val/test tensors split by a seed."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import UserError
from ..names import check_dataset_name
from ..specs import parse_spec
from .splits import Splits
from .tabular import load_digits, load_synthetic
from .text import TASKS as TEXT_DATASETS, load_qnli, load_sst2
from .malaria import load_malaria
from .source import DEFAULT_IMAGE_SIZE, DataSource
from .vision import load_cifar10, load_cifar100, load_fashion_mnist, load_mnist

LOADERS: dict[str, Callable[..., Splits]] = {
    "digits": load_digits,
    "synthetic": load_synthetic,
    "sst2": load_sst2,
    "qnli": load_qnli,
    "malaria": load_malaria,
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
}
# Image datasets read files: they get a DataSource (data dir, image size, --download, progress).
IMAGE_DATASETS = ("malaria", "mnist", "fashion-mnist", "cifar10", "cifar100")


def dataset_names() -> list[str]:
    return sorted(LOADERS)


def load_dataset(spec: str, split_seed: int = 0, *, data_dir: str | None = None, model: str | None = None,
                 image_size: int | None = None, download: bool = False, progress=None) -> Splits:
    """Load `spec` (e.g. `digits`, `synthetic:n=400,classes=3`) split by `split_seed`. Text datasets are
    tokenised by the tokenizer of `model` (an `hf:` transformer) and read from `data_dir`. Image datasets
    are read from `data_dir` (default ./data), downloaded only if `download`; malaria is resized to
    `image_size`; `progress(what, done, total)` hears how decoding goes."""
    name = check_dataset_name(spec)
    if image_size is not None and name not in DEFAULT_IMAGE_SIZE:
        raise UserError(f"--image-size applies to {', '.join(DEFAULT_IMAGE_SIZE)} only (images of varying size); "
                        f"{name} has one size")
    if name in IMAGE_DATASETS:
        source = DataSource(data_dir=data_dir, image_size=image_size, download=download, progress=progress)
        return LOADERS[name](spec, parse_spec(spec)[1], split_seed, source)
    if name in TEXT_DATASETS:
        from ..models.hf import hf_name

        tokenizer = hf_name(model) if model else None
        return LOADERS[name](spec, parse_spec(spec)[1], split_seed, data_dir=data_dir, tokenizer=tokenizer)
    return LOADERS[name](spec, parse_spec(spec)[1], split_seed)


__all__ = ["DataSource", "Splits", "check_dataset_name", "load_dataset", "dataset_names"]
