"""What the recipes share: sprkd run as a user would, each command printed before it runs."""

from __future__ import annotations

import shlex
import subprocess
import sys


def sprkd(db: str | None, *args: str, capture: bool = False) -> str:
    """Run `sprkd [--db DB] ARGS`; its stdout when `capture`; a failing command ends the recipe with its code."""
    argv = [sys.executable, "-m", "sprkd_cli", *(["--db", db] if db else []), *args]
    print("$ sprkd " + " ".join(shlex.quote(a) for a in argv[3:]), flush=True)
    done = subprocess.run(argv, stdout=subprocess.PIPE if capture else None, text=True)
    if done.returncode != 0:
        sys.exit(done.returncode)
    return done.stdout or ""


def claims_and_mcnemar(db: str | None, dataset: str, arms: list[str], student: str, metrics: list[str],
                       compared: dict, a: str, b: str) -> None:
    """One `stats` call on every metric (one table each; Holm over every test of the call), McNemar's exact test
    on the first seed that arms `a` and `b` share in `compared` (compare's --json), and last `sprkd report`: the
    page of the whole comparison."""
    sprkd(db, "stats", "--dataset", dataset, "--arms", ",".join(arms), "--student", student,
          *(arg for metric in metrics for arg in ("--metric", metric)))
    runs = {row["arm"]: dict(zip(row["seeds"], row["run_ids"])) for row in compared["arms"]}
    shared = sorted(set(runs[a]) & set(runs[b]))
    if shared:
        sprkd(db, "stats", "--mcnemar", runs[a][shared[0]], runs[b][shared[0]])
    sprkd(db, "report", "--dataset", dataset, "--arms", ",".join(arms), "--student", student)
