"""Bad input, refused in one line before any work: numbers out of their declared range, sizes beyond the
sanity caps (unless --no-caps), duplicate keys, flags the chosen method does not use, filters that name
no known value, and $COLUMNS that is not a width."""

from __future__ import annotations

import pytest

from conftest import STUDENT_ARGS, assert_user_error, open_test_store, sprkd, train_teacher

BAD = [
    (["train-teacher", "--epochs", "99999999999999999999999"], ["--epochs", "100000", "--no-caps"]),
    (["train-teacher", "--epochs", "100001"], ["--epochs", "--no-caps"]),
    (["train-teacher", "--momentum", "1.5"], ["--momentum", "[0, 1)"]),
    (["train-teacher", "--momentum", "1"], ["--momentum", "[0, 1)"]),
    (["train-teacher", "--batch-size", "99999999999999999999"], ["--batch-size"]),
    (["train-teacher", "--patience", "99999999999999999999"], ["--patience", "2^63"]),
    (["train-teacher", "--dataset", "synthetic:n=600,n=700"], ["n", "twice"]),
    (["distill", "--method", "kd", "--ce-weight", "0", "--kd-weight", "0"], ["--ce-weight", "--kd-weight", "both 0"]),
    (["distill", "--method", "kd", "--nhe-gate", "global"], ["--nhe-gate", "sprkd", "kd"]),
    (["distill", "--method", "kd", "--no-pgd"], ["--no-pgd", "sprkd"]),
    (["distill", "--method", "sgd", "--teacher", "abc"], ["--teacher", "sgd"]),
    (["compare", "--methods", "sgd", "--temperature", "-1"], ["--temperature", "sgd"]),
    (["compare", "--methods", "sgd", "--tune", "temperature=2,4"], ["--tune temperature", "sgd"]),
    (["compare", "--methods", "sgd", "--teacher", "abc"], ["--teacher", "sgd"]),
    (["compare", "--arm", "rkd=kd:temperature=1,temperature=2"], ["temperature", "twice"]),
    (["compare", "--arm", "x=kd:teacher=a,teacher=b"], ["teacher", "twice"]),
    (["compare", "--seeds", "0-100000"], ["--seeds", "100", "--no-caps"]),
    (["compare", "--seeds", "0-100000000000000000000000"], ["--seeds", "2^63-1"]),
    (["compare", "--seeds", "0-1e20"], ["--seeds"]),
    (["runs", "list", "--limit", "99999999999999999999999"], ["--limit"]),
    (["runs", "list", "--method", "kdd"], ["method", "kdd"]),
    (["runs", "list", "--dataset", "digitz"], ["dataset", "digitz"]),
    (["runs", "export", "--status", "done"], ["--status", "done"]),
    (["runs", "export", "--method", "kdd"], ["method", "kdd"]),
    (["--artifacts", "", "runs", "list"], ["--artifacts"]),
]


@pytest.fixture
def one_run(db):
    """A store holding one finished run (written directly: these checks come before any training)."""
    from sprkd_cli.services.lifecycle import this_process

    store = open_test_store(db)
    run = store.create_run(kind="teacher", method="sgd", dataset="digits", model="mlp-large", seed=0, config={},
                           config_hash="h" * 16, teacher_ids=[], provenance={}, device="cpu", process=this_process())
    store.finish_run(run.id, {"test_acc": 0.5}, 10)
    return db


@pytest.mark.parametrize("args,needles", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_changes_nothing(one_run, args, needles):
    db = one_run
    assert_user_error(sprkd(db, *args), *needles)
    runs = open_test_store(db).list_runs()
    assert len(runs) == 1 and runs[0].status == "finished"


def test_no_caps_lifts_the_caps(db, monkeypatch):
    from sprkd_cli.specs import parse_seeds

    assert_user_error(sprkd(db, "compare", "--seeds", "0-150", "--methods", "sgd", "--epochs", "0"), "--seeds")
    monkeypatch.setenv("SPRKD_NO_CAPS", "1")
    assert len(parse_seeds("0-150")) == 151
    # the cap is lifted; the next check (epochs >= 1) is what refuses now
    assert_user_error(sprkd(db, "--no-caps", "compare", "--seeds", "0-150", "--methods", "sgd", "--epochs", "0"),
                      "--epochs", ">= 1")


@pytest.mark.parametrize("columns", ["abc", "1e3", "0", "-5", "12"])
def test_columns_that_is_not_a_width_is_ignored(db, monkeypatch, columns):
    teacher = train_teacher(db)
    monkeypatch.setenv("COLUMNS", columns)
    result = sprkd(db, "runs", "list")
    assert result.exit_code == 0, result.output
    assert teacher["run_id"] in result.stdout


def test_a_flag_the_method_uses_is_still_taken(db):
    train_teacher(db)
    result = sprkd(db, "distill", "--method", "kd", "--temperature", "2", *STUDENT_ARGS, "--json")
    assert result.exit_code == 0, result.output


def test_teacher_flag_with_a_method_needing_one_is_taken(db):
    teacher = train_teacher(db)
    result = sprkd(db, "compare", "--methods", "sgd,kd", "--teacher", teacher["run_id"], *STUDENT_ARGS, "--seeds", "0",
                   "--json")
    assert result.exit_code == 0, result.output
