"""compare (run what is missing, reuse the rest, in parallel, plot) and stats (agree with scipy)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from scipy import stats as scipy_stats

from conftest import (
    DATA,
    METRIC_NAMES,
    STUDENT_ARGS,
    TEACHER_ARGS,
    assert_user_error,
    open_test_store,
    sprkd,
    sprkd_json,
    train_teacher,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _student_runs(db, **filters):
    return open_test_store(db).list_runs(kind="student", **filters)


def test_compare_runs_missing_combos_then_reuses_them(db):
    teacher = train_teacher(db)
    # one (kd, seed 1) run exists already, made by distill with the same settings
    existing = sprkd_json(db, "distill", "--method", "kd", "--seed", "1", *STUDENT_ARGS)

    first = sprkd_json(db, "compare", *STUDENT_ARGS, "--seeds", "0-2")
    assert first["teacher"] == teacher["run_id"]
    assert (first["ran"], first["reused"]) == (5, 1)
    assert first["failed"] == []
    methods = {row["method"]: row for row in first["arms"]}
    assert set(methods) == {"sgd", "kd"}
    assert all(row["n"] == 3 and row["seeds"] == [0, 1, 2] for row in methods.values())
    assert existing["run_id"] in methods["kd"]["run_ids"]
    runs = _student_runs(db)
    assert len(runs) == 6
    assert sorted((r.method, r.seed) for r in runs) == sorted((m, s) for m in ("sgd", "kd") for s in range(3))
    assert all(r.status == "finished" for r in runs)

    second = sprkd_json(db, "compare", *STUDENT_ARGS, "--seeds", "0-2")
    assert (second["ran"], second["reused"]) == (0, 6)
    assert second["arms"] == first["arms"]
    assert len(_student_runs(db)) == 6

    # a wider seed range runs only the new seeds; other settings are another experiment
    third = sprkd_json(db, "compare", *STUDENT_ARGS, "--seeds", "0-3", "--methods", "kd")
    assert (third["ran"], third["reused"]) == (1, 3)
    fourth = sprkd_json(db, "compare", *STUDENT_ARGS, "--seeds", "0", "--methods", "kd", "--temperature", "2")
    assert (fourth["ran"], fourth["reused"]) == (1, 0)
    assert len(_student_runs(db)) == 8

    # means and the learning-curve plot
    assert methods["kd"]["mean"] == pytest.approx(
        sum(r.summary["test_acc"] for r in _student_runs(db, method="kd") if r.id in methods["kd"]["run_ids"]) / 3)
    with open(first["plot"], "rb") as handle:
        assert handle.read(8) == PNG_MAGIC


def test_compare_text_output_and_plot(db):
    train_teacher(db)
    result = sprkd(db, "compare", *STUDENT_ARGS, "--seeds", "0,1")
    assert result.exit_code == 0, result.output
    assert "4 run(s) trained, 0 reused" in result.stdout
    plot = open_test_store(db).artifact_root / "compare"
    pngs = list(plot.glob("*.png"))
    assert len(pngs) == 1 and pngs[0].stat().st_size > 1000
    assert pngs[0].read_bytes()[:8] == PNG_MAGIC
    assert str(pngs[0]) in result.stdout.replace("\n", "")


def test_compare_uses_latest_finished_teacher_by_default(db):
    older = train_teacher(db, "--seed", "0")
    latest = train_teacher(db, "--seed", "1")
    failed = sprkd(db, *TEACHER_ARGS, "--seed", "2", "--optimizer", "sgd", "--lr", "1e12", "--json")
    assert failed.exit_code == 1  # a newer teacher, but failed: not a candidate

    result = sprkd_json(db, "compare", *STUDENT_ARGS, "--seeds", "0", "--methods", "kd")
    assert result["teacher"] == latest["run_id"] != older["run_id"]
    (run,) = _student_runs(db, method="kd")
    assert run.teacher_ids == [latest["run_id"]]

    explicit = sprkd_json(db, "compare", *STUDENT_ARGS, "--seeds", "0", "--methods", "kd",
                          "--teacher", older["run_id"][:8])
    assert explicit["teacher"] == older["run_id"]
    assert explicit["ran"] == 1  # another teacher is another experiment: nothing to reuse
    assert {tuple(r.teacher_ids) for r in _student_runs(db, method="kd")} == {(older["run_id"],), (latest["run_id"],)}


def test_compare_without_teacher_says_how_to_train_one(db):
    line = assert_user_error(sprkd(db, "compare", *STUDENT_ARGS, "--seeds", "0-1"), "no finished teacher")
    assert f"sprkd train-teacher --dataset {DATA}" in line
    assert open_test_store(db).list_runs() == []
    # sgd alone needs no teacher
    alone = sprkd_json(db, "compare", *STUDENT_ARGS, "--seeds", "0-1", "--methods", "sgd")
    assert alone["teacher"] is None and alone["ran"] == 2


def test_compare_looks_a_run_up_once_and_carries_its_id_to_the_summary(db, monkeypatch):
    """Each planned run is looked up by config hash and seed once, before training; a run two arms ask for
    is trained once and is in both arms' rows; the summary reads the ids the plan carries."""
    from sprkd_cli.store import Store

    asked = []
    find_finished = Store.find_finished
    monkeypatch.setattr(Store, "find_finished", lambda self, *key: asked.append(key) or find_finished(self, *key))
    first = sprkd_json(db, "compare", *STUDENT_ARGS, "--seeds", "0-1", "--arm", "sgd", "--arm", "again=sgd")
    assert len(asked) == 4 and len(set(asked)) == 2  # two arms x two seeds, one experiment per seed
    rows = {row["arm"]: row for row in first["arms"]}
    assert first["ran"] == 2 and rows["sgd"]["run_ids"] == rows["again"]["run_ids"]
    assert {r.id for r in _student_runs(db)} == set(rows["sgd"]["run_ids"])
    asked.clear()
    second = sprkd_json(db, "compare", *STUDENT_ARGS, "--seeds", "0-1", "--arm", "sgd", "--arm", "again=sgd")
    assert len(asked) == 4 and second["ran"] == 0 and second["arms"] == first["arms"]


@pytest.mark.slow
def test_compare_in_parallel_processes_writes_every_run(store_url):
    db = store_url
    teacher = train_teacher(db)
    result = sprkd_json(db, "compare", *STUDENT_ARGS, "--seeds", "0-2", "--jobs", "2")
    assert (result["ran"], result["reused"]) == (6, 0)
    assert result["failed"] == []
    store = open_test_store(db)
    runs = _student_runs(db)
    assert len(runs) == 6 and all(r.status == "finished" for r in runs)
    assert sorted((r.method, r.seed) for r in runs) == sorted((m, s) for m in ("sgd", "kd") for s in range(3))
    pids = {r.pid for r in runs}
    # trained in (at most two) worker processes, not here; which worker takes which run is up to the pool
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids
    for run in runs:
        found = {(m.epoch, m.split, m.name) for m in store.metrics([run.id])}
        assert found == {(e, s, n) for e in (1, 2, 3) for s, n in METRIC_NAMES}, run.id
        assert run.teacher_ids == ([teacher["run_id"]] if run.method == "kd" else [])
    assert {rid for row in result["arms"] for rid in row["run_ids"]} == {r.id for r in runs}, (
        result, [(r.id, r.method, r.seed, r.config_hash, r.status, r.created_at, r.ended_at) for r in runs])
    with open(result["plot"], "rb") as handle:
        assert handle.read(8) == PNG_MAGIC

    # the parallel runs are the same runs as serial ones would be: all reused now
    again = sprkd_json(db, "compare", *STUDENT_ARGS, "--seeds", "0-2")
    assert (again["ran"], again["reused"]) == (0, 6)


def _children(pid: int) -> dict[int, int]:
    """The processes whose parent is `pid`, each with its start time (from /proc)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None and int(stat[1]) == pid:
                found[int(entry)] = int(stat[19])
    return found


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after "pid (comm)": state, ppid, ...; None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _still_running(processes: dict[int, int]) -> list[int]:
    """Those of `processes` (pid: start time) that still run: not gone, not a zombie, not a later process."""
    alive = []
    for pid, started in processes.items():
        stat = _proc_stat(pid)
        if stat is not None and stat[0] not in ("Z", "X") and int(stat[19]) == started:
            alive.append(pid)
    return alive


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the workers through /proc")
def test_compare_workers_end_their_runs_and_exit_when_compare_is_killed(db):
    from test_lifecycle import wait_for_metrics

    argv = [sys.executable, "-m", "sprkd_cli", "--db", str(db), "compare", "--dataset", DATA, "--methods", "sgd",
            "--epochs", "100000", "--seeds", "0-3", "--jobs", "2"]
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    try:
        wait_for_metrics(db, "SELECT count(DISTINCT run_id) FROM metrics", 2)
        workers = _children(child.pid)  # the two workers (and multiprocessing's resource tracker)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
    assert len(workers) >= 2
    deadline = time.monotonic() + 10
    while _still_running(workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _still_running(workers)
    for pid in left:  # not to leave them behind should the test fail
        os.kill(pid, signal.SIGKILL)
    assert not left, f"still running 10 s after compare was killed: {left}"
    runs = open_test_store(db).list_runs()
    assert len(runs) == 2 and {r.status for r in runs} == {"interrupted"}, [(r.seed, r.status, r.error) for r in runs]
    assert {r.pid for r in runs} <= set(workers)


# --- stats --------------------------------------------------------------------------------------


def test_stats_agree_with_scipy_on_stored_values(db):
    train_teacher(db)
    sprkd_json(db, "compare", *STUDENT_ARGS, "--seeds", "0-3")
    # one more sgd seed without its kd partner: Welch uses it, the paired test does not
    sprkd_json(db, "distill", "--method", "sgd", "--seed", "7", *STUDENT_ARGS)

    store = open_test_store(db)
    values: dict[str, dict[int, float]] = {}
    for run in store.list_runs(kind="student", status="finished"):
        best = run.summary["best_epoch"]
        (test_acc,) = [m.value for m in store.metrics([run.id])
                       if m.epoch == best and m.split == "test" and m.name == "acc"]
        values.setdefault(run.method, {})[run.seed] = test_acc
    sgd, kd = values["sgd"], values["kd"]
    assert sorted(sgd) == [0, 1, 2, 3, 7] and sorted(kd) == [0, 1, 2, 3]

    pairs = sprkd_json(db, "stats", "--dataset", DATA)
    assert len(pairs) == 1
    pair = pairs[0]
    for key in ("a", "b", "n_a", "n_b", "mean_a", "mean_b", "diff", "ci_low", "ci_high", "p_welch", "p_paired",
                "p_adj", "cohens_d"):
        assert key in pair, key
    assert (pair["a"], pair["b"], pair["n_a"], pair["n_b"]) == ("sgd", "kd", 5, 4)

    a, b = list(sgd.values()), list(kd.values())
    welch = scipy_stats.ttest_ind(a, b, equal_var=False)
    shared = sorted(set(sgd) & set(kd))
    paired = scipy_stats.ttest_rel([sgd[s] for s in shared], [kd[s] for s in shared])
    assert 0 < welch.pvalue < 1 and 0 < paired.pvalue < 1, "precondition: non-degenerate values"
    assert pair["mean_a"] == pytest.approx(sum(a) / len(a), rel=1e-12)
    assert pair["mean_b"] == pytest.approx(sum(b) / len(b), rel=1e-12)
    assert pair["diff"] == pytest.approx(pair["mean_a"] - pair["mean_b"], rel=1e-12)
    assert pair["p_welch"] == pytest.approx(welch.pvalue, rel=1e-9)
    assert pair["p_paired"] == pytest.approx(paired.pvalue, rel=1e-9)
    assert pair["p_adj"] == pytest.approx(welch.pvalue, rel=1e-9)  # one pair: Holm changes nothing
    ci = welch.confidence_interval(0.95)
    assert (pair["ci_low"], pair["ci_high"]) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))
    # Cohen's d in its average-variance form (the one documented for Welch's setting)
    average_sd = ((scipy_stats.tstd(a) ** 2 + scipy_stats.tstd(b) ** 2) / 2) ** 0.5
    assert pair["cohens_d"] == pytest.approx((pair["mean_a"] - pair["mean_b"]) / average_sd, rel=1e-9)

    # the table form runs too
    table = sprkd(db, "stats", "--dataset", DATA)
    assert table.exit_code == 0, table.output
    assert "sgd − kd" in table.stdout


def test_stats_latest_run_per_seed_and_filters(db):
    teacher = train_teacher(db)
    sprkd_json(db, "compare", *STUDENT_ARGS, "--seeds", "0-1")
    # a newer kd run of seed 0 with another temperature replaces the older one in stats
    newer = sprkd_json(db, "distill", "--method", "kd", "--seed", "0", "--temperature", "2", *STUDENT_ARGS)
    (pair,) = sprkd_json(db, "stats", "--dataset", DATA, "--methods", "sgd,kd")
    store = open_test_store(db)
    kd_runs: dict = {}
    for run in store.list_runs(kind="student", method="kd"):  # newest first
        kd_runs.setdefault(run.seed, run)
    assert kd_runs[0].id == newer["run_id"]
    assert pair["mean_b"] == pytest.approx((newer["test_acc"] + kd_runs[1].summary["test_acc"]) / 2)

    (final,) = sprkd_json(db, "stats", "--dataset", DATA, "--at", "final")
    assert final["mean_b"] == pytest.approx((newer["final_test_acc"] + kd_runs[1].summary["final_test_acc"]) / 2)
    # a kd student of another teacher counts unless --teacher picks the first teacher's students
    other = train_teacher(db, "--seed", "9")
    sprkd_json(db, "distill", "--method", "kd", "--seed", "5", "--teacher", other["run_id"], *STUDENT_ARGS)
    assert sprkd_json(db, "stats", "--dataset", DATA)[0]["n_b"] == 3
    only = sprkd_json(db, "stats", "--dataset", DATA, "--teacher", teacher["run_id"])
    assert (only[0]["n_a"], only[0]["n_b"]) == (2, 2)
    assert sprkd_json(db, "stats", "--dataset", DATA, "--student", "mlp-small")[0]["n_a"] == 0
