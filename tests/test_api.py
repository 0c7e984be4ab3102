"""sprkd_cli.api and `runs export`: one row per run and arm, config columns, teachers as teachers, and
files (csv, json, parquet) that read back as the frame they were written from."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sprkd_cli.api import load_hessian, load_metrics, load_runs, parquet_ready, write_frame

from conftest import STUDY_ARMS, open_test_store, sprkd, sprkd_json

pytestmark = pytest.mark.slow  # the study fixture trains 15 small runs once per session


def test_load_runs_has_one_row_per_run_and_arm(study):
    runs = load_runs(study)
    finals = runs[~runs.arm.str.endswith(":tune")]
    assert set(finals.arm) == {"teacher", *STUDY_ARMS}
    assert finals.groupby("arm").size().to_dict() == {"teacher": 1} | {arm: 2 for arm in STUDY_ARMS}
    kd, kd2 = (set(finals[finals.arm == a].id) for a in ("kd", "kd2"))
    assert kd == kd2  # the same two runs, a row in each arm: a pivot by arm never mixes arms
    teacher = finals[finals.arm == "teacher"].iloc[0]
    assert teacher.method == "teacher" and teacher.kind == "teacher"  # not "sgd"
    assert {"config.lr", "config.epochs", "config.method_options.temperature", "config.data.n_classes",
            "test_acc", "best_val_acc", "best_epoch", "wall_seconds"} <= set(runs.columns)
    store = open_test_store(study)
    for row in finals.itertuples():
        run = store.get_run(row.id)
        assert row.test_acc == pytest.approx(run.summary["test_acc"])
        assert getattr(row, "_" + str(list(runs.columns).index("config.lr") + 1)) == run.config["lr"]
    tuned = finals[finals.arm == "sgd"]["config.lr"]
    assert len(set(tuned)) == 1 and tuned.iloc[0] in (0.01, 0.03)  # the lr --tune chose
    assert list(load_runs(study, arm="kd").id) == list(finals[finals.arm == "kd"].id)
    assert set(load_runs(study, method="sgd").id) == set(finals[finals.arm == "sgd"].id) | set(
        runs[runs.arm == "sgd:tune"].id)  # sgd students only, no teacher


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json"])
def test_export_file_reads_back_equal(study, tmp_path, fmt):
    frame = load_runs(study)
    out = tmp_path / f"runs.{fmt}"
    result = sprkd(study, "runs", "export", "--format", fmt, "--output", str(out))
    assert result.exit_code == 0, result.output
    if fmt == "parquet":
        back = pd.read_parquet(out)
        pd.testing.assert_frame_equal(back, parquet_ready(frame), check_dtype=False)
        return
    back = pd.read_csv(out) if fmt == "csv" else pd.DataFrame(json.loads(out.read_text()))
    assert list(back.columns) == list(frame.columns)
    assert list(back.id) == list(frame.id) and list(back.arm) == list(frame.arm)
    assert back.test_acc.tolist() == pytest.approx(frame.test_acc.tolist())


def test_write_frame_parquet_round_trip_with_mixed_columns(tmp_path):
    frame = pd.DataFrame({"id": ["a", "b", "c"], "config.x": [1, "two", None], "acc": [0.5, None, 0.25]})
    write_frame(frame, tmp_path / "f.parquet", "parquet")
    back = pd.read_parquet(tmp_path / "f.parquet")
    assert back["config.x"].tolist()[:2] == ["1", "two"] and back["config.x"].isna().tolist() == [False, False, True]
    assert back.acc.tolist()[0] == 0.5 and back.acc.tolist()[2] == 0.25


def test_load_metrics_and_hessian(study):
    kd_ids = list(load_runs(study, arm="kd").id)
    metrics = load_metrics(study, arm="kd")
    assert set(metrics.run_id) == set(kd_ids)
    assert set(zip(metrics.split, metrics.name)) >= {("val", "acc"), ("val", "loss"), ("train", "loss")}
    assert metrics.groupby("run_id").epoch.max().tolist() == [3, 3]
    hessian = load_hessian(study, arm="kd")
    assert set(hessian.run_id) == set(kd_ids) and (hessian.weights == "best-val").all()  # compare --hessian
    assert (hessian.top_eigenvalue >= hessian.bottom_eigenvalue).all()
    assert hessian.top_eigenvalues.map(len).eq(5).all()


def test_runs_list_shows_the_arms(study):
    rows = {r["id"]: r for r in sprkd_json(study, "runs", "list", "--limit", "0")}
    kd = load_runs(study, arm="kd").id.iloc[0]
    assert rows[kd]["arms"] == ["kd", "kd2"]
    teacher = load_runs(study, arm="teacher").id.iloc[0]
    assert rows[teacher]["arms"] == ["teacher"] and rows[teacher]["method"] == "teacher"
    table = sprkd(study, "runs", "list", "--limit", "0")
    assert table.exit_code == 0
    line = next(line for line in table.stdout.splitlines() if kd in line)
    assert "kd, kd2" in line
