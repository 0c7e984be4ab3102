"""SAGE's fast UMAP parts against umap-learn's own: the inverse transform (`UMAP.inverse_transform`:
the same starting vectors and the same optimised vectors) and the small-data distance matrix of
`fit` (the same matrix, so the same map), bit for bit."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from sprkd_cli.methods.sage import inverse, pairwise, rounds
from sprkd_cli.methods.sage.rounds import UMAP_PARAMS, fit_umap, import_umap


def _umap_inverse(reducer, z):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return reducer.inverse_transform(z)


def _points(n: int, width: int, seed: int) -> np.ndarray:
    """Three clusters in `width` dimensions, so the map has structure and holes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(3, width))
    return (centres[rng.integers(0, 3, n)] + rng.normal(size=(n, width))).astype(np.float32)


def _queries(embedding: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Points on segments between map points (as SAGE makes them), the map's own points, and one far
    outside its hull (umap-learn then starts from the last simplex; so must we)."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(embedding), (2, count))
    u = rng.random((count, 1))
    z = embedding[a] + u * (embedding[b] - embedding[a])
    outside = embedding.max(axis=0) + 5.0
    return np.vstack([z, embedding[:2], outside[None]]).astype(np.float32)


@pytest.fixture(scope="module")
def fitted():
    """width 48 < n 260: each new point has 48 neighbours found by the breadth-first search."""
    reducer = fit_umap(_points(260, 48, 0), seed=3)
    return reducer, _queries(reducer.embedding_, 20, 1)


def test_starting_vectors_equal_umap_learns(fitted):
    reducer, z = fitted
    reducer.n_epochs = 1  # umap-learn then runs 1 // 3 = 0 layout epochs: its starting vectors
    try:
        assert np.array_equal(inverse.inverse_transform(reducer, z), _umap_inverse(reducer, z))
    finally:
        reducer.n_epochs = None


@pytest.mark.parametrize("n_epochs", [None, 30])  # 100 layout epochs (the default), and 10
def test_optimised_vectors_equal_umap_learns(fitted, n_epochs):
    reducer, z = fitted
    reducer.n_epochs = n_epochs
    try:
        ours, theirs = inverse.inverse_transform(reducer, z), _umap_inverse(reducer, z)
    finally:
        reducer.n_epochs = None
    assert ours.dtype == np.float32 and ours.shape == (len(z), 48)
    assert np.array_equal(ours, theirs)
    # and the layout did move them: they are not the starting vectors
    reducer.n_epochs = 1
    try:
        assert not np.allclose(ours, inverse.inverse_transform(reducer, z))
    finally:
        reducer.n_epochs = None


def test_neighbour_weights_are_normalised_as_scikit_learn_does(fitted):
    """umap-learn l1-normalises its graph with scikit-learn (row sums term by term): the same bits."""
    from scipy.sparse import coo_matrix
    from scipy.spatial import Delaunay
    from sklearn.preprocessing import normalize

    reducer, _ = fitted
    z = _queries(reducer.embedding_, 300, 6)
    triangulation = Delaunay(reducer.embedding_, incremental=True, qhull_options="QJ")
    starts = triangulation.simplices[triangulation.find_simplex(z)][:, 0].astype(np.int64)
    indptr, indices = inverse._adjacency(triangulation.simplices, len(reducer.embedding_))
    head, tail, weight, ind, w = inverse._edges(z, reducer.embedding_, indptr, indices, starts, 48,
                                                float(reducer._a), float(reducer._b))
    graph = normalize(coo_matrix((weight, (head, tail)), shape=(len(z), len(reducer.embedding_))).tocsr(), norm="l1")
    assert np.array_equal(graph.indices.reshape(len(z), 48), ind)
    assert np.array_equal(graph.data.reshape(len(z), 48), w)


def test_more_dimensions_than_points_uses_every_point_as_a_neighbour():
    reducer = fit_umap(_points(40, 64, 2), seed=0)  # min(width, n) = 40 = n: the search takes the whole map
    z = _queries(reducer.embedding_, 6, 3)
    assert np.array_equal(inverse.inverse_transform(reducer, z), _umap_inverse(reducer, z))


def test_no_points_and_the_compile_cache(fitted):
    reducer, _ = fitted
    assert inverse.inverse_transform(reducer, np.zeros((0, 2), np.float32)).shape == (0, 48)
    # every kernel is compiled once per machine, into numba's on-disk cache
    for kernel in (inverse._search, inverse._planar_distances, inverse._weighted_mean, inverse._tau_rand_int,
                   inverse._step, inverse._optimise, pairwise._euclidean, pairwise._all_pairs):
        assert type(kernel._cache).__name__ != "NullCache", kernel


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_distance_matrix_equals_scikit_learns_with_umaps_metric(dtype):
    from sklearn.metrics import pairwise_distances

    umap = import_umap()
    x = _points(120, 300, 4).astype(dtype)
    ours = pairwise._all_pairs(x)
    theirs = pairwise_distances(x, metric=umap.distances.euclidean)
    assert ours.dtype == theirs.dtype == dtype and np.array_equal(ours, theirs)


def test_fit_umap_gives_umap_learns_own_map(monkeypatch):
    umap = import_umap()
    x = _points(300, 40, 5)
    calls = []
    compiled = pairwise._all_pairs
    monkeypatch.setattr(pairwise, "_all_pairs", lambda points: calls.append(len(points)) or compiled(points))
    ours = fit_umap(x, seed=7)
    assert calls == [300]  # the matrix was ours
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = umap.UMAP(**UMAP_PARAMS, random_state=7, n_jobs=1).fit(x)
    assert ours._small_data and np.array_equal(ours.embedding_, theirs.embedding_)
    assert np.array_equal(ours._sigmas, theirs._sigmas) and np.array_equal(ours._rhos, theirs._rhos)
    from sklearn.metrics import pairwise_distances

    assert umap.umap_.pairwise_distances is pairwise_distances  # put back after the fit


def test_umap_learns_functions_use_numbas_disk_cache_without_patching_numba():
    import numba
    from numba.core.registry import CPUDispatcher

    umap = import_umap()
    assert numba.njit.__module__ == "numba.core.decorators"  # numba's own decorator, never replaced
    for kernel in (umap.umap_.smooth_knn_dist, umap.umap_.compute_membership_strengths, umap.utils.fast_knn_indices,
                   umap.layouts._nb_optimize_layout_euclidean_single_epoch, umap.distances.euclidean):
        assert isinstance(kernel, CPUDispatcher) and type(kernel._cache).__name__ == "FunctionCache", kernel



def test_the_pin_in_pyproject_is_the_tested_range():
    import tomllib

    low, high = rounds.UMAP_LEARN_TESTED
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert f"umap-learn>={low},<{high}" in project["dependencies"]
    assert rounds.fast_umap()  # the installed umap-learn is one of them (the tests above check it)


@pytest.mark.parametrize(("version", "inside"), [
    ("0.5.12", True), ("0.5.12.post1", True), ("0.5.11", False), ("0.5.13", False), ("0.6.0", False),
    ("1.0", False), ("0.5.9.post2", False),
])
def test_the_tested_range(monkeypatch, version, inside):
    monkeypatch.setattr(rounds, "umap_learn_version", lambda: version)
    monkeypatch.setattr(rounds, "_outside_noticed", set())
    assert rounds.fast_umap() is inside


def test_outside_the_tested_range_sage_runs_umap_learns_own_code_and_says_so_in_one_line(monkeypatch, capsys, fitted):
    def fast_path(*args, **kwargs):
        raise AssertionError("sage's fast UMAP code ran for an untested umap-learn")

    monkeypatch.setattr(rounds, "umap_learn_version", lambda: "0.6.0")
    monkeypatch.setattr(rounds, "_outside_noticed", set())
    monkeypatch.setattr(pairwise, "_all_pairs", fast_path)
    monkeypatch.setattr(inverse, "inverse_transform", fast_path)
    umap = import_umap()
    x = _points(300, 40, 5)
    ours = fit_umap(x, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = umap.UMAP(**UMAP_PARAMS, random_state=7, n_jobs=1).fit(x)
    assert np.array_equal(ours.embedding_, theirs.embedding_)
    reducer, z = fitted
    assert np.array_equal(rounds.inverse_transform(reducer, z[:4]), _umap_inverse(reducer, z[:4]))
    lines = capsys.readouterr().err.splitlines()
    low, high = rounds.UMAP_LEARN_TESTED
    assert len(lines) == 1, lines  # once per process, though both parts fell back
    assert lines[0].startswith("sage: umap-learn 0.6.0 is outside") and f">={low},<{high}" in lines[0]
