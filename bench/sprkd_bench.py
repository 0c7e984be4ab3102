"""Issue 4 performance target: with the defaults, a sprkd student epoch on digits costs at most 1.5x an
sgd epoch of the same student (the approach and the Hessian probes of NHE/PGD are the extra).

A teacher with tracked saddles (mlp:width=128,depth=1, the student's layout) is trained first. Then
whole default runs (30 epochs) of the sgd and the sprkd student alternate, ROUNDS times each; the cost
of an epoch is a run's wall time (sprkd's setup included: snapshot loading, ASR, injection, probe
draw) divided by its epochs, and the medians over the rounds are compared. A second line shows what
an NHE+PGD event costs, by opening the gradient gate on every step (not a default; for reference).

Run: .venv/bin/python bench/sprkd_bench.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sprkd_cli.config import TrainConfig  # noqa: E402
from sprkd_cli.engine import fit  # noqa: E402
from sprkd_cli.methods import method_options  # noqa: E402
from sprkd_cli.services.training import prepare, train_run  # noqa: E402
from sprkd_cli.store import open_store  # noqa: E402

ROUNDS = 5
STUDENT = "mlp-small"
TEACHER = "mlp:width=128,depth=1"


def tracked_teacher(store) -> str:
    cfg = TrainConfig(kind="teacher", method="sgd", dataset="digits", model=TEACHER, epochs=3, track_saddles=True,
                      saddle_every=5, saddle_top_n=16)
    outcome = train_run(cfg, store)
    print(f"teacher {TEACHER}: {outcome['events']['saddles']} saddle candidates kept in {outcome['wall_seconds']:.1f}s "
          f"(saddle check every 5 steps, top 16)")
    return outcome["run_id"]


def one_run(store, method: str, teacher: str, options: dict) -> tuple[float, int, Counter]:
    """Seconds per epoch of a whole default run, setup included, and the run's event counts."""
    cfg = TrainConfig(kind="student", method=method, dataset="digits", model=STUDENT, seed=0,
                      teacher_ids=[teacher] if method == "sprkd" else [],
                      method_options=method_options(method, options))
    events: Counter = Counter()
    started = time.perf_counter()
    data, model, trainer = prepare(cfg, store, lambda kind, payload=None, **where: events.update([kind]))
    fit(model, trainer, data, cfg)
    return (time.perf_counter() - started) / cfg.epochs, cfg.epochs, events


def side_by_side(store, teacher: str, options: dict) -> tuple[float, float, Counter]:
    times: dict[str, list[float]] = {"sgd": [], "sprkd": []}
    events: Counter = Counter()
    for _ in range(ROUNDS):
        times["sgd"].append(one_run(store, "sgd", teacher, {})[0])
        seconds, _, events = one_run(store, "sprkd", teacher, options)
        times["sprkd"].append(seconds)
    return statistics.median(times["sgd"]), statistics.median(times["sprkd"]), events


def main() -> int:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(str(Path(tmp) / "bench.db"))
        teacher = tracked_teacher(store)
        print(f"student {STUDENT} on digits, 30 epochs, torch threads 1, median of {ROUNDS} runs per arm")
        sgd, sprkd, events = side_by_side(store, teacher, {})
        ratio = sprkd / sgd
        print(f"  defaults: sgd {sgd * 1e3:.2f} ms/epoch, sprkd {sprkd * 1e3:.2f} ms/epoch, ratio {ratio:.3f}x "
              f"(target <= 1.5x) {'PASS' if ratio <= 1.5 else 'FAIL'}; sprkd events per run: {dict(events)}")
        sgd_open, sprkd_open, events_open = side_by_side(store, teacher, {"nhe_grad_threshold": 1e9})
        print(f"  gate always open (--nhe-grad-threshold 1e9, reference only): sgd {sgd_open * 1e3:.2f} ms/epoch, "
              f"sprkd {sprkd_open * 1e3:.2f} ms/epoch, ratio {sprkd_open / sgd_open:.3f}x; events per run: "
              f"{dict(events_open)}")
    return 0 if ratio <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
