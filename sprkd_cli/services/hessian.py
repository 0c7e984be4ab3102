"""Hessian reports of stored runs: measure on the run's probe set, store, plot, compare."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..errors import UserError
from ..hessian_request import HessianRequest
from ..store import Store
from ..store.artifacts import join, location


def measure(model, data, request: HessianRequest, run_seed: int) -> dict:
    """One report on `model` over the probe set of the run (drawn from `run_seed` unless overridden)."""
    import torch
    import torch.nn.functional as F

    from ..hessian import HessianOperator, HVPUnavailableError, ProbeSet, full_report, out_of_memory_message

    probe_seed = run_seed if request.probe_seed is None else request.probe_seed
    probe = ProbeSet.draw(data.x_train, data.y_train, n_batches=request.probe_batches, size=request.probe_size,
                          seed=probe_seed)
    dtype = torch.float64 if request.dtype == "float64" else torch.float32
    try:
        op = HessianOperator(model, F.cross_entropy, probe, mode=request.mode, hvp=request.hvp, dtype=dtype,
                             param_filter=request.layer, micro_batch=request.micro_batch or None)
        with out_of_memory_message(lambda: op.micro_batch or sum(probe.sizes)), op:
            report = full_report(op, top_k=request.top_k, bottom_k=request.bottom_k, trace=request.trace,
                                 trace_method=request.trace_method, trace_hvp=request.trace_hvp,
                                 density=request.density, slq_runs=request.slq_runs, slq_steps=request.slq_steps,
                                 seed=request.seed)
            return report | {"micro_batch": op.micro_batch}
    except HVPUnavailableError as exc:
        raise UserError(f"--hvp {request.hvp}: {exc}; use --hvp auto or double") from None
    except ValueError as exc:  # e.g. a --layer that matches no parameter
        raise UserError(str(exc)) from None


def report_run(store: Store, ref: str, request: HessianRequest) -> dict:
    """Measure the run's model (its final weights, or its best-val ones: request.weights), store the report
    and (with a density) write its PNG."""
    from ..config import TrainConfig
    from .lifecycle import read_run
    from .loading import BEST_CHECKPOINT, FINAL_CHECKPOINT, load_config_data, load_run_model

    run = read_run(store, ref)
    if run.status != "finished":
        raise UserError(f"run {run.id} is {run.status}; a Hessian report needs a finished run's model")
    cfg = TrainConfig.from_dict(run.config)
    request = request.for_run(cfg)
    request.validate()
    data = load_config_data(cfg, store)
    model = load_run_model(run, BEST_CHECKPOINT if request.weights == "best-val" else FINAL_CHECKPOINT)
    result = measure(model, data, request, run.seed)
    report_id = store.add_hessian_report(run.id, asdict(request), result)
    plot = None
    if request.density:
        plot = density_plot({density_label(run, asdict(request)): result},
                            join(location(run.artifact_dir), f"hessian-{report_id}.png"),
                            title=f"Hessian eigenvalue density, run {run.id} ({run.model})")
    return {"report_id": report_id, "run_id": run.id, "request": asdict(request), **result,
            "plot": str(plot) if plot else None}


NEGATIVE_RTOL = 1e-4
"""Quadrature nodes above −NEGATIVE_RTOL × the spectrum's scale (its largest |node|) are zero, not negative:
SLQ puts nodes at about ±1e-5 around the bulk of near-zero eigenvalues."""


def negative_mass(result: dict) -> float | None:
    """Share of the SLQ density on negative eigenvalues: mean over the SLQ runs of Σ weights at nodes below
    −tol, tol = NEGATIVE_RTOL × the largest |node| of the report."""
    if not result.get("density_nodes"):
        return None
    import numpy as np

    nodes, weights = np.asarray(result["density_nodes"]), np.asarray(result["density_weights"])
    live = weights > 0
    scale = float(np.abs(nodes[live]).max()) if live.any() else 0.0
    return float((weights * (nodes < -NEGATIVE_RTOL * scale)).sum(axis=1).mean())


def compare_runs(store: Store, refs: list[str]) -> dict:
    """The latest stored report of each run side by side, and their densities in one figure."""
    from ..arms import shown_method

    rows, densities = [], {}
    for ref in refs:
        run = store.get_run(ref)
        reports = store.hessian_reports(run.id)
        if not reports:
            raise UserError(f"run {run.id} has no Hessian report; make one: sprkd hessian-report {run.id} --trace "
                            "--density")
        report = next((r for r in reversed(reports) if r.step is None), reports[-1])
        result = report.result
        rows.append({"run_id": run.id, "method": shown_method(run), "kind": run.kind, "report_id": report.id,
                     "step": report.step, "top_eigenvalue": (result["top_eigenvalues"] or [None])[0],
                     "bottom_eigenvalue": (result["bottom_eigenvalues"] or [None])[0], "trace": result["trace"],
                     "trace_se": result["trace_se"], "negative_mass": negative_mass(result)})
        if result.get("density_nodes"):
            densities[density_label(run, report.config)] = result
    plot = None
    if densities:
        plot = density_plot(densities, store.artifact_path("hessian",
            f"compare-{'-'.join(r['run_id'] for r in rows)}.png"),
                            title="Hessian eigenvalue densities")
    return {"runs": rows, "plot": str(plot) if plot else None}


PLOT_FLOOR = 1e-10


def density_label(run, request: dict) -> str:
    """A density's legend entry: the run, teacher or its method, the weights and the probe set measured."""
    from ..arms import shown_method

    seed = run.seed if request.get("probe_seed") is None else request["probe_seed"]
    probe = f"probe {request.get('probe_batches')}x{request.get('probe_size')} seed {seed}, {request.get('mode')} mode"
    layer = f", layer {request['layer']}" if request.get("layer") else ""
    return f"{run.id} ({shown_method(run)}; {request.get('weights')} weights; {probe}{layer})"


def density_plot(results: dict[str, dict], out: "Path | str", title: str) -> "Path | str":
    """The Gaussian-smoothed SLQ density of each result, log-scale y, on one axis."""
    import numpy as np

    from ..hessian import DensityEstimate, smooth_density
    from .figures import save_png, subplots

    fig, ax = subplots(figsize=(7, 4.5))
    for label, result in results.items():
        estimate = DensityEstimate(nodes=np.asarray(result["density_nodes"]),
                                   weights=np.asarray(result["density_weights"]),
                                   dim=result["dim"], n_hvp=result["density_n_hvp"], seed=result["seed"], seconds=0.0)
        grid, density = smooth_density(estimate)
        # below PLOT_FLOOR × the peak the Gaussian tails are round-off, not data: left out, not drawn as a floor
        shown = np.where(density > PLOT_FLOOR * density.max(), density, np.nan)
        ax.semilogy(grid, shown, label=label)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel(f"density (log scale; below {PLOT_FLOOR:g} × the peak not drawn)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_png(fig, out)
