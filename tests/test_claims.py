"""The seeds' claims as metrics (docs/methods.md): each against a hand-computed case. Curves are written into a
store directly; noise_acc and the Hessian claims come from tiny real runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import DATA, STUDENT_ARGS, assert_user_error, open_test_store, sprkd, sprkd_json
from scipy import stats as scipy_stats

from sprkd_cli.services.analysis import method_values, parse_metric
from sprkd_cli.stats import auc_val_acc, brown_forsythe, epochs_to, sd_last

PROCESS = {"host": "test", "pid": 1, "pid_started": 1}

# (val_acc per epoch, val_loss per epoch) of each (arm, seed)
CURVES = {
    ("sgd", 0): ([0.50, 0.70, 0.80, 0.85], [1.0, 0.8, 0.7, 0.6]),
    ("sgd", 1): ([0.60, 0.75, 0.78, 0.79], [1.0, 0.9, 0.9, 0.6]),  # never reaches 0.8: censored
    ("sgd", 2): ([0.80, 0.82, 0.84, 0.86], [0.5, 0.4, 0.4, 0.4]),
    ("kd", 0): ([0.70, 0.90, 0.90, 0.91], [0.7, 0.5, 0.3, 0.1]),
    ("kd", 1): ([0.40, 0.60, 0.81, 0.70], [1.2, 1.0, 0.8, 0.9]),
    ("kd", 2): ([0.30, 0.50, 0.70, 0.80], [1.5, 1.1, 0.9, 0.8]),
}


def _curve_store(db, *, store_auc: bool = True):
    store = open_test_store(db)
    for (method, seed), (acc, loss) in CURVES.items():
        run = store.create_run(kind="student", method=method, dataset=DATA, model="mlp", seed=seed, config={},
                               config_hash=f"h-{method}", teacher_ids=[], provenance={}, device="cpu",
                               process=PROCESS)
        rows = [(e * 10, e, "val", "acc", a) for e, a in enumerate(acc, 1)] + \
               [(e * 10, e, "val", "loss", v) for e, v in enumerate(loss, 1)]
        store.add_metrics(run.id, rows)
        summary = {"best_epoch": int(np.argmax(acc)) + 1, "epochs": len(acc)}
        if store_auc:
            summary["auc_val_acc"] = sum(acc) / len(acc)
        store.finish_run(run.id, summary, 10)
    return store


def _values(store, metric: str, at: str = "best-val") -> dict:
    found = method_values(store, DATA, ["sgd", "kd"], metric, at)
    return {m: {seed: v["value"] for seed, v in per_seed.items()} for m, per_seed in found.items()}


# -- the numbers ------------------------------------------------------------------------------------
def test_curve_functions_hand_computed():
    assert epochs_to([0.5, 0.7, 0.8, 0.85], 0.8) == 3
    assert epochs_to([0.5, 0.7, 0.8, 0.85], 0.5) == 1
    assert epochs_to([0.6, 0.79], 0.8) is None
    assert auc_val_acc([0.5, 0.7, 0.8, 0.85]) == pytest.approx(0.7125, abs=1e-15)
    # last 3 of 0.8, 0.7, 0.6: mean 0.7, squared deviations 0.01 + 0 + 0.01 over n-1 = 2
    assert sd_last([1.0, 0.8, 0.7, 0.6], 3) == pytest.approx(0.1, rel=1e-12)
    with pytest.raises(ValueError):
        sd_last([1.0, 0.8], 3)


def test_brown_forsythe_hand_computed():
    # medians 2 and 3; |deviations| [1,0,1] and [2,0,2], means 2/3 and 4/3 around 1:
    # between = 3·(1/3)²·2 = 2/3 on 1 df; within = 2/3 + 8/3 = 10/3 on 4 df; W = (2/3)/(10/12) = 0.8
    (row,) = brown_forsythe({"a": {0: 1.0, 1: 2.0, 2: 3.0}, "b": {0: 1.0, 1: 3.0, 2: 5.0}})
    assert row["statistic"] == pytest.approx(0.8, rel=1e-12)
    assert row["p"] == pytest.approx(scipy_stats.f.sf(0.8, 1, 4), rel=1e-12)
    assert row["p_holm"] == row["p"]
    (flat,) = brown_forsythe({"a": {0: 1.0, 1: 1.0}, "b": {0: 2.0, 1: 2.0}})
    assert math.isnan(flat["p"])


def test_parse_metric_forms_and_errors():
    assert parse_metric("epochs_to:0.9").param == 0.9
    assert parse_metric("val_loss_sd:5").param == 5
    assert parse_metric("noise_acc:0.10").param == "0.1"
    assert parse_metric("hessian.trace").param == "trace"
    assert (parse_metric("test_acc").split, parse_metric("test_acc").name) == ("test", "acc")
    for bad in ("epochs_to:x", "epochs_to:1.5", "val_loss_sd:1", "noise_acc:-1", "hessian.max", "auc_val_acc:3"):
        with pytest.raises(Exception, match="bad --metric"):
            parse_metric(bad)


# -- curve metrics from a store ---------------------------------------------------------------------
def test_curve_metrics_from_stored_curves(db):
    store = _curve_store(db)
    assert _values(store, "epochs_to:0.8") == {"sgd": {0: 3, 1: None, 2: 1}, "kd": {0: 2, 1: 3, 2: 4}}
    assert _values(store, "auc_val_acc") == {
        m: {s: pytest.approx(sum(acc) / 4, abs=1e-15) for (mm, s), (acc, _) in CURVES.items() if mm == m}
        for m in ("sgd", "kd")}
    sd = _values(store, "val_loss_sd:3")
    assert sd["sgd"][0] == pytest.approx(0.1, rel=1e-12)
    assert sd["sgd"][2] == pytest.approx(0.0, abs=1e-15)
    assert sd["kd"][0] == pytest.approx(0.2, rel=1e-12)  # 0.5, 0.3, 0.1
    # --at does not change a whole-run metric
    assert _values(store, "epochs_to:0.8", "final") == _values(store, "epochs_to:0.8")


def test_auc_of_runs_stored_before_it_comes_from_the_curve(db):
    store = _curve_store(db, store_auc=False)
    assert _values(store, "auc_val_acc")["kd"][2] == pytest.approx((0.3 + 0.5 + 0.7 + 0.8) / 4, abs=1e-15)


def test_stats_censors_with_one_warning_line(db):
    _curve_store(db)
    (pair,) = sprkd_json(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "epochs_to:0.8")
    assert (pair["n_a"], pair["n_b"]) == (2, 3)
    assert pair["mean_a"] == pytest.approx(2.0) and pair["mean_b"] == pytest.approx(3.0)
    assert pair["warnings"][0] == ("censored: runs that never reached 0.8 validation accuracy are left out of the "
                                   "tests (sgd 1 of 3)")
    table = sprkd(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "epochs_to:0.8")
    assert table.exit_code == 0, table.output
    assert table.stdout.count("censored: runs that never reached") == 1
    assert "(whole run)" in table.stdout


def test_val_loss_sd_comes_with_brown_forsythe(db):
    store = _curve_store(db)
    values = _values(store, "val_loss_sd:3")
    (pair,) = sprkd_json(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "val_loss_sd:3")
    expected = scipy_stats.levene(list(values["sgd"].values()), list(values["kd"].values()), center="median")
    assert pair["bf_statistic"] == pytest.approx(expected.statistic, rel=1e-12)
    assert pair["p_brown_forsythe"] == pytest.approx(expected.pvalue, rel=1e-12)
    assert pair["p_holm_brown_forsythe"] == pair["p_brown_forsythe"]
    table = sprkd(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "val_loss_sd:3")
    assert "Brown–Forsythe" in table.stdout
    # on request for any metric; not otherwise
    (auc,) = sprkd_json(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "auc_val_acc", "--spread")
    assert "p_brown_forsythe" in auc
    (plain,) = sprkd_json(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "auc_val_acc")
    assert "p_brown_forsythe" not in plain
    assert_user_error(sprkd(db, "stats", "--dataset", DATA, "--metric", "val_loss_sd:9"), "has 4 epochs")


def test_missing_claims_say_how_to_make_them(db):
    _curve_store(db)
    assert_user_error(sprkd(db, "stats", "--dataset", DATA, "--metric", "noise_acc:0.1"), "--eval-noise 0.1")
    assert_user_error(sprkd(db, "stats", "--dataset", DATA, "--metric", "hessian.top1"), "hessian-report",
                      "--weights best-val --trace")


def test_stats_help_lists_the_claims():
    result = sprkd(None, "stats", "--help")
    text = " ".join(result.stdout.split())
    for name in ("epochs_to:X", "auc_val_acc", "val_loss_sd:K", "hessian.top1", "hessian.trace", "hessian.min",
                 "noise_acc:S", "--spread"):
        assert name in text, name


# -- noise_acc -----------------------------------------------------------------------------------------
def test_noise_is_the_fixed_draw_scaled_by_each_feature_sd():
    from sprkd_cli.services.claims import NOISE_SEED, noisy

    x_train = torch.tensor([[0.0, 1.0, 5.0], [2.0, 1.0, 5.0], [4.0, 1.0, 5.0]])  # population sds 1.633, 0, 0
    x_test = torch.zeros(4, 3)
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(NOISE_SEED))
    out = noisy(x_test, x_train, 0.5)
    sd = math.sqrt(8 / 3)
    torch.testing.assert_close(out[:, 0], 0.5 * sd * z[:, 0])
    assert torch.equal(out[:, 1:], torch.zeros(4, 2))  # a constant feature gets no noise
    assert torch.equal(noisy(x_test, x_train, 0.5), out)  # the same draw every time
    assert torch.equal(noisy(x_test + 3, x_train, 0.0), x_test + 3)


def test_eval_noise_zero_is_test_acc_exactly_and_compare_adds_missing_levels(db):
    run = sprkd_json(db, "distill", "--method", "sgd", *STUDENT_ARGS, "--eval-noise", "0,0.5")
    assert run["noise_acc:0"] == run["test_acc"]
    assert run["final_noise_acc:0"] == run["final_test_acc"]
    assert 0 <= run["noise_acc:0.5"] <= 1
    assert "auc_val_acc" in run
    store = open_test_store(db)
    acc = [m.value for m in store.metrics([run["run_id"]]) if (m.split, m.name) == ("val", "acc")]
    assert run["auc_val_acc"] == pytest.approx(sum(acc) / len(acc), rel=1e-12)
    # a measurement: the same experiment as a run without it (compare reuses it) ...
    out = sprkd_json(db, "compare", *STUDENT_ARGS, "--methods", "sgd", "--seeds", "0", "--eval-noise", "0.5,1")
    assert (out["ran"], out["reused"]) == (0, 1)
    # ... and the level it lacked is measured from its checkpoints, the one it had kept
    assert out["noise_added"] == [run["run_id"]]
    summary = open_test_store(db).get_run(run["run_id"]).summary
    assert summary["noise_acc:0.5"] == run["noise_acc:0.5"] and "noise_acc:1" in summary
    assert summary["noise_acc:0"] == run["noise_acc:0"]
    values = _values(open_test_store(db), "noise_acc:1", "final")
    assert values["sgd"] == {0: summary["final_noise_acc:1"]}


def test_bad_eval_noise_and_text_datasets_are_refused(db):
    assert_user_error(sprkd(db, "distill", "--method", "sgd", *STUDENT_ARGS, "--eval-noise", "0.1,x"),
                      "bad --eval-noise '0.1,x'")
    assert_user_error(sprkd(db, "distill", "--method", "sgd", *STUDENT_ARGS, "--eval-noise", "-1"), "--eval-noise")
    assert_user_error(sprkd(db, "distill", "--method", "sgd", "--dataset", "sst2", "--eval-noise", "0.1"),
                      "token ids", "drop --eval-noise")


# -- Hessian claims ------------------------------------------------------------------------------------
PROBE = ["--probe-batches", "1", "--probe-size", "64"]


def test_hessian_claims_equal_the_exact_hessian_of_the_best_val_weights(db):
    from test_hessian import exact_hessian, probe_data

    from sprkd_cli.data import load_dataset
    from sprkd_cli.hessian import ProbeSet
    from sprkd_cli.services.runs import load_run_model

    args = ["compare", *STUDENT_ARGS, "--methods", "sgd", "--seeds", "0", *PROBE, "--hessian"]
    first = sprkd_json(db, *args)
    (run_id,) = first["methods"][0]["run_ids"]
    assert first["hessian"] == {"made": [run_id], "reused": []}
    store = open_test_store(db)
    (report,) = store.hessian_reports(run_id)
    assert report.config["weights"] == "best-val" and report.step is None
    again = sprkd_json(db, *args)
    assert again["hessian"] == {"made": [], "reused": [run_id]}
    assert len(store.hessian_reports(run_id)) == 1

    run = store.get_run(run_id)
    data = load_dataset(DATA, 0)
    probe = ProbeSet.draw(data.x_train, data.y_train, n_batches=1, size=64, seed=run.seed)
    eigenvalues = torch.linalg.eigvalsh(exact_hessian(load_run_model(run), *probe_data(probe))).numpy()
    got = {name: _values(store, f"hessian.{name}")["sgd"][0] for name in ("top1", "trace", "min")}
    scale = abs(eigenvalues[-1])
    assert got["top1"] == pytest.approx(eigenvalues[-1], rel=1e-4)
    assert abs(got["min"] - eigenvalues[0]) < 1e-4 * scale
    assert abs(got["trace"] - eigenvalues.sum()) < 4 * report.result["trace_se"] + 1e-3 * scale
    # the final weights have no report yet: hessian-report --weights final makes one, which stats then reads
    assert_user_error(sprkd(db, "stats", "--dataset", DATA, "--methods", "sgd", "--metric", "hessian.top1",
                            "--at", "final"), "--weights final")
    made = sprkd_json(db, "hessian-report", run_id, "--weights", "final", "--trace")
    assert _values(store, "hessian.top1", "final")["sgd"][0] == made["top_eigenvalues"][0]


def test_json_of_stats_stays_a_list_of_pairs(db):
    _curve_store(db)
    result = sprkd(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "auc_val_acc", "--json")
    assert isinstance(json.loads(result.stdout), list)
