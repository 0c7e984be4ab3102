"""What a sprkd epoch costs on the malaria images when its gate is open, beside an sgd epoch of the same
student and data, side by side in one run, with the gate's events per epoch.

    OMP_NUM_THREADS=1 .venv/bin/python bench/sprkd_malaria_cost.py --data-dir ~/data [--epochs 4]

Three malaria-student runs of the same seed, Adam at lr 1e-3: sgd; sprkd with the gate forced open at every
base step its cooldown allows (`--nhe-grad-threshold 1e9 --gate-distance 0 --gate-loss-drop 0`, no ASR so that
no teacher is needed: the approach costs nothing anyway); and sprkd with its default gate (no ASR either).
Training seconds per epoch (evaluation included, the data load not) are divided by sgd's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

KINDS = ("nhe_kept", "nhe_reverted", "nhe_skipped", "pgd_kept", "pgd_reverted")
OPEN = ["--nhe-grad-threshold", "1e9", "--gate-distance", "0", "--gate-loss-drop", "0"]


def sprkd(db: Path, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "sprkd_cli", "--db", str(db), *args, "--json"], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def events_per_epoch(db: Path, run_id: str) -> dict[int, Counter]:
    shown = sprkd(db, "runs", "show", run_id, "--events")
    events: dict[int, Counter] = {}
    for e in shown["events"]:
        if e["kind"] in KINDS:
            events.setdefault(e["epoch"], Counter())[e["kind"]] += 1
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="folder holding cell_images/")
    parser.add_argument("--epochs", type=int, default=3, help="3: with the gate open, NHE's budget of 50 attempts "
                                                              "spans them all")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "runs.db"
        common = ["--dataset", "malaria", "--data-dir", args.data_dir, "--student", "malaria-student", "--epochs",
                  str(args.epochs), "--optimizer", "adam", "--weight-decay", "0", "--seed", "0"]
        runs = {"sgd": sprkd(db, "distill", "--method", "sgd", *common),
                "sprkd, gate open": sprkd(db, "distill", "--method", "sprkd", "--no-asr", *common, *OPEN),
                "sprkd, default gate": sprkd(db, "distill", "--method", "sprkd", "--no-asr", *common)}
        base = runs["sgd"]["seconds"] / runs["sgd"]["epochs"]
        print(f"{'run':<20}{'s/epoch':>9}{'x sgd':>7}  events per epoch ({', '.join(KINDS)})")
        for name, run in runs.items():
            seconds = run["seconds"] / run["epochs"]
            events = events_per_epoch(db, run["run_id"])
            counts = "; ".join(f"{e}: " + " ".join(str(events[e].get(k, 0)) for k in KINDS) for e in sorted(events))
            print(f"{name:<20}{seconds:>9.2f}{seconds / base:>6.2f}x  {counts or 'none'}")
        ratio = runs["sprkd, gate open"]["seconds"] / runs["sgd"]["seconds"]
        print(f"sprkd with the gate open: {ratio:.2f}x the sgd epoch (goal <= 2x)")


if __name__ == "__main__":
    main()
