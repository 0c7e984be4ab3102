"""Issue 5 performance figures, side by side in one run.

1. UMAP's numba compilation: import + first fit + first inverse transform in a fresh process with an
   empty numba cache (a new machine) vs a fresh process with the warm cache (every later run).
2. One SAGE round on digits (student losses, UMAP fit on the training vectors, anchors, synthesis
   through UMAP's inverse transform, teacher labelling), after the first compile. Target < 5 s.
   The same round with --sage-synth interpolate beside it, and umap-learn's own inverse transform
   and fit on the same round's points beside ours (sprkd_cli/methods/sage/inverse.py and
   pairwise.py compute the same numbers; the bench checks that too).
3. The sage epoch overhead over kd (same teacher, student, data and batches): the median epoch with a
   round, and the median epoch of training on the pool alone, each as a ratio to the median kd epoch.

Run: .venv/bin/python bench/sage_bench.py [--skip-cold]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sprkd_cli.config import TrainConfig  # noqa: E402
from sprkd_cli.data import load_dataset  # noqa: E402
from sprkd_cli.engine import fit  # noqa: E402
from sprkd_cli.engine.seeding import seed_everything  # noqa: E402
from sprkd_cli.methods.registry import prepare_detached  # noqa: E402
from sprkd_cli.methods.sage.inverse import inverse_transform  # noqa: E402
from sprkd_cli.methods.sage.rounds import UMAP_PARAMS, fit_umap, import_umap, pooled_rows  # noqa: E402
from sprkd_cli.models import build_model  # noqa: E402

FIRST_USE = """
import time, numpy as np
t = time.perf_counter()
from sprkd_cli.methods.sage.rounds import fit_umap, import_umap
from sprkd_cli.methods.sage.inverse import inverse_transform
import_umap()
t_import = time.perf_counter() - t
x = np.random.default_rng(0).normal(size=(1293, 512)).astype(np.float32)
t = time.perf_counter(); r = fit_umap(x, 0); t_fit = time.perf_counter() - t
t = time.perf_counter(); inverse_transform(r, r.embedding_[:128]); t_inv = time.perf_counter() - t
t = time.perf_counter(); inverse_transform(r, r.embedding_[:128]); t_again = time.perf_counter() - t
print(f"{t_import:.2f} {t_fit:.2f} {t_inv:.2f} {t_again:.2f}")
"""


def first_use(cache_dir: str | None) -> list[float]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    out = subprocess.run([sys.executable, "-c", FIRST_USE], capture_output=True, text=True, env=env, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    return [float(v) for v in out.stdout.split()]


def main() -> None:
    torch.set_num_threads(1)
    if "--skip-cold" not in sys.argv:
        with tempfile.TemporaryDirectory() as empty:
            cold = first_use(empty)
        warm = first_use(None)
        print("1. UMAP first use in a new process (import / first fit / first inverse transform of 128 points, seconds;"
              " then the same inverse transform again):")
        print(f"   empty numba cache (once per machine): {cold[0]:.1f} / {cold[1]:.1f} / {cold[2]:.1f}  total "
              f"{sum(cold[:3]):.1f};"
              f" again {cold[3]:.1f}")
        print(f"   warm numba cache (every later run):   {warm[0]:.1f} / {warm[1]:.1f} / {warm[2]:.1f}  total "
              f"{sum(warm[:3]):.1f};"
              f" again {warm[3]:.1f}")

    data = load_dataset("digits", 0)
    seed_everything(0)
    teacher = build_model("mlp-large", data.input_shape, data.n_classes)
    fit(teacher, method_class_sgd(), data, TrainConfig("teacher", "sgd", "digits", "mlp-large", epochs=10))
    teacher.eval()
    student_spec = "mlp:width=512,depth=1"

    # 2. rounds, timed after a first (warm-up) round in this process
    seed_everything(1)
    student = build_model(student_spec, data.input_shape, data.n_classes)
    sage = prepare_detached("sage", data, {"sage_rounds": 10}, teachers=[teacher])
    sage.setup(student, seed=1, emit=lambda *a, **k: None)
    warmup = time.perf_counter()
    sage.run_round(student, 2, 0)
    warmup = time.perf_counter() - warmup
    records, totals = [], []
    for r in range(3):
        started = time.perf_counter()
        records.append(sage.run_round(student, 3 + r, 0))
        totals.append(time.perf_counter() - started)
    parts = ("loss_seconds", "umap_seconds", "synth_seconds", "label_seconds")
    print(f"2. one SAGE round on digits ({len(data.y_train)} training vectors of width 512, "
          f"{records[0]['anchors']} anchors, {records[0]['synthetic']} synthetic):")
    print(f"   first round in this process {warmup:.2f}s; after it, median {statistics.median(totals):.2f}s "
          f"(target < 5 s): " + ", ".join(f"{p.split('_')[0]} {statistics.median(rec[p] for rec in records):.2f}s"
                                          for p in parts))

    interpolate = prepare_detached("sage", data, {"sage_rounds": 10, "sage_synth": "interpolate"}, teachers=[teacher])
    interpolate.setup(student, seed=1, emit=lambda *a, **k: None)
    interpolate.run_round(student, 2, 0)
    started = time.perf_counter()
    record = interpolate.run_round(student, 3, 0)
    print(f"   the same round with --sage-synth interpolate: {time.perf_counter() - started:.2f}s: "
          + ", ".join(f"{p.split('_')[0]} {record[p]:.2f}s" for p in parts))

    # umap-learn's own fit and inverse transform on this round's points, beside ours
    umap = import_umap()
    points = pooled_rows(sage.real, sage.last_round["rows"])
    started = time.perf_counter()
    ours = fit_umap(points, 3)
    fit_ours = time.perf_counter() - started
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        theirs = umap.UMAP(**UMAP_PARAMS, random_state=3, n_jobs=1).fit(points)
        fit_theirs = time.perf_counter() - started
        pick = np.random.default_rng(0).integers(0, len(points), (2, records[0]["synthetic"]))
        u = np.random.default_rng(1).random((pick.shape[1], 1))
        z = (ours.embedding_[pick[0]] + u * (ours.embedding_[pick[1]] - ours.embedding_[pick[0]])).astype(np.float32)
        started = time.perf_counter()
        inverse_ours = inverse_transform(ours, z)
        inv_ours = time.perf_counter() - started
        started = time.perf_counter()
        inverse_theirs = ours.inverse_transform(z)
        inv_theirs = time.perf_counter() - started
    same_map = np.array_equal(ours.embedding_, theirs.embedding_)
    same_inverse = np.array_equal(inverse_ours, inverse_theirs)
    print(f"   umap-learn's own on these {len(points)} points: fit {fit_theirs:.2f}s vs ours {fit_ours:.2f}s "
          f"({fit_theirs / fit_ours:.1f}x), same map: {same_map}; inverse transform of {len(z)} points "
          f"{inv_theirs:.2f}s vs ours {inv_ours:.2f}s ({inv_theirs / inv_ours:.1f}x), same vectors: {same_inverse}")

    # 3. epochs: kd vs sage (rounds at the start of epochs 2-4, none after)
    cfg = TrainConfig("student", "kd", "digits", student_spec, epochs=6, seed=1)
    times = {}
    for name in ("kd", "sage"):
        seed_everything(1)
        model = build_model(student_spec, data.input_shape, data.n_classes)
        method = prepare_detached(name, data, teachers=[teacher])
        method.setup(model, seed=1, emit=lambda *a, **k: None)
        times[name] = [rec.seconds for rec in fit(model, method, data, cfg).history]
    kd = statistics.median(times["kd"])
    with_round = statistics.median(times["sage"][1:4])
    pool_only = statistics.median(times["sage"][4:] + times["sage"][:1])
    print(f"3. epochs (median s): kd {kd:.3f}; sage with a round {with_round:.3f} ({with_round / kd:.1f}x kd); "
          f"sage training on the pool alone {pool_only:.3f} ({pool_only / kd:.2f}x kd)")


def method_class_sgd():
    from sprkd_cli.methods.sgd.method import SGD

    return SGD()


if __name__ == "__main__":
    main()
