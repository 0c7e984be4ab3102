"""hessian-report through the CLI: the stored report, seed independence of converged eigenvalues,
--compare, reports during training (--hessian-every), and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TEACHER_ARGS, assert_user_error, metric_rows, open_test_store, sprkd, sprkd_json, train_teacher

SMALL = ["--probe-batches", "1", "--probe-size", "64"]


@pytest.fixture
def teacher(db) -> dict:
    return train_teacher(db, "--seed", "0")


def test_report_json_is_stored_and_complete(db, teacher, tmp_path):
    out = sprkd_json(db, "hessian-report", teacher["run_id"], *SMALL, "--top-k", "3", "--bottom-k", "1",
                     "--trace", "--trace-hvp", "30", "--density", "--slq-runs", "2", "--slq-steps", "10",
                     "--dtype", "float64")
    for key in ("top_eigenvalues", "bottom_eigenvalues", "residuals", "trace", "trace_se", "n_hvp", "seconds",
                "density_nodes", "density_weights", "hvp_kind", "iterations", "probe_sizes"):
        assert key in out, key
    assert len(out["top_eigenvalues"]) == 3 and len(out["bottom_eigenvalues"]) == 1
    assert out["top_eigenvalues"] == sorted(out["top_eigenvalues"], reverse=True)
    assert out["bottom_eigenvalues"][0] <= out["top_eigenvalues"][-1]
    assert len(out["residuals"]) == 4 and all(r >= 0 for r in out["residuals"])
    assert all(out["converged"])
    # Converged in float64: the measured residual is tiny next to the largest eigenvalue.
    assert max(out["residuals"]) < 1e-6 * abs(out["top_eigenvalues"][0])
    weights = np.asarray(out["density_weights"])
    assert weights.shape == (2, 10) and np.allclose(weights.sum(axis=1), 1.0)
    assert out["probe_sizes"] == [64]
    assert out["n_hvp"] >= out["iterations"] + 30 + 2 * 10
    png = tmp_path / "artifacts" / teacher["run_id"] / f"hessian-{out['report_id']}.png"
    assert png.is_file() and png.stat().st_size > 1000

    store = open_test_store(db)
    (row,) = store.hessian_reports(teacher["run_id"])
    assert row.id == out["report_id"] and row.step is None and row.n_hvp == out["n_hvp"]
    assert row.config["dtype"] == "float64" and row.config["probe_size"] == 64 and row.config["seed"] == 0
    assert row.result["top_eigenvalues"] == out["top_eigenvalues"]
    assert row.result["probe"]["seed"] == 0  # the run's own probe set: drawn from the run's seed


def test_converged_eigenvalues_do_not_depend_on_seed(db, teacher):
    args = ["hessian-report", teacher["run_id"], *SMALL, "--top-k", "2", "--bottom-k", "1", "--dtype", "float64"]
    a, b = sprkd_json(db, *args, "--seed", "1"), sprkd_json(db, *args, "--seed", "2")
    assert all(a["converged"]) and all(b["converged"])
    np.testing.assert_allclose(a["top_eigenvalues"] + a["bottom_eigenvalues"],
                               b["top_eigenvalues"] + b["bottom_eigenvalues"], rtol=1e-6)
    other_probe = sprkd_json(db, *args, "--seed", "1", "--probe-seed", "99")
    assert other_probe["top_eigenvalues"][0] != pytest.approx(a["top_eigenvalues"][0], rel=1e-6)


@pytest.mark.parametrize("kind", ["double", "func"])
def test_hvp_kinds_agree(db, teacher, kind):
    args = ["hessian-report", teacher["run_id"], *SMALL, "--top-k", "2", "--bottom-k", "0", "--dtype", "float64"]
    auto = sprkd_json(db, *args)
    forced = sprkd_json(db, *args, "--hvp", kind)
    assert forced["hvp_kind"] == kind
    np.testing.assert_allclose(forced["top_eigenvalues"], auto["top_eigenvalues"], rtol=1e-8)


def test_layer_restricts_the_parameters(db, teacher):
    whole = sprkd_json(db, "hessian-report", teacher["run_id"], *SMALL, "--top-k", "1", "--bottom-k", "0")
    embed = sprkd_json(db, "hessian-report", teacher["run_id"], *SMALL, "--top-k", "1", "--bottom-k", "0",
                       "--layer", "embed")
    assert embed["dim"] < whole["dim"]
    assert all(name.startswith("embed") for name in embed["parameters"])


def test_compare_side_by_side(db, teacher, tmp_path):
    other = train_teacher(db, "--seed", "1")
    for run in (teacher, other):
        sprkd_json(db, "hessian-report", run["run_id"], *SMALL, "--top-k", "1", "--bottom-k", "1", "--trace",
                   "--density", "--slq-runs", "2", "--slq-steps", "8")
    out = sprkd_json(db, "hessian-report", "--compare", teacher["run_id"], other["run_id"])
    assert [r["run_id"] for r in out["runs"]] == [teacher["run_id"], other["run_id"]]
    for row in out["runs"]:
        assert row["top_eigenvalue"] >= row["bottom_eigenvalue"]
        assert row["trace"] is not None and 0.0 <= row["negative_mass"] <= 1.0
    assert out["plot"] and (tmp_path / "artifacts").exists()
    table = sprkd(db, "hessian-report", "--compare", teacher["run_id"], other["run_id"])
    assert table.exit_code == 0 and "negative density" in table.stdout


def test_hessian_every_stores_reports_by_step_and_leaves_training_unchanged(store_url):
    db = store_url
    plain = train_teacher(db, "--seed", "3")
    probed = sprkd_json(db, *TEACHER_ARGS, "--seed", "3", "--hessian-every", "4")
    store = open_test_store(db)
    # 200 examples: 140 train, batch 64 -> 3 steps per epoch, 9 steps: reports at steps 4 and 8.
    reports = store.hessian_reports(probed["run_id"])
    assert [r.step for r in reports] == [4, 8]
    assert [r.config["epoch"] for r in reports] == [2, 3]
    assert all(r.result["trace"] is not None and r.result["top_eigenvalues"] for r in reports)
    # Measurement only: same experiment (config hash) and bit-identical metrics.
    assert probed["config_hash"] == plain["config_hash"]
    assert metric_rows(store, probed["run_id"]) == metric_rows(store, plain["run_id"])
    shown = sprkd_json(db, "runs", "show", probed["run_id"])
    assert [(h["step"], h["top_eigenvalue"]) for h in shown["hessian_reports"]] == \
        [(r.step, r.result["top_eigenvalues"][0]) for r in reports]
    table = sprkd(db, "runs", "show", probed["run_id"])
    assert table.exit_code == 0 and "Hessian reports" in table.stdout


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--dtype", "float16"], ["bad --dtype 'float16'", "float32", "float64"]),
        (["--mode", "bogus"], ["bad --mode 'bogus'"]),
        (["--hvp", "bogus"], ["bad --hvp 'bogus'", "auto", "double", "func"]),
        (["--top-k", "0", "--bottom-k", "0"], ["at least one eigenvalue"]),
        (["--trace", "--trace-hvp", "4"], ["--trace-hvp >= 5"]),
        (["--layer", "no.such.layer"], ["no.such.layer"]),
    ],
)
def test_bad_input(db, teacher, extra, needles):
    assert_user_error(sprkd(db, "hessian-report", teacher["run_id"], *SMALL, *extra), *needles)


def test_bad_runs(db, teacher):
    assert_user_error(sprkd(db, "hessian-report", "deadbeef"), "no run 'deadbeef'")
    assert_user_error(sprkd(db, "hessian-report", teacher["run_id"], teacher["run_id"]), "--compare")
    assert_user_error(sprkd(db, "hessian-report", "--compare", teacher["run_id"]), "no Hessian report")
    assert_user_error(sprkd(db, *TEACHER_ARGS, "--hessian-every", "-1"), "--hessian-every")


def test_a_report_defaults_to_the_runs_own_probe_set(db):
    """A run trained with its own --probe-* settings: hessian-report without probe flags measures on that
    probe set, so on the final model it finds what the run's own last --hessian-every report found."""
    own = ["--probe-batches", "1", "--probe-size", "32", "--probe-mode", "train"]
    run = sprkd_json(db, *TEACHER_ARGS, "--hessian-every", "3", *own)  # 9 steps: reports at 3, 6 and 9 (the last)
    store = open_test_store(db)
    last = store.hessian_reports(run["run_id"])[-1]
    assert last.step == 9 and last.config["probe_size"] == 32 and last.config["mode"] == "train"

    report = sprkd_json(db, "hessian-report", run["run_id"])
    assert report["probe_sizes"] == [32]
    assert (report["request"]["probe_batches"], report["request"]["probe_size"], report["request"]["mode"]) == \
        (1, 32, "train")
    assert report["top_eigenvalues"] == pytest.approx(last.result["top_eigenvalues"], rel=1e-5)
    # a flag given still wins
    other = sprkd_json(db, "hessian-report", run["run_id"], "--probe-size", "16", "--mode", "eval")
    assert other["probe_sizes"] == [16] and (other["request"]["mode"], other["request"]["probe_batches"]) == ("eval", 1)
