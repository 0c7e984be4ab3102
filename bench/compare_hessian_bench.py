"""What `compare --hessian` adds per run, as a ratio to the run's own training time, on digits.

A comparison of sgd and kd (mlp:width=128,depth=1 students, 40 epochs, 3 seeds) is trained first; the
same comparison with --hessian then reuses every run and only makes each run's Hessian report (top 5
and bottom 1 eigenvalues, Hutch++ trace, on the run's probe set and best-val weights). A third call
shows that stored reports are reused.

Run: .venv/bin/python bench/compare_hessian_bench.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sprkd(db: Path, *args: str) -> tuple[dict, float]:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "sprkd_cli", "--db", str(db), *args, "--json"], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout), time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "runs.db"
        sprkd(db, "train-teacher", "--dataset", "digits", "--model", "mlp:width=128,depth=2", "--epochs", "30")
        compare = ["compare", "--dataset", "digits", "--methods", "sgd,kd", "--student", "mlp:width=128,depth=1",
                   "--seeds", "0-2", "--epochs", "40"]
        trained, _ = sprkd(db, *compare)
        runs = [rid for row in trained["arms"] for rid in row["run_ids"]]
        training = statistics.mean(sprkd(db, "runs", "show", rid)[0]["summary"]["wall_seconds"] for rid in runs)
        reused, reused_seconds = sprkd(db, *compare)
        with_reports, report_seconds = sprkd(db, *compare, "--hessian")
        again, again_seconds = sprkd(db, *compare, "--hessian")
        made = len(with_reports["hessian"]["made"])
        per_run = (report_seconds - reused_seconds) / max(made, 1)
        print(f"{len(runs)} runs, mean training time {training:.2f} s")
        print(f"compare, every run reused: {reused_seconds:.2f} s; with --hessian ({made} reports made): "
              f"{report_seconds:.2f} s; again ({len(again['hessian']['reused'])} reused): {again_seconds:.2f} s")
        print(f"--hessian per run: {per_run:.2f} s = {per_run / training:.2f}x the run's training time")


if __name__ == "__main__":
    main()
