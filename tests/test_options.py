"""Options declared once: every distill flag is a compare flag with the same default; declarations
check values the same way from the CLI and from an arm; compare runs named arms and stats compares them."""

from __future__ import annotations

import pytest
import typer

from sprkd_cli.arms import parse_arm, parse_arms
from sprkd_cli.cli import app
from sprkd_cli.config import TrainConfig
from sprkd_cli.errors import UserError
from sprkd_cli.methods import declared_options, method_options
from sprkd_cli.options import declared_fields

from conftest import DATA, STUDENT_MODEL, TRAIN, assert_user_error, open_test_store, sprkd, sprkd_json, train_teacher

TRACK = ["--track-saddles", "--saddle-every", "1", "--saddle-top-n", "8"]
DISTILL_ONLY = {"method", "seed", "resume", "reuse"}  # compare has --methods/--arm and --seeds instead


def _params(command: str) -> dict:
    click_app = typer.main.get_command(app)
    return {p.name: p for p in click_app.commands[command].params}


def test_every_distill_option_is_a_compare_option_with_the_same_default():
    distill, compare = _params("distill"), _params("compare")
    shared = set(distill) - DISTILL_ONLY
    assert shared - set(compare) == set()
    for name in shared:
        assert compare[name].opts == distill[name].opts, name
        assert compare[name].default == distill[name].default, name
    # and --help shows them: every flag of distill (but its own) in compare's help, with its default
    help_text = sprkd(None, "compare", "--help").stdout
    for name in shared:
        assert distill[name].opts[0] in help_text, name
    for flag in ("--no-nhe", "--no-pgd", "--no-asr", "--probe-size", "--hessian-every", "--nhe-grad-threshold",
                 "--sage-k", "--lr"):
        assert flag in help_text


def test_training_flags_come_from_the_config_declarations():
    """Each declared TrainConfig option is a flag of train-teacher with the declared default; those of the
    teacher's scope alone (saddle tracking) are not flags of distill."""
    teacher, distill = _params("train-teacher"), _params("distill")
    for f, declared in declared_fields(TrainConfig):
        if not declared.cli:
            continue
        assert f.name in teacher, f.name
        if f.name != "betas":
            expected = f.default if not isinstance(f.default, bool) else False
            assert teacher[f.name].default == expected, f.name
        assert (f.name in distill) == (declared.scope == "all"), f.name


def test_method_flags_name_each_methods_default_in_their_help():
    help_text = " ".join(sprkd(None, "distill", "--help").stdout.split())
    assert "kd, sage: 0.9; sprkd: 0" in help_text.replace("0.0", "0")
    assert "<last|lowest-loss>" in help_text


@pytest.mark.parametrize("args, needle", [
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--lr", "0"], "--lr must be > 0"),
    (["--weight-decay", "-1"], "--weight-decay must be >= 0"),
    (["--probe-mode", "sideways"], "bad --probe-mode 'sideways'; valid: eval, train"),
    (["--epochs", "abc"], "--epochs"),
    (["--no-such-flag"], "--no-such-flag"),
])
def test_bad_training_values_are_one_line_and_leave_no_run(db, args, needle):
    assert_user_error(sprkd(db, "train-teacher", "--dataset", DATA, *args), needle)
    assert open_test_store(db).list_runs() == []


def test_method_options_are_checked_and_typed_alike_from_anywhere():
    assert method_options("kd", {"temperature": 2})["temperature"] == 2.0
    assert isinstance(method_options("kd", {"temperature": 2})["temperature"], float)
    with pytest.raises(UserError, match="--temperature must be > 0"):
        method_options("kd", {"temperature": 0.0})
    with pytest.raises(UserError, match="bad --sage-synth 'x'"):
        method_options("sage", {"sage_synth": "x"})
    # sprkd reads the probe settings from the run's training options, and stores them with its own
    cfg = TrainConfig(kind="student", method="sprkd", dataset=DATA, model=STUDENT_MODEL, probe_size=64)
    assert method_options("sprkd", {}, cfg)["probe_size"] == 64


def test_arm_specs():
    assert parse_arm("sgd").name == "sgd" and parse_arm("sgd").options == {}
    rkd = parse_arm("rkd=kd:temperature=1,ce_weight=0,kd_weight=1")
    assert (rkd.name, rkd.method, rkd.options) == ("rkd", "kd",
                                                   {"temperature": 1.0, "ce_weight": 0.0, "kd_weight": 1.0})
    assert parse_arm("off=sprkd:nhe=false,pgd=no").options == {"nhe": False, "pgd": False}
    assert parse_arm("ens=sprkd:teacher=abc+def").teachers == ("abc", "def")
    assert [a.name for a in parse_arms("sgd,kd", ["x=kd:temperature=2"])] == ["sgd", "kd", "x"]
    assert [a.name for a in parse_arms(None, [])] == ["sgd", "kd"]
    assert [a.name for a in parse_arms(None, ["x=kd"])] == ["x"]
    for bad, needle in [("x=kd:bogus=1", "unknown option 'bogus'"), ("x=lion", "unknown method 'lion'"),
                        ("x=kd:temperature=hot", "must be a float"), ("x=sprkd:nhe=maybe", "true or false"),
                        ("x y=kd", "bad --arm"), ("x=kd:temperature", "write key=value")]:
        with pytest.raises(UserError, match=needle):
            parse_arm(bad)
    with pytest.raises(UserError, match="two arms are named 'kd'"):
        parse_arms("kd", ["kd"])
    with pytest.raises(UserError, match="--methods"):
        parse_arms("", [])


@pytest.mark.parametrize("arm, needle", [
    ("x=sprkd:nhe_bogus=1", "unknown option 'nhe_bogus' in arm 'x=sprkd:nhe_bogus=1'"),
    ("x=lion", "unknown method 'lion'"),
    ("x=kd:temperature=-1", "arm x: temperature must be > 0"),
])
def test_a_bad_arm_is_one_line_before_any_work(db, arm, needle):
    assert_user_error(sprkd(db, "compare", "--dataset", DATA, "--seeds", "0", "--arm", arm), needle)
    assert open_test_store(db).list_runs() == []


def test_named_arms_run_reuse_and_are_compared_by_name(db):
    """The sprkd paper's table in one comparison: a control, response KD, sprkd and an ablation of it."""
    teacher = train_teacher(db, *TRACK)
    common = ["--dataset", DATA, "--student", STUDENT_MODEL, *TRAIN, "--seeds", "0-1"]
    arms = ["--arm", "sgd", "--arm", "rkd=kd:temperature=1,ce_weight=0,kd_weight=1", "--arm", "sprkd",
            "--arm", "sprkd-no-nhe=sprkd:nhe=false"]
    first = sprkd_json(db, "compare", *common, *arms)
    assert first["failed"] == [] and (first["ran"], first["reused"]) == (8, 0)
    rows = {row["arm"]: row for row in first["arms"]}
    assert [row["arm"] for row in first["arms"]] == ["sgd", "rkd", "sprkd", "sprkd-no-nhe"]
    assert rows["rkd"]["method"] == "kd" and rows["sprkd-no-nhe"]["method"] == "sprkd"
    assert rows["rkd"]["teacher_ids"] == [teacher["run_id"]]
    store = open_test_store(db)
    for name, row in rows.items():
        assert row["n"] == 2
        for run_id in row["run_ids"]:
            run = store.get_run(run_id)
            assert store.arms_of(run_id) == [name] and run.config["arm"] == name
    rkd = store.get_run(rows["rkd"]["run_ids"][0]).config["method_options"]
    assert (rkd["temperature"], rkd["ce_weight"], rkd["kd_weight"]) == (1.0, 0.0, 1.0)
    assert store.get_run(rows["sprkd-no-nhe"]["run_ids"][0]).config["method_options"]["nhe"] is False

    # again: every run reused; a plain method arm reuses distill's runs of that method and vice versa
    again = sprkd_json(db, "compare", *common, *arms)
    assert (again["ran"], again["reused"]) == (0, 8)
    renamed = sprkd_json(db, "compare", *common, "--arm", "plain-sgd=sgd")
    assert (renamed["ran"], renamed["reused"]) == (0, 2)
    assert store.arms_of(rows["sgd"]["run_ids"][0]) == ["plain-sgd", "sgd"]

    pairs = sprkd_json(db, "stats", "--dataset", DATA, "--arms", "sgd,rkd,sprkd,sprkd-no-nhe")
    assert {(p["a"], p["b"]) for p in pairs} == {
        ("sgd", "rkd"), ("sgd", "sprkd"), ("sgd", "sprkd-no-nhe"), ("rkd", "sprkd"), ("rkd", "sprkd-no-nhe"),
        ("sprkd", "sprkd-no-nhe")}
    assert all(p["n_a"] == 2 and p["n_b"] == 2 for p in pairs)
    # the kd method's own arm has none of rkd's runs: arms do not mix
    kd = sprkd_json(db, "stats", "--dataset", DATA, "--methods", "kd,rkd")
    assert kd[0]["n_a"] == 0 and kd[0]["n_b"] == 2
    assert_user_error(sprkd(db, "stats", "--dataset", DATA, "--arms", "sgd,nope"), "unknown arm or method 'nope'")


@pytest.mark.parametrize("args, needle", [
    (["train-teacher", "--dataset", DATA, "--seed", "9223372036854775808"], "--seed must be from 0 to 2^63-1"),
    (["train-teacher", "--dataset", DATA, "--seed", "18446744073709551616"], "--seed must be from 0 to 2^63-1"),
    (["train-teacher", "--dataset", DATA, "--split-seed", "-1"], "--split-seed must be from 0 to 2^63-1 (got -1)"),
    (["compare", "--dataset", DATA, "--seeds", "9223372036854775808"], "bad --seeds"),
    (["distill", "--dataset", DATA, "--method", "sgd", "--lr", "inf"], "--lr must be a finite number"),
    (["distill", "--dataset", DATA, "--method", "kd", "--ce-weight", "nan"], "--ce-weight must be a finite number"),
    (["train-teacher", "--dataset", DATA, "--momentum", "nan"], "--momentum must be a finite number"),
    (["compare", "--dataset", DATA, "--methods", ""], "bad --methods ''"),
    (["runs", "list", "--limit", "-5"], "--limit must be >= 0"),
])
def test_out_of_range_values_are_refused_before_any_run(db, args, needle):
    assert_user_error(sprkd(db, *args), needle)
    assert open_test_store(db).list_runs() == []


def test_kd_with_two_teachers_is_ensemble_kd(db):
    """--teacher A,B for kd: the KD term's target is the mean of the teachers' softened outputs."""
    import torch

    from sprkd_cli.data import load_dataset
    from sprkd_cli.methods.kd.method import KD
    from sprkd_cli.methods.targets import teacher_targets
    from sprkd_cli.services.loading import load_run_model

    a, b = (train_teacher(db, "--seed", str(s))["run_id"] for s in (0, 1))
    outcome = sprkd_json(db, "distill", "--method", "kd", "--teacher", f"{a},{b}", "--dataset", DATA, "--student",
                         STUDENT_MODEL, *TRAIN)
    assert open_test_store(db).get_run(outcome["run_id"]).teacher_ids == [a, b]
    store = open_test_store(db)
    teachers = [load_run_model(store.get_run(r)) for r in (a, b)]
    data = load_dataset(DATA)
    kd = KD(declared_options("kd", {}), teachers, data)
    expected = (teacher_targets(teachers[0], data.x_train, 4.0)[0]
                + teacher_targets(teachers[1], data.x_train, 4.0)[0]) / 2
    assert torch.allclose(kd.p_teacher, expected, atol=1e-7)
    assert not torch.allclose(kd.p_teacher, teacher_targets(teachers[0], data.x_train, 4.0)[0])
    single = sprkd_json(db, "distill", "--method", "kd", "--teacher", a, "--dataset", DATA, "--student",
                        STUDENT_MODEL, *TRAIN)
    assert single["test_acc"] != outcome["test_acc"] or single["final_train_loss"] != outcome["final_train_loss"]
    assert_user_error(sprkd(db, "distill", "--method", "sage", "--teacher", f"{a},{b}", "--dataset", DATA,
                            "--student", STUDENT_MODEL, *TRAIN), "method sage takes one teacher; 2 were given")


def test_stats_with_empty_arms_says_so_in_one_line_each(db):
    empty = sprkd(db, "stats", "--dataset", DATA, "--methods", "sgd,kd")
    assert empty.exit_code == 0 and empty.stderr == ""
    assert empty.stdout.splitlines() == [f"arm sgd has no finished runs of {DATA} here",
                                         f"arm kd has no finished runs of {DATA} here"]
    train_teacher(db)
    sprkd_json(db, "distill", "--method", "sgd", "--dataset", DATA, "--student", STUDENT_MODEL, *TRAIN)
    one = sprkd(db, "stats", "--dataset", DATA, "--methods", "sgd,kd")
    assert one.stdout.splitlines() == [f"arm kd has no finished runs of {DATA} here"]
