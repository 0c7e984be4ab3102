"""Lanczos tridiagonalisation and extreme Ritz pairs of the Hessian.

Lanczos builds an orthonormal basis `Q_m = [q_1 .. q_m]` of the Krylov space
`span{q_1, H q_1, ..., H^{m-1} q_1}` in which `H` is tridiagonal:

    H Q_m = Q_m T_m + beta_m q_{m+1} e_m^T,   T_m = tridiag(beta, alpha, beta).

An eigenpair `T_m s = theta s` gives the Ritz pair `(theta, y = Q_m s)` with residual
`||H y - theta y|| = beta_m |s_m|` (exact when `Q_m` is orthonormal). The extreme
Ritz values converge first at both ends of the spectrum, so the same run yields the
largest algebraic eigenvalues and the smallest algebraic ones (negative curvature).

In floating point the basis loses orthogonality as Ritz values converge, which creates
spurious copies of converged eigenvalues. Two remedies:

* `"full"`: every new vector is re-orthogonalised against the whole basis by
  classical Gram-Schmidt, repeated once when the first pass cancelled much of the
  vector ("twice is enough", Kahan-Parlett / DGKS);
* `"partial"`: the overlaps `Q^T w` of each new vector with the whole basis are
  measured (one pass over the basis; on large float32 problems over a float16 copy of
  it, half the bytes) and only those above `sqrt(eps) ||w||` are removed. The basis
  stays semi-orthogonal (`|q_j . q_k| <= sqrt(eps)`), which keeps `T_m` (its Ritz
  values and quadrature weights) accurate to working precision (Simon 1984; Parlett,
  The Symmetric Eigenvalue Problem, ch. 13). How much this saves over `"full"`
  depends on how fast orthogonality is lost: in float64 few overlaps ever need
  removing; in float32, where the HVP's own rounding makes the basis lose orthogonality
  within ~10 steps once an outlier has converged, about half of them are removed at
  every step and the saving is about a third. (Simon's omega-recurrence, which
  estimates the overlaps instead of measuring them, asks for a full
  re-orthogonalisation at every step there.)
* `"none"`: the three-term recurrence alone. Its Ritz pairs are not to be trusted
  (converged eigenvalues come back as spurious copies), but its Gauss quadrature is:
  finite-precision Lanczos behaves like exact Lanczos on a slightly larger matrix whose
  eigenvalues cluster around H's (Greenbaum 1989; Golub and Strakos 1994), so the copies
  share the weight of the eigenvalue they copy. Spectral density estimation (SLQ) on
  large models uses it, where re-orthogonalisation, a pass over the whole basis per
  step, costs about a quarter of the HVPs' time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch

from .operator import HessianOperator
from .sampling import gaussian

DEFAULT_TOL = {torch.float32: 1e-4, torch.float64: 1e-8}
_DGKS = 1 / math.sqrt(2)  # a pass keeping less than this fraction of the norm is repeated
_NOISE = 100  # beta below _NOISE * eps * ||H|| is rounding noise: a breakdown
_FIRST_ROWS = 32  # a basis starts with this many rows and doubles as it grows
_SHADOW_MIN_DIM = 4096  # float16 overlap error ~1e-3/sqrt(dim) << sqrt(eps_float32)


@dataclass
class Krylov:
    """A Lanczos run: basis rows `Q[i] = q_{i+1}`, diagonal `alpha`, and `beta`.

    `beta[i]` couples `q_{i+1}` and `q_{i+2}`; `beta[-1]` is the norm of the final
    residual (the `beta_m` of the Ritz residuals). A zero `beta[i]` before the end
    marks a breakdown after which the run continued from a fresh random vector.
    """

    Q: torch.Tensor
    alpha: np.ndarray
    beta: np.ndarray

    @property
    def steps(self) -> int:
        return len(self.alpha)

    def ritz(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ritz values `theta` (ascending), the eigenvectors `S` of `T` (columns)
        and the residual bounds `beta_m |S[m, i]|`."""
        theta, S = scipy.linalg.eigh_tridiagonal(self.alpha, self.beta[:-1])
        return theta, S, self.beta[-1] * np.abs(S[-1])


class _Basis:
    """Row-major storage for the Lanczos vectors, in preallocated (reusable) buffers.

    With a float16 shadow every row is also kept in half precision for *measuring*
    overlaps at half the memory traffic: for a unit vector `w` the float16 products
    (float32-accumulated) are off by about `1e-3 / sqrt(dim)`, far below the
    `sqrt(eps)` at which an overlap is removed (the removal itself uses the rows in
    working precision).
    """

    def __init__(self, first: torch.Tensor, buffers: BasisBuffers) -> None:
        self._buffers = buffers
        self._rows, self._shadow = buffers.rows, buffers.shadow
        self._scratch = buffers.scratch
        self.size = 0
        self.append_normalised(first, float(torch.linalg.vector_norm(first)))

    @property
    def Q(self) -> torch.Tensor:
        """The basis rows (a ring buffer's: its last two, in storage order)."""
        return self._rows[: min(self.size, len(self._rows))] if self._buffers.ring else self._rows[: self.size]

    def row(self, i: int) -> torch.Tensor:
        """`q_{i+1}` (in a ring buffer, only the last two are kept)."""
        return self._rows[i % 2] if self._buffers.ring else self._rows[i]

    def overlaps(self, w: torch.Tensor, norm: float) -> torch.Tensor:
        """`Q (w / norm)`, from the float16 shadow when there is one."""
        if self._shadow is None:
            return torch.mv(self.Q, w) / norm
        torch.div(w, norm, out=self._scratch[0])
        self._scratch[1].copy_(self._scratch[0])
        return torch.mv(self._shadow[: self.size], self._scratch[1]).to(w.dtype)

    def subtract(self, w: torch.Tensor, coefficients: torch.Tensor, rows: list[int]) -> None:
        """`w -= sum_k coefficients[k] q_k` over `rows` (sorted), in place, with one
        product per run of consecutive rows."""
        for first, last in _runs(rows):
            w.sub_(coefficients[first : last + 1] @ self._rows[first : last + 1])

    def append_normalised(self, w: torch.Tensor, norm: float) -> torch.Tensor:
        """Store `w / norm` as the next row and return that row."""
        if self._buffers.ring:
            q = self._rows[self.size % 2]
            torch.div(w, norm, out=q)
            self.size += 1
            return q
        if self.size == len(self._rows):
            self._buffers.grow(self.size + 1)
            self._rows, self._shadow = self._buffers.rows, self._buffers.shadow
        q = self._rows[self.size]
        torch.div(w, norm, out=q)
        if self._shadow is not None:
            self._shadow[self.size].copy_(q)
        self.size += 1
        return q


@dataclass
class BasisBuffers:
    """Storage for a Lanczos basis, reused across runs (no page faults). Rows are allocated as the basis
    grows, doubling up to `capacity`: a run that converges in a few steps holds a few parameter-sized
    vectors, not `capacity` of them (300 of bert-base's would be 131 GB in float32)."""

    rows: torch.Tensor
    shadow: torch.Tensor | None
    scratch: tuple[torch.Tensor, torch.Tensor] | None
    capacity: int = 0  # most rows; 0: len(rows)
    ring: bool = False  # two rows, reused in turn: the three-term recurrence alone (reorth "none") needs no more

    def grow(self, need: int) -> None:
        """At least `need` rows (at most `capacity`), the existing rows kept."""
        capacity = max(self.capacity, len(self.rows))
        if need > capacity:
            raise ValueError(f"the buffers hold at most {capacity} rows, {need} are needed")
        size = min(capacity, max(need, 2 * len(self.rows)))
        rows = torch.empty((size, self.rows.shape[1]), dtype=self.rows.dtype, device=self.rows.device)
        rows[: len(self.rows)] = self.rows
        self.rows = rows
        if self.shadow is not None:
            shadow = torch.empty_like(rows, dtype=torch.float16)
            shadow[: len(self.shadow)] = self.shadow
            self.shadow = shadow


def _project_out(w: torch.Tensor, Q: torch.Tensor) -> tuple[torch.Tensor, float, bool]:
    """Classical Gram-Schmidt of `w` (in place) against the rows of `Q`, twice if needed.

    Returns the vector, its norm and whether it vanished numerically (it kept less than
    `1/sqrt(2)` of its norm in both passes, i.e. it lies in `span(Q)`).
    """
    before = float(torch.linalg.vector_norm(w))
    for _ in range(2):
        w.sub_(torch.mv(Q, w) @ Q)
        after = float(torch.linalg.vector_norm(w))
        if after > _DGKS * before:
            return w, after, False
        before = after
    return w, after, True


def _semi_orthogonalise(w: torch.Tensor, basis: _Basis, eps: float) -> tuple[torch.Tensor, float, bool]:
    """Remove from `w` (in place) its components along the basis vectors that exceed
    `sqrt(eps) ||w||`; the overlaps are measured, not estimated.

    Costs one pass over the basis (half of one with the float16 shadow) plus one over
    the rows that need it. When the removal cancels much of `w` it falls back to
    `_project_out` (which detects breakdown).
    """
    before = float(torch.linalg.vector_norm(w))
    overlaps = basis.overlaps(w, before)
    large = overlaps.abs() > math.sqrt(eps)
    rows = torch.nonzero(large).flatten().tolist()
    if not rows:
        return w, before, False
    basis.subtract(w, overlaps * before, rows)
    after = float(torch.linalg.vector_norm(w))
    if after > _DGKS * before:
        return w, after, False
    return _project_out(w, basis.Q)


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """Sorted indices grouped into `(first, last)` runs of consecutive values."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def lanczos_tridiagonal(
    op: HessianOperator,
    start: torch.Tensor,
    steps: int,
    reorth: str = "full",
    generator: torch.Generator | None = None,
    stop: Callable[[Krylov], bool] | None = None,
    buffers: BasisBuffers | None = None,
) -> Krylov:
    """Run up to `steps` Lanczos steps from `start` (normalised here).

    `reorth` is `"full"`, `"partial"` or `"none"` (see the module docstring). On breakdown
    (`beta` at rounding level, `<= 100 eps ||H||`: the Krylov space is invariant)
    the run stops, or, when a `generator` is given, continues from a fresh random
    vector orthogonal to the basis with `beta = 0` (so repeated eigenvalues can still
    be found). `stop(krylov)` is asked after every step and ends the run when it
    returns True. `buffers` (from `basis_buffers`) lets consecutive runs reuse
    the basis storage; the returned `Krylov.Q` is then a view into them.
    """
    if reorth not in ("full", "partial", "none"):
        raise ValueError(f"reorth must be 'full', 'partial' or 'none', got {reorth!r}")
    if steps < 1:
        raise ValueError("Lanczos needs at least one step")
    steps = min(steps, op.dim)
    buffers = basis_buffers(op, steps, reorth) if buffers is None else buffers
    if buffers.ring and reorth != "none":
        raise ValueError("two-row (ring) buffers hold too little for re-orthogonalisation: reorth='none' only")
    if not buffers.ring and max(len(buffers.rows), buffers.capacity) < steps:
        raise ValueError(f"the buffers hold {max(len(buffers.rows), buffers.capacity)} rows, "
                         f"{steps} steps need {steps}")
    eps = torch.finfo(op.dtype).eps
    basis = _Basis(start.to(op.device, op.dtype), buffers)
    q = basis.row(0)
    alpha: list[float] = []
    beta: list[float] = []
    scale = 0.0  # running estimate of ||H|| (max |alpha_j| + beta_j)
    while True:
        j = basis.size - 1
        w = op.matvec(q)
        a = float(q @ w)
        w.sub_(q, alpha=a)
        if j > 0:
            w.sub_(basis.row(j - 1), alpha=beta[-1])
        alpha.append(a)
        if reorth == "full":
            w, b, vanished = _project_out(w, basis.Q)
        elif reorth == "none":
            b, vanished = float(torch.linalg.vector_norm(w)), False
        else:
            w, b, vanished = _semi_orthogonalise(w, basis, eps)
        scale = max(scale, abs(a) + b)
        vanished = vanished or not b > _NOISE * eps * scale  # also catches nan
        beta.append(0.0 if vanished else b)
        krylov = Krylov(basis.Q, np.array(alpha), np.array(beta))
        if j + 1 == steps or (stop is not None and stop(krylov)):
            return krylov
        if vanished:
            if generator is None:
                return krylov
            w, b, _ = _project_out(gaussian(op.dim, generator, op.dtype, op.device), basis.Q)
        q = basis.append_normalised(w, b)


MEMORY_SHARE = 0.5  # a Lanczos basis may take this share of the memory available when it starts


def available_bytes(device: torch.device) -> int | None:
    """Memory available on `device` now: a GPU's free memory, else the system's MemAvailable (Linux);
    None where unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_steps(op: HessianOperator) -> int:
    """The Lanczos steps whose basis (one parameter-sized vector each) fits in MEMORY_SHARE of the memory
    available now: 300 float32 vectors of bert-base's 109M parameters would be 131 GB. A run stopped there
    reports its pairs not converged."""
    free = available_bytes(op.device)
    if free is None:
        return 1 << 30
    return max(1, int(MEMORY_SHARE * free) // (op.dim * torch.finfo(op.dtype).bits // 8))


def basis_buffers(op: HessianOperator, steps: int, reorth: str, ring: bool = False) -> BasisBuffers:
    """Storage for a Lanczos basis of up to `steps` vectors (allocated as it grows: at first at most
    `_FIRST_ROWS`), with the float16 shadow used by partial re-orthogonalisation in float32 on large problems;
    with `ring` (for `reorth="none"` alone, e.g. SLQ's quadrature, which needs no basis) two rows, reused
    in turn: the run's `Krylov.Q` then holds its last two vectors."""
    capacity = min(steps, op.dim)
    if ring:
        if reorth != "none":
            raise ValueError("ring buffers are for reorth='none' only")
        return BasisBuffers(torch.empty((2, op.dim), dtype=op.dtype, device=op.device), None, None, 2, ring=True)
    rows = torch.empty((min(capacity, _FIRST_ROWS), op.dim), dtype=op.dtype, device=op.device)
    if reorth != "partial" or op.dtype != torch.float32 or op.dim < _SHADOW_MIN_DIM:
        return BasisBuffers(rows, None, None, capacity)
    scratch = (torch.empty_like(rows[0]), torch.empty_like(rows[0], dtype=torch.float16))
    return BasisBuffers(rows, torch.empty_like(rows, dtype=torch.float16), scratch, capacity)


@dataclass
class LanczosResult:
    """Extreme Ritz pairs of H with their residuals `||H y - theta y||`.

    `top_*` are the largest algebraic eigenvalues (descending), `bottom_*` the
    smallest algebraic ones (ascending, so `bottom_values[0]` is lambda_min), `magnitude_*`
    those of largest `|theta|` at either end (largest magnitude first, no vectors). Vectors
    are rows of unit 2-norm in the flat parameter layout (`op.unflatten` splits them).
    A pair is converged when its residual is at most `tol * max|theta|`.
    """

    top_values: np.ndarray
    top_vectors: torch.Tensor
    top_residuals: np.ndarray
    top_converged: np.ndarray
    bottom_values: np.ndarray
    bottom_vectors: torch.Tensor
    bottom_residuals: np.ndarray
    bottom_converged: np.ndarray
    magnitude_values: np.ndarray
    magnitude_converged: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    iterations: int
    n_hvp: int
    seconds: float
    hvp_seconds: float
    tol: float
    seed: int

    @property
    def converged(self) -> bool:
        """All requested pairs converged."""
        return bool(self.top_converged.all() and self.bottom_converged.all())


def _wanted(theta: np.ndarray, k_top: int, k_bottom: int, k_magnitude: int) -> tuple[np.ndarray, ...]:
    """Indices (into ascending Ritz values) of the top (descending), bottom and largest-magnitude
    (largest first, ties in ascending order) pairs."""
    n = len(theta)
    top = np.arange(n - 1, n - 1 - min(k_top, n), -1)
    bottom = np.arange(min(k_bottom, n))
    magnitude = np.argsort(-np.abs(theta), kind="stable")[:k_magnitude]
    return top, bottom, magnitude


def lanczos(
    op: HessianOperator,
    k_top: int = 5,
    k_bottom: int = 1,
    max_iter: int | None = None,
    tol: float | None = None,
    seed: int = 0,
    k_magnitude: int = 0,
) -> LanczosResult:
    """Top-`k_top` and bottom-`k_bottom` eigenpairs of H, and the `k_magnitude` eigenvalues of
    largest magnitude, by Lanczos with full re-orthogonalisation, from a Gaussian start vector drawn
    from `seed`.

    Stops when every wanted Ritz pair has residual bound `beta_m |s_m|` at most
    `tol * max|theta|` (default `tol`: 1e-4 in float32, 1e-8 in float64), after
    `max_iter` steps (default `min(dim, 300)`, and no more than half the memory available when it starts
    can hold as basis vectors: see `memory_steps`), or when the Krylov space is the whole
    space. A breakdown (invariant subspace) does not end the run early: it restarts from a
    random vector orthogonal to the basis. Only when a random vector (the start or a restart) breaks
    down at its first step, so that the rest of the space is one eigenspace (e.g. a rank-deficient
    Hessian's null space), is the convergence test asked there. Each step costs one HVP.
    """
    if min(k_top, k_bottom, k_magnitude) < 0 or k_top + k_bottom + k_magnitude == 0:
        raise ValueError("ask for at least one eigenpair (k_top + k_bottom + k_magnitude >= 1)")
    tol = DEFAULT_TOL[op.dtype] if tol is None else tol
    if max_iter is None:
        max_iter = max(min(op.dim, k_top + k_bottom + k_magnitude + 2), min(op.dim, 300, memory_steps(op)))
    generator = torch.Generator().manual_seed(seed)
    start_time, start_hvp, start_hvp_seconds = time.perf_counter(), op.n_hvp, op.hvp_seconds

    def converged(krylov: Krylov) -> bool:
        n = krylov.steps
        if n < min(k_top + k_bottom + k_magnitude, op.dim):
            return False
        if krylov.beta[-1] == 0.0 and n < op.dim and n > 1 and krylov.beta[-2] != 0.0:
            # Breakdown: the basis spans an invariant subspace, so its Ritz values are
            # exact, but the complement (e.g. more copies of a repeated eigenvalue) is
            # unexplored; go on from the fresh vector. A random vector (the start, or the
            # fresh one after a breakdown) that breaks down at its first step is an
            # eigenvector, and so (with probability one) is every vector of the complement it
            # was drawn from: the complement is one eigenspace (to rounding, e.g. the null
            # space of a rank-deficient Hessian), whose eigenvalue is known; going on would
            # only add copies of it, one breakdown per step, up to the step limit.
            return False
        theta, _, residuals = krylov.ritz()
        wanted = np.concatenate(_wanted(theta, k_top, k_bottom, k_magnitude))
        return bool(np.all(residuals[wanted] <= tol * np.max(np.abs(theta))))

    start = gaussian(op.dim, generator, op.dtype, op.device)
    krylov = lanczos_tridiagonal(op, start, max_iter, "full", generator, converged)
    theta, S, residuals = krylov.ritz()
    limit = tol * np.max(np.abs(theta))
    top, bottom, magnitude = _wanted(theta, k_top, k_bottom, k_magnitude)

    def vectors(idx: np.ndarray) -> torch.Tensor:
        coefficients = torch.from_numpy(np.ascontiguousarray(S[:, idx].T)).to(op.device, op.dtype)
        Y = coefficients @ krylov.Q
        return Y / torch.linalg.vector_norm(Y, dim=1, keepdim=True)

    return LanczosResult(
        top_values=theta[top],
        top_vectors=vectors(top),
        top_residuals=residuals[top],
        top_converged=residuals[top] <= limit,
        bottom_values=theta[bottom],
        bottom_vectors=vectors(bottom),
        bottom_residuals=residuals[bottom],
        bottom_converged=residuals[bottom] <= limit,
        magnitude_values=theta[magnitude],
        magnitude_converged=residuals[magnitude] <= limit,
        alpha=krylov.alpha,
        beta=krylov.beta,
        iterations=krylov.steps,
        n_hvp=op.n_hvp - start_hvp,
        seconds=time.perf_counter() - start_time,
        hvp_seconds=op.hvp_seconds - start_hvp_seconds,
        tol=tol,
        seed=seed,
    )

