"""Benchmark of the Hessian engine (sprkd_cli.hessian).

A 64-512-512-10 ReLU MLP (~300k parameters) is trained for a few epochs with Adam on
scikit-learn's digits (pixels / 16), then probed on 2 batches of 256 training examples.
Measured side by side in one run, each printed with its target and PASS/FAIL:

1. the cost of one HVP of each kind, amortised over a Lanczos run, relative to one plain
   autograd gradient of the same loss on the same probe set (target <= 2.0x);
2. the HVPs Lanczos needs for the top-5 eigenvalues to 1e-4 relative error against a
   long, tightly converged float64 Lanczos reference (target <= 40), next to deflated
   power iteration at a comparable count;
3. the fraction of a full report's wall time spent outside HVPs (top-5, bottom-1,
   Hutch++ trace, SLQ density with 10 runs x 80 steps; target <= 15%).

Timings are the best of a few interleaved repeats, since other processes may share the
machine. Run: .venv/bin/python bench/hessian_bench.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sprkd_cli.hessian import HessianOperator, ProbeSet, full_report, lanczos  # noqa: E402

THREADS = 2
REPEATS = 7
TIMED_LANCZOS_STEPS = 10
TARGET_RATIO = 2.0
TARGET_HVPS = 40
TARGET_ACCURACY = 1e-4
TARGET_OUTSIDE = 0.15


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def train_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The MLP after 5 epochs of Adam on digits (seeded)."""
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(5):
        for idx in torch.randperm(len(x)).split(64):
            optimiser.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            optimiser.step()
    for p in model.parameters():
        p.grad = None
    return model, x, y


def gradient_seconds(model: nn.Module, probe: ProbeSet, calls: int = 10) -> float:
    """Mean time of one plain autograd gradient of the probe loss (size-weighted)."""
    params = list(model.parameters())

    def gradient() -> None:
        loss = sum(w * F.cross_entropy(model(x), y) for (x, y), w in zip(probe.batches, probe.weights))
        torch.autograd.grad(loss, params)

    gradient()
    start = time.perf_counter()
    for _ in range(calls):
        gradient()
    return (time.perf_counter() - start) / calls


def hvp_seconds(op: HessianOperator, seed: int) -> float:
    """Mean time of one HVP inside a Lanczos run of TIMED_LANCZOS_STEPS steps."""
    res = lanczos(op, k_top=5, k_bottom=0, max_iter=TIMED_LANCZOS_STEPS, tol=0.0, seed=seed)
    return res.hvp_seconds / res.n_hvp


def top_ritz_values(alpha: np.ndarray, beta: np.ndarray, m: int, k: int) -> np.ndarray:
    """The k largest eigenvalues of the leading m x m block of T (descending)."""
    return scipy.linalg.eigh_tridiagonal(alpha[:m], beta[: m - 1], eigvals_only=True)[::-1][:k]


def power_iteration(op: HessianOperator, budget: int, k: int, seed: int = 0) -> np.ndarray:
    """Deflated power iteration: ``budget // k`` HVPs per eigenvalue, Rayleigh quotients."""
    generator = torch.Generator().manual_seed(seed)
    values, vectors = [], []
    for _ in range(k):
        v = torch.randn(op.dim, generator=generator).to(op.dtype)
        v /= v.norm()
        value = 0.0
        for _ in range(budget // k):
            w = op.matvec(v)
            for lam, u in zip(values, vectors):
                w -= lam * (u @ v) * u
            value = float(v @ w)
            v = w / w.norm()
        values.append(value)
        vectors.append(v)
    return np.array(values)


def power_iteration_hvps_to(
    op: HessianOperator, reference: np.ndarray, accuracy: float, cap: int, seed: int = 0
) -> int | None:
    """HVPs deflated power iteration needs until each Rayleigh quotient is within
    ``accuracy`` of its reference eigenvalue (None if more than ``cap`` in total)."""
    generator = torch.Generator().manual_seed(seed)
    values, vectors, used = [], [], 0
    for target in reference:
        v = torch.randn(op.dim, generator=generator).to(op.dtype)
        v /= v.norm()
        while True:
            w = op.matvec(v)
            used += 1
            for lam, u in zip(values, vectors):
                w -= lam * (u @ v) * u
            value = float(v @ w)
            v = w / w.norm()
            if abs(value - target) <= accuracy * abs(target):
                break
            if used >= cap:
                return None
        values.append(value)
        vectors.append(v)
    return used


def main() -> None:
    torch.set_num_threads(THREADS)
    model, x, y = train_model()
    probe = ProbeSet.draw(x, y, n_batches=2, size=256, seed=0)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: 64-512-512-10 ReLU MLP, {n_params} parameters, trained 5 epochs (Adam)")
    print(f"probe: {len(probe.batches)} batches x {probe.sizes[0]} examples; torch threads: {THREADS}")

    # 1. HVP cost relative to a gradient ------------------------------------------------
    times: dict[str, list[float]] = {"gradient": [], "double": [], "func": []}
    with (
        HessianOperator(model, F.cross_entropy, probe, hvp="double") as double,
        HessianOperator(model, F.cross_entropy, probe, hvp="func") as func,
    ):
        for r in range(REPEATS):  # short interleaved blocks, best of REPEATS
            times["gradient"].append(gradient_seconds(model, probe))
            times["double"].append(hvp_seconds(double, seed=r))
            times["func"].append(hvp_seconds(func, seed=r))
    grad_time = min(times["gradient"])
    print(f"\n[1] HVP cost (amortised over {TIMED_LANCZOS_STEPS}-step Lanczos runs, best of {REPEATS})")
    print(
        f"    plain gradient: {grad_time * 1e3:.2f} ms"
        f" (median {np.median(times['gradient']) * 1e3:.2f} ms)"
    )
    ratios = {}
    for kind in ("double", "func"):
        ratios[kind] = min(times[kind]) / grad_time
        print(
            f"    hvp={kind:6s}: {min(times[kind]) * 1e3:.2f} ms = {ratios[kind]:.2f}x gradient"
            f" (median {np.median(times[kind]) / np.median(times['gradient']):.2f}x)"
            f"  (target <= {TARGET_RATIO}x) {verdict(ratios[kind] <= TARGET_RATIO)}"
        )
    with HessianOperator(model, F.cross_entropy, probe, hvp="auto") as op:
        chosen = op.kind
    print(f"    hvp=auto chooses: {chosen} ({ratios[chosen]:.2f}x) {verdict(ratios[chosen] <= TARGET_RATIO)}")

    # 2. HVPs to top-5 at 1e-4 --------------------------------------------------------
    with HessianOperator(model, F.cross_entropy, probe, hvp="auto", dtype=torch.float64) as op:
        ref = lanczos(op, k_top=5, k_bottom=0, max_iter=300, tol=1e-12)
    reference = ref.top_values
    print("\n[2] top-5 eigenvalues to 1e-4 relative error")
    print(
        f"    reference: float64 Lanczos, {ref.iterations} steps, max relative residual "
        f"{ref.top_residuals.max() / reference[0]:.1e}: {np.array2string(reference, precision=6)}"
    )
    with HessianOperator(model, F.cross_entropy, probe, hvp="auto") as op:
        long_run = lanczos(op, k_top=5, k_bottom=0, max_iter=80, tol=0.0)
        steps = range(5, long_run.iterations + 1)
        errors = [
            np.max(np.abs(top_ritz_values(long_run.alpha, long_run.beta, m, 5) - reference) / reference)
            for m in steps
        ]
        needed = next((m for m, e in zip(steps, errors) if e <= TARGET_ACCURACY), None)
        stopped = lanczos(op, k_top=5, k_bottom=0)
        stopped_error = np.max(np.abs(stopped.top_values - reference) / reference)
        budget = needed or long_run.iterations
        power_error = np.max(np.abs(power_iteration(op, budget, 5) - reference) / reference)
        power_error_5x = np.max(np.abs(power_iteration(op, 5 * budget, 5) - reference) / reference)
        power_needed = power_iteration_hvps_to(op, reference, TARGET_ACCURACY, cap=1500)
    print(
        f"    Lanczos (float32): {needed} HVPs until all top-5 are within {TARGET_ACCURACY:g}"
        f" (Ritz values of every prefix of one run)"
        f"  (target <= {TARGET_HVPS}) {verdict(needed is not None and needed <= TARGET_HVPS)}"
    )
    stopped_ok = stopped.n_hvp <= TARGET_HVPS and stopped_error <= TARGET_ACCURACY
    print(
        f"    Lanczos stopping by itself (residual tol={stopped.tol:g}): {stopped.n_hvp} HVPs,"
        f" max relative error {stopped_error:.1e}  {verdict(stopped_ok)}"
    )
    print(
        f"    deflated power iteration at {budget} HVPs ({budget // 5} per eigenvalue):"
        f" max relative error {power_error:.1e}"
    )
    print(f"    deflated power iteration at {5 * budget} HVPs: max relative error {power_error_5x:.1e}")
    print(
        "    deflated power iteration, HVPs until each value is within 1e-4 (stopped by the"
        " reference): " + (f"{power_needed}" if power_needed is not None else "> 1500")
    )

    # 3. Full report: time outside HVPs ------------------------------------------------
    fractions, reports = [], []
    for _ in range(2):
        with HessianOperator(model, F.cross_entropy, probe, hvp="auto") as op:
            report = full_report(op, top_k=5, bottom_k=1, trace=True, trace_method="hutchpp", trace_hvp=99,
                                 density=True, slq_runs=10, slq_steps=80, seed=0)
        fractions.append(1 - report["hvp_seconds"] / report["seconds"])
        reports.append(report)
    best = int(np.argmin(fractions))
    report = reports[best]
    print("\n[3] full report (top-5, bottom-1, Hutch++ trace, SLQ 10 x 80), best of 2")
    print(
        f"    {report['seconds']:.2f} s, {report['n_hvp']} HVPs ({report['hvp_kind']}) taking"
        f" {report['hvp_seconds']:.2f} s; Lanczos {report['iterations']} steps"
    )
    print(
        f"    top-5 {np.array2string(np.array(report['top_eigenvalues']), precision=5)}, "
        f"lambda_min {report['bottom_eigenvalues'][0]:.3e}, converged {all(report['converged'])}, "
        f"trace {report['trace']:.3f} +- {report['trace_se']:.3f}"
    )
    for part, cost in report["costs"].items():
        print(
            f"      {part:8s}: {cost['seconds']:.2f} s, {cost['n_hvp']} HVPs in {cost['hvp_seconds']:.2f} s,"
            f" {cost['seconds'] - cost['hvp_seconds']:.2f} s outside HVPs"
        )
    print(
        f"    time outside HVPs: {fractions[best]:.1%} (runs: {', '.join(f'{f:.1%}' for f in fractions)})"
        f"  (target <= {TARGET_OUTSIDE:.0%}) {verdict(fractions[best] <= TARGET_OUTSIDE)}"
    )


if __name__ == "__main__":
    main()
