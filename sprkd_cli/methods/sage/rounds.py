"""One SAGE round's parts, each usable alone: anchors, the UMAP map, synthesis, teacher labels.

Vectors are what a model's `vectorise` returns: [n, ...] per example, with an attention mask
[n, L] for token sequences (then vectors are [n, L, H]); the real ones come from a
pool.RealVectors, a chunk at a time.
"""

from __future__ import annotations

import functools
import re
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...models.modes import train_mode
from .pool import CHUNK, RealVectors, interpolate, to_device, to_host

UMAP_PARAMS = {"n_components": 2, "n_neighbors": 15, "min_dist": 0.1}
BUDGET_FRACTION = 0.1  # a round adds at most min(10% of the training set, --sage-max-synth)


def select_anchors(losses: np.ndarray, percentile: float) -> tuple[np.ndarray, float]:
    """Indices of the examples whose loss is at or above the `percentile` of `losses`, and that threshold."""
    threshold = float(np.percentile(losses, percentile))
    return np.flatnonzero(losses >= threshold), threshold


def umap_rows(n: int, anchors: np.ndarray, umap_max: int, rng: np.random.Generator) -> np.ndarray:
    """Real examples the map is fitted on: all anchors plus a sample of at most `umap_max` others."""
    others = np.setdiff1d(np.arange(n), anchors, assume_unique=True)
    sample = rng.choice(others, size=min(umap_max, len(others)), replace=False)
    return np.sort(np.concatenate([anchors, sample]))


def pooled(vectors: torch.Tensor, mask: torch.Tensor | None) -> np.ndarray:
    """One flat float32 vector per example: the attention-masked mean over tokens, or the flattened vector."""
    if mask is None:
        return to_host(vectors.reshape(len(vectors), -1)).astype(np.float32, copy=False)
    weights = mask.to(vectors.dtype).unsqueeze(-1)
    return to_host((vectors * weights).sum(1) / weights.sum(1).clamp_min(1.0)).astype(np.float32, copy=False)


def pooled_rows(real: RealVectors, rows: np.ndarray) -> np.ndarray:
    """pooled() of the real examples `rows`, a chunk at a time."""
    parts = [pooled(v, m) for v, m in real.chunks(rows)]
    width = real.shape[-1] if real.tokens else int(np.prod(real.shape))
    return np.concatenate(parts) if parts else np.zeros((0, width), np.float32)


# The umap-learn releases whose internals .inverse and .pairwise copy bit for bit (tests/test_sage_umap.py):
# at least the first, below the second. pyproject.toml pins umap-learn to this range; outside it sage
# runs umap-learn's own inverse transform and distances (slower, the same results).
UMAP_LEARN_TESTED = ("0.5.12", "0.5.13")
_outside_noticed: set[str] = set()


def umap_learn_version() -> str:
    from importlib.metadata import version

    return version("umap-learn")


def _release(version: str) -> tuple[int, ...]:
    """(major, minor, patch) of a version string: "0.5.9.post2" -> (0, 5, 9)."""
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def fast_umap() -> bool:
    """Whether the installed umap-learn is one that .inverse and .pairwise reproduce; if not, one line
    on stderr (once per process) says that sage falls back to umap-learn's own code."""
    version = umap_learn_version()
    low, high = UMAP_LEARN_TESTED
    if _release(low) <= _release(version) < _release(high):
        return True
    if version not in _outside_noticed:
        _outside_noticed.add(version)
        print(f"sage: umap-learn {version} is outside >={low},<{high}, the releases its fast inverse transform "
              "and distances are checked against; using umap-learn's own (slower, same results)", file=sys.stderr)
    return False


@functools.cache
def import_umap():
    """umap, its numba functions compiled with numba's on-disk cache.

    Most of umap-learn's @numba.njit functions are not declared cache=True, so each new process
    compiled them again before its first fit (docs/performance.md: bench/sage_bench.py times it).
    After the import, every one of them that is compiled lazily (no signature given) and has no cache
    gets the cache that cache=True would have given it (numba's decorator does the same,
    Dispatcher.enable_caching, at decoration): the
    compilation is paid once per machine (numba keeps it in __pycache__ beside umap's source, or
    its user-wide cache when that is read-only; NUMBA_CACHE_DIR moves it). Functions numba cannot
    cache, the closures umap-learn makes at call time and its two functions compiled at import
    (utils.tau_rand_int, tau_rand: given a signature) still compile per process. The same whether or
    not umap was imported before."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import umap
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    for name, module in list(sys.modules.items()):
        if name == "umap" or name.startswith("umap."):
            for value in vars(module).values():
                if isinstance(value, Dispatcher) and isinstance(value._cache, NullCache) and not value.signatures:
                    value.enable_caching()
    return umap


def fit_umap(points: np.ndarray, seed: int):
    """A seeded 2-D UMAP of `points` (random_state makes UMAP single-threaded and reproducible),
    its small-data distance matrix computed by .pairwise (the same matrix, about 20x sooner) where
    umap-learn is a release it reproduces (fast_umap)."""
    from .pairwise import fast_small_data_distances

    umap = import_umap()
    params = dict(UMAP_PARAMS, n_neighbors=min(UMAP_PARAMS["n_neighbors"], len(points) - 1))
    distances = fast_small_data_distances(umap) if fast_umap() else nullcontext()
    with warnings.catch_warnings(), distances:
        warnings.simplefilter("ignore")
        return umap.UMAP(**params, random_state=seed, n_jobs=1).fit(points)


def nearest_neighbours(embedding: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The `k` nearest other points of the map to each of `rows` (positions in `embedding`), on the CPU."""
    points = torch.from_numpy(np.ascontiguousarray(embedding, dtype=np.float64))
    k = min(k, len(points) - 1)
    out = []
    for start in range(0, len(rows), CHUNK):
        chunk = torch.from_numpy(rows[start:start + CHUNK])
        distance = torch.cdist(points[chunk], points)
        distance[torch.arange(len(chunk)), chunk] = float("inf")
        out.append(distance.topk(k, largest=False).indices)
    return torch.cat(out).numpy() if out else np.zeros((0, k), dtype=np.int64)


def inverse_transform(reducer, points: np.ndarray) -> np.ndarray:
    """UMAP's inverse transform of 2-D `points`: .inverse's (the same vectors, about 7x sooner) where
    umap-learn is a release it reproduces (fast_umap), else umap-learn's own."""
    if fast_umap():
        from .inverse import inverse_transform as fast

        return fast(reducer, points)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return reducer.inverse_transform(points)


@dataclass
class Synthesis:
    vectors: torch.Tensor | None  # [m, ...] like the real vectors; None for token sequences (see pool.py)
    anchors: np.ndarray  # real index of each synthetic point's anchor
    neighbours: np.ndarray  # real index of the neighbour it moved towards
    u: np.ndarray  # where on the segment, U(0, 1)

    def __len__(self) -> int:
        return len(self.anchors)


def synthesise(reducer, rows: np.ndarray, anchors: np.ndarray, losses: np.ndarray, real: RealVectors, *,
               per_anchor: int, k: int, budget: int, mode: str, rng: np.random.Generator) -> Synthesis:
    """Up to `budget` synthetic points, `per_anchor` per anchor, highest-loss anchors first.

    Each picks one of its anchor's `k` nearest neighbours in the 2-D map and u ~ U(0, 1):
    `inverse` maps z = z_a + u·(z_j − z_a) back through UMAP's inverse transform (umap-learn's
    algorithm and random stream; see inverse_transform above); `interpolate`
    takes v_a + u·(v_j − v_a) of the original vectors. Token sequences always interpolate, and their
    vectors are not made here: the recipe (anchor, neighbour, u) is the synthetic point (pool.py)."""
    order = anchors[np.argsort(-losses[anchors], kind="stable")]
    count = min(budget, len(order) * per_anchor)
    if count == 0:
        empty = None if real.tokens else torch.zeros((0, *real.shape), device=real.device)
        return Synthesis(empty, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    position = {int(r): i for i, r in enumerate(rows)}
    anchor_real = order[np.arange(count) // per_anchor]
    anchor_pos = np.array([position[int(a)] for a in anchor_real])
    neighbours = nearest_neighbours(reducer.embedding_, anchor_pos, k)
    pick = neighbours[np.arange(count), rng.integers(0, neighbours.shape[1], size=count)]
    u = rng.random(count)
    neighbour_real = rows[pick]
    if real.tokens:
        return Synthesis(None, anchor_real, neighbour_real, u)
    if mode == "inverse":
        z = reducer.embedding_[anchor_pos] + u[:, None] * (reducer.embedding_[pick] - reducer.embedding_[anchor_pos])
        flat = inverse_transform(reducer, z.astype(np.float32))
        new = to_device(np.asarray(flat, dtype=np.float32), real.device).reshape(count, *real.shape)
        return Synthesis(new, anchor_real, neighbour_real, u)
    new, _ = interpolate(real, anchor_real, neighbour_real, u)
    return Synthesis(new, anchor_real, neighbour_real, u)


@torch.no_grad()
def body_logits(model, chunks) -> torch.Tensor:
    """model.from_vectors over `chunks` of (vectors, mask), in eval mode; the model's mode is restored."""
    with train_mode(model, False):
        parts = [model.from_vectors(v, m) for v, m in chunks]
    return torch.cat(parts) if parts else torch.zeros((0, 0))


def synthesis_chunks(real: RealVectors, made: Synthesis):
    """(vectors, mask) of a synthesis, CHUNK at a time (token sequences: made from their recipes)."""
    for start in range(0, len(made), CHUNK):
        end = start + CHUNK
        if made.vectors is not None:
            yield made.vectors[start:end], None
        else:
            yield interpolate(real, made.anchors[start:end], made.neighbours[start:end], made.u[start:end])


@torch.no_grad()
def per_example_loss(model, real: RealVectors, labels, p_teacher, neg_entropy, temperature, ce_weight, kd_weight):
    """a·CE + b·T²·KL per real example, the student in eval mode, no gradients."""
    logits = body_logits(model, real.chunks())
    ce = F.cross_entropy(logits, labels, reduction="none")
    kl = neg_entropy - (p_teacher * F.log_softmax(logits / temperature, dim=1)).sum(dim=1)
    return to_host(ce_weight * ce + kd_weight * temperature**2 * kl).astype(np.float64)


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started
