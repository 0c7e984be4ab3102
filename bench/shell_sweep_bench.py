"""A seed sweep from the shell: N `sprkd distill` processes started at once vs the same N one after another.

The runs: kd on digits, an mlp-small student, --epochs 5 (seeds 0..N-1), against one teacher trained first.
Three passes, in one run of this script, on the same store and data:

  sequential   each run alone, one after another (the lone runs), default threads
  concurrent   all N started at once, default threads (each counts the sprkd processes training when it
               starts and takes its share of the cores) and default training slots (at most one run per
               core trains at a time; the others wait for a slot, outside their training seconds)
  forced       (with --forced) all N started at once, each with --threads <cores> (what every command did
               before: every process takes every core)

Printed: each run's training seconds (the run's summary `seconds`: its epochs, evaluation included) and
its thread count and the seconds it waited for a training slot (`slot_wait_seconds`; the runs' slot
files are the bench's own, under its temporary folder, so other work's sprkd runs do not hold them),
each pass's wall time, and the two goals: the concurrent wall time no more than the
sequential one, and every concurrent run's training seconds within 1.5x of its lone run's. The load
average before and after is printed too (the machine may be shared).

`--load K` keeps K other processes busy (a pure-Python loop each, started before the teacher and stopped
after the last pass), so that every pass, the lone runs included, shares the machine with other work, as
a sweep on a shared machine does. The default `--epochs 20` gives runs of about a quarter of a second of
training on digits; at 5 epochs (about 70 ms) one scheduler time slice is a large part of a run.

Run: python bench/shell_sweep_bench.py [--runs 4] [--epochs 20] [--load K] [--forced] [--slots N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sprkd(db: str, *args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sprkd_cli", "--db", db, *args, "--json"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def outcome(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"sprkd failed ({proc.returncode}): {err.strip()[-500:]}")
    return json.loads(out)


def distill_args(seed: int, epochs: int, extra: list[str]) -> list[str]:
    return [*extra, "distill", "--dataset", "digits", "--method", "kd", "--student", "mlp-small",
            "--epochs", str(epochs), "--seed", str(seed)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--load", type=int, default=0, help="other busy processes during every pass")
    parser.add_argument("--forced", action="store_true", help="add the pass with every process on every core")
    parser.add_argument("--slots", type=int, default=None,
                        help="the runs' training slots, --slots N (default: sprkd's default, the cores)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    env = {k: v for k, v in os.environ.items() if k not in ("SPRKD_THREADS", "OMP_NUM_THREADS", "SPRKD_SLOTS")}
    env["PYTHONPATH"] = str(ROOT)
    if args.slots is not None:
        env["SPRKD_SLOTS"] = str(args.slots)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        passes, load_before, load_after = sweep(args, cores, env)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    report(args, cores, passes, load_before, load_after)


def sweep(args: argparse.Namespace, cores: int, env: dict) -> tuple[dict, tuple, tuple]:
    with tempfile.TemporaryDirectory() as tmp:
        env["TMPDIR"] = tmp  # the slot files (engine.threads) of these runs only
        db = str(Path(tmp) / "runs.db")
        env["SPRKD_ARTIFACTS"] = str(Path(tmp) / "runs")
        load_before = os.getloadavg()
        outcome(sprkd(db, "train-teacher", "--dataset", "digits", "--model", "mlp:width=128,depth=1",
                      "--epochs", "5", env=env))
        passes: dict[str, tuple[float, list[dict]]] = {}
        start = time.perf_counter()
        runs = [outcome(sprkd(db, *distill_args(seed, args.epochs, []), env=env)) for seed in range(args.runs)]
        passes["sequential"] = (time.perf_counter() - start, runs)
        for name, extra in (("concurrent", []), ("forced", ["--threads", str(cores)]))[:2 if args.forced else 1]:
            start = time.perf_counter()
            procs = [sprkd(db, *distill_args(seed, args.epochs, extra), env=env) for seed in range(args.runs)]
            runs = [outcome(p) for p in procs]
            passes[name] = (time.perf_counter() - start, runs)
        load_after = os.getloadavg()
    return passes, load_before, load_after


def report(args: argparse.Namespace, cores: int, passes: dict, load_before: tuple, load_after: tuple) -> None:
    lone = [r["seconds"] for r in passes["sequential"][1]]
    print(f"{args.runs} x `sprkd distill --method kd --student mlp-small --epochs {args.epochs}` on digits, "
          f"{cores} cores, training slots {'default' if args.slots is None else args.slots}, "
          f"{args.load} other busy processes; "
          f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print()
    print("| pass | wall s | " + " | ".join(f"seed {s}: train s (threads, slot wait s)" for s in range(args.runs))
          + " | worst train s / lone |")
    print("|---|---|" + "---|" * args.runs + "---|")
    for name, (wall, runs) in passes.items():
        cells = " | ".join(f"{r['seconds']:.2f} ({r.get('threads', '?')}, {r.get('slot_wait_seconds', 0):.1f})"
                           for r in runs)
        worst = max(r["seconds"] / base for r, base in zip(runs, lone))
        print(f"| {name} | {wall:.1f} | {cells} | {worst:.2f}x |")
    print()
    seq, conc = passes["sequential"][0], passes["concurrent"][0]
    worst = max(r["seconds"] / base for r, base in zip(passes["concurrent"][1], lone))
    print(f"concurrent wall / sequential wall: {conc / seq:.2f} (goal <= 1: {'met' if conc <= seq else 'missed'})")
    print(f"worst concurrent run's training seconds / its lone run's: {worst:.2f}x "
          f"(goal <= 1.5x: {'met' if worst <= 1.5 else 'missed'}); / the median lone run's: "
          f"{max(r['seconds'] for r in passes['concurrent'][1]) / statistics.median(lone):.2f}x")
    if "forced" in passes:
        forced = max(r["seconds"] / base for r, base in zip(passes["forced"][1], lone))
        print(f"with every process on {cores} threads (--threads {cores}): wall / sequential "
              f"{passes['forced'][0] / seq:.2f}, worst run {forced:.2f}x its lone run")


if __name__ == "__main__":
    main()
