"""Runs that survive: heartbeat, SIGINT/SIGTERM as interrupted, dead runs shown as crashed and resumed
by compare; checkpoints that cannot run code, names that cannot leave the artifact root, bound filters,
and a store made by the first migration upgraded with its rows intact."""

from __future__ import annotations

import os
import pickle
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from sprkd_cli.services.lifecycle import (
    CRASH_AFTER,
    find_unfinished,
    is_crashed,
    process_started,
    read_run,
    read_runs,
    this_process,
)
from sprkd_cli.store import RUN_STATUSES, safe_name, utcnow

from conftest import (
    DATA,
    STUDENT_ARGS,
    TEACHER_MODEL,
    assert_user_error,
    open_test_store,
    sprkd,
    sprkd_json,
    sql,
    train_teacher,
    without_progress,
)


def add_run(store, method="kd", seed=0, **fields):
    run = store.create_run(kind="student", method=method, dataset=DATA, model="mlp-small", seed=seed, config={},
                           config_hash="h", teacher_ids=[], provenance={}, device="cpu",
                           process=this_process())
    if fields:
        store.update_run(run.id, **fields)
    return run.id


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


STALE = utcnow() - CRASH_AFTER - timedelta(seconds=5)


# -- interrupted ---------------------------------------------------------------------------------

@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.slow
def test_signal_ends_the_run_as_interrupted_with_its_epochs(db, signum, code):
    argv = [sys.executable, "-m", "sprkd_cli", "--db", str(db), "train-teacher", "--dataset", DATA,
            "--model", TEACHER_MODEL, "--epochs", "100000"]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        wait_for_metrics(db, "SELECT count(*) FROM metrics", 10)
        child.send_signal(signum)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == code, (child.returncode, stderr)
    assert "Traceback" not in stderr
    lines = without_progress(stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"interrupted by {signal.Signals(signum).name}; run "), lines[0]
    [run] = open_test_store(db).list_runs()
    assert run.status == "interrupted" and run.ended_at is not None
    assert run.error == f"interrupted by {signal.Signals(signum).name}"
    assert run.id in lines[0]
    epochs = {}
    for m in open_test_store(db).metrics([run.id]):
        epochs.setdefault(m.epoch, set()).add((m.split, m.name))
    assert len(epochs) >= 2
    assert all(len(names) == 5 for names in epochs.values())  # whole epochs only
    assert sorted(epochs) == list(range(1, len(epochs) + 1))


@pytest.mark.slow
def test_sigterm_to_compare_with_workers_interrupts_their_runs_and_starts_no_more(db):
    assert_compare_sigterm_interrupts_two_runs(db, "--seeds", "0-5", "--jobs", "2")


def assert_compare_sigterm_interrupts_two_runs(db, *args: str) -> None:
    """`compare ARGS` (sgd, endless epochs) gets SIGTERM once two runs have metrics: it exits 143 with
    one line, both runs end interrupted and no other starts."""
    argv = [sys.executable, "-m", "sprkd_cli", "--db", str(db), "compare", "--dataset", DATA, "--methods", "sgd",
            "--epochs", "100000", *args]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        wait_for_metrics(db, "SELECT count(DISTINCT run_id) FROM metrics", 2)
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 143, (child.returncode, stderr)
    assert without_progress(stderr) == ["interrupted by SIGTERM"], stderr
    runs = open_test_store(db).list_runs()
    assert len(runs) == 2 and {r.status for r in runs} == {"interrupted"}, [(r.seed, r.status) for r in runs]


def wait_for_metrics(db, query: str, at_least: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                with sqlite3.connect(db) as conn:
                    if conn.execute(query).fetchone()[0] >= at_least:
                        return
            except sqlite3.OperationalError:  # tables not created yet
                pass
        time.sleep(0.1)
    raise AssertionError(f"no {at_least} from {query} within {timeout} s")


def test_training_notes_a_signal_and_raises_it_at_a_safe_point():
    from sprkd_cli.errors import Interrupted
    from sprkd_cli.services.lifecycle import Interruptible

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as raised:
        with Interruptible(defer=True) as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handlers have run: noted, nothing raised
            assert stop.signum == signal.SIGTERM
            reached = True
            stop.check()
    assert reached and raised.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is before
    with pytest.raises(Interrupted, match="SIGINT"):  # noted and never checked: raised when the block ends
        with Interruptible(defer=True):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    with pytest.raises(Interrupted, match="SIGTERM"):  # not deferred: at once
        with Interruptible():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
            raise AssertionError("not interrupted")


def test_interrupt_does_not_overwrite_a_finished_run(db):
    store = open_test_store(db)
    run_id = add_run(store, status="finished")
    store.interrupt_run(run_id, "late signal")
    assert store.get_run(run_id).status == "finished" and store.get_run(run_id).error is None


# -- heartbeat -----------------------------------------------------------------------------------

def test_heartbeat_thread_beats_while_open_and_stops_after(db):
    from sprkd_cli.services.lifecycle import Heartbeat

    store = open_test_store(db)
    run_id = add_run(store, heartbeat_at=STALE)
    with Heartbeat(store, run_id, interval=0.05) as beat:
        time.sleep(0.5)
        assert beat._thread.is_alive() and beat._thread.daemon
    after = store.get_run(run_id).heartbeat_at
    assert utcnow() - after < timedelta(seconds=5)
    assert not beat._thread.is_alive()
    time.sleep(0.2)
    assert store.get_run(run_id).heartbeat_at == after


def test_a_finished_run_ends_with_its_last_heartbeat(db):
    run_id = train_teacher(db)["run_id"]
    run = open_test_store(db).get_run(run_id)
    assert run.pid == os.getpid() and run.host == socket.gethostname()
    assert run.started_at < run.heartbeat_at <= run.ended_at


# -- crashed -------------------------------------------------------------------------------------

def test_dead_runs_read_as_crashed_and_live_ones_as_running(db):
    store = open_test_store(db)
    here = socket.gethostname()
    crashed = add_run(store, seed=0, heartbeat_at=STALE, pid=dead_pid(), host=here)
    alive_old_beat = add_run(store, seed=1, heartbeat_at=STALE, pid=os.getpid(), host=here)
    dead_fresh_beat = add_run(store, seed=2, pid=dead_pid(), host=here)
    other_host = add_run(store, seed=3, heartbeat_at=STALE, pid=os.getpid(), host=here + "-elsewhere")
    finished_old = add_run(store, seed=4, heartbeat_at=STALE, pid=dead_pid(), host=here, status="finished")

    statuses = {r.id: r.status for r in read_runs(store)}
    assert statuses == {crashed: "crashed", alive_old_beat: "running", dead_fresh_beat: "running",
                        other_host: "crashed", finished_old: "finished"}
    assert read_run(store, crashed).status == "crashed"
    assert read_run(store, crashed[:8]).status == "crashed"
    assert {r["id"] for r in sprkd_json(db, "runs", "list", "--status", "crashed")} == {crashed, other_host}
    assert {r["id"] for r in sprkd_json(db, "runs", "list", "--status", "running")} == {alive_old_beat,
                                                                                          dead_fresh_beat}
    assert len(sprkd_json(db, "runs", "list", "--status", "crashed", "--limit", "1")) == 1
    assert sprkd_json(db, "runs", "show", crashed)["status"] == "crashed"
    table = sprkd(db, "runs", "list")
    assert table.exit_code == 0 and table.stdout.count("crashed") == 2
    with sqlite3.connect(db) as conn:  # reading wrote nothing
        assert conn.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0] == 4
    assert "interrupted" in RUN_STATUSES and "crashed" in RUN_STATUSES


def test_compare_takes_up_a_run_whose_process_died_here_before_its_heartbeat_ages(db):
    store = open_test_store(db)
    dead = add_run(store, status="running", heartbeat_at=utcnow(), pid=dead_pid(), host=socket.gethostname())
    assert read_run(store, dead).status == "running"  # shown as running until the heartbeat is old
    assert find_unfinished(store, "h", 0).id == dead  # but certainly dead: compare resumes it
    store.update_run(dead, pid=os.getpid(), pid_started=process_started(os.getpid()))  # a live process: not taken
    assert find_unfinished(store, "h", 0) is None
    store.update_run(dead, pid_started=process_started(os.getpid()) - 1)  # its pid now another process's
    assert find_unfinished(store, "h", 0).id == dead
    store.update_run(dead, heartbeat_at=STALE)
    assert read_run(store, dead).status == "crashed"
    store.update_run(dead, pid_started=process_started(os.getpid()))
    assert read_run(store, dead).status == "running"
    store.update_run(dead, host="elsewhere", heartbeat_at=STALE)  # another host: the heartbeat's age decides
    assert find_unfinished(store, "h", 0).id == dead


def test_is_crashed_needs_an_old_heartbeat():
    from sprkd_cli.store import Run

    run = Run(status="running", heartbeat_at=utcnow(), host="elsewhere", pid=1)
    assert not is_crashed(run)
    assert is_crashed(run, now=utcnow() + CRASH_AFTER + timedelta(seconds=1))


def test_compare_resumes_a_crashed_run_and_its_plot_stays_in_the_root(db, tmp_path):
    from sprkd_cli.services.figures import learning_curves

    first = sprkd_json(db, "compare", *STUDENT_ARGS, "--methods", "sgd", "--seeds", "0")
    [old_id] = first["arms"][0]["run_ids"]
    store = open_test_store(db)
    store.update_run(old_id, status="running", heartbeat_at=STALE, pid=dead_pid(), host=socket.gethostname())
    assert read_run(store, old_id).status == "crashed"

    second = sprkd_json(db, "compare", *STUDENT_ARGS, "--methods", "sgd", "--seeds", "0")
    assert (second["ran"], second["reused"], second["resumed"]) == (1, 0, [old_id])
    assert second["arms"][0]["run_ids"] == [old_id] and store.get_run(old_id).status == "finished"
    assert [e.payload["was"] for e in store.events(old_id) if e.kind == "resumed"] == ["crashed"]
    # a failed run is not taken up again: the next compare trains a new one
    store.update_run(old_id, status="failed", error="RuntimeError: out of memory")
    third = sprkd_json(db, "compare", *STUDENT_ARGS, "--methods", "sgd", "--seeds", "0")
    assert (third["ran"], third["resumed"]) == (1, []) and third["arms"][0]["run_ids"] != [old_id]

    root = store.artifact_root.resolve()
    assert Path(second["plot"]).resolve().is_relative_to(root)
    plot = learning_curves(store, {"sgd": [old_id]}, "../../../../escaped/x")
    assert plot.resolve().parent == root / "compare" and plot.exists()
    assert not (tmp_path / "escaped").exists()


# -- safety --------------------------------------------------------------------------------------

class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_checkpoint_with_code_is_refused(db, tmp_path):
    import torch

    from sprkd_cli.services.loading import BEST_CHECKPOINT, FINAL_CHECKPOINT

    teacher = train_teacher(db)
    marker = tmp_path / "code-ran"
    for name in (BEST_CHECKPOINT, FINAL_CHECKPOINT):
        path = Path(teacher["artifact_dir"]) / name
        assert path.exists()
        torch.save({"weight": _RunsCode(marker)}, path)
    line = assert_user_error(sprkd(db, "distill", "--method", "kd", "--teacher", teacher["run_id"], *STUDENT_ARGS),
                             "is not a safetensors file", "pickled")
    assert BEST_CHECKPOINT in line
    assert not marker.exists()


def test_a_pickled_saddle_snapshot_and_malaria_cache_are_refused(tmp_path):
    import torch

    from sprkd_cli.data.malaria import read_cache
    from sprkd_cli.errors import UserError
    from sprkd_cli.methods.sprkd.tracking import load_snapshot

    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"images": _RunsCode(marker), "labels": 1}, evil)
    with pytest.raises(UserError, match="not a safetensors file"):
        load_snapshot(evil)
    assert read_cache(evil) is None
    evil.write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(UserError, match="not a safetensors file"):
        load_snapshot(evil)
    assert not marker.exists()


@pytest.mark.parametrize("name, expected", [("../../etc/passwd", "_.._etc_passwd"), ("..", "_"), ("/abs", "_abs"),
                                            ("hf:org/name,x=1", "hf_org_name_x_1"), (".hidden", "hidden")])
def test_safe_name(name, expected):
    assert safe_name(name) == expected


def test_artifact_path_cannot_leave_the_root(db, tmp_path):
    from sprkd_cli.errors import UserError

    store = open_test_store(db)
    root = store.artifact_root.resolve()
    for parts in (("compare", "../../x.png"), ("..", ".."), ("/etc", "passwd"), ("a\\..\\..", "b")):
        assert store.artifact_path(*parts).resolve().is_relative_to(root), parts
    (tmp_path / "outside").mkdir()
    root.mkdir(parents=True, exist_ok=True)
    (root / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(UserError, match="outside the artifact root"):
        store.artifact_path("link", "x.png")


INJECTION = "kd' OR '1'='1"


def test_list_filters_are_bound_parameters(store_url):
    db = store_url
    store = open_test_store(db)
    ids = {add_run(store, method="kd"), add_run(store, method="sgd")}
    assert store.list_runs(method=INJECTION) == []
    assert store.list_runs(dataset=INJECTION) == []
    assert store.list_runs(method="kd' --") == []
    assert_user_error(sprkd(db, "runs", "list", "--method", INJECTION), "unknown method")  # names are checked first
    assert_user_error(sprkd(db, "runs", "list", "--dataset", "x\"; DROP TABLE runs; --"), "unknown dataset")
    assert_user_error(sprkd(db, "runs", "list", "--status", INJECTION), "bad --status")
    weird = add_run(store, method=INJECTION)
    assert [r.id for r in store.list_runs(method=INJECTION)] == [weird]
    assert {r.id for r in store.list_runs()} == ids | {weird}


# -- migrations ----------------------------------------------------------------------------------

def test_store_made_by_the_first_migration_is_upgraded_with_its_rows(store_url):
    from alembic import command

    from sprkd_cli.store.database import _alembic_config, resolve_url

    db = store_url
    command.upgrade(_alembic_config(resolve_url(db)), "0001")
    assert [r[0] for r in sql(db, "SELECT version_num FROM alembic_version")] == ["0001"]
    sql(db, "INSERT INTO runs (id, kind, method, dataset, model, seed, status, config, config_hash, teacher_ids,"
            " versions, device, host, pid, created_at, heartbeat_at, summary, artifact_dir) VALUES"
            " ('aaaa00000001', 'teacher', 'sgd', 'digits', 'mlp-large', 3, 'finished', '{\"lr\": 0.01}', 'h1',"
            " '[]', '{}', 'cpu', 'old-host', 11, '2026-01-02 03:04:05', '2026-01-02 03:05:05',"
            " '{\"test_acc\": 0.9}', '/old/runs/aaaa00000001')")
    sql(db, "INSERT INTO runs (id, kind, method, dataset, model, seed, status, config, config_hash, teacher_ids,"
            " versions, device, created_at, summary) VALUES ('bbbb00000002', 'student', 'kd', 'digits',"
            " 'mlp-small', 4, 'failed', '{}', 'h2', '[\"aaaa00000001\"]', '{}', 'cpu', '2026-01-03 00:00:00', '{}')")
    for e in (1, 2, 3):
        sql(db, "INSERT INTO metrics (run_id, step, epoch, split, name, value) VALUES (:r, :s, :e, 'val', 'acc', :v)",
            {"r": "aaaa00000001", "s": 10 * e, "e": e, "v": 0.5 + e / 10})
    sql(db, "INSERT INTO events (run_id, step, epoch, kind, payload, created_at) VALUES"
            " ('bbbb00000002', 5, 1, 'saddle_stored', '{\"k\": 1}', '2026-01-03 00:00:01')")

    store = open_test_store(db)  # upgrades in place to the head
    from test_store import alembic_head, versions

    assert versions(db) == [alembic_head()]
    teacher, student = store.get_run("aaaa00000001"), store.get_run("bbbb00000002")
    assert (teacher.kind, teacher.method, teacher.seed, teacher.status, teacher.config, teacher.summary) == \
           ("teacher", "sgd", 3, "finished", {"lr": 0.01, "precision": "fp32"}, {"test_acc": 0.9})  # 0004
    assert (teacher.host, teacher.pid, str(teacher.heartbeat_at)) == ("old-host", 11, "2026-01-02 03:05:05")
    assert (student.status, student.teacher_ids) == ("failed", ["aaaa00000001"])
    assert [(m.epoch, m.value) for m in store.metrics(["aaaa00000001"])] == [(1, 0.6), (2, 0.7), (3, 0.8)]
    assert [(e.kind, e.payload) for e in store.events("bbbb00000002")] == [("saddle_stored", {"k": 1})]
    assert [r.id for r in store.list_runs()] == ["bbbb00000002", "aaaa00000001"]
    assert (teacher.pid_started, student.pid_started) == (None, None)  # 0002's column, unknown for old rows
    new = add_run(store)  # and the upgraded store takes new rows
    assert store.get_run(new).status == "running"
    assert store.get_run(new).pid_started == process_started(os.getpid())
    assert sprkd_json(db, "runs", "show", "aaaa")["metrics"][0]["val_acc"] == 0.6


@pytest.mark.slow
def test_a_killed_compare_worker_ends_its_run_in_one_line_and_the_comparison_goes_on(db):
    """SIGKILL to one of compare's two workers mid-run: one line on stderr names the run, which ends as
    interrupted; the other runs finish (one the broken pool stopped is resumed); compare exits 1 without a
    traceback. Running it again resumes the killed run, and every run ends finished, each seed once."""
    argv = [sys.executable, "-m", "sprkd_cli", "--db", str(db), "compare", "--dataset", DATA, "--methods", "sgd",
            "--epochs", "60", "--seeds", "0-3", "--jobs", "2", "--json"]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        wait_for_metrics(db, "SELECT count(DISTINCT run_id) FROM metrics", 1)
        with sqlite3.connect(db) as conn:
            [(run_id, pid)] = conn.execute("SELECT id, pid FROM runs WHERE status = 'running' "
                                           "ORDER BY created_at LIMIT 1").fetchall()
        os.kill(pid, signal.SIGKILL)
        stdout, stderr = child.communicate(timeout=300)
    finally:
        child.kill()
    assert child.returncode == 1, (child.returncode, stderr)
    assert "Traceback" not in stderr and "leaked" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and f"run {run_id}" in lines[0] and "worker process died" in lines[0], stderr
    result = __import__("json").loads(stdout)
    assert [o["run_id"] for o in result["failed"]] == [run_id]
    store = open_test_store(db)
    assert store.get_run(run_id).status == "interrupted"
    again = sprkd_json(db, "compare", "--dataset", DATA, "--methods", "sgd", "--epochs", "60", "--seeds", "0-3")
    assert again["resumed"] == [run_id] and again["failed"] == []
    runs = store.list_runs()
    assert sorted(r.seed for r in runs) == [0, 1, 2, 3] and {r.status for r in runs} == {"finished"}
