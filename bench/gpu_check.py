"""Helpers of bench/gpu_check.sh (one file, four subcommands):

  cuda                      exit 0 when torch sees a CUDA GPU, else 1
  data ROOT                 a tiny BERT teacher and student (built from configs, tests/textdata.py's) and
                            SST-2-shaped GLUE files under ROOT; nothing from the network
  measure TSV LABEL -- ARGS run `sprkd ARGS` in this process and append LABEL, seconds, peak GPU memory
                            allocated by torch (MB; torch.cuda.max_memory_allocated) and exit code to TSV
  same A.json B.json        two `runs show --json` documents: identical per-epoch metrics and test_acc?
                            prints the largest difference; exit 1 when they differ
  summary TSV WORK RUNS     the steps as a table: seconds, peak GPU memory, exit code, and the device and
                            test_acc of the run each made (WORK/LABEL.json; RUNS: `runs list --json`)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cuda() -> int:
    import torch

    return 0 if torch.cuda.is_available() else 1


def data(root: Path) -> int:
    sys.path.insert(0, str(REPO / "tests"))
    from textdata import sst2_dir, tiny_model  # the tests' generators: one definition of the toy task

    tiny_model(root / "teacher", layers=2)  # 32 wide, as the student: sage feeds it the teacher's embeddings
    tiny_model(root / "student", layers=1, seed=1)
    sst2_dir(root / "glue", n_train=1000, n_val=200)
    return 0


def measure(tsv: Path, label: str, args: list[str]) -> int:
    import torch

    from sprkd_cli.cli import app

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    try:
        app(args, prog_name="sprkd")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else float("nan")
    with tsv.open("a") as out:
        out.write(f"{label}\t{seconds:.1f}\t{peak:.0f}\t{code}\n")
    return code


def same(a: Path, b: Path) -> int:
    first, second = json.loads(a.read_text()), json.loads(b.read_text())
    diffs = [abs(x[k] - y[k]) for x, y in zip(first["metrics"], second["metrics"]) for k in x
             if k not in ("epoch", "step") and isinstance(x[k], float)]
    diffs.append(abs(first["summary"]["test_acc"] - second["summary"]["test_acc"]))
    equal = len(first["metrics"]) == len(second["metrics"]) and max(diffs) == 0.0
    print(f"{first['id']} vs {second['id']} (device {first['device']}): "
          + ("identical" if equal else f"differ, largest difference {max(diffs):.3g}") + f" over {len(diffs)} numbers")
    return 0 if equal else 1


def summary(tsv: Path, work: Path, runs_json: Path) -> int:
    try:
        runs = {r["id"]: r for r in json.loads(runs_json.read_text())}
    except (OSError, ValueError):
        runs = {}
    print(f"{'step':<28} {'seconds':>8} {'peak MB':>8} {'exit':>4}  {'device':<7} test_acc")
    for line in tsv.read_text().splitlines() if tsv.exists() else []:
        label, seconds, peak, code = line.split("\t")
        try:
            outcome = json.loads((work / f"{label}.json").read_text())
        except (OSError, ValueError):
            outcome = {}
        run = runs.get(outcome.get("run_id"), {})
        acc = outcome.get("test_acc")
        print(f"{label:<28} {seconds:>8} {peak:>8} {code:>4}  {run.get('device', '-'):<7} "
              f"{'-' if acc is None else f'{acc:.4f}'}")
    return 0


def main(argv: list[str]) -> int:
    command, rest = argv[0], argv[1:]
    if command == "cuda":
        return cuda()
    if command == "data":
        return data(Path(rest[0]))
    if command == "measure":
        return measure(Path(rest[0]), rest[1], rest[3:] if rest[2:3] == ["--"] else rest[2:])
    if command == "same":
        return same(Path(rest[0]), Path(rest[1]))
    if command == "summary":
        return summary(Path(rest[0]), Path(rest[1]), Path(rest[2]))
    raise SystemExit(f"unknown subcommand {command}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main(sys.argv[1:]))
