"""Micro-batched Hessian products (--probe-micro-batch): every product and every estimator built on them
(Lanczos, Hutch++, SLQ) equals the full-batch one, and both equal the exact Hessian of a tiny model
(torch.autograd.functional.hessian of the mean loss over the whole probe set)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sprkd_cli.hessian import HessianOperator, ProbeSet, hutchpp_trace, lanczos, slq_density
from sprkd_cli.hessian.hvp import micro_batches
from sprkd_cli.hessian.operator import default_micro_batch, micro_batch_default

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models on one thread


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 5, generator=generator), torch.randint(0, 3, (60,), generator=generator)
    probe = ProbeSet.from_indices(x, y, [torch.arange(0, 23), torch.arange(23, 40)], seed=0)  # unequal batches
    xs, ys = torch.cat([b for b, _ in probe.batches]).double(), torch.cat([b for _, b in probe.batches])
    work = copy.deepcopy(model).double()
    names = [n for n, _ in work.named_parameters()]
    shapes = [p.shape for p in work.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in work.parameters()])

    def loss(v):
        values = {n: c.view(s) for n, c, s in zip(names, v.split([s.numel() for s in shapes]), shapes)}
        return F.cross_entropy(torch.func.functional_call(work, values, (xs,)), ys)

    H = torch.autograd.functional.hessian(loss, flat)
    return model, probe, H


def test_micro_batches_weights_sum_to_the_batch_weights(setup):
    _, probe, _ = setup
    chunks, weights, seeds = micro_batches(probe.batches, probe.weights, probe.batch_seeds(), 7)
    assert [len(y) for _, y in chunks] == [7, 7, 7, 2, 7, 7, 3]
    assert sum(weights) == pytest.approx(1.0) and weights[0] == pytest.approx(7 / 40)
    assert seeds == [probe.batch_seeds()[0]] * 4 + [probe.batch_seeds()[1]] * 3


@pytest.mark.parametrize("kind", ["double", "func", "auto"])
@pytest.mark.parametrize("micro", [3, 7, 16])
def test_micro_batched_products_equal_the_exact_hessian(setup, kind, micro):
    model, probe, H = setup
    V = torch.randn(H.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with HessianOperator(model, F.cross_entropy, probe, hvp=kind, dtype=torch.float64, micro_batch=micro) as op:
        assert op.micro_batch == micro and op.kind in ("double", "func")
        assert torch.allclose(op.matmat(V), H @ V, rtol=1e-10, atol=1e-12)
        assert torch.allclose(op.matvec(V[:, 0]), H @ V[:, 0], rtol=1e-10, atol=1e-12)
        loss, gradient = op.loss(), op.gradient()
    with HessianOperator(model, F.cross_entropy, probe, hvp="double", dtype=torch.float64, micro_batch=40) as full:
        assert full.micro_batch is None  # the whole probe set fits: graphs kept
        assert loss == pytest.approx(full.loss(), rel=1e-12)
        assert torch.allclose(gradient, full.gradient(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-8), (torch.float32, 2e-4)])
def test_estimators_equal_full_batch_ones(setup, dtype, rtol):
    model, probe, H = setup
    exact = torch.linalg.eigvalsh(H).numpy()
    results = {}
    for micro in (40, 6):
        with HessianOperator(model, F.cross_entropy, probe, hvp="double", dtype=dtype, micro_batch=micro) as op:
            eig = lanczos(op, k_top=3, k_bottom=1, seed=2)
            trace = hutchpp_trace(op, n_hvp=30, seed=3)
            density = slq_density(op, runs=3, steps=10, seed=4)
            results[micro] = (eig, trace, density)
    (e1, t1, d1), (e2, t2, d2) = results[40], results[6]
    assert np.allclose(e2.top_values, e1.top_values, rtol=rtol)
    assert np.allclose(e2.bottom_values, e1.bottom_values, rtol=rtol, atol=rtol * abs(exact).max())
    assert np.allclose(e2.top_values, exact[::-1][:3], rtol=rtol)
    assert t2.value == pytest.approx(t1.value, rel=rtol)
    assert np.allclose(d2.nodes, d1.nodes, rtol=rtol, atol=rtol * abs(exact).max())
    assert np.allclose(d2.weights, d1.weights, rtol=rtol, atol=rtol)


def test_default_from_the_model_size(setup):
    model, probe, _ = setup
    assert default_micro_batch(110_000_000) == 16
    assert default_micro_batch(3_000_000) == 512
    with HessianOperator(model, F.cross_entropy, probe) as op:  # 35 parameters: the whole probe set
        assert op.micro_batch is None
    with micro_batch_default(8), HessianOperator(model, F.cross_entropy, probe) as op:
        assert op.micro_batch == 8
    with micro_batch_default(8), HessianOperator(model, F.cross_entropy, probe, micro_batch=5) as op:
        assert op.micro_batch == 5
    with pytest.raises(ValueError, match="micro_batch"):
        HessianOperator(model, F.cross_entropy, probe, micro_batch=-1)


def test_train_mode_keeps_whole_batches_by_default(setup, monkeypatch):
    model, probe, _ = setup
    monkeypatch.setattr("sprkd_cli.hessian.operator.MICRO_BATCH_BUDGET", 50)  # default 1 example in eval mode
    with HessianOperator(model, F.cross_entropy, probe, mode="eval") as op:
        assert op.micro_batch == 1
    with HessianOperator(model, F.cross_entropy, probe, mode="train") as op:
        assert op.micro_batch is None


# -- through the CLI ------------------------------------------------------------------


def test_cli_micro_batch_gives_the_same_report(db):
    from conftest import sprkd_json, train_teacher

    run = train_teacher(db, "--seed", "0")["run_id"]
    args = ["hessian-report", run, "--probe-batches", "2", "--probe-size", "30", "--top-k", "2", "--bottom-k", "1",
            "--dtype", "float64", "--hvp", "double"]
    full, micro = sprkd_json(db, *args), sprkd_json(db, *args, "--probe-micro-batch", "8")
    assert full["micro_batch"] is None and micro["micro_batch"] == 8
    np.testing.assert_allclose(micro["top_eigenvalues"] + micro["bottom_eigenvalues"],
                               full["top_eigenvalues"] + full["bottom_eigenvalues"], rtol=1e-8)
    assert micro["loss"] == pytest.approx(full["loss"], rel=1e-12)


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("DefaultCPUAllocator: can't allocate memory: you "
                                                                "tried to allocate 9 bytes")])
def test_out_of_memory_is_one_line_naming_the_flag(db, monkeypatch, error):
    from conftest import assert_user_error, sprkd, train_teacher

    run = train_teacher(db, "--seed", "0")["run_id"]

    def no_memory(self, v):
        raise error

    monkeypatch.setattr(HessianOperator, "matvec", no_memory)
    result = sprkd(db, "hessian-report", run, "--probe-size", "40", "--probe-micro-batch", "20")
    line = assert_user_error(result, "out of memory", "20 examples at once", "--probe-micro-batch 5")
    assert line.startswith("error: out of memory measuring the Hessian")


# -- the vectors the estimators hold ------------------------------------------------------


def test_slq_without_reorthogonalisation_keeps_two_vectors(setup):
    from sprkd_cli.hessian.lanczos import basis_buffers, lanczos_tridiagonal

    model, probe, _ = setup
    with HessianOperator(model, F.cross_entropy, probe, hvp="double", dtype=torch.float64) as op:
        start = torch.randn(op.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
        ring = basis_buffers(op, 20, "none", ring=True)
        a = lanczos_tridiagonal(op, start, 20, "none", buffers=ring)
        b = lanczos_tridiagonal(op, start, 20, "none")
        assert ring.rows.shape[0] == 2 and b.Q.shape[0] == 20
        assert np.array_equal(a.alpha, b.alpha) and np.array_equal(a.beta, b.beta)
        with pytest.raises(ValueError, match="ring"):
            lanczos_tridiagonal(op, start, 20, "full", buffers=ring)


def test_lanczos_steps_are_capped_by_memory(setup, monkeypatch):
    import importlib

    lz = importlib.import_module("sprkd_cli.hessian.lanczos")

    model, probe, H = setup
    with HessianOperator(model, F.cross_entropy, probe, hvp="double", dtype=torch.float64) as op:
        full = lanczos(op, k_top=4, k_bottom=0, seed=1, tol=1e-12)
        # memory for 7 float64 basis vectors of 35 entries
        monkeypatch.setattr(lz, "available_bytes", lambda device: int(7 * op.dim * 8 / lz.MEMORY_SHARE))
        assert lz.memory_steps(op) == 7
        capped = lanczos(op, k_top=4, k_bottom=0, seed=1, tol=1e-12)
    assert full.iterations > 7 and full.converged
    assert capped.iterations == 7 and not capped.converged


def test_basis_grows_as_needed(setup):
    from sprkd_cli.hessian.lanczos import basis_buffers

    model, probe, _ = setup
    with HessianOperator(model, F.cross_entropy, probe, hvp="double", dtype=torch.float64) as op:
        buffers = basis_buffers(op, 300, "full")
        assert buffers.rows.shape[0] == min(32, op.dim) and buffers.capacity == op.dim
        buffers.rows[:3] = 1.0
        buffers.grow(33)
        assert buffers.rows.shape[0] == op.dim and bool((buffers.rows[:3] == 1.0).all())


@pytest.mark.slow
def test_saddle_checks_and_hessian_every_follow_the_runs_micro_batch(db, monkeypatch):
    """--probe-micro-batch reaches the probes during training (saddle checks, --hessian-every): the same
    eigenvalues up to rounding, measured in micro-batches of the given size."""
    import sprkd_cli.hessian.operator as operator

    from conftest import open_test_store, train_teacher

    sizes = []
    build = operator.HessianOperator._build

    def spy(self):
        backend = build(self)
        sizes.append(self.micro_batch)
        return backend

    monkeypatch.setattr(operator.HessianOperator, "_build", spy)
    args = ["--track-saddles", "--saddle-every", "3", "--saddle-top-n", "2", "--hessian-every", "6", "--epochs", "2",
            "--probe-batches", "1", "--probe-size", "40"]
    runs = [train_teacher(db, *args)["run_id"], train_teacher(db, *args, "--probe-micro-batch", "16")["run_id"]]
    assert set(sizes) == {None, 16}
    store = open_test_store(db)
    checks = [[e.payload["eigenvalues"] for e in store.events(r) if e.kind == "saddle_check"] for r in runs]
    reports = [[h.result["top_eigenvalues"] for h in store.hessian_reports(r)] for r in runs]
    assert len(checks[0]) == len(checks[1]) > 0 and len(reports[0]) == len(reports[1]) > 0
    np.testing.assert_allclose(np.array(checks[1]), np.array(checks[0]), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(np.array(reports[1]), np.array(reports[0]), rtol=1e-3, atol=1e-5)
    assert store.get_run(runs[0]).config_hash == store.get_run(runs[1]).config_hash  # the same experiment
