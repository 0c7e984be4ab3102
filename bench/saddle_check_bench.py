"""What one saddle check of `train-teacher --track-saddles` costs, as a ratio to one training epoch of the
same model, side by side in one process: an MLP on digits (the demo's teacher) and malaria-teacher.

A check is docs/methods.md's phase 1: the probe loss and the `--saddle-top-n` eigenvalues of largest magnitude of
the probe Hessian (2 batches of 256, Lanczos through double-backward HVPs). An epoch is AdamW over the
training set in batches of 64, forward, backward and step. malaria-teacher is timed on random 3x32x32
images, as many as the real training split holds (19,290 of 27,558 cell images): the cost is the model's,
not the pixels'; with `--data-dir DIR` on the real images (DIR/cell_images, e.g. unpacked from the shared
malaria-32px.tar.gz). Each model is checked after the REPEATS epochs that time it (on the random images
with random labels, malaria-teacher's Hessian is then nearly of rank one: its check tests Lanczos'
stopping rule when the rest of the space is one eigenspace).

Run: .venv/bin/python bench/saddle_check_bench.py [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sprkd_cli.data import load_dataset  # noqa: E402
from sprkd_cli.hessian import ProbeSet  # noqa: E402
from sprkd_cli.methods.sprkd.saddles import measure_saddle  # noqa: E402
from sprkd_cli.models import build_model  # noqa: E402

REPEATS = 3


def epoch_seconds(model, x, y, batch_size: int = 64) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    started = time.perf_counter()
    for start in range(0, len(x), batch_size):
        loss = F.cross_entropy(model(x[start:start + batch_size]), y[start:start + batch_size])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def check_seconds(model, x, y, top_n: int) -> tuple[float, int]:
    probe = ProbeSet.draw(x, y, n_batches=2, size=256, seed=0)
    started = time.perf_counter()
    _, _, iterations = measure_saddle(model, probe, top_n)
    return time.perf_counter() - started, iterations


def row(name: str, model, x, y, top_n: int) -> None:
    epochs = [epoch_seconds(model, x, y) for _ in range(REPEATS)]
    checks = [check_seconds(model, x, y, top_n) for _ in range(REPEATS)]
    epoch, check = statistics.median(epochs), statistics.median(c for c, _ in checks)
    params = sum(p.numel() for p in model.parameters())
    print(f"{name:<40} {params:>9,} {len(x):>7,} {epoch:>9.3f} {check:>9.3f} {checks[0][1]:>6} {check / epoch:>8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="the real malaria images (DIR/cell_images) instead of random ones")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; one thread")
    print(f"{'model (top-n)':<40} {'params':>9} {'train':>7} {'epoch s':>9} {'check s':>9} {'iters':>6} "
          f"{'check/epoch':>9}")
    digits = load_dataset("digits")
    for top_n in (4, 16):
        model = build_model("mlp:width=128,depth=1", digits.input_shape, digits.n_classes)
        row(f"mlp:width=128,depth=1 digits ({top_n})", model, digits.x_train, digits.y_train, top_n)
    x = torch.rand(19_290, 3, 32, 32)
    y = torch.randint(0, 2, (19_290,))
    what = "random"
    if args.data_dir:
        malaria = load_dataset("malaria", 0, data_dir=args.data_dir, image_size=32)
        x, y, what = malaria.x_train, malaria.y_train, "real"
    for top_n in (4, 16):
        model = build_model("malaria-teacher", (3, 32, 32), 2)
        row(f"malaria-teacher 32px {what} ({top_n})", model, x, y, top_n)
    print(f"load average after {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
