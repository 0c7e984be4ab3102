"""UMAP's inverse transform (umap-learn 0.5's `UMAP.inverse_transform`), re-implemented to run fast.

The algorithm and its random stream are umap-learn's, step for step:

1. Delaunay triangulation of the fitted 2-D map (qhull, option QJ); each new point z starts a
   breadth-first search of the triangulation's edge graph from the first vertex of the simplex
   holding it (the last simplex when z is outside the hull, as umap-learn does), stopping one
   level after it has explored more than m = min(input width, fitted points) vertices.
2. The m of those nearest to z in the map, with membership 1 / (1 + a·d^(2b)); the starting
   vector is their membership-weighted (l1-normalised) mean in input space.
3. n_epochs = 100 (30 above 10,000 new points; n_epochs // 3 when the model sets n_epochs) of
   umap's inverse layout SGD in input space: each edge pulls the point towards its neighbour,
   with negative samples drawn by umap's Tausworthe generator seeded from `transform_seed`, the
   same draws in the same order; steps clipped to ±4, learning rate (learning_rate / 4)
   decaying linearly.

What is different is only how it runs: umap-learn does the breadth-first search in pure Python
on scipy sparse rows (about half its time here), recompiles the layout epoch as a fresh numba
closure on every call, and allocates a gradient vector for every edge sample. Here the search
and the layout are numba functions compiled once per machine (cache=True), and the layout
works in place. For the euclidean metric umap-learn's results are reproduced bit for bit: the
starting vectors and the optimised ones (tests/test_sage_umap.py compares the two). That takes
umap-learn's arithmetic as compiled: the distance's sum under fastmath as in its `euclidean`, the
gradient as (x − y)·(1 / (1e-6 + d)) (what its fastmath division becomes), the rest strict IEEE,
and its generator's int32 result.
"""

from __future__ import annotations

import numba
import numpy as np

from .pairwise import _euclidean

INT32_MIN = np.iinfo(np.int32).min + 1  # umap-learn's bounds for its rng seeds
INT32_MAX = np.iinfo(np.int32).max - 1


def inverse_transform(reducer, points: np.ndarray) -> np.ndarray:
    """Vectors in the fitted input space for 2-D `points` [m, 2] of `reducer`'s map: float32 [m, width]."""
    from scipy.spatial import Delaunay
    from sklearn.utils import check_random_state

    if reducer.metric != "euclidean" or reducer.output_metric != "euclidean" or reducer.densmap:
        raise ValueError("the fast inverse transform covers euclidean UMAP maps only")
    points = np.ascontiguousarray(points, dtype=np.float32)
    raw = np.ascontiguousarray(reducer._raw_data, dtype=np.float32)
    embedding = np.ascontiguousarray(reducer.embedding_, dtype=np.float32)
    if len(points) == 0:
        return np.zeros((0, raw.shape[1]), dtype=np.float32)
    rng_state = check_random_state(reducer.transform_seed).randint(INT32_MIN, INT32_MAX, 3).astype(np.int64)

    triangulation = Delaunay(embedding, incremental=True, qhull_options="QJ")
    starts = triangulation.simplices[triangulation.find_simplex(points)][:, 0].astype(np.int64)
    indptr, indices = _adjacency(triangulation.simplices, len(embedding))
    m = min(raw.shape[1], raw.shape[0])
    head, tail, weight, init_ind, init_weight = _edges(points, embedding, indptr, indices, starts, m,
                                                      float(reducer._a), float(reducer._b))
    vectors = _weighted_mean(init_ind, init_weight, raw)

    if reducer.n_epochs is None:
        n_epochs = 100 if len(points) <= 10000 else 30
    else:
        n_epochs = int(reducer.n_epochs // 3.0)
    if n_epochs <= 0:
        return vectors
    samples = n_epochs * (weight / weight.max())
    epochs_per_sample = np.full(len(weight), -1.0)
    epochs_per_sample[samples > 0] = float(n_epochs) / samples[samples > 0]
    _optimise(vectors, raw, head, tail, weight, np.asarray(reducer._sigmas, dtype=np.float32),
              np.asarray(reducer._rhos, dtype=np.float32), n_epochs, len(raw), epochs_per_sample, rng_state,
              float(reducer.repulsion_strength), float(reducer._initial_alpha) / 4.0,
              float(reducer.negative_sample_rate))
    return vectors


def _adjacency(simplices: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, sorted indices) of the triangulation's vertex graph, self-loops included."""
    from scipy.sparse import coo_matrix

    corners = simplices.shape[1]
    rows = np.repeat(simplices, corners, axis=1).ravel()
    cols = np.tile(simplices, (1, corners)).ravel()
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n)).tocsr()
    graph.sum_duplicates()
    graph.sort_indices()
    return graph.indptr.astype(np.int64), graph.indices.astype(np.int64)


def _edges(points, embedding, indptr, indices, starts, m, a, b):
    """Each point's m nearest map vertices among its search: edge lists in umap-learn's order
    (point by point, nearest first) with memberships, and the same per point sorted by vertex
    (the order umap-learn's normalised CSR graph sums the starting vector in)."""
    count = len(points)
    head = np.repeat(np.arange(count, dtype=np.int32), m)
    tail = np.empty(count * m, dtype=np.int32)
    distance = np.empty(count * m, dtype=np.float64)
    visited = np.zeros(len(embedding), dtype=np.int64)
    for i in range(count):
        found = _search(indptr, indices, int(starts[i]), m, visited, i + 1)
        d = _planar_distances(points[i], embedding, found)
        nearest = np.argsort(d)[:m]  # numpy's argsort as umap-learn calls it, so ties fall the same way
        tail[i * m:(i + 1) * m] = found[nearest]
        distance[i * m:(i + 1) * m] = d[nearest]
    weight = 1.0 / (1.0 + a * distance ** (2 * b))
    by_vertex = np.lexsort((tail, head))
    ind = tail[by_vertex].reshape(count, m)
    w = weight[by_vertex].reshape(count, m)
    # l1-normalised as scikit-learn's normalize does it: each row's sum taken term by term, in vertex
    # order (np.sum would add pairwise and can differ in the last bit)
    return head, tail, weight, ind, w / np.cumsum(np.abs(w), axis=1)[:, -1:]


@numba.njit(cache=True)
def _search(indptr, indices, start, min_vertices, visited, mark):
    """umap-learn's breadth_first_search: vertices in the order explored; `visited` holds `mark`
    for the vertices seen in this search (so one array serves every point)."""
    queue = np.empty(len(visited), dtype=np.int64)
    level = np.empty(len(visited), dtype=np.int64)
    queue[0] = start
    level[0] = 0
    visited[start] = mark
    front, back = 0, 1
    deepest = 0  # the deepest level discovered so far: umap-learn's max(levels.values())
    max_level = -1  # unset (infinite) until more than min_vertices are explored
    while front < back:
        node_level = level[front]
        node = queue[front]
        front += 1
        if max_level < 0 and front > min_vertices:
            max_level = deepest
        if max_level < 0 or node_level + 1 < max_level:
            for e in range(indptr[node], indptr[node + 1]):
                neighbour = indices[e]
                if visited[neighbour] != mark:
                    visited[neighbour] = mark
                    queue[back] = neighbour
                    level[back] = node_level + 1
                    back += 1
                    deepest = node_level + 1
    return queue[:front].copy()


@numba.njit(cache=True)
def _planar_distances(point, embedding, vertices):
    out = np.empty(len(vertices), dtype=np.float64)
    for i in range(len(vertices)):
        total = 0.0
        for d in range(embedding.shape[1]):
            total += (point[d] - embedding[vertices[i], d]) ** 2
        out[i] = np.sqrt(total)
    return out


@numba.njit(cache=True)
def _weighted_mean(indices, weights, raw):
    """umap-learn's init_transform: Σ_j w_ij · raw[ind_ij], accumulated in float32 as it does."""
    result = np.zeros((indices.shape[0], raw.shape[1]), dtype=np.float32)
    for i in range(indices.shape[0]):
        for j in range(indices.shape[1]):
            for d in range(raw.shape[1]):
                result[i, d] += weights[i, j] * raw[indices[i, j], d]
    return result


@numba.njit("i4(i8[:])", cache=True)
def _tau_rand_int(state):
    """umap-learn's Tausworthe generator (utils.tau_rand_int), bit for bit: an int32 result."""
    state[0] = (((state[0] & 4294967294) << 12) & 0xFFFFFFFF) ^ ((((state[0] << 13) & 0xFFFFFFFF) ^ state[0]) >> 19)
    state[1] = (((state[1] & 4294967288) << 4) & 0xFFFFFFFF) ^ ((((state[1] << 2) & 0xFFFFFFFF) ^ state[1]) >> 25)
    state[2] = (((state[2] & 4294967280) << 17) & 0xFFFFFFFF) ^ ((((state[2] << 3) & 0xFFFFFFFF) ^ state[2]) >> 11)
    return state[0] ^ state[1] ^ state[2]


@numba.njit(cache=True)  # not fastmath: umap-learn keeps (x − y)·(1 / (1e-6 + d)) apart from the coefficient
def _step(current, other, coefficient, alpha, distance):
    """current += alpha · clip(coefficient · (current − other) / (1e-6 + distance)), elementwise, clip ±4
    (in umap-learn's order of operations: euclidean_grad's vector, then the coefficient)."""
    reciprocal = 1.0 / (1e-6 + distance)  # umap-learn's fastmath division compiles to this
    for d in range(current.shape[0]):
        g = coefficient * ((current[d] - other[d]) * reciprocal)
        if g > 4.0:
            g = 4.0
        elif g < -4.0:
            g = -4.0
        current[d] += g * alpha


@numba.njit(cache=True)
def _optimise(vectors, raw, head, tail, weight, sigmas, rhos, n_epochs, n_vertices, epochs_per_sample, rng_state,
              gamma, initial_alpha, negative_sample_rate):
    """umap-learn's optimize_layout_inverse (move_other off): every epoch, every edge that is due
    pulls its point towards the neighbour, then its negative samples push it away."""
    epochs_per_negative_sample = epochs_per_sample / negative_sample_rate
    next_negative = epochs_per_negative_sample.copy()
    next_sample = epochs_per_sample.copy()
    alpha = initial_alpha
    for n in range(n_epochs):
        for i in range(len(epochs_per_sample)):
            if next_sample[i] > n:
                continue
            current = vectors[head[i]]
            k = tail[i]
            _step(current, raw[k], -(1.0 / (weight[i] * sigmas[k] + 1e-6)), alpha, _euclidean(current, raw[k]))
            next_sample[i] += epochs_per_sample[i]
            n_negative = int((n - next_negative[i]) / epochs_per_negative_sample[i])
            for _ in range(n_negative):
                k = _tau_rand_int(rng_state) % n_vertices
                other = raw[k]
                distance = _euclidean(current, other)
                w_h = np.exp(-max(distance - rhos[k], 1e-6) / (sigmas[k] + 1e-6))
                _step(current, other, -gamma * ((0 - w_h) / ((1 - w_h) * sigmas[k] + 1e-6)), alpha, distance)
            next_negative[i] += n_negative * epochs_per_negative_sample[i]
        alpha = initial_alpha * (1.0 - (float(n) / float(n_epochs)))
