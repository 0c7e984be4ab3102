"""One JSON-serialisable Hessian report: extreme eigenvalues, trace and density,
together with everything that produced it (probe set, mode, dtype, seed, HVP kind,
iterations, seconds and HVP counts)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from ..activity import doing
from .density import slq_density
from .lanczos import LanczosResult, lanczos
from .operator import HessianOperator
from .trace import hutchinson_trace, hutchpp_trace

TRACE_METHODS = {"hutchpp": hutchpp_trace, "hutchinson": hutchinson_trace}
T = TypeVar("T")


def _measured(op: HessianOperator, part: Callable[[], T], costs: dict, name: str, label: str) -> T:
    """Run `part` (shown to progress displays as `label`) and record its wall time, HVP time and HVP
    count under `name`."""
    start, hvps, hvp_seconds = time.perf_counter(), op.n_hvp, op.hvp_seconds
    with doing(label):
        result = part()
    costs[name] = {
        "seconds": time.perf_counter() - start,
        "hvp_seconds": op.hvp_seconds - hvp_seconds,
        "n_hvp": op.n_hvp - hvps,
    }
    return result


def explicit_residuals(op: HessianOperator, eig: LanczosResult) -> list[float]:
    """`||H y - theta y||` of every returned Ritz pair (top first, then bottom), measured
    with one more HVP per pair rather than taken from Lanczos' `beta_m |s_m|` bound,
    which rounding can drive to zero in float32."""
    import torch

    values = torch.as_tensor([*eig.top_values, *eig.bottom_values], dtype=op.dtype, device=op.device)
    Y = torch.cat([eig.top_vectors, eig.bottom_vectors]).to(op.device, op.dtype)
    if len(values) == 0:
        return []
    R = op.matmat(Y.T) - Y.T * values
    return torch.linalg.vector_norm(R, dim=0).double().tolist()


def full_report(
    op: HessianOperator,
    *,
    top_k: int,
    bottom_k: int,
    trace: bool,
    trace_method: str,
    trace_hvp: int,
    density: bool,
    slq_runs: int,
    slq_steps: int,
    seed: int,
    max_iter: int | None = None,
    tol: float | None = None,
) -> dict:
    """Measure H on the operator's probe set and return a plain dict. The settings have no defaults here:
    hessian-report's are declared once, in hessian_request.HessianRequest.

    `residuals` are measured (one HVP per returned pair), `residual_bounds` are Lanczos'
    own estimates. Lanczos uses `seed`, the trace `seed + 1` and the density `seed + 2` for their
    random vectors. `seconds` is the wall time of this call and `hvp_seconds` the part
    of it spent inside HVPs (`n_hvp` of them); `costs` splits the three by part;
    `setup_seconds` is the operator's own preparation (graphs, and the timing trial of
    `hvp="auto"`).
    """
    if trace_method not in TRACE_METHODS:
        raise ValueError(f"trace_method must be one of {sorted(TRACE_METHODS)}")
    start, start_hvp, start_hvp_seconds = time.perf_counter(), op.n_hvp, op.hvp_seconds
    costs: dict[str, dict] = {}
    eig = _measured(
        op,
        lambda: lanczos(op, k_top=top_k, k_bottom=bottom_k, max_iter=max_iter, tol=tol, seed=seed),
        costs,
        "lanczos",
        f"Lanczos: top {top_k}, bottom {bottom_k} eigenvalues",
    )
    residuals = _measured(op, lambda: explicit_residuals(op, eig), costs, "residuals", "residuals")
    report: dict = {
        "top_eigenvalues": eig.top_values.tolist(),
        "bottom_eigenvalues": eig.bottom_values.tolist(),
        "residuals": residuals,
        "residual_bounds": [*eig.top_residuals.tolist(), *eig.bottom_residuals.tolist()],
        "converged": [*map(bool, eig.top_converged), *map(bool, eig.bottom_converged)],
        "iterations": eig.iterations,
        "lanczos_tol": eig.tol,
        "lanczos_n_hvp": eig.n_hvp,
        "trace": None,
        "trace_se": None,
        "trace_method": trace_method if trace else None,
        "trace_n_hvp": 0,
        "density_n_hvp": 0,
        "density_nodes": None,
        "density_weights": None,
        "density_runs": slq_runs if density else 0,
        "density_steps": slq_steps if density else 0,
    }
    if trace:
        method = TRACE_METHODS[trace_method]
        label = f"{'Hutch++' if trace_method == 'hutchpp' else 'Hutchinson'} trace: {trace_hvp} HVPs"
        estimate = _measured(op, lambda: method(op, n_hvp=trace_hvp, seed=seed + 1), costs, "trace", label)
        report.update(trace=estimate.value, trace_se=estimate.se, trace_n_hvp=estimate.n_hvp)
    if density:
        dens = _measured(
            op, lambda: slq_density(op, runs=slq_runs, steps=slq_steps, seed=seed + 2), costs, "density",
            f"SLQ density: {slq_runs} runs x {slq_steps} Lanczos steps",
        )
        report.update(
            density_nodes=dens.nodes.tolist(), density_weights=dens.weights.tolist(), density_n_hvp=dens.n_hvp,
            density_reorth=dens.reorth,
        )
    report.update(
        n_hvp=op.n_hvp - start_hvp,
        hvp_seconds=op.hvp_seconds - start_hvp_seconds,
        seconds=time.perf_counter() - start,
        costs=costs,
        setup_seconds=op.setup_seconds,
        hvp_kind=op.kind,
        dtype=str(op.dtype).removeprefix("torch."),
        mode=op.mode,
        seed=seed,
        dim=op.dim,
        param_filter=op.param_filter,
        parameters=op.names,
        loss=op.loss(),
        probe=op.probe.describe(),
    )
    return report
