"""Tests of the Hessian engine against exact Hessians of tiny models.

The exact Hessian is ``torch.func.hessian`` of the mean loss over the concatenated probe
data, with all parameters flattened, in float64; its spectrum comes from ``eigvalsh``.
"""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sprkd_cli.hessian import (
    DensityEstimate,
    HessianOperator,
    HVPUnavailableError,
    LanczosResult,
    ProbeSet,
    TraceEstimate,
    full_report,
    hutchinson_trace,
    hutchpp_trace,
    lanczos,
    slq_density,
    smooth_density,
)
from sprkd_cli.hessian.lanczos import basis_buffers, lanczos_tridiagonal

KINDS = ("double", "func")
EIG_RTOL = {torch.float64: 1e-6, torch.float32: 1e-3}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models on one thread


def tiny_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def tiny_data(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=generator), torch.randint(0, 3, (n,), generator=generator)


def exact_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names=None) -> torch.Tensor:
    """Float64 Hessian of the mean cross-entropy over ``(x, y)`` w.r.t. ``names``."""
    model = copy.deepcopy(model).double()
    params = dict(model.named_parameters())
    names = list(params) if names is None else names
    shapes = [params[n].shape for n in names]
    flat = torch.cat([params[n].detach().reshape(-1) for n in names])

    def loss(v: torch.Tensor) -> torch.Tensor:
        chunks = v.split([s.numel() for s in shapes])
        values = {n: c.view(s) for n, c, s in zip(names, chunks, shapes)}
        return F.cross_entropy(torch.func.functional_call(model, values, (x.double(),)), y)

    with warnings.catch_warnings():  # torch warns about jit.script on first forward-mode use
        warnings.simplefilter("ignore", FutureWarning)
        return torch.func.hessian(loss)(flat)


def probe_data(probe: ProbeSet) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([x for x, _ in probe.batches]), torch.cat([y for _, y in probe.batches])


@pytest.fixture(scope="module")
def setup():
    """The tiny non-convex MLP, a probe of 2 x 20 examples, and its exact Hessian."""
    model = tiny_mlp()
    x, y = tiny_data()
    probe = ProbeSet.draw(x, y, n_batches=2, size=20, seed=0)
    H = exact_hessian(model, *probe_data(probe))
    return model, probe, H, torch.linalg.eigvalsh(H)


def relative_error(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.abs(b)))


# -- probe set ------------------------------------------------------------------------


def test_probe_draw_is_deterministic_with_requested_sizes():
    x, y = tiny_data(n=100)
    a = ProbeSet.draw(x, y, n_batches=3, size=25, seed=7)
    b = ProbeSet.draw(x, y, n_batches=3, size=25, seed=7)
    c = ProbeSet.draw(x, y, n_batches=3, size=25, seed=8)
    assert a.sizes == [25, 25, 25]
    assert all(torch.equal(i, j) for i, j in zip(a.indices, b.indices))
    assert not all(torch.equal(i, j) for i, j in zip(a.indices, c.indices))
    assert len(torch.unique(torch.cat(a.indices))) == 75  # no example used twice
    for (bx, by), idx in zip(a.batches, a.indices):
        assert torch.equal(bx, x[idx]) and torch.equal(by, y[idx])
    assert json.loads(json.dumps(a.describe()))["indices"][0] == a.indices[0].tolist()


def test_probe_draw_clips_and_covers_small_datasets():
    x, y = tiny_data(n=30)
    clipped = ProbeSet.draw(x, y, n_batches=1, size=100, seed=0)
    assert clipped.sizes == [30]
    probe = ProbeSet.draw(x, y, n_batches=3, size=20, seed=0)
    assert probe.sizes == [20, 20, 20]
    assert all(len(torch.unique(i)) == 20 for i in probe.indices)  # none repeated in a batch
    assert len(torch.unique(torch.cat(probe.indices))) == 30  # every example used


def test_unequal_batches_give_size_weighted_mean(setup):
    model, _, _, _ = setup
    x, y = tiny_data()
    probe = ProbeSet.from_indices(x, y, [torch.arange(0, 8), torch.arange(8, 40)])
    H = exact_hessian(model, x, y)
    H_small, H_large = exact_hessian(model, x[:8], y[:8]), exact_hessian(model, x[8:], y[8:])
    assert torch.allclose(H, (8 * H_small + 32 * H_large) / 40)
    assert (H - (H_small + H_large) / 2).abs().max() > 1e-3  # an unweighted mean differs
    v = torch.randn(H.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for kind in KINDS:
        with HessianOperator(model, F.cross_entropy, probe, hvp=kind, dtype=torch.float64) as op:
            assert torch.allclose(op.matvec(v), H @ v, rtol=1e-10, atol=1e-12)
            expected_loss = F.cross_entropy(copy.deepcopy(model).double()(x.double()), y)
            assert op.loss() == pytest.approx(float(expected_loss.detach()), rel=1e-12)
            res = lanczos(op, k_top=2, k_bottom=1)
        exact = torch.linalg.eigvalsh(H).numpy()
        assert relative_error(res.top_values, exact[::-1][:2]) < 1e-6
        assert relative_error(res.bottom_values, exact[:1]) < 1e-6


# -- products -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matvec_and_matmat_match_exact_hessian(setup, kind, dtype):
    model, probe, H, _ = setup
    generator = torch.Generator().manual_seed(3)
    V = torch.randn(H.shape[0], 4, dtype=torch.float64, generator=generator)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    with HessianOperator(model, F.cross_entropy, probe, hvp=kind, dtype=dtype) as op:
        assert op.kind == kind and op.dim == H.shape[0]
        columns = torch.stack([op.matvec(v) for v in V.T], dim=1)
        assert columns.dtype == dtype
        assert (columns.double() - H @ V).norm() / (H @ V).norm() < tol
        HV = op.matmat(V)
        assert (HV - columns).norm() / columns.norm() < tol
        assert op.n_hvp == 8 and op.hvp_seconds > 0
        shapes = [p.shape for p in model.parameters()]
        assert [t.shape for t in op.unflatten(V[:, 0].to(dtype))] == shapes
        assert op.names == [n for n, _ in model.named_parameters()]


def test_gradient_matches_autograd_and_leaves_grad_alone(setup):
    model, probe, _, _ = setup
    x, y = probe_data(probe)
    expected = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    for kind in KINDS:
        with HessianOperator(model, F.cross_entropy, probe, hvp=kind) as op:
            assert torch.allclose(op.gradient(), op.flatten(expected), atol=1e-6)
    assert all(p.grad is None for p in model.parameters())


def test_matvec_outside_with_block_raises(setup):
    model, probe, _, _ = setup
    op = HessianOperator(model, F.cross_entropy, probe)
    with pytest.raises(RuntimeError, match="with"):
        op.matvec(torch.zeros(op.dim))


# -- eigenvalues ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_extreme_eigenvalues_match_exact(setup, kind, dtype):
    model, probe, _, exact = setup
    exact = exact.numpy()
    assert exact[0] < -0.1  # the setup is non-convex: negative curvature must be seen
    with HessianOperator(model, F.cross_entropy, probe, hvp=kind, dtype=dtype) as op:
        res = lanczos(op, k_top=5, k_bottom=1, seed=0)
    assert isinstance(res, LanczosResult)
    assert relative_error(res.top_values, exact[::-1][:5]) < EIG_RTOL[dtype]
    assert relative_error(res.bottom_values, exact[:1]) < EIG_RTOL[dtype]
    assert res.bottom_values[0] < 0
    assert np.all(np.diff(res.top_values) <= 0)
    assert res.top_converged.all() and res.bottom_converged.all() and res.converged
    assert res.n_hvp == res.iterations <= op.dim
    assert res.top_vectors.shape == (5, op.dim) and res.bottom_vectors.shape == (1, op.dim)
    norms = torch.linalg.vector_norm(torch.cat([res.top_vectors, res.bottom_vectors]), dim=1)
    assert torch.allclose(norms.double(), torch.ones(6, dtype=torch.float64), atol=1e-5)


def test_residuals_are_the_explicit_residuals(setup):
    model, probe, H, _ = setup
    with HessianOperator(model, F.cross_entropy, probe, hvp="double", dtype=torch.float64) as op:
        for max_iter in (8, None):  # unconverged (large residuals) and converged
            res = lanczos(op, k_top=5, k_bottom=1, max_iter=max_iter, seed=1)
            values = np.concatenate([res.top_values, res.bottom_values])
            vectors = torch.cat([res.top_vectors, res.bottom_vectors])
            reported = np.concatenate([res.top_residuals, res.bottom_residuals])
            explicit = np.array(
                [float(torch.linalg.vector_norm(H @ v - lam * v)) for v, lam in zip(vectors, values)]
            )
            if max_iter is not None:
                assert not res.converged and explicit.min() > 1e-3
                assert np.allclose(reported, explicit, rtol=1e-6)
            else:
                limit = res.tol * np.abs(values).max()
                assert res.converged and np.all(explicit <= limit)
                assert np.allclose(reported, explicit, atol=1e-12)


def test_eigenvalues_do_not_depend_on_the_seed(setup):
    model, probe, _, _ = setup
    with HessianOperator(model, F.cross_entropy, probe, hvp="double", dtype=torch.float64) as op:
        runs = [lanczos(op, k_top=5, k_bottom=1, seed=s) for s in (0, 1, 2)]
    for res in runs[1:]:
        assert relative_error(res.top_values, runs[0].top_values) < 1e-9
        assert relative_error(res.bottom_values, runs[0].bottom_values) < 1e-9


class DenseOperator:
    """A symmetric matrix posing as a HessianOperator (for Lanczos edge cases)."""

    def __init__(self, A: torch.Tensor) -> None:
        self.A, self.dim, self.dtype, self.device = A, A.shape[0], A.dtype, A.device
        self.n_hvp, self.hvp_seconds = 0, 0.0

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        self.n_hvp += 1
        return self.A @ v


def test_largest_magnitude_eigenvalues_and_the_saddle_score_match_the_exact_hessian(setup):
    """lanczos(k_magnitude=n) and sprkd's measure_saddle against eigvalsh of the autograd Hessian:
    the n eigenvalues of largest |lambda|, from whichever end, largest magnitude first."""
    from sprkd_cli.methods.sprkd.saddles import measure_saddle

    model, probe, H, exact = setup
    exact = exact.numpy()
    expected = exact[np.argsort(-np.abs(exact), kind="stable")[:8]]
    assert (expected < 0).any() and (expected > 0).any()  # both ends of the spectrum take part
    scale = float(np.abs(exact).max())
    with HessianOperator(model, F.cross_entropy, probe) as op:
        res = lanczos(op, k_top=0, k_bottom=0, k_magnitude=8, seed=0)
    assert res.magnitude_converged.all() and len(res.top_values) == len(res.bottom_values) == 0
    assert np.max(np.abs(res.magnitude_values - expected)) < 1e-4 * scale
    loss, s, iterations = measure_saddle(model, probe, 8, seed=0)
    assert np.max(np.abs(np.array(s.eigenvalues) - expected)) < 1e-4 * scale
    assert s.s_neg == pytest.approx(-expected[expected < 0].sum(), rel=1e-4)
    assert s.s_pos == pytest.approx(expected[expected > 0].sum(), rel=1e-4)
    assert iterations == res.iterations
    with torch.no_grad():
        assert loss == pytest.approx(float(F.cross_entropy(model(probe_data(probe)[0]), probe_data(probe)[1])),
                                     rel=1e-5)


def test_lanczos_breakdown_restarts_and_finds_repeated_eigenvalues():
    # 3 distinct eigenvalues: the Krylov space of any start vector has dimension 3.
    diagonal = torch.tensor([5.0, 5.0, 5.0, 1.0, 1.0, -2.0, -2.0, -2.0], dtype=torch.float64)
    op = DenseOperator(torch.diag(diagonal))
    res = lanczos(op, k_top=3, k_bottom=3, seed=0)
    assert np.allclose(res.top_values, [5, 5, 5]) and np.allclose(res.bottom_values, [-2, -2, -2])
    assert res.converged and np.any(res.beta[:-1] == 0)  # it broke down and restarted
    Y = torch.cat([res.top_vectors, res.bottom_vectors])
    assert torch.allclose(Y @ Y.T, torch.eye(6, dtype=torch.float64), atol=1e-10)


def test_lanczos_stops_at_its_tolerance_when_the_rest_of_the_space_is_one_eigenspace():
    """A rank-deficient Hessian: once its non-zero eigenvalues are found, every fresh vector breaks down at
    its first step (it lies in the null space). Lanczos used to restart at every step up to its step limit;
    it stops as soon as the wanted pairs have converged, with eigvalsh's eigenvalues. First a matrix of
    rank 2 in 200 dimensions, then a real one: the exact Hessian of a linear model on one example (rank 1
    in its 42 parameters: the two logits' softmax has one non-zero curvature)."""
    diagonal = torch.zeros(200, dtype=torch.float64)
    diagonal[:2] = torch.tensor([3.0, -1.0])
    op = DenseOperator(torch.diag(diagonal))
    res = lanczos(op, k_top=0, k_bottom=0, k_magnitude=6, seed=0)
    assert res.magnitude_converged.all() and res.iterations < 10
    assert np.allclose(res.magnitude_values, [3, -1, 0, 0, 0, 0], atol=1e-12)

    torch.manual_seed(0)
    model = nn.Linear(20, 2)
    x, y = torch.randn(1, 20), torch.tensor([1])
    probe = ProbeSet.draw(x, y, n_batches=1, size=1, seed=0)
    exact = torch.linalg.eigvalsh(exact_hessian(model, x, y)).numpy()
    expected = exact[np.argsort(-np.abs(exact), kind="stable")[:6]]
    with HessianOperator(model, F.cross_entropy, probe, dtype=torch.float64) as op:
        res = lanczos(op, k_top=0, k_bottom=0, k_magnitude=6, seed=0)
    assert res.magnitude_converged.all() and res.iterations < 10 < op.dim
    assert np.max(np.abs(res.magnitude_values - expected)) <= 1e-8 * np.abs(exact).max()


def test_partial_reorthogonalisation_keeps_the_basis_semi_orthogonal():
    generator = torch.Generator().manual_seed(0)
    # Well separated outliers over a dense bulk: orthogonality is lost fast without care.
    eigenvalues = torch.cat([torch.tensor([100.0, 50.0, 20.0]), torch.rand(197, generator=generator)])
    U, _ = torch.linalg.qr(torch.randn(200, 200, generator=generator, dtype=torch.float64))
    op = DenseOperator(U @ torch.diag(eigenvalues.double()) @ U.T)
    start = torch.randn(200, generator=generator, dtype=torch.float64)
    krylov = lanczos_tridiagonal(op, start, 120, reorth="partial")
    Q = krylov.Q
    assert (Q @ Q.T - torch.eye(120, dtype=torch.float64)).abs().max() < 1e-7  # ~sqrt(eps)
    theta = np.sort(krylov.ritz()[0])[::-1]
    assert np.allclose(theta[:3], [100, 50, 20], rtol=1e-12)
    assert not np.isclose(theta[3], 20)  # no ghost copies of converged eigenvalues


class DiagonalOperator(DenseOperator):
    """A large diagonal matrix posing as a HessianOperator."""

    def __init__(self, diagonal: torch.Tensor) -> None:
        super().__init__(diagonal)
        self.dim = diagonal.shape[0]

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        self.n_hvp += 1
        return self.A * v


def test_partial_reorthogonalisation_with_float16_shadow_in_float32():
    # dim >= 4096 in float32: overlaps are measured on a float16 copy of the basis.
    generator = torch.Generator().manual_seed(0)
    diagonal = torch.cat([torch.tensor([100.0, 50.0, 20.0, -30.0]), torch.rand(5996, generator=generator)])
    op = DiagonalOperator(diagonal)
    assert basis_buffers(op, 80, "partial").shadow is not None
    krylov = lanczos_tridiagonal(op, torch.randn(6000, generator=generator), 80, reorth="partial")
    Q = krylov.Q.double()
    semi_orthogonal = 2 * torch.finfo(torch.float32).eps ** 0.5
    assert (Q @ Q.T - torch.eye(80, dtype=torch.float64)).abs().max() < semi_orthogonal
    theta = np.sort(krylov.ritz()[0])
    assert np.allclose(theta[[-3, -2, -1, 0]], [20, 50, 100, -30], rtol=1e-5)
    assert not np.isclose(theta[-4], 20, rtol=1e-3) and not np.isclose(theta[1], -30, rtol=1e-3)


# -- trace ----------------------------------------------------------------------------


def test_trace_estimates_are_within_three_standard_errors(setup):
    model, probe, H, _ = setup
    exact = float(H.trace())
    with HessianOperator(model, F.cross_entropy, probe, hvp="double", dtype=torch.float64) as op:
        for method in (hutchpp_trace, hutchinson_trace):
            estimates = [method(op, n_hvp=30, seed=s) for s in range(20)]
            assert all(isinstance(e, TraceEstimate) and e.n_hvp == 30 for e in estimates)
            assert abs(estimates[0].value - exact) <= 3 * estimates[0].se
            z = [abs(e.value - exact) / e.se for e in estimates]
            assert sum(score <= 3 for score in z) >= 18  # the standard errors are calibrated
        assert op.n_hvp == 2 * 20 * 30


def test_hutchpp_beats_hutchinson_at_equal_cost(setup):
    model, probe, H, _ = setup
    exact = float(H.trace())
    with HessianOperator(model, F.cross_entropy, probe, hvp="double", dtype=torch.float64) as op:
        errors = {
            method.__name__: np.mean([abs(method(op, n_hvp=30, seed=s).value - exact) for s in range(20)])
            for method in (hutchpp_trace, hutchinson_trace)
        }
    assert errors["hutchpp_trace"] < errors["hutchinson_trace"]


# -- density --------------------------------------------------------------------------


def test_slq_weights_and_trace():
    # The SLQ first moment is a Hutchinson estimate with normalised sign vectors, so its
    # error is Hutchinson's: ~39% for 10 runs on the tiny MLP, ~3.5% on this convex
    # softmax regression, where a 5% check is meaningful.
    torch.manual_seed(0)
    model = nn.Linear(20, 4)
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 20, generator=generator), torch.randint(0, 4, (200,), generator=generator)
    probe = ProbeSet.draw(x, y, n_batches=2, size=100, seed=0)
    exact = float(exact_hessian(model, x, y).trace())
    with HessianOperator(model, F.cross_entropy, probe, hvp="double", dtype=torch.float64) as op:
        dens = slq_density(op, runs=10, steps=80, seed=0)
    assert isinstance(dens, DensityEstimate)
    assert dens.nodes.shape == dens.weights.shape == (10, 80)
    # H has a null space (softmax shift invariance), so fewer than 80 distinct eigenvalues:
    # runs end early (exact quadrature) and are padded with zero weights.
    assert dens.n_hvp < 800 and (dens.weights[:, -1] == 0).all()
    assert np.allclose(dens.weights.sum(axis=1), 1.0)
    first_moment = np.mean(np.sum(dens.weights * dens.nodes, axis=1)) * op.dim
    assert abs(first_moment - exact) / exact < 0.05
    assert dens.trace() == pytest.approx(first_moment)


@pytest.mark.slow
def test_quadrature_without_reorthogonalisation_is_accurate():
    """reorth='none' (SLQ on large models): the basis loses orthogonality, yet the Gauss
    quadrature of the start vector still reproduces v^T H^j v, and slq_density's 'auto'
    takes it only when dim > 50 * steps."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 4))
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(300, 20, generator=generator), torch.randint(0, 4, (300,), generator=generator)
    probe = ProbeSet.draw(x, y, n_batches=1, size=300, seed=0)
    H = exact_hessian(model, x, y)
    with HessianOperator(model, F.cross_entropy, probe, hvp="double", dtype=torch.float64) as op:
        assert op.dim == 1604 and slq_density(op, runs=1, steps=20).reorth == "none"
        assert slq_density(op, runs=1, steps=40).reorth == "partial"
        v = torch.randn(op.dim, generator=generator, dtype=torch.float64)
        krylov = lanczos_tridiagonal(op, v, 60, reorth="none")
    Q = krylov.Q.double()
    assert (Q @ Q.T - torch.eye(60, dtype=torch.float64)).abs().max() > 1e-6  # orthogonality is lost
    theta, S, _ = krylov.ritz()
    weights = S[0] ** 2
    u = v / v.norm()
    scale = float(torch.linalg.eigvalsh(H).abs().max())
    Hu = u.clone()
    for j in range(1, 41):
        Hu = H @ Hu
        exact = float(u @ Hu) / scale**j
        quadrature = float(np.sum(weights * theta**j)) / scale**j
        assert abs(quadrature - exact) < 1e-8, (j, quadrature, exact)


def test_slq_nodes_are_the_spectrum_when_steps_reach_the_dimension(setup):
    model, probe, _, exact = setup
    with HessianOperator(model, F.cross_entropy, probe, hvp="double", dtype=torch.float64) as op:
        dens = slq_density(op, runs=2, steps=200, seed=0)
    assert dens.nodes.shape == (2, op.dim)  # steps clipped to the dimension
    for nodes in dens.nodes:
        assert np.allclose(np.sort(nodes), exact.numpy(), atol=1e-10)
    grid, density = smooth_density(dens, grid_points=2000)
    assert grid.shape == density.shape == (2000,)
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)
    assert grid[0] < exact[0] and grid[-1] > exact[-1]


# -- probe hygiene --------------------------------------------------------------------


class MixedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 8)
        self.drop = nn.Dropout(0.3)
        self.body = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.drop(torch.tanh(self.inp(x)))))


def mixed_net() -> nn.Module:
    torch.manual_seed(0)
    net = MixedNet()
    net.train()
    net.body.eval()
    net.body[1].train()
    net.head.eval()
    net.inp.weight.grad = torch.full_like(net.inp.weight, 0.25)
    return net


def snapshot(net: nn.Module):
    return (
        {name: m.training for name, m in net.named_modules()},
        {name: (p.grad, None if p.grad is None else p.grad.clone()) for name, p in net.named_parameters()},
        {name: p.detach().clone() for name, p in net.named_parameters()},
        {name: p.dtype for name, p in net.named_parameters()},
        torch.get_rng_state(),
    )


def assert_unchanged(net: nn.Module, before) -> None:
    modes, grads, values, dtypes, rng = before
    assert {name: m.training for name, m in net.named_modules()} == modes
    for name, p in net.named_parameters():
        grad, grad_value = grads[name]
        assert p.grad is grad  # None stays None, a preset tensor stays the same object
        if grad is not None:
            assert torch.equal(p.grad, grad_value)
        assert torch.equal(p.detach(), values[name]) and p.dtype == dtypes[name]
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_probe_leaves_modes_grads_and_values_as_they_were(kind, mode, dtype):
    net = mixed_net()
    x, y = tiny_data()
    probe = ProbeSet.draw(x, y, n_batches=2, size=20, seed=0)
    before = snapshot(net)
    with HessianOperator(net, F.cross_entropy, probe, mode=mode, hvp=kind, dtype=dtype) as op:
        if dtype == torch.float32:  # the probe runs on the model itself, in the probe mode
            assert all(m.training == (mode == "train") for m in net.modules())
        op.matvec(torch.ones(op.dim))
        op.gradient()
        lanczos(op, k_top=1, k_bottom=1, max_iter=5)
    assert_unchanged(net, before)
    with pytest.raises(ZeroDivisionError):
        with HessianOperator(net, F.cross_entropy, probe, mode=mode, hvp=kind, dtype=dtype) as op:
            op.matvec(torch.ones(op.dim))
            1 / 0
    assert_unchanged(net, before)


def test_train_mode_dropout_gives_one_fixed_symmetric_operator():
    net = mixed_net()
    x, y = tiny_data()
    probe = ProbeSet.draw(x, y, n_batches=2, size=20, seed=0)
    V = torch.randn(sum(p.numel() for p in net.parameters()), 3, dtype=torch.float64)
    products = {}
    for kind in KINDS:
        with HessianOperator(net, F.cross_entropy, probe, mode="train", hvp=kind, dtype=torch.float64) as op:
            HV = op.matmat(V)
            assert torch.allclose(HV, torch.stack([op.matvec(v) for v in V.T], dim=1), atol=1e-12)
            assert torch.allclose(V.T @ HV, HV.T @ V, atol=1e-12)
            products[kind] = HV
        with HessianOperator(net, F.cross_entropy, probe, mode="eval", hvp=kind, dtype=torch.float64) as op:
            assert not torch.allclose(op.matmat(V), HV)  # dropout does act in train mode
    assert torch.allclose(products["double"], products["func"], atol=1e-12)


# -- HVP kinds ------------------------------------------------------------------------


class TanhWithoutJvp(torch.autograd.Function):
    """tanh with a hand-written backward and no forward-mode (jvp) rule."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        return grad * (1 - out * out)


class CustomTanh(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return TanhWithoutJvp.apply(x)


def test_custom_function_without_forward_rule(setup):
    model, probe, H, _ = setup
    custom = nn.Sequential(copy.deepcopy(model[0]), CustomTanh(), copy.deepcopy(model[2]))
    with HessianOperator(custom, F.cross_entropy, probe, hvp="auto", dtype=torch.float64) as op:
        assert op.kind == "double" and "jvp" in op.func_error
        v = torch.randn(op.dim, dtype=torch.float64)
        assert torch.allclose(op.matvec(v), H @ v, atol=1e-12)  # the same Hessian as tanh
    custom.train()
    with pytest.raises(HVPUnavailableError, match="hvp='double'"):
        with HessianOperator(custom, F.cross_entropy, probe, hvp="func"):
            pass
    assert all(m.training for m in custom.modules())  # restored after a failed entry too


def test_auto_records_a_working_kind(setup):
    model, probe, H, _ = setup
    with HessianOperator(model, F.cross_entropy, probe, hvp="auto", dtype=torch.float64) as op:
        assert op.kind in KINDS and op.func_error is None and op.n_hvp == 0
        v = torch.ones(op.dim, dtype=torch.float64)
        assert torch.allclose(op.matvec(v), H @ v, atol=1e-12)


def test_func_falls_back_to_plain_jvp_when_linearize_fails(setup, monkeypatch):
    model, probe, H, _ = setup

    def broken_linearize(*args, **kwargs):
        raise RuntimeError("cannot trace")

    monkeypatch.setattr(torch.func, "linearize", broken_linearize)
    with HessianOperator(model, F.cross_entropy, probe, hvp="func", dtype=torch.float64) as op:
        V = torch.randn(op.dim, 2, dtype=torch.float64)
        assert torch.allclose(op.matmat(V), H @ V, atol=1e-12)


# -- per-layer ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_param_filter_selects_one_layer(setup, kind):
    model, probe, H, _ = setup
    names = [n for n, _ in model.named_parameters()]
    sizes = [p.numel() for p in model.parameters()]
    offsets = np.cumsum([0, *sizes])
    block = torch.cat(
        [torch.arange(offsets[i], offsets[i + 1]) for i, n in enumerate(names) if n.startswith("0.")]
    )
    H_layer = H[block][:, block]
    layer = HessianOperator(model, F.cross_entropy, probe, hvp=kind, dtype=torch.float64, param_filter="0")
    with layer as op:
        assert op.names == ["0.weight", "0.bias"] and op.dim == 6 * 5 + 5 == len(block)
        v = torch.randn(op.dim, dtype=torch.float64)
        assert torch.allclose(op.matvec(v), H_layer @ v, atol=1e-12)
        res = lanczos(op, k_top=2, k_bottom=1)
    exact = torch.linalg.eigvalsh(H_layer).numpy()
    assert exact[0] < 0 and not np.isclose(exact[0], np.linalg.eigvalsh(H.numpy())[0])
    assert relative_error(res.top_values, exact[::-1][:2]) < 1e-6
    assert relative_error(res.bottom_values, exact[:1]) < 1e-6


def test_param_filter_without_match_lists_valid_prefixes(setup):
    model, probe, _, _ = setup
    with pytest.raises(ValueError, match=r"valid prefixes: 0, 2, 0\.weight"):
        HessianOperator(model, F.cross_entropy, probe, param_filter="1")


# -- report ---------------------------------------------------------------------------


def test_full_report_is_complete_and_json_serialisable(setup):
    model, probe, _, exact = setup
    with HessianOperator(model, F.cross_entropy, probe, hvp="double", dtype=torch.float64) as op:
        report = full_report(op, top_k=3, bottom_k=1, trace=True, trace_method="hutchpp", trace_hvp=12,
                             density=True, slq_runs=2, slq_steps=10, seed=4)
    report = json.loads(json.dumps(report))
    assert relative_error(report["top_eigenvalues"], exact.numpy()[::-1][:3]) < 1e-6
    assert relative_error(report["bottom_eigenvalues"], exact.numpy()[:1]) < 1e-6
    assert len(report["residuals"]) == len(report["converged"]) == 4 and all(report["converged"])
    assert report["trace_method"] == "hutchpp" and report["trace_se"] > 0
    assert np.shape(report["density_nodes"]) == np.shape(report["density_weights"]) == (2, 10)
    assert report["n_hvp"] == report["iterations"] + 4 + 12 + 20  # 4: one HVP per measured residual
    assert report["costs"]["residuals"]["n_hvp"] == 4
    # Converged pairs: the measured residual ||Hy - θy|| is as small as Lanczos' bound says.
    assert max(report["residuals"]) < 1e-6 * abs(report["top_eigenvalues"][0])
    parts = ("lanczos", "trace", "density")
    assert [report["costs"][part]["n_hvp"] for part in parts] == [report["iterations"], 12, 20]
    assert [report[f"{part}_n_hvp"] for part in parts] == [report["iterations"], 12, 20]
    assert 0 < report["hvp_seconds"] <= report["seconds"]
    provenance = (report["hvp_kind"], report["dtype"], report["mode"], report["seed"])
    assert provenance == ("double", "float64", "eval", 4)
    assert report["dim"] == op.dim and report["probe"] == probe.describe()


def test_auto_reuses_its_choice_for_the_same_problem_in_a_process(monkeypatch):
    """hvp="auto" times the two kinds once per kind of problem: a second operator on the same model shape,
    probe sizes, device, dtype and mode takes the same kind without timing again, and measures the same."""
    from sprkd_cli.hessian import operator as op_module
    from sprkd_cli.hessian.probe import ProbeSet

    monkeypatch.setattr(op_module, "_auto_choices", {})
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    x, y = torch.randn(20, 4, dtype=torch.float64), torch.randint(0, 3, (20,))
    probe = ProbeSet.draw(x, y, n_batches=2, size=8, seed=0)
    with HessianOperator(model, F.cross_entropy, probe, hvp="auto", dtype=torch.float64) as first:
        kind = first.kind
        v = torch.randn(first.dim, dtype=torch.float64)
        hv = first.matvec(v)
    assert len(op_module._auto_choices) == 1
    products = []
    original = op_module.DoubleBackwardHVP.matvec
    monkeypatch.setattr(op_module.DoubleBackwardHVP, "matvec", lambda self, v: products.append(1) or original(self, v))
    with HessianOperator(model, F.cross_entropy, probe, hvp="auto", dtype=torch.float64) as second:
        assert second.kind == kind and products == []  # no timing products the second time
        assert torch.allclose(second.matvec(v), hv, atol=1e-12)
