"""The seeds' claims as metrics (docs/methods.md): each against a hand-computed case. Curves are written into a
store directly; noise_acc and the Hessian claims come from tiny real runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from sprkd_cli.services.analysis import method_values, parse_metric
from sprkd_cli.stats import auc_val_acc, brown_forsythe, epochs_to, sd_last

from conftest import DATA, STUDENT_ARGS, assert_user_error, open_test_store, sprkd, sprkd_json

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


def test_stats_keeps_censored_runs_as_time_to_event_data(db):
    _curve_store(db)
    (pair,) = sprkd_json(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "epochs_to:0.8")
    # sgd: 3, censored at 4, 1; kd: 2, 3, 4: every run is in the test
    assert (pair["n_a"], pair["reached_a"], pair["censored_a"]) == (3, 2, 1)
    assert (pair["n_b"], pair["reached_b"], pair["censored_b"]) == (3, 3, 0)
    assert (pair["median_a"], pair["median_b"]) == (3, 3)
    expected = scipy_stats.logrank(scipy_stats.CensoredData(uncensored=[3, 1], right=[4]),
                                   scipy_stats.CensoredData(uncensored=[2, 3, 4]))
    assert pair["logrank_chi2"] == pytest.approx(expected.statistic**2, rel=1e-12)
    assert pair["p_logrank_asymptotic"] == pytest.approx(expected.pvalue, rel=1e-12)
    assert pair["p_logrank"] == pytest.approx(18 / 20)  # of the 20 splits of the 6 runs, 18 are as extreme
    # paired: seed 0 3−2, seed 1 censored at 4 against 3 (slower), seed 2 1−4
    assert pair["p_paired_rank"] == pytest.approx(
        scipy_stats.wilcoxon([1, 4, -3], method="exact").pvalue, rel=1e-12)
    assert pair["warnings"] == []
    table = sprkd(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "epochs_to:0.8")
    assert table.exit_code == 0, table.output
    assert table.stdout.count("censored: runs that never reached 0.8") == 1
    assert "(whole run)" in table.stdout and "log-rank" in table.stdout
    assert "censored at its last epoch" in table.stdout  # what happens to a run without a value


def _first_reached(store, run_ids, threshold):
    curves = store.metric_curves(run_ids, "val", "acc")
    return {rid: epochs_to(curves[rid], threshold) for rid in run_ids}, {rid: len(curves[rid]) for rid in run_ids}


@pytest.mark.slow
def test_one_arm_reaches_and_the_other_never_does_end_to_end(db):
    # sgd students learn; kd students at lr 1e-9 stay at their initial weights and never reach 0.7
    sprkd_json(db, "train-teacher", "--dataset", DATA, "--model", "mlp:width=16,depth=1", "--epochs", "3",
               "--lr", "3e-2")
    for seed in (0, 1, 2):
        for method, lr in (("sgd", "3e-2"), ("kd", "1e-9")):
            sprkd_json(db, "distill", "--method", method, "--dataset", DATA, "--student", "mlp:width=8,depth=1",
                       "--epochs", "4", "--lr", lr, "--seed", str(seed))
    (pair,) = sprkd_json(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "epochs_to:0.7")
    store = open_test_store(db)
    runs = {m: [r.id for r in store.list_runs(kind="student", method=m)] for m in ("sgd", "kd")}
    first = {m: _first_reached(store, ids, 0.7)[0] for m, ids in runs.items()}
    assert all(v is not None for v in first["sgd"].values()) and all(v is None for v in first["kd"].values())
    assert (pair["reached_a"], pair["censored_a"], pair["reached_b"], pair["censored_b"]) == (3, 0, 0, 3)
    sgd_epochs = sorted(first["sgd"].values())
    assert pair["median_a"] == sgd_epochs[1] and pair["median_b"] is None  # not reached
    chi2 = scipy_stats.logrank(scipy_stats.CensoredData(uncensored=sgd_epochs),
                               scipy_stats.CensoredData(right=[4, 4, 4])).statistic ** 2
    assert pair["logrank_chi2"] == pytest.approx(chi2, rel=1e-12)
    assert pair["p_logrank_asymptotic"] == pytest.approx(scipy_stats.chi2.sf(chi2, 1), rel=1e-9)
    assert pair["p_logrank"] == pytest.approx(2 / 20)  # of the 20 splits of 6 runs, this and its mirror
    assert pair["p_paired_rank"] == pytest.approx(0.25)  # three seeds, all one way: exact 2/2^3
    table = sprkd(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "epochs_to:0.7").stdout
    assert "not reached" in table and "sgd 0 of 3" not in table and "kd 3 of 3" in table
    # compare's table: how many runs reached X per arm, and the median (all runs reused)
    out = sprkd(db, "compare", "--dataset", DATA, "--student", "mlp:width=8,depth=1", "--epochs", "4", "--lr",
                "3e-2", "--seeds", "0-2", "--methods", "sgd", "--converged-at", "0.7")
    assert out.exit_code == 0, out.output
    assert f"3/3 ({sgd_epochs[1]})" in out.stdout and "0 reused" not in out.stdout
    compared = sprkd_json(db, "compare", "--dataset", DATA, "--student", "mlp:width=8,depth=1", "--epochs", "4",
                          "--lr", "3e-2", "--seeds", "0-2", "--methods", "sgd", "--converged-at", "0.7")
    (row,) = compared["arms"]
    assert row["epochs_to"]["reached"] == 3 and 0.0 <= row["ci_low"] <= row["ci_high"] <= 1.0
    assert row["ci_method"] == "t interval, cut to the metric's range [0, 1]"
    from pathlib import Path

    assert Path(compared["km_plot"]).stat().st_size > 0  # the arms' Kaplan–Meier curves, drawn


def test_val_loss_sd_comes_with_brown_forsythe(db):
    store = _curve_store(db)
    values = _values(store, "val_loss_sd:3")
    (pair,) = sprkd_json(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "val_loss_sd:3")
    expected = scipy_stats.levene(list(values["sgd"].values()), list(values["kd"].values()), center="median")
    assert pair["bf_statistic"] == pytest.approx(expected.statistic, rel=1e-12)
    assert pair["p_brown_forsythe"] == pytest.approx(expected.pvalue, rel=1e-12)
    assert pair["p_adj_brown_forsythe"] == pair["p_brown_forsythe"]
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
    from sprkd_cli.services.loading import load_run_model

    args = ["compare", *STUDENT_ARGS, "--methods", "sgd", "--seeds", "0", *PROBE, "--hessian"]
    first = sprkd_json(db, *args)
    (run_id,) = first["arms"][0]["run_ids"]
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


# -- degenerate inputs are named, not tested ----------------------------------------------------------
def _value_store(db, values: dict, *, key: str = "auc_val_acc", n_test: int = 100, epochs: int = 4):
    """Runs whose summary holds `key` = values[(arm, seed)], with a flat val curve and test_acc stored at their
    best epoch (1)."""
    store = open_test_store(db)
    for (method, seed), value in values.items():
        run = store.create_run(kind="student", method=method, dataset=DATA, model="mlp", seed=seed,
                               config={"data": {"n_test": n_test, "n_val": n_test}}, config_hash=f"h-{method}",
                               teacher_ids=[], provenance={}, device="cpu", process=PROCESS)
        rows = [(e * 10, e, "val", "acc", 0.5) for e in range(1, epochs + 1)]
        rows += [(e * 10, e, "val", "loss", 1.0 + value * e) for e in range(1, epochs + 1)]
        rows += [(10, 1, "test", "acc", value)]
        store.add_metrics(run.id, rows)
        store.finish_run(run.id, {"best_epoch": 1, "epochs": epochs, "selection": "max val_acc; ties: min val_loss, "
                                  "then earliest", key: value}, 10)
    return store


def test_rounding_noise_in_paired_differences_is_no_variation(db):
    # the per-seed differences 0.00782123 and 0.00782121 are equal up to float32 rounding
    _value_store(db, {("sgd", 0): 0.9, ("sgd", 1): 0.85, ("kd", 0): 0.9 - 0.00782123, ("kd", 1): 0.85 - 0.00782121})
    (pair,) = sprkd_json(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "auc_val_acc")
    assert pair["no_variation_paired"] and pair["p_paired"] is None and pair["cohens_dz"] is None
    assert not pair["no_variation"] and pair["p_welch"] > 1e-3  # the arms themselves vary across seeds
    out = sprkd(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "auc_val_acc").stdout
    assert out.count("no variation across seeds in the paired differences") == 1
    assert "e-0" not in out.split("pairwise tests")[1].split("no variation:")[0]  # no tiny p-value printed


def test_accuracy_differences_below_one_example_are_no_variation(db):
    # test_acc on 100 examples: a spread of 1e-9 is not a difference of a single example
    _value_store(db, {("sgd", 0): 0.96, ("sgd", 1): 0.96 + 1e-9, ("sgd", 2): 0.96,
                      ("kd", 0): 0.95, ("kd", 1): 0.95, ("kd", 2): 0.95 - 1e-9}, key="test_acc")
    (pair,) = sprkd_json(db, "stats", "--dataset", DATA, "--methods", "sgd,kd")
    assert pair["no_variation"] and pair["no_variation_paired"]
    assert all(pair[k] is None for k in ("p_welch", "p_paired", "ci_low", "cohens_d", "cohens_dz"))
    out = sprkd(db, "stats", "--dataset", DATA, "--methods", "sgd,kd").stdout
    assert "no variation across seeds: both arms' values are equal within 0.005" in " ".join(out.split())
    assert "1/(2·100)" in out


def test_brown_forsythe_is_refused_below_three_runs_per_arm(db):
    # two seeds per arm: the median-centred deviations are equal by construction (W was 4.2e25 before)
    _value_store(db, {("sgd", 0): 0.0029, ("sgd", 1): 0.001, ("kd", 0): 0.0028, ("kd", 1): 0.002})
    (pair,) = sprkd_json(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "val_loss_sd:3")
    assert pair["bf_statistic"] is None and pair["p_brown_forsythe"] is None
    assert "needs at least 3 runs per arm (sgd has 2, kd has 2" in pair["bf_refused"]
    out = " ".join(sprkd(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "val_loss_sd:3")
                   .stdout.split())
    assert out.count("the Brown–Forsythe test needs at least 3 runs per arm") == 1 and "refused" in out


def test_one_power_note_per_table_with_the_largest_and_smallest_effect(db):
    values = {("sgd", 0): 0.90, ("sgd", 1): 0.92, ("sgd", 2): 0.91, ("kd", 0): 0.80, ("kd", 1): 0.86,
              ("kd", 2): 0.83, ("sprkd", 0): 0.905, ("sprkd", 1): 0.925, ("sprkd", 2): 0.91}
    _value_store(db, values)
    pairs = sprkd_json(db, "stats", "--dataset", DATA, "--methods", "sgd,kd,sprkd", "--metric", "auc_val_acc")
    assert not any("low power" in w for p in pairs for w in p["warnings"])
    out = " ".join(sprkd(db, "stats", "--dataset", DATA, "--methods", "sgd,kd,sprkd", "--metric", "auc_val_acc")
                   .stdout.split())
    assert out.count("low power") == 1
    d = {(p["a"], p["b"]): p for p in pairs}
    big = max(pairs, key=lambda p: abs(p["cohens_d"]))
    small = min(pairs, key=lambda p: abs(p["cohens_d"]))
    assert (f"{big['seeds_for_80_power']} seeds per arm at |d| = {abs(big['cohens_d']):.3g} "
            f"({big['a']} − {big['b']})") in out
    assert f"{small['seeds_for_80_power']} seeds per arm at |d| = {abs(small['cohens_d']):.3g}" in out
    assert "fewer than 5 seeds in sgd 3, kd 3, sprkd 3" in out and len(d) == 3


def test_holm_covers_every_metric_and_pair_of_one_call(db):
    _curve_store(db)
    metrics = ["auc_val_acc", "val_loss_sd:3", "test_acc"]
    args = [a for m in metrics for a in ("--metric", m)]
    with_values = {m: sprkd_json(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", m)[0]
                   for m in metrics if m != "test_acc"}
    pairs = sprkd_json(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", *args[:4])
    assert [p["metric"] for p in pairs] == metrics[:2]
    from sprkd_cli.stats import holm

    raw = [with_values[m]["p_welch"] for m in metrics[:2]]
    assert [p["p_adj"] for p in pairs] == pytest.approx(holm(raw), rel=1e-12)
    assert [p["p_adj_paired"] for p in pairs] == pytest.approx(holm([with_values[m]["p_paired"] for m in metrics[:2]]))
    bonferroni = sprkd_json(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", *args[:4], "--correction",
                            "bonferroni")
    assert [p["p_adj"] for p in bonferroni] == pytest.approx([min(1, 2 * p) for p in raw], rel=1e-12)
    out = " ".join(sprkd(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", *args[:4]).stdout.split())
    assert "Holm over 2 p-values of the call, 2 metrics × 1 pairs" in out
    assert_user_error(sprkd(db, "stats", "--dataset", DATA, "--correction", "bh"), "bad --correction 'bh'")


def test_negative_density_counts_only_nodes_below_the_relative_tolerance():
    from sprkd_cli.services.hessian import negative_mass

    # lowest eigenvalue −0.03 (weight 0.01); the near-zero bulk's nodes at ±1e-5 (weight 0.79 below zero);
    # the top at 10: tol = 1e-4 × 10 = 1e-3
    nodes = [[-0.03, -1e-5, 1e-5, 10.0], [-0.03, -1e-5, 2e-5, 9.0]]
    weights = [[0.01, 0.79, 0.1, 0.1], [0.03, 0.77, 0.1, 0.1]]
    assert negative_mass({"density_nodes": nodes, "density_weights": weights}) == pytest.approx(0.02, rel=1e-12)
    assert negative_mass({"density_nodes": None}) is None


def test_stats_intervals_stay_inside_an_accuracy_range(db):
    _value_store(db, {("sgd", 0): 0.6, ("sgd", 1): 0.95, ("kd", 0): 0.99, ("kd", 1): 0.999}, key="test_acc")
    (pair,) = sprkd_json(db, "stats", "--dataset", DATA, "--methods", "sgd,kd")
    assert -1.0 <= pair["ci_low"] <= pair["ci_high"] <= 1.0
    assert pair["ci_method"] == "t interval, cut to the metric's range [0, 1]"
    out = " ".join(sprkd(db, "stats", "--dataset", DATA, "--methods", "sgd,kd").stdout.split())
    assert "95% CI: t interval, cut to the metric's range [0, 1]" in out


def test_stats_test_rank_and_aso_through_the_cli(db):
    store = _curve_store(db)
    values = _values(store, "auc_val_acc")
    sgd, kd = values["sgd"], values["kd"]
    (rank,) = sprkd_json(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "auc_val_acc",
                         "--test", "rank")
    ref = scipy_stats.mannwhitneyu(list(sgd.values()), list(kd.values()), method="exact")
    assert rank["p_mann_whitney"] == pytest.approx(ref.pvalue, rel=1e-12) and rank["p_adj"] == rank["p_mann_whitney"]
    diffs = [sgd[s] - kd[s] for s in (0, 1, 2)]
    assert rank["p_wilcoxon"] == pytest.approx(scipy_stats.wilcoxon(diffs, method="exact").pvalue, rel=1e-12)
    pairs = sprkd_json(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "auc_val_acc",
                       "--metric", "val_loss_sd:3", "--test", "aso")
    from sprkd_cli.stats.aso import aso

    for pair in pairs:
        assert pair["aso_comparisons"] == 2 and pair["aso_confidence"] == pytest.approx(0.975)
    expected = aso(list(sgd.values()), list(kd.values()), comparisons=2)
    assert pairs[0]["eps_min_ab"] == expected.eps_min
    out = " ".join(sprkd(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "auc_val_acc", "--test",
                         "aso").stdout.split())
    assert "Almost Stochastic Order (ε_min at confidence 0.9500)" in out and "Below 0.5" in out
    assert_user_error(sprkd(db, "stats", "--dataset", DATA, "--test", "z"), "bad --test 'z'")


def test_runs_that_did_not_finish_are_counted_per_arm(db):
    store = _curve_store(db)
    for seed, end in ((7, "fail"), (8, None)):  # a failed run, and one still running (or crashed)
        run = store.create_run(kind="student", method="kd", dataset=DATA, model="mlp", seed=seed, config={},
                               config_hash="h-kd", teacher_ids=[], provenance={}, device="cpu", process=PROCESS)
        if end:
            store.fail_run(run.id, "diverged at epoch 2")
    (pair,) = sprkd_json(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "auc_val_acc")
    assert (pair["n_a"], pair["n_b"]) == (3, 3)
    out = " ".join(sprkd(db, "stats", "--dataset", DATA, "--methods", "sgd,kd", "--metric", "auc_val_acc")
                   .stdout.split())
    assert "not finished, so without a value and left out: kd 1 running, 1 failed" in out  # newest first
    assert "not finished" in out.split("pairwise")[0]  # the arms table's column
