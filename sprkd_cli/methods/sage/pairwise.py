"""umap-learn's all-pairs distances for small data, computed in one compiled loop.

Below 4,096 points umap-learn's `fit` computes the full distance matrix with scikit-learn's
`pairwise_distances(X, metric=umap.distances.euclidean)`: a Python call of the numba metric for
each of the n(n − 1)/2 pairs (about 790,000 for a digits round: a large part of the fit's time, see
docs/performance.md). While `fit_umap` runs, umap-learn's `pairwise_distances` is this module's,
which for that metric on a dense array computes the same matrix in one numba loop: the same
per-pair sum (the loop of umap's `euclidean`, under the same fastmath flag), rounded to the input's
float type and mirrored as scikit-learn does. Every other call goes to scikit-learn unchanged.
tests/test_sage_umap.py checks the matrix and the fitted map equal to umap-learn's own.
"""

from __future__ import annotations

from contextlib import contextmanager

import numba
import numpy as np


@contextmanager
def fast_small_data_distances(umap_module):
    """umap.umap_.pairwise_distances replaced for the duration (one thread at a time)."""
    umap_core = umap_module.umap_
    original = umap_core.pairwise_distances
    euclidean = umap_module.distances.euclidean

    def pairwise_distances(X, Y=None, metric="euclidean", **kwargs):
        if (metric is euclidean and Y is None and not kwargs and isinstance(X, np.ndarray) and X.ndim == 2
                and X.dtype in (np.float32, np.float64) and np.isfinite(X).all()):
            return _all_pairs(np.ascontiguousarray(X))
        return original(X, Y, metric=metric, **kwargs)

    umap_core.pairwise_distances = pairwise_distances
    try:
        yield
    finally:
        umap_core.pairwise_distances = original


@numba.njit(cache=True, fastmath=True)
def _euclidean(x, y):
    """umap-learn's distances.euclidean, the same loop under the same flags (so the same sums)."""
    total = 0.0
    for d in range(x.shape[0]):
        total += (x[d] - y[d]) ** 2
    return np.sqrt(total)


@numba.njit(cache=True)
def _all_pairs(X):
    """scikit-learn's _pairwise_callable for X against itself: the upper triangle, mirrored, and
    the diagonal, in X's float type."""
    n = X.shape[0]
    out = np.zeros((n, n), dtype=X.dtype)
    for i in range(n):
        out[i, i] = _euclidean(X[i], X[i])
        for j in range(i + 1, n):
            out[i, j] = _euclidean(X[i], X[j])
            out[j, i] = out[i, j]
    return out
