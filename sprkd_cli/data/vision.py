"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 from their published files under the data dir
(default ./data), where torchvision puts them; downloaded (by torchvision) only with `--download`.

The official test split is the test split; the validation split is 10% of the official training
split, stratified and fixed by the split seed. Images are scaled to [0, 1] and normalised per channel
with the usual training-set statistics (see STATS): MNIST mean 0.1307 sd 0.3081; Fashion-MNIST mean
0.2860 sd 0.3530; CIFAR-10 mean (0.4914, 0.4822, 0.4465) sd (0.2470, 0.2435, 0.2616); CIFAR-100 mean
(0.5071, 0.4867, 0.4408) sd (0.2675, 0.2565, 0.2761), as in the CRD/RepDistiller code."""

from __future__ import annotations

import gzip
import pickle
import shutil
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..specs import typed_options
from .source import DataSource, reachable
from .splits import Splits, stratified_split

VAL_FRACTION = 0.1
STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}
N_CLASSES = {"mnist": 10, "fashion-mnist": 10, "cifar10": 10, "cifar100": 100}


def load_mnist(spec: str, options: dict, split_seed: int, source: DataSource) -> Splits:
    return _load(spec, options, split_seed, source, "mnist")


def load_fashion_mnist(spec: str, options: dict, split_seed: int, source: DataSource) -> Splits:
    return _load(spec, options, split_seed, source, "fashion-mnist")


def load_cifar10(spec: str, options: dict, split_seed: int, source: DataSource) -> Splits:
    return _load(spec, options, split_seed, source, "cifar10")


def load_cifar100(spec: str, options: dict, split_seed: int, source: DataSource) -> Splits:
    return _load(spec, options, split_seed, source, "cifar100")


def _load(spec: str, options: dict, split_seed: int, source: DataSource, name: str) -> Splits:
    typed_options(spec, options, {})
    if source.image_size is not None:
        raise UserError(f"--image-size applies to malaria only; {name} images keep their published size")
    reader = read_cifar if name.startswith("cifar") else read_mnist
    (x_train, y_train), (x_test, y_test) = reader(source, name)
    train, val, _ = stratified_split(y_train.numpy(), split_seed, VAL_FRACTION, 0.0)
    train, val = torch.from_numpy(train), torch.from_numpy(val)
    mean, sd = (torch.tensor(v).view(1, -1, 1, 1) for v in STATS[name])
    x_train = x_train.float().div_(255.0).sub_(mean).div_(sd)
    x_test = x_test.float().div_(255.0).sub_(mean).div_(sd)
    return Splits(name=spec, x_train=x_train[train], y_train=y_train[train], x_val=x_train[val], y_val=y_train[val],
                  x_test=x_test, y_test=y_test, n_classes=N_CLASSES[name], split_seed=split_seed)


# --- MNIST and Fashion-MNIST: idx files in <root>/<MNIST|FashionMNIST>/raw/ ----------------------


def read_mnist(source: DataSource, name: str):
    """(images uint8 (N, 1, 28, 28), labels int64) for the official train and test splits."""
    from torchvision import datasets as tv

    cls = tv.MNIST if name == "mnist" else tv.FashionMNIST
    raw = source.root / cls.__name__ / "raw"
    files = [Path(url).stem for url, _ in cls.resources]  # train-images-idx3-ubyte, ...
    for file in files:
        _gunzip_if_only_gz(raw / file)
    if not all((raw / f).is_file() for f in files):
        if not source.download:
            raise UserError(f"no {cls.__name__} files in {raw}: put {', '.join(files)} there (or their .gz), "
                            f"or add --download")
        _need_network([m + cls.resources[0][0] for m in cls.mirrors], cls.__name__, raw)
        cls(str(source.root), train=True, download=True)
    try:
        splits = [cls(str(source.root), train=train) for train in (True, False)]
    except (RuntimeError, ValueError, AssertionError, OSError) as exc:
        raise UserError(f"cannot read the {cls.__name__} files in {raw} ({exc}); "
                        "replace them or use --download") from None
    return [(s.data.unsqueeze(1).contiguous(), s.targets.long()) for s in splits]


def _gunzip_if_only_gz(path: Path) -> None:
    packed = path.with_name(path.name + ".gz")
    if not path.exists() and packed.is_file():
        try:
            with gzip.open(packed, "rb") as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except (OSError, EOFError) as exc:
            path.unlink(missing_ok=True)
            raise UserError(f"cannot unpack {packed} ({exc}); replace it") from None


# --- CIFAR: the python batches in <root>/cifar-10-batches-py/ or <root>/cifar-100-python/ ------------


def read_cifar(source: DataSource, name: str):
    """(images uint8 (N, 3, 32, 32), labels int64) for the official train and test splits. The pickled
    batches are read with an unpickler that only builds NumPy arrays, so a file cannot run code."""
    from torchvision import datasets as tv

    cls = tv.CIFAR10 if name == "cifar10" else tv.CIFAR100
    folder = source.root / cls.base_folder
    parts = [[f for f, _ in cls.train_list], [f for f, _ in cls.test_list]]
    if not all((folder / f).is_file() for f in parts[0] + parts[1]):
        if not source.download:
            raise UserError(
                f"no {cls.__name__} files in {folder}: extract {cls.filename} ({cls.url}) into {source.root} so that "
                f"{folder} holds {', '.join(parts[0] + parts[1])}, or add --download")
        if not (source.root / cls.filename).is_file():
            _need_network([cls.url], cls.__name__, folder)
        cls(str(source.root), train=True, download=True)  # verifies the archive's MD5 and extracts it
    label_key = "labels" if name == "cifar10" else "fine_labels"
    out = []
    for files in parts:
        batches = [_read_batch(folder / f) for f in files]
        try:
            images = np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32)
            labels = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
        except (KeyError, ValueError) as exc:
            raise UserError(f"the {cls.__name__} batches in {folder} are not in the published format ({exc})") from None
        out.append((torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)), torch.from_numpy(labels)))
    return out


class _ArrayUnpickler(pickle.Unpickler):
    ALLOWED = {(module, attr) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
               for attr in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype"),
                                                         ("numpy.core.numeric", "_frombuffer"),
                                                         ("numpy._core.numeric", "_frombuffer"),
                                                         ("_codecs", "encode")}  # bytes in protocol-2 pickles

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a data batch")
        return super().find_class(module, name)


def _read_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError) as exc:
        raise UserError(f"cannot read CIFAR batch {path} ({exc}); replace it or use --download") from None
    if not isinstance(batch, dict):
        raise UserError(f"CIFAR batch {path} does not hold a dict; replace it or use --download")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _need_network(urls: list[str], what: str, where: Path) -> None:
    if not any(reachable(url) for url in urls):
        host = ", ".join(sorted({url.split("/")[2] for url in urls}))
        raise UserError(f"--download: cannot reach {host} to fetch {what} (no network?); put its files in {where} "
                        "and run without --download")
