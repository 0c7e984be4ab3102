"""Two of the CPU cost ratios, each measured against its baseline in one run, by wall time and by this
process's CPU time (time.process_time: less disturbed when other work shares the machine), on one thread:

1. a kd epoch (cached teacher targets) vs an sgd epoch: fit() for one epoch of an mlp-small student on
   digits, the two arms alternating, median of ROUNDS epochs each. Goal <= 1.1x. Beside it (1b), the same
   for an mlp-large student, where a step's arithmetic outweighs the KD loss's fixed cost.
2. one Hessian-vector product (double backward, the kind hvp="auto" picks here) vs one gradient of the
   same probe loss: bench/hessian_bench.py's 64-512-512-10 MLP trained 5 epochs, 2 x 256 probe examples;
   the two alternate, median of ROUNDS blocks of CALLS each. Goal <= 1.7x.

Run: python bench/cpu_goals_bench.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sprkd_cli.config import TrainConfig  # noqa: E402
from sprkd_cli.data import load_dataset  # noqa: E402
from sprkd_cli.engine import fit  # noqa: E402
from sprkd_cli.engine.seeding import seed_everything  # noqa: E402
from sprkd_cli.hessian import HessianOperator, ProbeSet  # noqa: E402
from sprkd_cli.methods.registry import prepare_detached  # noqa: E402
from sprkd_cli.methods.sgd.method import SGD  # noqa: E402
from sprkd_cli.models import build_model  # noqa: E402

ROUNDS = 9
CALLS = 5


def clocks(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def ratio_line(name: str, a: list[tuple[float, float]], b: list[tuple[float, float]], goal: float, unit: str) -> None:
    wall = statistics.median(w for w, _ in a) / statistics.median(w for w, _ in b)
    cpu = statistics.median(c for _, c in a) / statistics.median(c for _, c in b)
    print(f"{name}: wall {wall:.2f}x, CPU time {cpu:.2f}x (medians {statistics.median(c for _, c in a) * 1e3:.1f} vs "
          f"{statistics.median(c for _, c in b) * 1e3:.1f} ms CPU per {unit}); goal <= {goal}x: "
          f"{'met' if cpu <= goal else 'missed'} (by CPU time)")


def kd_vs_sgd(student: str = "mlp-small", label: str = "1.") -> None:
    data = load_dataset("digits", 0)
    seed_everything(1)
    teacher = build_model("mlp:width=128,depth=1", data.input_shape, data.n_classes).eval()
    cfg = TrainConfig(kind="student", method="kd", dataset="digits", model=student, epochs=1)
    methods = {"sgd": SGD(), "kd": prepare_detached("kd", data, teachers=[teacher])}
    models = {}
    for name in methods:
        seed_everything(0)
        models[name] = build_model(student, data.input_shape, data.n_classes)
    times: dict[str, list] = {"sgd": [], "kd": []}
    for _ in range(ROUNDS + 1):
        for name, method in methods.items():
            times[name].append(clocks(lambda: fit(models[name], method, data, cfg)))
    ratio_line(f"{label} kd epoch vs sgd epoch ({student}, digits, evaluation included)", times["kd"][1:],
               times["sgd"][1:], 1.1, "epoch")


def hvp_vs_gradient() -> None:
    from hessian_bench import train_model

    model, x, y = train_model()
    probe = ProbeSet.draw(x, y, n_batches=2, size=256, seed=0)
    params = list(model.parameters())

    def gradient() -> None:
        for _ in range(CALLS):
            loss = sum(w * F.cross_entropy(model(xb), yb) for (xb, yb), w in zip(probe.batches, probe.weights))
            torch.autograd.grad(loss, params)

    with HessianOperator(model, F.cross_entropy, probe, hvp="double") as op:
        v = torch.randn(op.dim, generator=torch.Generator().manual_seed(0))

        def hvp() -> None:
            for _ in range(CALLS):
                op.matvec(v)

        times: dict[str, list] = {"gradient": [], "hvp": []}
        gradient(), hvp()
        for _ in range(ROUNDS):
            times["gradient"].append(clocks(gradient))
            times["hvp"].append(clocks(hvp))
    ratio_line("2. HVP (double backward, graphs kept) vs gradient (300k-parameter MLP, 512 probe examples)",
               times["hvp"], times["gradient"], 1.7, f"{CALLS} products")


def main() -> None:
    torch.set_num_threads(1)
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} cores; torch threads 1")
    kd_vs_sgd()
    kd_vs_sgd("mlp-large", "1b.")
    hvp_vs_gradient()
    print(f"load average after {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
