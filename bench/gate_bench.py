"""sprkd's NHE and PGD with the default gate on digits: how many events of each kind a run has at 10
and at 40 epochs, and what a sprkd epoch costs beside an sgd epoch of the same student, side by side.

    .venv/bin/python bench/gate_bench.py [--lr 1e-3] [--epochs 10,40]

The teacher is the demo's (mlp:width=128,depth=1 tracked every 5 steps with 16 eigenvalues); the
students are mlp:width=128,depth=1 with every other option at its default.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

KINDS = ("asr_fallback", "nhe_kept", "nhe_halved", "nhe_reverted", "nhe_skipped", "pgd_kept", "pgd_reverted")


def sprkd(db: Path, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "sprkd_cli", "--db", str(db), *args, "--json"], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lr", default="1e-3")
    parser.add_argument("--epochs", default="10,40")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "runs.db"
        teacher = sprkd(db, "train-teacher", "--dataset", "digits", "--model", "mlp:width=128,depth=1", "--epochs",
                        "30", "--track-saddles", "--saddle-every", "5", "--saddle-top-n", "16")
        student = ["--dataset", "digits", "--student", "mlp:width=128,depth=1", "--lr", args.lr]
        print(f"teacher {teacher['run_id']}: {teacher['events']['saddles']} saddle candidates kept")
        print(f"{'epochs':>6} {'test_acc':>8} " + " ".join(f"{k:>12}" for k in KINDS)
              + f" {'sprkd s/epoch':>13} {'sgd s/epoch':>11} {'ratio':>6}")
        for epochs in args.epochs.split(","):
            run = sprkd(db, "distill", "--method", "sprkd", "--teacher", teacher["run_id"], *student,
                        "--epochs", epochs)
            base = sprkd(db, "distill", "--method", "sgd", *student, "--epochs", epochs)
            per_epoch = run["wall_seconds"] / int(epochs)
            base_epoch = base["wall_seconds"] / int(epochs)
            counts = run["events"]
            print(f"{epochs:>6} {run['test_acc']:>8.4f} " + " ".join(f"{counts.get(k, 0):>12}" for k in KINDS)
                  + f" {per_epoch:>13.3f} {base_epoch:>11.3f} {per_epoch / base_epoch:>5.1f}x")
            first = [e for e in ("nhe_kept", "nhe_reverted", "nhe_skipped", "pgd_kept", "pgd_reverted")
                     if counts.get(e)]
            if not first:
                print(f"        no NHE or PGD event in {epochs} epochs")


if __name__ == "__main__":
    main()
