"""The training engine: the kd loss against a hand computation, cached teacher targets, safetensors
checkpoints, and seeded training."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sprkd_cli.config import TrainConfig
from sprkd_cli.data import load_dataset
from sprkd_cli.engine import evaluate, fit, load_weights, save_weights
from sprkd_cli.methods import declared_options, method_class
from sprkd_cli.models import build_model

from conftest import DATA, REPO, STUDENT_ARGS, TEACHER_MODEL, open_test_store, sprkd_json, train_teacher


class CountingTeacher(torch.nn.Module):
    """Wraps a teacher and counts its forward calls and the examples it saw."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.examples = 0

    def forward(self, x):
        self.calls += 1
        self.examples += len(x)
        return self.inner(x)


def _kd(options: dict, teacher, data):
    return method_class("kd")(declared_options("kd", options), [teacher], data)


def _hand_kd_loss(student_logits, teacher_logits, labels, T, a, b):
    """a·CE + b·T²·KL(p_t ‖ p_s) with p = softmax(logits / T), batch means, written out in float64."""
    s = student_logits.double()
    t = teacher_logits.double()
    n = len(labels)
    p_hard = torch.exp(s) / torch.exp(s).sum(dim=1, keepdim=True)
    ce = -torch.log(p_hard[torch.arange(n), labels]).sum() / n
    p_t = torch.exp(t / T) / torch.exp(t / T).sum(dim=1, keepdim=True)
    p_s = torch.exp(s / T) / torch.exp(s / T).sum(dim=1, keepdim=True)
    kl = (p_t * (torch.log(p_t) - torch.log(p_s))).sum() / n
    return a * ce + b * T * T * kl, ce, kl


@pytest.mark.parametrize("T, a, b", [(4.0, 0.1, 0.9), (2.5, 0.7, 0.3), (1.0, 0.0, 1.0), (3.0, 1.0, 0.0)])
def test_kd_loss_equals_hand_computation(T, a, b):
    data = load_dataset(DATA, 0)
    torch.manual_seed(1)
    teacher = build_model(TEACHER_MODEL, data.input_shape, data.n_classes)
    with torch.no_grad():  # a confident teacher, so the KL term is far from the CE term
        for p in teacher.parameters():
            p.mul_(3.0)
    student = build_model("mlp:width=8,depth=1", data.input_shape, data.n_classes)
    method = _kd({"temperature": T, "ce_weight": a, "kd_weight": b}, teacher, data)

    index = torch.tensor([5, 0, 17, 3, 42, 99, 64, 8, 11])
    x, y = data.x_train[index], data.y_train[index]
    loss = method.loss(student, x, y, index)
    assert loss.dim() == 0 and loss.dtype == torch.float32

    with torch.no_grad():
        teacher_logits = teacher.eval()(x)
        expected, ce, kl = _hand_kd_loss(student(x), teacher_logits, y, T, a, b)
    assert abs(float(ce) - float(T * T * kl)) > 0.05  # the two terms differ: weights in the wrong place would show
    assert loss.item() == pytest.approx(float(expected), rel=1e-5, abs=1e-6)

    # and its gradient with respect to the student's parameters
    student.zero_grad()
    loss.backward()
    got = torch.cat([p.grad.flatten() for p in student.parameters()])
    student.zero_grad()
    hand_logits = student(x).double()
    hand, _, _ = _hand_kd_loss(hand_logits, teacher_logits, y, T, a, b)
    hand.backward()
    want = torch.cat([p.grad.flatten() for p in student.parameters()]).float()
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-6), (got - want).abs().max()


def test_kd_uses_the_batch_rows_of_the_teacher_targets():
    """`index` selects the cached targets: the loss on a batch must use those rows' targets."""
    data = load_dataset(DATA, 0)
    torch.manual_seed(2)
    teacher = build_model(TEACHER_MODEL, data.input_shape, data.n_classes)
    student = build_model("mlp:width=8,depth=1", data.input_shape, data.n_classes)
    method = _kd({"temperature": 2.0, "ce_weight": 0.0, "kd_weight": 1.0}, teacher, data)
    index = torch.tensor([10, 20, 30, 40])
    x, y = data.x_train[index], data.y_train[index]
    with torch.no_grad():
        expected, _, _ = _hand_kd_loss(student(x), teacher.eval()(x), y, 2.0, 0.0, 1.0)
        wrong = method.loss(student, x, y, torch.tensor([11, 21, 31, 41]))
        right = method.loss(student, x, y, index)
    assert float(right) == pytest.approx(float(expected), rel=1e-5)
    assert float(wrong) != pytest.approx(float(expected), rel=1e-3)


def test_teacher_logits_are_cached_not_recomputed_per_batch():
    data = load_dataset(DATA, 0)
    torch.manual_seed(3)
    teacher = CountingTeacher(build_model(TEACHER_MODEL, data.input_shape, data.n_classes))
    method = _kd({}, teacher, data)
    assert teacher.calls >= 1 and teacher.examples == len(data.y_train)  # each training example once
    teacher.calls = teacher.examples = 0

    cfg = TrainConfig(kind="student", method="kd", dataset=DATA, model="mlp:width=8,depth=1", epochs=3,
                      batch_size=16, lr=1e-2)
    student = build_model(cfg.model, data.input_shape, data.n_classes)
    result = fit(student, method, data, cfg)
    assert len(result.history) == 3 and result.history[-1].step == 3 * -(-len(data.y_train) // 16)
    assert teacher.calls == 0


def test_distill_through_the_cli_calls_the_teacher_once(db, monkeypatch):
    """The whole kd run, store and all: the teacher sees the training set once, before training."""
    import sprkd_cli.services.training as training

    teacher = train_teacher(db)
    wrapped: list[CountingTeacher] = []
    real = training.load_run_model

    def counting_load(run, *args, **kwargs):
        wrapped.append(CountingTeacher(real(run, *args, **kwargs)))
        return wrapped[-1]

    monkeypatch.setattr(training, "load_run_model", counting_load)
    outcome = sprkd_json(db, "distill", "--method", "kd", "--teacher", teacher["run_id"], *STUDENT_ARGS,
                         "--epochs", "4", "--batch-size", "8")
    assert outcome["status"] == "finished" and outcome["epochs"] == 4
    assert outcome["steps"] > 20  # many batches...
    (counter,) = wrapped
    n_train = open_test_store(db).get_run(outcome["run_id"]).config["data"]["n_train"]
    assert counter.examples == n_train  # ...but the teacher saw each training example exactly once
    assert counter.calls == 1


# --- checkpoints --------------------------------------------------------------------------------


def _is_safetensors(path: Path) -> dict:
    """The safetensors layout: 8-byte little-endian header length, then a JSON header."""
    raw = path.read_bytes()
    assert raw[:2] != b"PK" and raw[:1] != b"\x80"  # not a torch zip archive, not a pickle
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + size])
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        assert set(handle.keys()) == set(header) - {"__metadata__"}
    return header


def test_checkpoint_is_safetensors_and_loads_back_to_the_same_predictions(tmp_path):
    data = load_dataset(DATA, 0)
    cfg = TrainConfig(kind="teacher", method="sgd", dataset=DATA, model=TEACHER_MODEL, epochs=2, lr=1e-2)
    torch.manual_seed(0)
    model = build_model(cfg.model, data.input_shape, data.n_classes)
    fit(model, method_class("sgd")(), data, cfg)
    path = tmp_path / "ckpt" / "model.safetensors"
    save_weights(model.state_dict(), path)
    header = _is_safetensors(path)
    assert set(header) - {"__metadata__"} == set(model.state_dict())

    torch.manual_seed(123)  # another initialisation, overwritten by the checkpoint
    fresh = build_model(cfg.model, data.input_shape, data.n_classes)
    assert not torch.equal(fresh(data.x_test), model(data.x_test))
    load_weights(fresh, path)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(data.x_test), model.eval()(data.x_test))
    assert torch.equal(evaluate(fresh, data.x_test, data.y_test)[2], evaluate(model, data.x_test, data.y_test)[2])


def test_run_checkpoints_reproduce_the_stored_predictions(db):
    from sprkd_cli.services.loading import BEST_CHECKPOINT, FINAL_CHECKPOINT, load_run_model

    outcome = sprkd_json(db, "train-teacher", "--dataset", DATA, "--model", TEACHER_MODEL, "--epochs", "8",
                         "--lr", "0.3", "--seed", "2")
    store = open_test_store(db)
    run = store.get_run(outcome["run_id"])
    artifacts = Path(run.artifact_dir)
    assert sorted(p.name for p in artifacts.iterdir()) == sorted([BEST_CHECKPOINT, FINAL_CHECKPOINT])
    for name in (BEST_CHECKPOINT, FINAL_CHECKPOINT):
        _is_safetensors(artifacts / name)

    data = load_dataset(DATA, 0)
    best = load_run_model(run)
    assert not best.training
    _, best_acc, predicted = evaluate(best, data.x_test, data.y_test)
    stored = store.predictions(run.id, "test")
    assert [p.predicted for p in stored] == predicted.tolist()
    assert [p.label for p in stored] == data.y_test.tolist()
    assert best_acc == outcome["test_acc"]
    _, final_acc, _ = evaluate(load_run_model(run, FINAL_CHECKPOINT), data.x_test, data.y_test)
    assert final_acc == outcome["final_test_acc"]
    assert outcome["test_acc"] != outcome["final_test_acc"], "precondition: best and final checkpoints differ"

    (artifacts / BEST_CHECKPOINT).unlink()
    from sprkd_cli.errors import UserError

    with pytest.raises(UserError, match="missing"):
        load_run_model(run)


def test_fit_is_deterministic_and_tracks_the_best_val_epoch():
    data = load_dataset(DATA, 0)
    cfg = TrainConfig(kind="teacher", method="sgd", dataset=DATA, model=TEACHER_MODEL, epochs=4, lr=1e-2, seed=1)

    def train():
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, data.input_shape, data.n_classes)
        return model, fit(model, method_class("sgd")(), data, cfg)

    (m1, r1), (m2, r2) = train(), train()
    assert [h.metrics for h in r1.history] == [h.metrics for h in r2.history]
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    # best accuracy, ties by lowest loss, then the earliest (min keeps the first of equal keys)
    best = min(r1.history, key=lambda h: (-h.metrics[("val", "acc")], h.metrics[("val", "loss")]))
    assert r1.best_epoch == best.epoch
    summary = r1.summary()
    assert summary["test_acc"] == r1.history[r1.best_epoch - 1].metrics[("test", "acc")]
    assert summary["final_test_acc"] == r1.history[-1].metrics[("test", "acc")]


def _sgd_fit(hooks_read_model: bool, on_step=None, lr: float = 1e-2, epochs: int = 3):
    data = load_dataset(DATA, 0)
    cfg = TrainConfig(kind="teacher", method="sgd", dataset=DATA, model=TEACHER_MODEL, epochs=epochs, lr=lr, seed=1,
                      batch_size=16)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.input_shape, data.n_classes)
    return model, fit(model, method_class("sgd")(), data, cfg, on_step=on_step,
                      hooks_read_model=hooks_read_model)


def test_losses_read_once_an_epoch_give_the_same_numbers():
    """The loop reads the step losses back once an epoch unless an on_step hook reads the model; either
    way the recorded numbers and weights are the same, bit for bit."""
    (m1, r1), (m2, r2) = _sgd_fit(True, on_step=lambda step, epoch: None), _sgd_fit(False)
    assert [h.metrics for h in r1.history] == [h.metrics for h in r2.history]
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


@pytest.mark.parametrize("hooks_read_model", [True, False])
def test_divergence_names_the_first_non_finite_step_either_way(hooks_read_model, monkeypatch):
    from sprkd_cli.errors import Diverged
    from sprkd_cli.methods.sgd.method import SGD

    calls = []
    real = SGD.loss

    def loss(self, model, x, y, index):  # non-finite from the 7th step on
        calls.append(1)
        value = real(self, model, x, y, index)
        return value * float("nan") if len(calls) >= 7 else value

    monkeypatch.setattr(SGD, "loss", loss)
    seen = []
    with pytest.raises(Diverged) as caught:
        _sgd_fit(hooks_read_model, on_step=lambda step, epoch: seen.append(step))
    assert caught.value.step == 7 and caught.value.epoch == 1
    steps_per_epoch = -(-len(load_dataset(DATA, 0).y_train) // 16)
    assert steps_per_epoch > 7
    # read every step: no hook sees the model of step 7; read at the epoch's end: the epoch's steps ran
    assert max(seen) == (7 - 1 if hooks_read_model else steps_per_epoch)


def test_optimisers_step_as_torchs_own_without_importing_the_compiler(tmp_path):
    """engine.optim.eager: the same parameters as torch's AdamW, Adam and SGD after 20 scheduled steps and
    a state_dict round trip, bit for bit, and no torch._dynamo imported (a fresh process)."""
    script = tmp_path / "optim_check.py"
    script.write_text('''
import copy, sys, torch
from sprkd_cli.engine.optim import make_optimizer, make_schedule

TORCH = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}

def train(model, optimizer):
    schedule = make_schedule("cosine", optimizer, 20)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        x, y = torch.randn(5, 8, generator=g), torch.randint(0, 3, (5,), generator=g)
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        schedule.step()
    optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    return [p.detach().clone() for p in model.parameters()], optimizer.state_dict()

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
ours = {}
for name in TORCH:
    m = copy.deepcopy(model)
    ours[name] = train(m, make_optimizer(name, m.parameters(), lr=1e-2, weight_decay=0.01, momentum=0.9,
                                         betas=(0.9, 0.999)))
print("dynamo", "torch._dynamo" in sys.modules)
for name, cls in TORCH.items():
    m = copy.deepcopy(model)
    extra = {"momentum": 0.9} if name == "sgd" else {"betas": (0.9, 0.999)}
    params, state = train(m, cls(m.parameters(), lr=1e-2, weight_decay=0.01, **extra))
    same = all(torch.equal(a, b) for a, b in zip(ours[name][0], params))
    same_state = all(torch.equal(a, b) for s, t in zip(ours[name][1]["state"].values(), state["state"].values())
                     for a, b in zip(s.values(), t.values()) if isinstance(a, torch.Tensor))
    print(name, same, same_state)
''')
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:4] == ["dynamo False", "adamw True True", "adam True True", "sgd True True"]
