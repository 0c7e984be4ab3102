"""compare --tune (each arm's grid chosen on validation only), the best-val tie-break and --patience."""

from __future__ import annotations

import numpy as np

from sprkd_cli import selection

from conftest import DATA, assert_user_error, open_test_store, sprkd, sprkd_json, train_teacher

# Plain SGD (no momentum, no Adam normalisation): the "big" arm's KD term is weighted 30x, so its
# gradient is ~30x larger and its best learning rate is far lower than the control's.
TUNED = ["compare", "--dataset", DATA, "--student", "mlp:width=8,depth=1", "--epochs", "8", "--optimizer", "sgd",
         "--momentum", "0", "--methods", "sgd", "--arm", "big=kd:ce_weight=0,kd_weight=30", "--seeds", "0-1",
         "--tune", "lr=0.003,0.1,1"]


def _tuned(result) -> dict:
    return {row["arm"]: row["tuned"] for row in result["arms"]}


def test_tune_gives_each_arm_its_own_lr_chosen_on_validation(db):
    train_teacher(db, "--epochs", "10")
    first = sprkd_json(db, *TUNED)
    assert _tuned(first) == {"sgd": {"lr": 1.0}, "big": {"lr": 0.003}}
    rows = {row["arm"]: row for row in first["arms"]}
    for row in rows.values():
        scores = row["tuning"]["scores"]
        best = max(scores, key=lambda s: (s["val_acc"], -s["val_loss"]))
        assert best["values"] == row["tuned"]  # the best mean validation accuracy wins
        assert row["tuning"]["seeds"] == [0] and row["tuning"]["grid"] == {"lr": [0.003, 0.1, 1.0]}
    assert rows["big"]["tuning"]["failed"] == [{"lr": 1.0}]  # diverged: never chosen
    assert first["failed"] == []  # a diverged grid point does not fail the comparison
    store = open_test_store(db)
    for row in rows.values():
        for run_id in row["run_ids"]:
            run = store.get_run(run_id)
            assert run.config["lr"] == row["tuned"]["lr"]
            tuned = [e.payload for e in store.events(run_id) if e.kind == "tuned"]
            assert len(tuned) == 1 and tuned[0]["chosen"] == row["tuned"] and tuned[0]["arm"] == row["arm"]
    # seed 0 of the chosen point is the grid's own run, reused; seed 1 is new
    assert first["ran_tuning"] == 6 and first["ran"] == 2 and first["reused"] == 2

    # grid runs belong to NAME:tune arms, which stats never compares
    assert sprkd(db, "stats", "--dataset", DATA, "--methods", "sgd,big").exit_code == 0
    assert "sgd:tune" in store.arm_names()
    line = assert_user_error(sprkd(db, "stats", "--dataset", DATA, "--methods", "sgd,sgd:tune"), "unknown arm")
    assert "sgd:tune" not in line.split("valid:")[1]
    values = _stats_values(db)
    assert {arm: sorted(v) for arm, v in values.items()} == {"sgd": [0, 1], "big": [0, 1]}

    # the same --tune again reuses every run, grid included
    second = sprkd_json(db, *TUNED)
    assert (second["ran"], second["ran_tuning"], second["reused"]) == (0, 0, 4)
    assert _tuned(second) == _tuned(first)
    assert all(len([e for e in store.events(r) if e.kind == "tuned"]) == 1 for row in second["arms"]
               for r in row["run_ids"])

    # runs show of a chosen run names its grid
    shown = sprkd(db, "runs", "show", rows["big"]["run_ids"][1])
    assert shown.exit_code == 0
    assert "tuned for arm big: lr=0.003, chosen on validation from the grid lr 0.003,0.1,1.0" in shown.stdout


def _stats_values(db) -> dict:
    from sprkd_cli.services.analysis import method_values

    found = method_values(open_test_store(db), DATA, ["sgd", "big"], "test_acc", "best-val")
    return {arm: per_seed for arm, per_seed in found.items()}


def test_tune_choice_never_reads_the_test_split(tmp_path, monkeypatch):
    """The same comparison on data whose test labels are scrambled chooses the same values."""
    from sprkd_cli.data import tabular

    plain = tmp_path / "plain.db"
    train_teacher(plain, "--epochs", "10")
    chosen = _tuned(sprkd_json(plain, *TUNED))

    original = tabular.load_synthetic

    def scrambled(spec, options, split_seed):
        splits = original(spec, options, split_seed)
        splits.y_test = splits.y_test[np.random.default_rng(0).permutation(len(splits.y_test))].roll(1)
        splits.y_test = (splits.y_test + 1) % 3
        return splits

    monkeypatch.setattr(tabular, "load_synthetic", scrambled)
    other = tmp_path / "scrambled.db"
    train_teacher(other, "--epochs", "10")
    result = sprkd_json(other, *TUNED)
    assert _tuned(result) == chosen
    assert all(row["mean"] < 0.5 for row in result["arms"])  # the test labels did change


def test_tune_refuses_bad_grids_in_one_line(db):
    base = ["compare", "--dataset", DATA, "--student", "mlp:width=8,depth=1", "--methods", "sgd"]
    assert_user_error(sprkd(db, *base, "--tune", "lr"), "bad --tune 'lr'")
    assert_user_error(sprkd(db, *base, "--tune", "colour=1,2"), "--tune colour")
    assert_user_error(sprkd(db, *base, "--tune", "seed=1,2"), "--tune seed")
    assert_user_error(sprkd(db, *base, "--tune", "lr=1e-3", "--tune", "lr=1e-2"), "given twice")
    assert_user_error(sprkd(db, *base, "--tune", "lr=-1,0.1"), "--tune", "lr")
    assert_user_error(sprkd(db, *base, "--tune", "epochs=two"), "epochs=two")
    assert_user_error(sprkd(db, *base, "--tune-seeds", "0"), "--tune-seeds goes with --tune")
    assert open_test_store(db).list_runs() == []


def test_an_arm_keeps_the_values_it_sets_itself(db):
    train_teacher(db)
    result = sprkd_json(db, "compare", "--dataset", DATA, "--student", "mlp:width=8,depth=1", "--epochs", "3",
                        "--methods", "sgd,kd", "--arm", "t1=kd:temperature=1", "--seeds", "0",
                        "--tune", "temperature=2,8")
    rows = {row["arm"]: row for row in result["arms"]}
    assert rows["sgd"]["tuning"] is None and rows["sgd"]["tuned"] == {}  # sgd has no temperature
    assert rows["t1"]["tuning"] is None
    assert rows["kd"]["tuned"]["temperature"] in (2.0, 8.0)
    store = open_test_store(db)
    assert store.get_run(rows["t1"]["run_ids"][0]).config["method_options"]["temperature"] == 1.0


# -- model selection --------------------------------------------------------------------------------

def test_selection_breaks_accuracy_ties_by_validation_loss():
    curve = {1: (0.90, 0.50), 2: (0.95, 0.30), 3: (0.95, 0.20), 4: (0.95, 0.25), 5: (0.94, 0.10)}
    assert selection.best_epoch(curve) == 3
    assert selection.best_epoch({1: (0.5, 1.0), 2: (0.5, 1.0)}) == 1  # a full tie: the earliest
    assert selection.better(0.95, 0.9, 0.94, 0.1) and not selection.better(0.95, 0.3, 0.95, 0.2)


def test_the_loop_stats_and_summary_follow_one_selection_rule(db):
    """A run's stored best epoch is the rule applied to its stored curve; stats reads the test accuracy
    there, and a run stored before the rule is re-selected from its curve."""
    train_teacher(db)
    run = sprkd_json(db, "distill", "--method", "sgd", "--dataset", DATA, "--student", "mlp:width=8,depth=1",
                     "--epochs", "25", "--lr", "0.05")
    store = open_test_store(db)
    acc = store.metric_curves([run["run_id"]], "val", "acc")[run["run_id"]]
    loss = store.metric_curves([run["run_id"]], "val", "loss")[run["run_id"]]
    curve = {e + 1: pair for e, pair in enumerate(zip(acc, loss))}
    assert run["best_epoch"] == selection.best_epoch(curve) and run["selection"] == selection.RULE
    ties = [e for e, (a, _) in curve.items() if a == max(acc)]
    assert len(ties) > 1, "the test needs a tie in validation accuracy"
    assert run["best_epoch"] == min(ties, key=lambda e: curve[e][1])

    from sprkd_cli.services.analysis import method_values, selected_epochs

    test = store.metric_curves([run["run_id"]], "test", "acc")[run["run_id"]]
    value = method_values(store, DATA, ["sgd"], "test_acc", "best-val")["sgd"][0]["value"]
    assert value == test[run["best_epoch"] - 1] == run["test_acc"]
    # a run stored under the old rule (first epoch of best accuracy) is re-selected from its curve
    old = store.get_run(run["run_id"])
    old.summary = {k: v for k, v in old.summary.items() if k != "selection"} | {"best_epoch": min(ties)}
    assert selected_epochs(store, [old]) == {old.id: run["best_epoch"]}


def test_patience_stops_a_run_and_is_recorded(db):
    run = sprkd_json(db, "distill", "--method", "sgd", "--dataset", DATA, "--student", "mlp:width=8,depth=1",
                     "--epochs", "200", "--lr", "0.05", "--patience", "5")
    assert run["stopped_early"] is True
    assert run["epochs"] == run["best_epoch"] + 5 < 200
    store = open_test_store(db)
    assert max(m.epoch for m in store.metrics([run["run_id"]])) == run["epochs"]
    full = sprkd_json(db, "distill", "--method", "sgd", "--dataset", DATA, "--student", "mlp:width=8,depth=1",
                      "--epochs", "12", "--lr", "0.05")
    assert full["stopped_early"] is False and full["epochs"] == 12
    result = sprkd_json(db, "compare", "--dataset", DATA, "--student", "mlp:width=8,depth=1", "--epochs", "200",
                        "--lr", "0.05", "--patience", "5", "--methods", "sgd", "--seeds", "0-1")
    row = result["arms"][0]
    assert row["plateau"] == 2 and row["stopped_early"] == 2 and max(row["epochs_run"]) < 200
    assert_user_error(sprkd(db, "distill", "--method", "sgd", "--dataset", DATA, "--patience", "-1"), "--patience")
