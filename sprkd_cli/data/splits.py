"""In-memory tensor splits, and the seeded stratified split that produces them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Splits:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    split_seed: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def describe(self) -> dict:
        """What identifies the split, stored with every run."""
        digest = hashlib.sha256()
        for tensor in (self.y_train, self.y_val, self.y_test, self.x_test):
            digest.update(tensor.numpy().tobytes())
        return {
            "dataset": self.name, "split_seed": self.split_seed, "n_classes": self.n_classes,
            "input_shape": list(self.input_shape), "n_train": len(self.y_train), "n_val": len(self.y_val),
            "n_test": len(self.y_test), "fingerprint": digest.hexdigest()[:16],
        }


def stratified_split(labels: np.ndarray, seed: int, val_fraction: float, test_fraction: float):
    """Index arrays (train, val, test), stratified by label, fixed by `seed` alone (NumPy's PCG64),
    so the split does not change with any library's version. Each class contributes
    round(fraction · class size) examples to val and test."""
    rng = np.random.default_rng(seed)
    parts: tuple[list, list, list] = ([], [], [])
    for label in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(test_fraction * len(index)))
        n_val = int(round(val_fraction * len(index)))
        parts[2].append(index[:n_test])
        parts[1].append(index[n_test:n_test + n_val])
        parts[0].append(index[n_test + n_val:])
    return tuple(np.sort(np.concatenate(p)) for p in parts)


def splits_from_arrays(name: str, x: np.ndarray, y: np.ndarray, seed: int, *, val_fraction: float = 0.1,
                       test_fraction: float = 0.2) -> Splits:
    train, val, test = stratified_split(y, seed, val_fraction, test_fraction)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    return Splits(
        name=name, x_train=xt[train], y_train=yt[train], x_val=xt[val], y_val=yt[val],
        x_test=xt[test], y_test=yt[test], n_classes=int(yt.max()) + 1, split_seed=seed,
    )
