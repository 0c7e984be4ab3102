"""Every method on any device (--device) and in any precision (--precision): what the tests can check on the
CPU. No GPU is visible here, so the GPU paths are checked through where the tensors go (tests/test_sage.py:
the pool follows the model's device) and through the one-line refusal of a device that is not there."""

from __future__ import annotations

import pytest
import torch

from conftest import DATA, TEACHER_MODEL, TRAIN, assert_user_error, open_test_store, sprkd, sprkd_json

NO_CUDA = "no CUDA GPU is visible"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible: --device cuda trains")
def test_device_cuda_without_a_gpu_is_one_line_for_every_method(db):
    teacher = sprkd_json(db, "train-teacher", "--dataset", DATA, "--model", TEACHER_MODEL, *TRAIN)["run_id"]
    assert_user_error(sprkd(db, "train-teacher", "--dataset", DATA, "--model", TEACHER_MODEL, *TRAIN,
                            "--device", "cuda"), NO_CUDA, "--device cpu")
    student = ["--dataset", DATA, "--student", TEACHER_MODEL, *TRAIN, "--device", "cuda"]
    taught = ["--teacher", teacher]
    for method, extra in (("sgd", []), ("kd", taught), ("sprkd", ["--no-asr", *taught]),
                          ("sage", ["--sage-rounds", "1", *taught])):
        assert_user_error(sprkd(db, "distill", "--method", method, *student, *extra), NO_CUDA, "--device cpu")
    assert [r.kind for r in open_test_store(db).list_runs()] == ["teacher"]


# --- --precision ----------------------------------------------------------------------------------------------
def test_precision_is_hashed():
    """Every precision is part of the hash, fp32 too (runs stored before the option: migration 0004,
    tests/test_store.py)."""
    from sprkd_cli.config import TrainConfig

    base = TrainConfig(kind="teacher", method="sgd", dataset=DATA, model=TEACHER_MODEL)
    assert base.to_dict()["precision"] == "fp32"
    hashes = {TrainConfig(**{**vars(base), "precision": p}).config_hash() for p in ("fp32", "bf16", "fp16")}
    assert len(hashes) == 3


def test_bad_precision_is_one_line(db):
    assert_user_error(sprkd(db, "train-teacher", "--dataset", DATA, "--model", TEACHER_MODEL, "--precision", "fp8"),
                      "bad --precision 'fp8'", "fp32, bf16, fp16")


def test_a_bf16_run_trains_in_autocast_is_recorded_and_shown(db, monkeypatch):
    """bf16 on digits: each step's loss under autocast, finite, and an accuracy near fp32's; the run's config
    and `runs show` say bf16."""
    from sprkd_cli.methods.sgd.method import SGD

    seen = []
    loss = SGD.loss
    monkeypatch.setattr(SGD, "loss", lambda self, model, x, y, index: seen.append(
        (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))) or loss(self, model, x, y, index))
    args = ["train-teacher", "--dataset", "digits", "--model", "mlp:width=64,depth=1", "--epochs", "6", "--lr", "1e-2"]
    bf16 = sprkd_json(db, *args, "--precision", "bf16")
    assert seen and set(seen) == {(True, torch.bfloat16)}
    seen.clear()
    fp32 = sprkd_json(db, *args)
    assert seen and not any(on for on, _ in seen)
    assert bf16["final_train_loss"] == pytest.approx(fp32["final_train_loss"], abs=0.05)
    assert bf16["test_acc"] > 0.85 and abs(bf16["test_acc"] - fp32["test_acc"]) < 0.03
    assert bf16["config_hash"] != fp32["config_hash"]
    run = open_test_store(db).get_run(bf16["run_id"])
    assert run.config["precision"] == "bf16"
    assert sprkd_json(db, "runs", "show", bf16["run_id"])["precision"] == "bf16"
    shown = sprkd(db, "runs", "show", fp32["run_id"])
    assert shown.exit_code == 0 and "trained on cpu in fp32" in shown.stdout


def _spy_on_probes(monkeypatch) -> list:
    """(autocast on?, logits dtype, loss dtype) of every loss the Hessian operator and sprkd's probe loss take."""
    import types

    import torch.nn.functional as F

    import sprkd_cli.methods.sprkd.probe as probe_module
    from sprkd_cli.hessian.operator import HessianOperator

    seen = []

    def spy(loss_fn):
        def loss(logits, y, *args, **kwargs):
            out = loss_fn(logits, y, *args, **kwargs)
            seen.append((torch.is_autocast_enabled("cpu"), logits.dtype, out.dtype))
            return out
        return loss

    init = HessianOperator.__init__
    monkeypatch.setattr(HessianOperator, "__init__",
                        lambda self, model, loss_fn, *a, **k: init(self, model, spy(loss_fn), *a, **k))
    monkeypatch.setattr(probe_module, "F", types.SimpleNamespace(cross_entropy=spy(F.cross_entropy)))
    return seen


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_hessian_and_saddle_probes_stay_in_full_precision(db, monkeypatch, precision):
    """In a mixed-precision teacher with Hessian reports and saddle tracking, and a sprkd student whose NHE
    and PGD gate on the probe loss, every probe loss is taken with autocast off, from float32 (or float64)
    logits."""
    seen = _spy_on_probes(monkeypatch)
    teacher = sprkd_json(db, "train-teacher", "--dataset", DATA, "--model", TEACHER_MODEL, *TRAIN,
                         "--precision", precision, "--hessian-every", "2", "--track-saddles", "--saddle-every", "2")
    assert open_test_store(db).hessian_reports(teacher["run_id"])
    from_teacher = len(seen)
    student = sprkd_json(db, "distill", "--method", "sprkd", "--no-asr", "--dataset", DATA, "--student", TEACHER_MODEL,
                         "--teacher", teacher["run_id"], *TRAIN, "--precision", precision,
                         "--nhe-grad-threshold", "1e9", "--cooldown", "0", "--gate-distance", "0",
                         "--gate-loss-drop", "0")
    kinds = {e.kind for e in open_test_store(db).events(student["run_id"])}
    assert kinds & {"nhe_kept", "nhe_reverted", "nhe_skipped"} and kinds & {"pgd_kept", "pgd_reverted"}
    assert from_teacher > 0 and len(seen) > from_teacher
    assert {on for on, _, _ in seen} == {False}
    assert {logits for _, logits, _ in seen} <= {torch.float32, torch.float64}
    assert {loss for _, _, loss in seen} <= {torch.float32, torch.float64}


def test_a_precision_this_torch_cannot_autocast_is_one_line(monkeypatch):
    """Where torch has no autocast to the type on the device (fp16 on the CPU before torch 2.x's support;
    this torch has it), --precision is refused before any run is written."""
    from sprkd_cli.engine import precision
    from sprkd_cli.errors import UserError

    precision.check_precision("bf16", torch.device("cpu"))
    precision.check_precision("fp16", torch.device("cpu"))
    monkeypatch.setattr(precision.torch, "is_autocast_enabled", lambda *args: False)
    with pytest.raises(UserError, match=r"--precision fp16: torch .* has no fp16 autocast on cpu; use --precision "
                                        r"fp32 or bf16"):
        precision.check_precision("fp16", torch.device("cpu"))
