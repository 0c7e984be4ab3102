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
    student = ["--dataset", DATA, "--student", TEACHER_MODEL, "--teacher", teacher, *TRAIN, "--device", "cuda"]
    for method, extra in (("sgd", []), ("kd", []), ("sprkd", ["--no-asr"]), ("sage", ["--sage-rounds", "1"])):
        assert_user_error(sprkd(db, "distill", "--method", method, *student, *extra), NO_CUDA, "--device cpu")
    assert [r.kind for r in open_test_store(db).list_runs()] == ["teacher"]
