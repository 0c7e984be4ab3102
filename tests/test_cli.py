"""The CLI: user errors as one line with exit code 2, --json output, failed (diverging) runs,
reproducibility by seed, and the runs list/show/export commands."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from conftest import (
    DATA,
    DATA_4,
    METRIC_NAMES,
    STUDENT_ARGS,
    TEACHER_ARGS,
    TEACHER_MODEL,
    TRAIN,
    assert_user_error,
    metric_rows,
    open_test_store,
    run_subprocess,
    sprkd,
    sprkd_json,
    train_teacher,
)

DIVERGE = ["--optimizer", "sgd", "--lr", "1e12", "--schedule", "constant"]


# --- bad input: exit code 2, one line on stderr, no traceback ------------------------------------


@pytest.mark.parametrize(
    "args, needles",
    [
        (["train-teacher", "--dataset", "nope"], ["unknown dataset 'nope'", "digits", "synthetic"]),
        (["train-teacher", "--dataset", DATA, "--model", "nope"],
         ["unknown model 'nope'", "cnn", "mlp", "mlp-large", "mlp-small"]),
        (["distill", "--dataset", DATA, "--method", "nope"], ["bad --method 'nope'", "kd", "sgd"]),
        (["compare", "--dataset", DATA, "--methods", "sgd,nope"], ["unknown method 'nope'", "kd", "sgd"]),
        (["compare", "--dataset", DATA, "--methods", ","], ["--methods"]),
        (["stats", "--dataset", DATA, "--methods", "kd,nope"], ["unknown arm or method 'nope'", "kd", "sgd"]),
        (["stats", "--dataset", "nope"], ["unknown dataset 'nope'", "digits", "synthetic"]),
        (["distill", "--dataset", DATA, "--method", "sgd", "--student", "nope"], ["unknown model 'nope'", "mlp-small"]),
        (["train-teacher", "--dataset", "synthetic:n=200,bogus=1"], ["bogus", "valid options"]),
        (["train-teacher", "--dataset", DATA, "--optimizer", "lion"], ["bad --optimizer 'lion'", "adamw", "sgd"]),
        (["distill", "--dataset", DATA, "--teacher", "deadbeef"], ["no run 'deadbeef'"]),
        (["runs", "show", "deadbeef"], ["no run 'deadbeef'"]),
        (["runs", "export", "--format", "xml"], ["bad --format 'xml'", "csv", "json"]),
        (["train-teacher", "--dataset", DATA, "--image-size", "16"], ["--image-size applies to malaria only"]),
        (["runs", "list", "--status", "bogus"], ["bad --status 'bogus'", "finished", "failed", "running"]),
        (["runs", "list", "--kind", "bogus"], ["bad --kind 'bogus'", "teacher", "student"]),
        (["stats", "--dataset", DATA, "--metric", "bogus"], ["bad --metric 'bogus'"]),
        (["compare", "--dataset", DATA, "--jobs", "0"], ["--jobs"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(db, args, needles):
    assert_user_error(sprkd(db, *args), *needles)


@pytest.mark.parametrize("seeds", ["abc", "3-1", "-1", "0-x", "1,,b", ","])
def test_bad_seeds_is_a_user_error(db, seeds):
    # checked before anything is trained or even before a teacher is looked up
    assert_user_error(sprkd(db, "compare", "--dataset", DATA, "--seeds", seeds), f"bad --seeds '{seeds}'")
    assert open_test_store(db).list_runs() == []


def test_kd_without_teacher_in_store_says_how_to_train_one(db):
    line = assert_user_error(sprkd(db, "distill", "--method", "kd", *STUDENT_ARGS), "no finished teacher")
    assert f"sprkd train-teacher --dataset {DATA}" in line
    assert open_test_store(db).list_runs() == []


def test_teacher_with_other_class_count_is_refused(db):
    teacher = train_teacher(db)  # 3 classes
    result = sprkd(db, "distill", "--method", "kd", "--teacher", teacher["run_id"], "--dataset", DATA_4,
                   "--student", "mlp:width=8,depth=1", *TRAIN)
    assert_user_error(result, teacher["run_id"], "3 classes", "has 4")
    assert [r.kind for r in open_test_store(db).list_runs()] == ["teacher"]  # no student row was written


def test_teacher_ref_must_be_a_teacher(db):
    teacher = train_teacher(db)
    student = sprkd_json(db, "distill", "--method", "kd", "--teacher", teacher["run_id"], *STUDENT_ARGS)
    assert_user_error(sprkd(db, "distill", "--method", "kd", "--teacher", student["run_id"], *STUDENT_ARGS),
                      "not a teacher")


@pytest.mark.parametrize("where", ["missing-folder", "parent-is-file", "not-a-database", "a-directory"])
def test_unusable_store_path_is_a_user_error(tmp_path, where):
    if where == "missing-folder":
        path = tmp_path / "no" / "such" / "folder" / "runs.db"
    elif where == "parent-is-file":
        (tmp_path / "plain-file").write_text("x")
        path = tmp_path / "plain-file" / "runs.db"
    elif where == "not-a-database":
        path = tmp_path / "garbage.db"
        path.write_text("this is not an SQLite file\n" * 100)
    else:
        path = tmp_path / "a-dir"
        path.mkdir()
    assert_user_error(sprkd(path, "runs", "list"), "store", str(path))
    assert_user_error(sprkd(path, *TEACHER_ARGS), "store")
    assert not (tmp_path / "artifacts").exists()  # nothing was trained


@pytest.mark.parametrize(
    "case, args, code, needles",
    [
        ("unknown dataset", ["train-teacher", "--dataset", "nope"], 2, ["unknown dataset 'nope'"]),
        ("bad seeds", ["compare", "--dataset", DATA, "--seeds", "1-x"], 2, ["bad --seeds"]),
        ("no teacher", ["distill", "--method", "kd", *STUDENT_ARGS], 2, ["sprkd train-teacher"]),
        ("missing store folder", ["runs", "list"], 2, ["does not exist"]),
        ("diverging run", [*TEACHER_ARGS, *DIVERGE], 1, ["failed", "diverged", "step"]),
    ],
)
@pytest.mark.slow
def test_real_entry_point_never_shows_a_traceback(tmp_path, case, args, code, needles):
    db = tmp_path / "missing" / "runs.db" if case == "missing store folder" else tmp_path / "runs.db"
    done = run_subprocess(db, *args)
    combined = done.stdout + done.stderr
    assert done.returncode == code, combined
    assert "Traceback" not in combined
    if code == 2:
        assert done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stderr.startswith("error: ")
    for needle in needles:
        assert needle in combined, (needle, combined)


# --- a diverging run ----------------------------------------------------------------------------


def test_diverging_run_is_recorded_as_failed_naming_the_step(db):
    result = sprkd(db, *TEACHER_ARGS, *DIVERGE, "--json")
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "failed"
    step = outcome["step"]
    assert isinstance(step, int) and step >= 1
    assert f"step {step}" in outcome["error"]

    run = open_test_store(db).get_run(outcome["run_id"])
    assert run.status == "failed"
    assert run.ended_at is not None
    assert re.search(rf"\bstep {step}\b", run.error), run.error
    assert "nan" in run.error or "inf" in run.error
    # the failed run shows up as such, and is not offered as a teacher
    assert [r.id for r in open_test_store(db).list_runs(status="failed")] == [run.id]
    assert_user_error(sprkd(db, "distill", "--method", "kd", *STUDENT_ARGS), "no finished teacher")


def test_diverging_run_without_json_exits_non_zero(db):
    result = sprkd(db, *TEACHER_ARGS, *DIVERGE)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert re.search(r"failed.*diverged: loss became (nan|inf|-inf) at step \d+", result.output), result.output


# --- reproducibility ----------------------------------------------------------------------------


def test_same_seed_twice_gives_identical_metrics(db):
    store = open_test_store(db)
    t1 = train_teacher(db, "--seed", "3")
    t2 = train_teacher(db, "--seed", "3")
    t_other = train_teacher(db, "--seed", "4")
    rows1, rows2 = metric_rows(store, t1["run_id"]), metric_rows(store, t2["run_id"])
    assert len(rows1) == 3 * len(METRIC_NAMES)
    assert rows1 == rows2
    assert rows1 != metric_rows(store, t_other["run_id"])  # the seed does matter

    kd = ["distill", "--method", "kd", "--teacher", t1["run_id"], *STUDENT_ARGS]
    s1 = sprkd_json(db, *kd, "--seed", "5")
    s2 = sprkd_json(db, *kd, "--seed", "5")
    s_other = sprkd_json(db, *kd, "--seed", "6")
    rows1, rows2 = metric_rows(store, s1["run_id"]), metric_rows(store, s2["run_id"])
    assert len(rows1) == 3 * len(METRIC_NAMES)
    assert rows1 == rows2
    assert rows1 != metric_rows(store, s_other["run_id"])
    assert s1["run_id"] != s2["run_id"]
    # the stored predictions agree too
    p1 = [(p.example, p.predicted) for p in store.predictions(s1["run_id"])]
    assert p1 and p1 == [(p.example, p.predicted) for p in store.predictions(s2["run_id"])]


# --- --json output ------------------------------------------------------------------------------


def _check_headline(db, outcome: dict, epochs: int) -> dict:
    """The outcome's numbers agree with the per-epoch metrics `runs show --json` reports."""
    for key in ("run_id", "status", "test_acc", "best_val_acc", "final_test_acc"):
        assert key in outcome, key
    assert outcome["status"] == "finished"
    shown = sprkd_json(db, "runs", "show", outcome["run_id"])
    rows = shown["metrics"]
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    # the selection rule: best accuracy, ties by lowest loss, then the earliest (min keeps the first)
    best = min(rows, key=lambda r: (-r["val_acc"], r["val_loss"]))
    assert outcome["best_val_acc"] == best["val_acc"]
    assert outcome["test_acc"] == best["test_acc"]
    assert outcome["final_test_acc"] == rows[-1]["test_acc"]
    assert shown["status"] == "finished" and shown["id"] == outcome["run_id"]
    return {"best_epoch": best["epoch"], "rows": rows}


def test_train_teacher_json_reports_test_acc_at_best_val_epoch(db):
    # seed and lr chosen so that the best validation epoch is not the last one, and test accuracy
    # there differs from the final one: reporting the final or the best test accuracy would fail
    outcome = sprkd_json(db, "train-teacher", "--dataset", DATA, "--model", TEACHER_MODEL, "--epochs", "8",
                         "--lr", "0.3", "--seed", "2")
    found = _check_headline(db, outcome, 8)
    assert found["best_epoch"] < 8, "precondition: best val epoch should not be the last"
    assert outcome["test_acc"] != outcome["final_test_acc"], "precondition"


def test_distill_json_reports_test_acc_at_best_val_epoch(db):
    teacher = train_teacher(db)
    for method in ("kd", "sgd"):
        given = ["--teacher", teacher["run_id"]] if method == "kd" else []  # sgd takes none (refused)
        outcome = sprkd_json(db, "distill", "--method", method, *given, *STUDENT_ARGS)
        _check_headline(db, outcome, 3)
        run = open_test_store(db).get_run(outcome["run_id"])
        assert run.kind == "student" and run.method == method
        assert run.teacher_ids == ([teacher["run_id"]] if method == "kd" else [])


def test_every_json_command_prints_one_document(store_url):
    db = store_url
    teacher = train_teacher(db)
    assert teacher["status"] == "finished"
    distilled = sprkd_json(db, "distill", "--method", "kd", *STUDENT_ARGS)  # the latest teacher by default
    assert open_test_store(db).get_run(distilled["run_id"]).teacher_ids == [teacher["run_id"]]
    compared = sprkd_json(db, "compare", *STUDENT_ARGS, "--seeds", "0-1")
    assert isinstance(compared, dict) and compared["arms"]
    listed = sprkd_json(db, "runs", "list")
    assert isinstance(listed, list) and len(listed) == 1 + 4
    shown = sprkd_json(db, "runs", "show", teacher["run_id"][:6])
    assert shown["id"] == teacher["run_id"]
    assert {"config", "summary", "metrics", "versions"} <= set(shown)
    pairs = sprkd_json(db, "stats", "--dataset", DATA)
    assert isinstance(pairs, list) and len(pairs) == 1


# --- runs list / show / export ------------------------------------------------------------------


@pytest.fixture
def populated(db):
    """A store with two teachers (one failed), two kd and one sgd student."""
    teacher = train_teacher(db)
    failed = sprkd(db, *TEACHER_ARGS, *DIVERGE, "--json")
    assert failed.exit_code == 1
    kd = [sprkd_json(db, "distill", "--method", "kd", "--teacher", teacher["run_id"], *STUDENT_ARGS,
                     "--seed", str(s))["run_id"] for s in (0, 1)]
    sgd = sprkd_json(db, "distill", "--method", "sgd", *STUDENT_ARGS)["run_id"]
    return {"teacher": teacher["run_id"], "failed": json.loads(failed.stdout)["run_id"], "kd": kd, "sgd": sgd}


def _ids(db, *filters):
    return {row["id"] for row in sprkd_json(db, "runs", "list", *filters)}


def test_runs_list_filters(db, populated):
    p = populated
    everything = {p["teacher"], p["failed"], p["sgd"], *p["kd"]}
    assert _ids(db) == everything
    assert _ids(db, "--method", "kd") == set(p["kd"])
    assert _ids(db, "--method", "sgd") == {p["sgd"]}  # teachers train with sgd, but show as teachers
    assert _ids(db, "--method", "teacher") == _ids(db, "--arm", "teacher") == {p["teacher"], p["failed"]}
    assert _ids(db, "--arm", "kd") == set(p["kd"])
    assert _ids(db, "--kind", "teacher") == {p["teacher"], p["failed"]}
    assert _ids(db, "--kind", "student") == {p["sgd"], *p["kd"]}
    assert _ids(db, "--status", "failed") == {p["failed"]}
    assert _ids(db, "--status", "finished") == everything - {p["failed"]}
    assert _ids(db, "--kind", "teacher", "--status", "finished") == {p["teacher"]}
    assert _ids(db, "--method", "kd", "--status", "failed") == set()
    assert _ids(db, "--dataset", "digits") == set()
    rows = sprkd_json(db, "runs", "list", "--limit", "2")
    assert len(rows) == 2
    assert [r["id"] for r in rows] == [p["sgd"], p["kd"][1]]  # newest first

    table = sprkd(db, "runs", "list", "--kind", "teacher")
    assert table.exit_code == 0, table.output
    assert p["teacher"] in table.stdout and p["failed"] in table.stdout and p["sgd"] not in table.stdout


def test_runs_show(db, populated):
    p = populated
    shown = sprkd_json(db, "runs", "show", p["kd"][0])
    assert shown["kind"] == "student" and shown["method"] == "kd" and shown["teacher_ids"] == [p["teacher"]]
    assert shown["config"]["method_options"] == {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9}
    assert shown["config"]["data"]["n_classes"] == 3
    assert len(shown["metrics"]) == 3
    assert all({f"{s}_{n}" for s, n in METRIC_NAMES} <= set(row) for row in shown["metrics"])
    assert shown["n_params"] == (8 * 8 + 8) + (8 * 3 + 3)

    failed = sprkd_json(db, "runs", "show", p["failed"])
    assert failed["status"] == "failed" and "diverged" in failed["error"]

    text = sprkd(db, "runs", "show", p["kd"][0])
    assert text.exit_code == 0, text.output
    assert p["kd"][0] in text.stdout and "metrics per epoch" in text.stdout and "kd" in text.stdout
    text = sprkd(db, "runs", "show", p["failed"])
    assert text.exit_code == 0 and "diverged" in text.stdout


def test_runs_export_csv_and_json(db, populated, tmp_path):
    p = populated
    result = sprkd(db, "runs", "export", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["id"] for r in rows} == {p["teacher"], p["failed"], p["sgd"], *p["kd"]}
    by_id = {r["id"]: r for r in rows}
    store = open_test_store(db)
    assert float(by_id[p["sgd"]]["test_acc"]) == pytest.approx(store.get_run(p["sgd"]).summary["test_acc"])
    assert by_id[p["kd"][0]]["teacher_ids"] == p["teacher"]
    assert by_id[p["failed"]]["status"] == "failed"
    assert by_id[p["teacher"]]["arm"] == by_id[p["teacher"]]["method"] == "teacher"  # not sgd
    assert by_id[p["kd"][0]]["arm"] == "kd" and by_id[p["kd"][0]]["config.method_options.temperature"] == "4.0"
    assert by_id[p["sgd"]]["config.lr"] == "0.01" and by_id[p["sgd"]]["config.method_options.temperature"] == ""

    result = sprkd(db, "runs", "export", "--format", "json", "--method", "kd")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert {r["id"] for r in records} == set(p["kd"])
    assert all(r["method"] == "kd" for r in records)

    result = sprkd(db, "runs", "export", "--format", "csv", "--metrics", "--status", "finished")
    assert result.exit_code == 0, result.output
    metrics = list(csv.DictReader(io.StringIO(result.stdout)))
    assert set(metrics[0]) == {"run_id", "step", "epoch", "split", "name", "value"}
    finished = {p["teacher"], p["sgd"], *p["kd"]}
    assert {m["run_id"] for m in metrics} == finished
    assert len(metrics) == len(finished) * 3 * len(METRIC_NAMES)
    stored = {(m.run_id, m.epoch, m.split, m.name): m.value for m in store.metrics(sorted(finished))}
    assert {(m["run_id"], int(m["epoch"]), m["split"], m["name"]): float(m["value"]) for m in metrics} \
        == pytest.approx(stored)

    out = tmp_path / "metrics.json"
    result = sprkd(db, "runs", "export", "--format", "json", "--metrics", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert len(json.loads(out.read_text())) == len(finished) * 3 * len(METRIC_NAMES)  # the failed run has none

    assert_user_error(sprkd(db, "runs", "export", "--format", "parquet"), "--format parquet", "--output")
    assert_user_error(sprkd(db, "runs", "export", "--output", str(tmp_path / "nope" / "x.csv")), "cannot write")
