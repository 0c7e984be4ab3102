"""Where SAGE's vectors live: the real ones (the teacher embed's output for each training input) and
the synthetic pool.

Vision vectors are one example's embed output (a few hundred to a few thousand numbers): computed
once and kept. Token sequences are L × H per example: SST-2's 60,614 training sentences at
bert-base width and L = 66 would be 11.4 GiB, QNLI's 94,262 pairs at L = 128 34.5 GiB. So for token
sequences nothing of size n·L·H is kept: the real vectors are recomputed from the token ids when a
batch asks for them (the embed is frozen and in eval mode, so the same ids give the same vectors),
and a synthetic vector is kept as its recipe (anchor, neighbour, u) and made again when used:
v = v_a + u·(v_j − v_a), its mask the union of theirs. Memory is then O(n) for the teacher's
targets and recipes plus one chunk of vectors at a time.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ...models.modes import train_mode

CHUNK = 1024  # examples per chunk when going over many (losses, labelling, UMAP input)


# The CPU boundary. The vectors, the pool and its recipes live on the model's device; UMAP, its inverse
# transform and the neighbour search run on the CPU in NumPy. What crosses goes through these two.
def to_device(value, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """`value` (a NumPy array or list from the CPU side, or a tensor anywhere) as a tensor on `device`."""
    return torch.as_tensor(value, dtype=dtype).to(device)


def to_host(t: torch.Tensor) -> np.ndarray:
    """A tensor's values as a NumPy array on the CPU (low-precision floats, which NumPy lacks, as float32)."""
    t = t.detach()
    if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    return t.cpu().numpy()


@torch.no_grad()
def embed(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """model.vectorise(x) in eval mode, without gradients, on the model's device (`x` is moved there); the
    model's mode is restored."""
    with train_mode(model, False):
        return model.vectorise(x.to(next(model.parameters()).device))


def vectorise(model, x: torch.Tensor, chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor | None]:
    """embed over all of `x`, in chunks, concatenated."""
    parts = [embed(model, x[i:i + chunk]) for i in range(0, len(x), chunk)]
    vectors = torch.cat([v for v, _ in parts])
    mask = None if parts[0][1] is None else torch.cat([m for _, m in parts])
    return vectors, mask


class RealVectors:
    """The teacher embed's vectors of the training inputs, by index: kept (vision) or recomputed from the
    inputs when asked for (token sequences), on the teacher's device; the inputs stay where the data are
    (each batch of token ids is moved to the teacher when embedded)."""

    def __init__(self, teacher, x: torch.Tensor):
        self.teacher, self.x = teacher, x
        first, mask = embed(teacher, x[:1])
        self.tokens = mask is not None
        self.shape = tuple(first.shape[1:])  # one example's vector
        self.device = first.device
        self.stored = None if self.tokens else vectorise(teacher, x)[0]

    def __len__(self) -> int:
        return len(self.x)

    def get(self, index) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(vectors, mask) of `index` (a tensor on any device, or a NumPy array), on the teacher's device."""
        if self.stored is not None:
            return self.stored[to_device(index, self.device)], None
        return embed(self.teacher, self.x[to_device(index, self.x.device)])

    def chunks(self,
               index: np.ndarray | torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """(vectors, mask) of `index` (default: every example), CHUNK at a time, in order."""
        index = torch.arange(len(self)) if index is None else torch.as_tensor(index)
        for start in range(0, len(index), CHUNK):
            yield self.get(index[start:start + CHUNK])


def interpolate(real: RealVectors, anchors, neighbours, u) -> tuple[torch.Tensor, torch.Tensor | None]:
    """v_a + u·(v_j − v_a) of the real vectors, and for token sequences the union of the two masks."""
    a, j = torch.as_tensor(anchors), torch.as_tensor(neighbours)
    (va, mask_a), (vj, mask_j) = real.get(a), real.get(j)
    weight = to_device(u, va.device, va.dtype).reshape(len(a), *([1] * len(real.shape)))
    return va + weight * (vj - va), None if mask_a is None else torch.maximum(mask_a, mask_j)


class SyntheticPool:
    """The synthetic vectors of all rounds with their teacher targets: kept vectors (vision), or recipes
    (anchor, neighbour, u) made into vectors when used (token sequences); all on the real vectors' device."""

    def __init__(self, real: RealVectors, n_classes: int):
        self.real = real
        self.device = device = real.device
        self.vectors = None if real.tokens else torch.zeros((0, *real.shape), device=device)
        self.anchors = torch.zeros(0, dtype=torch.long, device=device)
        self.neighbours = torch.zeros(0, dtype=torch.long, device=device)
        self.u = torch.zeros(0, dtype=torch.float64, device=device)
        self.p = torch.zeros((0, n_classes), device=device)
        self.neg_entropy = torch.zeros(0, device=device)

    def __len__(self) -> int:
        return len(self.p)

    def get(self, index) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.vectors is not None:
            return self.vectors[index], None
        return interpolate(self.real, self.anchors[index], self.neighbours[index], self.u[index])

    def add(self, made, p: torch.Tensor, neg_entropy: torch.Tensor) -> None:
        """Append a round's synthesis (see rounds.Synthesis) and the teacher's targets for it."""
        device = self.device
        if self.vectors is not None:
            self.vectors = torch.cat([self.vectors, made.vectors.to(device)])
        else:
            self.anchors = torch.cat([self.anchors, to_device(made.anchors, device, torch.long)])
            self.neighbours = torch.cat([self.neighbours, to_device(made.neighbours, device, torch.long)])
            self.u = torch.cat([self.u, to_device(made.u, device, torch.float64)])
        self.p = torch.cat([self.p, p.to(device)])
        self.neg_entropy = torch.cat([self.neg_entropy, neg_entropy.to(device)])

    def state_dict(self) -> dict:
        """Kept vectors (vision) or recipes (token sequences), and the targets."""
        if self.vectors is not None:
            return {"syn_vectors": self.vectors, "syn_p": self.p, "syn_neg_entropy": self.neg_entropy}
        return {"syn_anchors": self.anchors, "syn_neighbours": self.neighbours, "syn_u": self.u,
                "syn_p": self.p, "syn_neg_entropy": self.neg_entropy}

    def check_state(self, state: dict) -> None:
        """A token-sequence pool saved with its vectors (sprkd before recipes) cannot be restored: those
        states kept the vectors of every synthetic sentence, which this pool no longer holds."""
        if self.vectors is None and "syn_anchors" not in state:
            from ...errors import UserError

            raise UserError("its sage state was saved by an older sprkd, with the synthetic sentences' vectors "
                            "rather than their recipes; train it again")

    def load_state_dict(self, state: dict) -> None:
        """Restore state_dict()'s result (read back on the CPU) onto the pool's device."""
        self.check_state(state)
        device = self.device
        self.p, self.neg_entropy = state["syn_p"].to(device), state["syn_neg_entropy"].to(device)
        if self.vectors is not None:  # vision
            self.vectors = state["syn_vectors"].to(device)
        else:
            self.anchors, self.neighbours, self.u = (state[key].to(device)
                                                     for key in ("syn_anchors", "syn_neighbours", "syn_u"))
