"""No run is trained twice: a run reserves its experiment (config hash and seed) as it starts; a second
compare or --reuse waits for a live one and reuses it; a dead one is taken over."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from sprkd_cli.services.lifecycle import this_process

from conftest import DATA, TEACHER_ARGS, open_test_store, sprkd, sprkd_json

# One `sprkd compare --json` started at a given moment (time.time()), through the real CLI.
COMPARE_AT = """
import sys, time
from sprkd_cli.cli import app

url, at, args = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
time.sleep(max(0.0, at - time.time()))
app(["--db", url, "compare", *args, "--json"])
"""

SEEDS = "0-3"
COMPARE_ARGS = ["--dataset", DATA, "--student", "mlp:width=8,depth=1", "--methods", "sgd", "--seeds", SEEDS,
                "--epochs", "4", "--lr", "1e-2"]


@pytest.mark.slow
def test_two_identical_compares_at_once_train_each_run_once(store_url):
    """Two `compare --seeds 0-3` (one with --jobs 2, one in its own process) on one new store at the same
    moment: 4 runs in the store, each finished once; the two compares trained 4 between them and each
    reports all 4."""
    import json

    at = time.time() + 5
    procs = [subprocess.Popen([sys.executable, "-c", COMPARE_AT, store_url, str(at), *COMPARE_ARGS, "--jobs", jobs],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for jobs in ("2", "1")]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "Traceback" not in err, err
        results.append((json.loads(out), err))
    runs = open_test_store(store_url).list_runs()
    per_key = Counter((r.config_hash, r.seed) for r in runs)
    print(f"runs stored: {len(runs)}; trained by each compare: {[r['ran'] for r, _ in results]}; "
          f"reused: {[r['reused'] for r, _ in results]}; "
          f"waits: {[err.count('waiting for run') for _, err in results]}")
    assert len(runs) == 4 and set(per_key.values()) == {1}, per_key
    assert {r.status for r in runs} == {"finished"}
    assert sum(r["ran"] for r, _ in results) == 4
    for result, _ in results:
        assert result["arms"][0]["n"] == 4 and result["failed"] == []


def _running_row(store, cfg_hash: str, seed: int, kind: str = "teacher"):
    """A run of (cfg_hash, seed) stored as running in this (live) process."""
    return store.create_run(kind=kind, method="sgd", dataset=DATA, model="mlp:width=16,depth=1", seed=seed,
                            config={}, config_hash=cfg_hash, teacher_ids=[], provenance={}, device="cpu",
                            process=this_process())


def test_reuse_waits_for_a_live_run_of_the_same_experiment_and_reuses_it(db, monkeypatch):
    """train-teacher --reuse while another live process trains the same config and seed: it says whom it
    waits for, and takes that run once it finishes, training nothing itself."""
    import sprkd_cli.services.training as training

    monkeypatch.setattr(training, "WAIT_POLL_SECONDS", 0.1)
    first = sprkd_json(db, *TEACHER_ARGS)  # the experiment's hash, from a real run
    store = open_test_store(db)
    store.update_run(first["run_id"], status="failed", error="RuntimeError: made up")  # not reusable
    other = _running_row(store, first["config_hash"], 0)
    threading.Timer(1.0, lambda: store.finish_run(other.id, dict(open_test_store(db).get_run(first["run_id"]).summary
                                                                 or {}) | _summary(db, first["run_id"]), 1)).start()
    result = sprkd(db, *TEACHER_ARGS, "--reuse", "--json")
    assert result.exit_code == 0, result.output
    assert f"waiting for run {other.id}" in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert __import__("json").loads(result.stdout)["run_id"] == other.id
    assert len(store.list_runs()) == 2  # the failed one and the one waited for: none trained here


def _summary(db, run_id: str) -> dict:
    """A finished run's summary fields that train-teacher prints (taken from a real run)."""
    return {"test_acc": 0.5, "best_val_acc": 0.5, "final_test_acc": 0.5, "best_epoch": 1, "epochs": 3,
            "wall_seconds": 0.1}


def test_a_stale_reservation_is_taken_over(db):
    """A run of the experiment left `running` by a process that died: --reuse does not wait for it; it is
    taken over (resumed), and the experiment ends with one finished run."""
    first = sprkd_json(db, *TEACHER_ARGS)
    store = open_test_store(db)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store.update_run(first["run_id"], status="running", pid=int(dead.stdout), pid_started=None)
    started = time.monotonic()
    outcome = sprkd_json(db, *TEACHER_ARGS, "--reuse")
    assert time.monotonic() - started < 30
    assert outcome["run_id"] == first["run_id"] and outcome["status"] == "finished"
    assert [r.status for r in store.list_runs()] == ["finished"]


def test_two_processes_reserving_one_experiment_at_once_get_one_run(store_url):
    """The reservation itself: 8 threads create a run of one (config hash, seed) at once with `blocks`;
    one gets a run, seven are told which run took it."""
    from sprkd_cli.store import RunTaken

    store = open_test_store(store_url)
    outcomes, barrier = [], threading.Barrier(8)

    def reserve():
        barrier.wait()
        try:
            outcomes.append(("ran", store.create_run(
                kind="teacher", method="sgd", dataset=DATA, model="m", seed=3, config={}, config_hash="h" * 16,
                teacher_ids=[], provenance={}, device="cpu", process=this_process(), blocks=lambda run: True).id))
        except RunTaken as taken:
            outcomes.append(("taken", taken.run.id))

    threads = [threading.Thread(target=reserve) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ran = [run_id for what, run_id in outcomes if what == "ran"]
    assert len(ran) == 1 and len(outcomes) == 8
    assert {run_id for what, run_id in outcomes if what == "taken"} == set(ran)
    assert [r.id for r in store.list_runs()] == ran
