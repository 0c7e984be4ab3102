"""compare --executor ray: each (method, seed) a Ray task on a local Ray cluster, all writing to the
one store; the runs are the ones a local compare would train (same hashes, same numbers). Without Ray
installed, a one-line error says how to install it."""

from __future__ import annotations

import os
import sys

import pytest
from conftest import METRIC_NAMES, STUDENT_ARGS, assert_user_error, open_test_store, sprkd, sprkd_json, train_teacher

from sprkd_cli.services.lifecycle import CRASH_AFTER
from sprkd_cli.store import utcnow


def test_without_ray_installed_says_how_to_install_it(db, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    train_teacher(db)
    assert_user_error(sprkd(db, "compare", *STUDENT_ARGS, "--executor", "ray"), "needs Ray",
                      "pip install 'sprkd[ray]'")
    assert open_test_store(db).list_runs(kind="student") == []  # refused before any work


@pytest.mark.parametrize("args, needle", [(["--executor", "slurm"], "bad --executor 'slurm'; valid: local, ray"),
                                          (["--ray-address", "auto"], "--ray-address goes with --executor ray")])
def test_bad_executor_flags(db, args, needle):
    assert_user_error(sprkd(db, "compare", *STUDENT_ARGS, *args), needle)


@pytest.mark.slow
def test_compare_on_a_local_ray_cluster_writes_every_run_to_the_store(db, tmp_path):
    pytest.importorskip("ray")
    teacher = train_teacher(db)
    result = sprkd_json(db, "compare", *STUDENT_ARGS, "--seeds", "0-1", "--executor", "ray", "--jobs", "2")
    assert (result["ran"], result["reused"], result["failed"]) == (4, 0, [])
    store = open_test_store(db)
    runs = store.list_runs(kind="student")
    assert sorted((r.method, r.seed, r.status) for r in runs) == [
        (m, s, "finished") for m in ("kd", "sgd") for s in (0, 1)]
    assert os.getpid() not in {r.pid for r in runs}  # trained in Ray's workers
    for run in runs:
        assert {(m.epoch, m.split, m.name) for m in store.metrics([run.id])} == {
            (e, s, n) for e in (1, 2, 3) for s, n in METRIC_NAMES}
        assert run.teacher_ids == ([teacher["run_id"]] if run.method == "kd" else [])
        assert run.artifact_dir.startswith(str(tmp_path / "artifacts"))
    # a run whose machine died (another host, heartbeat stale) goes on in a Ray task under its own id
    [crashed] = [r for r in runs if (r.method, r.seed) == ("kd", 0)]
    store.update_run(crashed.id, status="running", host="elsewhere", heartbeat_at=utcnow() - 2 * CRASH_AFTER)
    resumed = sprkd_json(db, "compare", *STUDENT_ARGS, "--seeds", "0-1", "--executor", "ray", "--jobs", "2")
    assert (resumed["ran"], resumed["reused"], resumed["resumed"]) == (1, 3, [crashed.id])
    assert store.get_run(crashed.id).status == "finished"
    # the same experiments as a local compare's: reused, and the same numbers as a run trained here
    again = sprkd_json(db, "compare", *STUDENT_ARGS, "--seeds", "0-1")
    assert (again["ran"], again["reused"]) == (0, 4)
    here = tmp_path / "here.db"
    train_teacher(here)
    local = sprkd_json(here, "distill", "--method", "sgd", *STUDENT_ARGS, "--seed", "1")
    [ray_run] = [r for r in runs if (r.method, r.seed) == ("sgd", 1)]
    assert [(m.epoch, m.split, m.name, m.value) for m in open_test_store(here).metrics([local["run_id"]])] == \
           [(m.epoch, m.split, m.name, m.value) for m in store.metrics([ray_run.id])]


def test_a_ray_address_needs_a_store_every_node_reaches(db):
    pytest.importorskip("ray")
    train_teacher(db)
    assert_user_error(sprkd(db, "compare", *STUDENT_ARGS, "--executor", "ray", "--ray-address", "ray://head:10001"),
                      "SQLite store is one machine's file")


@pytest.mark.slow
def test_sigterm_cancels_the_ray_tasks_and_their_runs_end_interrupted(db):
    from test_lifecycle import assert_compare_sigterm_interrupts_two_runs

    pytest.importorskip("ray")
    assert_compare_sigterm_interrupts_two_runs(db, "--seeds", "0-3", "--executor", "ray", "--jobs", "2")


def test_help_shows_bracketed_text_rich_would_eat():
    text = " ".join(sprkd(None, "compare", "--help").stdout.replace("│", " ").split())
    assert "pip install 'sprkd[ray]'" in text and "[default: sgd,kd when no --arm is given]" in text
