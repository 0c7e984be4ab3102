"""The probe set: the fixed data on which every Hessian quantity of a run is measured.

A probe set is `B` batches of training examples drawn once from the run's seed.
The Hessian it defines is the size-weighted mean of the per-batch Hessians,

    H = sum_b (n_b / N) * H_b,      H_b = d^2/dtheta^2 loss(batch b),   N = sum_b n_b,

which equals the Hessian of the mean loss over the concatenated examples whenever
the per-batch loss is a batch mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..seeds import derive_seed


@dataclass(frozen=True)
class ProbeSet:
    """Fixed batches `(x, y)` together with the training-set indices they came from.

    `indices` is what a run stores; `batches` is what the Hessian engine reads.
    `seed` is the seed the indices were drawn with (`None` when given explicitly).
    """

    indices: list[torch.Tensor]
    batches: list[tuple[torch.Tensor, torch.Tensor]]
    seed: int | None = None

    @classmethod
    def draw(
        cls,
        x: torch.Tensor,
        y: torch.Tensor,
        n_batches: int = 2,
        size: int = 256,
        seed: int = 0,
    ) -> ProbeSet:
        """Draw `n_batches` batches of `size` examples (clipped to the dataset size).

        Examples are sampled without replacement across all batches while the dataset
        has unused examples left; a batch that cannot be filled from unused examples is
        topped up from a fresh permutation, never repeating an example inside a batch.
        The draw depends only on `seed` (a private generator; global RNG untouched).
        """
        n = len(x)
        if len(y) != n:
            raise ValueError(f"x has {n} examples but y has {len(y)}")
        if n == 0:
            raise ValueError("cannot draw a probe set from an empty dataset")
        if n_batches < 1 or size < 1:
            raise ValueError("n_batches and size must be at least 1")
        size = min(size, n)
        generator = torch.Generator().manual_seed(seed)
        pool = torch.randperm(n, generator=generator)
        indices = []
        for _ in range(n_batches):
            batch, pool = pool[:size], pool[size:]
            if len(batch) < size:
                fresh = torch.randperm(n, generator=generator)
                fresh = fresh[~torch.isin(fresh, batch)]
                need = size - len(batch)
                batch, pool = torch.cat([batch, fresh[:need]]), fresh[need:]
            indices.append(batch)
        return cls.from_indices(x, y, indices, seed=seed)

    @classmethod
    def from_indices(
        cls,
        x: torch.Tensor,
        y: torch.Tensor,
        indices: list[torch.Tensor] | list[list[int]],
        seed: int | None = None,
    ) -> ProbeSet:
        """Rebuild a probe set from stored indices (batches may have unequal sizes)."""
        index_tensors = [torch.as_tensor(i, dtype=torch.long) for i in indices]
        if not index_tensors or any(len(i) == 0 for i in index_tensors):
            raise ValueError("a probe set needs at least one non-empty batch")
        batches = [(x[i], y[i]) for i in index_tensors]
        return cls(indices=index_tensors, batches=batches, seed=seed)

    @property
    def sizes(self) -> list[int]:
        """Number of examples in each batch."""
        return [len(i) for i in self.indices]

    @property
    def weights(self) -> list[float]:
        """Batch weights `n_b / N` of the size-weighted mean."""
        total = sum(self.sizes)
        return [s / total for s in self.sizes]

    def batch_seeds(self) -> list[int]:
        """The seed each batch's forward pass runs under (its dropout masks): derived from `seed`."""
        return [derive_seed(abs(self.seed or 0), b) for b in range(len(self.batches))]

    def describe(self) -> dict:
        """JSON-serialisable description (seed, sizes, indices) for storing with a report."""
        return {
            "seed": self.seed,
            "sizes": self.sizes,
            "indices": [i.tolist() for i in self.indices],
        }
