"""compare --executor ray: each (method, seed) a Ray task on a local Ray cluster, all writing to the
one store; the runs are the ones a local compare would train (same hashes, same numbers). Without Ray
installed, a one-line error says how to install it."""

from __future__ import annotations

import os
import sys
import time

import pytest

from sprkd_cli.services.lifecycle import CRASH_AFTER
from sprkd_cli.store import utcnow

from conftest import METRIC_NAMES, STUDENT_ARGS, assert_user_error, open_test_store, sprkd, sprkd_json, train_teacher


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


@pytest.mark.parametrize("args, needle", [
    (["--gpus-per-run", "0.5"], "--gpus-per-run goes with --executor ray"),
    (["--executor", "ray", "--gpus-per-run", "-1"], "--gpus-per-run must be >= 0"),
    (["--executor", "ray", "--gpus-per-run", "1.5"], "above 1 it must be a whole number"),
    (["--executor", "ray", "--gpus-per-run", "1", "--device", "cpu"], "with --device cpu they would not use them"),
    (["--executor", "ray", "--device", "cuda"], "--device cuda with --executor ray needs --gpus-per-run")])
def test_bad_gpus_per_run(db, args, needle):
    pytest.importorskip("ray")
    assert_user_error(sprkd(db, "compare", *STUDENT_ARGS, *args), needle)
    assert open_test_store(db).list_runs() == []  # refused before any work


@pytest.fixture
def ray_with_a_declared_gpu():
    """A local Ray cluster in this process that declares one GPU (there is none: Ray takes the count as
    given); compare's Ray executor uses the running cluster and leaves it running."""
    ray = pytest.importorskip("ray")
    import logging

    from sprkd_cli.services.compare.ray_executor import LOCAL_OBJECT_STORE_BYTES

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
             log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_gpus_per_run_makes_each_task_ask_ray_for_its_share_of_a_gpu(db, ray_with_a_declared_gpu):
    import torch

    result = sprkd_json(db, "compare", *STUDENT_ARGS, "--seeds", "0-1", "--methods", "sgd", "--executor", "ray",
                        "--gpus-per-run", "0.5")
    assert (result["ran"], result["failed"]) == (2, [])
    store = open_test_store(db)
    for run in store.list_runs(kind="student"):
        [placed] = [e.payload for e in store.events(run.id) if e.kind == "ray_task"]
        # Ray gave the task GPU 0 (half of it) and pointed CUDA_VISIBLE_DEVICES at it; with no CUDA here
        # torch sees no GPU, so --device auto trained on the CPU
        assert (placed["gpus_per_run"], placed["gpu_ids"], placed["cuda_visible_devices"]) == (0.5, ["0"], "0")
        assert placed["device"] == run.device == ("cuda:0" if torch.cuda.is_available() else "cpu")
    # the running cluster has one GPU: a run asking for two is refused at once, before any task waits
    started = time.monotonic()
    assert_user_error(sprkd(db, "compare", *STUDENT_ARGS, "--seeds", "2", "--methods", "sgd", "--executor", "ray",
                            "--gpus-per-run", "2"), "no node of the Ray cluster has 2 GPU(s)", "1 GPU(s) in all")
    assert time.monotonic() - started < 30
    assert len(store.list_runs(kind="student")) == 2


@pytest.mark.slow
def test_gpus_per_run_on_a_cluster_without_gpus_is_one_line_not_a_hang(db, monkeypatch):
    pytest.importorskip("ray")
    # compare's own local cluster: this machine's GPUs, here none (CUDA_VISIBLE_DEVICES="" makes sure)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    started = time.monotonic()
    assert_user_error(sprkd(db, "compare", *STUDENT_ARGS, "--seeds", "0", "--methods", "sgd", "--executor", "ray",
                            "--gpus-per-run", "1"), "no node of the Ray cluster has 1 GPU(s)", "0 GPU(s) in all")
    assert time.monotonic() - started < 60
    assert open_test_store(db).list_runs(kind="student") == []
