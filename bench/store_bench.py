"""Issue 7 performance targets for the store, measured in one run.

1. Recording an epoch's metrics (one transaction: 5 rows and the heartbeat, as a run writes it) vs a digits epoch of the
   default student and teacher, in sprkd's loop. Target < 2% of an epoch. Also the cost of saving the
   training state for --resume (--checkpoint-every 0 saves it every epoch; the default every 60 s).
2. `sprkd runs list` over a store of 10,000 runs, as a user runs it (a new process): the default view
   (newest 50) and every run as JSON. Target < 1 s.
3. `sprkd stats` over 1,000 finished student runs (2 methods x 500 seeds, 30 epochs of metrics each).
   Target < 1 s.

Run: .venv/bin/python bench/store_bench.py
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sprkd_cli.config import TrainConfig  # noqa: E402
from sprkd_cli.data import load_dataset  # noqa: E402
from sprkd_cli.engine import fit  # noqa: E402
from sprkd_cli.engine.seeding import seed_everything  # noqa: E402
from sprkd_cli.engine.state import save_state  # noqa: E402
from sprkd_cli.methods.sgd.method import SGD  # noqa: E402
from sprkd_cli.models import build_model  # noqa: E402
from sprkd_cli.services.lifecycle import this_process  # noqa: E402
from sprkd_cli.store import Metric, Run, open_store, utcnow  # noqa: E402

ROUNDS = 15
ROWS = [(18, 1, s, n, 0.5) for s, n in (("train", "loss"), ("val", "loss"), ("val", "acc"), ("test", "loss"),
                                           ("test", "acc"))]


def recording_share(data, tmp: Path) -> bool:
    store = open_store(str(tmp / "record.db"))
    ok = True
    for model_name in ("mlp-small", "mlp-large"):
        cfg = TrainConfig(kind="student", method="sgd", dataset="digits", model=model_name, epochs=1)
        run = store.create_run(kind="student", method="sgd", dataset="digits", model=model_name, seed=0,
                               config=cfg.to_dict(), config_hash=cfg.config_hash(), teacher_ids=[], provenance={},
                               device="cpu", process=this_process())
        seed_everything(0)
        model = build_model(model_name, data.input_shape, data.n_classes)
        epochs, records, saves = [], [], []
        captured = {}

        def checkpoint(epoch, capture):
            captured["state"] = capture()

        orm = []
        with store.epoch_writer(run.id) as write_epoch:  # what a training run uses
            for _ in range(ROUNDS):
                started = time.perf_counter()
                fit(model, SGD(), data, cfg, checkpoint=checkpoint)
                epochs.append(time.perf_counter() - started)
                started = time.perf_counter()
                write_epoch(ROWS)
                records.append(time.perf_counter() - started)
                fit(model, SGD(), data, cfg)
                started = time.perf_counter()
                store.add_metrics(run.id, ROWS)  # the same rows through SQLAlchemy's ORM-free Core
                orm.append(time.perf_counter() - started)
            started = time.perf_counter()
            save_state(captured["state"], tmp / "state.safetensors")
            saves.append(time.perf_counter() - started)
        epoch, record, save, core = (statistics.median(t) for t in (epochs, records, saves, orm))
        share = record / epoch
        ok &= share < 0.02
        print(f"  {model_name:9s} epoch {epoch * 1e3:6.1f} ms; metrics {record * 1e3:.2f} ms = {100 * share:.1f}% "
              f"(target < 2%) {'PASS' if share < 0.02 else 'FAIL'} [through SQLAlchemy Core: {core * 1e3:.2f} ms]; "
              f"training state "
              f"{(tmp / 'state.safetensors').stat().st_size / 1e3:.0f} kB saved in {save * 1e3:.2f} ms "
              f"= {100 * save / epoch:.1f}% (only with --checkpoint-every 0)")
    return ok


def fill(db: Path, n_runs: int, n_students: int, epochs: int = 30) -> None:
    """n_runs runs of realistic size (full config, summary, versions); the first n_students are finished
    kd/sgd students on digits with `epochs` epochs of metrics; the rest teachers of other datasets."""
    store = open_store(str(db))
    rng = random.Random(0)
    versions = {"python": "3.11", "torch": torch.__version__, "sprkd": "0.1.0"}
    now = utcnow()
    runs, metrics = [], []
    for i in range(n_runs):
        student = i < n_students
        method, seed = (("kd", "sgd")[i % 2], i // 2) if student else ("sgd", i)
        cfg = TrainConfig(kind="student" if student else "teacher", method=method,
                          dataset="digits" if student else "synthetic:n=500", model="mlp-small", seed=seed)
        best = rng.randint(10, epochs)
        runs.append(dict(id=f"{i:012x}", kind=cfg.kind, method=method, dataset=cfg.dataset, model=cfg.model,
                         seed=seed, status="finished", config=cfg.to_dict(), config_hash=cfg.config_hash(),
                         teacher_ids=["t" * 12] if student else [], git_commit="0" * 40, git_dirty=False,
                         versions=versions, device="cpu", n_params=2410, host="bench", pid=1, created_at=now,
                         started_at=now, ended_at=now, heartbeat_at=now, error=None,
                         summary={"best_epoch": best, "epochs": epochs, "test_acc": 0.9, "best_val_acc": 0.9},
                         artifact_dir=f"/runs/{i:012x}"))
        if student:
            for epoch in range(1, epochs + 1):
                for split, name in ((s, n) for s, n in ((r[2], r[3]) for r in ROWS)):
                    metrics.append(dict(run_id=f"{i:012x}", step=epoch * 18, epoch=epoch, split=split, name=name,
                                        value=rng.random()))
    with store.engine.begin() as conn:
        conn.execute(Run.__table__.insert(), runs)
        conn.execute(Metric.__table__.insert(), metrics)


def command_seconds(db: Path, *args: str, repeats: int = 3) -> tuple[float, int]:
    """Median wall time of `sprkd --db DB ARGS` in a new process, and its stdout's length."""
    argv = [sys.executable, "-m", "sprkd_cli", "--db", str(db), *args]
    times, size = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, COLUMNS="200"))
        times.append(time.perf_counter() - started)
        assert done.returncode == 0, done.stderr
        size = len(done.stdout)
    return statistics.median(times), size


def main() -> int:
    torch.set_num_threads(1)
    data = load_dataset("digits")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"1. recording an epoch vs a digits epoch ({len(data.y_train)} examples, batch 64, 1 thread, "
              f"median of {ROUNDS})")
        ok = recording_share(data, tmp)
        db = tmp / "big.db"
        started = time.perf_counter()
        fill(db, 10_000, 1_000)
        print(f"   (store of 10,000 runs, 150,000 metric rows, written in {time.perf_counter() - started:.1f} s)")
        help_s, _ = command_seconds(db, "--help")
        print(f"   a new process: `sprkd --help` takes {help_s:.2f} s (included in what follows)")
        checks = [("2. runs list (newest 50, table)", ("runs", "list")),
                  ("   runs list --limit 0 --json (10,000 runs)", ("runs", "list", "--limit", "0", "--json")),
                  ("   runs list --status crashed (none among 10,000)", ("runs", "list", "--status", "crashed")),
                  ("3. stats --methods kd,sgd over 1,000 runs", ("stats", "--methods", "kd,sgd", "--dataset", "digits",
                                                                 "--json"))]
        for label, args in checks:
            seconds, size = command_seconds(db, *args)
            ok &= seconds < 1.0
            print(f"{label}: {seconds:.2f} s (target < 1 s) {'PASS' if seconds < 1.0 else 'FAIL'}; {size:,} bytes out")
        pairs = json.loads(subprocess.run([sys.executable, "-m", "sprkd_cli", "--db", str(db), "stats", "--methods",
                                           "kd,sgd", "--dataset", "digits", "--json"], capture_output=True,
                                          text=True).stdout)
        print(f"   (stats compared n_a={pairs[0]['n_a']}, n_b={pairs[0]['n_b']} seeds)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
