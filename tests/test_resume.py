"""--resume: a run stopped at any point (an exception, SIGKILL mid-epoch) continues from its last saved
training state and ends with exactly the rows and numbers of the same run never stopped, for every
method; the state file never unpickles; what cannot be resumed is refused in one line."""

from __future__ import annotations

import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sprkd_cli.config import TrainConfig
from sprkd_cli.errors import Interrupted, UserError
from sprkd_cli.services.lifecycle import CRASH_AFTER, read_run, read_runs, this_process
from sprkd_cli.services.training import STATE_FILE, resume_run, train_run
from sprkd_cli.store import utcnow

from conftest import DATA, STUDENT_MODEL, TEACHER_MODEL, assert_user_error, open_test_store, sprkd, sprkd_json

TRACK = ["--track-saddles", "--saddle-every", "1", "--saddle-top-n", "8"]
FIVE = ["--epochs", "5", "--lr", "1e-2"]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    import sprkd_cli.services.training as training

    monkeypatch.setattr(training, "set_threads", lambda jobs: torch.set_num_threads(1))
    torch.set_num_threads(1)


class PowerCut(Exception):
    pass


def stop_after(epoch: int):
    def on_epoch(record):
        if record.epoch == epoch:
            raise PowerCut(f"after epoch {epoch}'s metrics were stored")
    return on_epoch


def recorded(store, run_id: str) -> dict:
    """Everything a run recorded that a resumed run must reproduce (ids and timings aside)."""
    def untimed(payload):
        if not isinstance(payload, dict):
            return payload
        return {k: untimed(v) for k, v in payload.items() if "seconds" not in k and k not in ("saddle_id", "artifact")}

    run = store.get_run(run_id)
    return {
        "metrics": [(m.step, m.epoch, m.split, m.name, m.value) for m in store.metrics([run_id])],
        "events": [(e.kind, e.step, e.epoch, untimed(e.payload)) for e in store.events(run_id) if e.kind != "resumed"],
        "hessian": [(h.step, untimed(h.result)) for h in store.hessian_reports(run_id)],
        "saddles": [(s.step, s.probe_loss, s.eigenvalues) for s in store.saddle_points(run_id)],
        "predictions": [(p.example, p.predicted) for p in store.predictions(run_id)],
        "summary": {k: v for k, v in run.summary.items() if "seconds" not in k},
        "weights": {name: load_file(str(Path(run.artifact_dir) / name)) for name in ("model.safetensors",
                                                                                     "best.safetensors")},
    }


def assert_same(a: dict, b: dict) -> None:
    for key in a:
        if key == "weights":
            for name in a[key]:
                assert a[key][name].keys() == b[key][name].keys()
                assert all(torch.equal(a[key][name][k], b[key][name][k]) for k in a[key][name]), name
        else:
            assert a[key] == b[key], key


def stopped_copy(db, reference: str, at_epoch: int) -> str:
    """The reference run's configuration trained again in this process, stopped by an exception once
    epoch `at_epoch`'s metrics are stored (and before its state is saved); states saved every epoch."""
    store = open_test_store(db)
    cfg = TrainConfig.from_dict(store.get_run(reference).config)
    cfg.checkpoint_every = 0
    before = {r.id for r in store.list_runs()}
    with pytest.raises(PowerCut):
        train_run(cfg, store, on_epoch=stop_after(at_epoch))
    [run] = [r for r in store.list_runs() if r.id not in before]
    assert run.status == "failed" and run.error.startswith("PowerCut")
    return run.id


def teacher_args(*extra):
    return ["train-teacher", "--dataset", DATA, "--model", TEACHER_MODEL, *FIVE, *extra]


CASES = {
    # name: (how the reference is trained, command of --resume, epoch after which it stops)
    "teacher from its start": (lambda db: teacher_args("--hessian-every", "7"), "train-teacher", 1),
    "tracked teacher": (lambda db: teacher_args(*TRACK, "--max-saddles", "50"), "train-teacher", 3),
    "kd": (lambda db: ["distill", "--method", "kd", "--dataset", DATA, "--student", STUDENT_MODEL, *FIVE,
                       "--teacher", sprkd_json(db, *teacher_args())["run_id"]], "distill", 2),
    "sprkd": (lambda db: ["distill", "--method", "sprkd", "--dataset", DATA, "--student", STUDENT_MODEL, *FIVE,
                          "--teacher", sprkd_json(db, *teacher_args(*TRACK))["run_id"], "--nhe-grad-threshold", "1e9",
                          "--gate-distance", "0", "--gate-loss-drop", "0", "--cooldown", "3", "--gate-epochs", "5",
                          "--approach-max-steps", "20", "--nhe-tol", "0.3"], "distill", 3),
    "sage": (lambda db: ["distill", "--method", "sage", "--dataset", DATA, "--student", "mlp:width=16,depth=2", *FIVE,
                         "--teacher", sprkd_json(db, *teacher_args())["run_id"], "--sage-rounds", "2",
                         "--sage-synth", "interpolate"], "distill", 3),
    # mixed precision: autocast steps around full-precision Hessian reports and saddle checks; fp16's loss
    # scaler is part of the saved state
    "bf16 tracked teacher": (lambda db: teacher_args(*TRACK, "--hessian-every", "7", "--precision", "bf16"),
                             "train-teacher", 2),
    "fp16 kd": (lambda db: ["distill", "--method", "kd", "--dataset", DATA, "--student", STUDENT_MODEL, *FIVE,
                            "--teacher", sprkd_json(db, *teacher_args())["run_id"], "--precision", "fp16"],
                "distill", 2),
}


@pytest.mark.parametrize("case", [case for case in CASES if case != "fp16 kd"])
def test_a_stopped_run_resumes_to_exactly_the_uninterrupted_run(db, case):
    check_resume(db, case)


def test_fp16_resumes_with_its_loss_scaler(db, monkeypatch):
    """A loss scaler that grows every step (so it overflows, skips steps and backs off within the run) makes
    its state matter: the resumed run ends with the uninterrupted numbers only if its scale is restored."""
    import sprkd_cli.engine.loop as loop

    monkeypatch.setattr(loop, "grad_scaler", lambda precision, device: torch.amp.GradScaler(
        device.type, growth_interval=1) if precision == "fp16" else None)
    check_resume(db, "fp16 kd")


def test_resume_on_postgresql(pg_url):
    check_resume(pg_url, "sprkd")


def check_resume(db, case: str) -> None:
    args, command, at_epoch = CASES[case]
    reference = sprkd_json(db, *args(db), "--seed", "3")
    stopped = stopped_copy(db, reference["run_id"], at_epoch)
    store = open_test_store(db)
    state = Path(store.get_run(stopped).artifact_dir) / STATE_FILE
    assert state.exists() == (at_epoch > 1)  # a state after each epoch but the one it stopped in
    assert {m.epoch for m in store.metrics([stopped])} == set(range(1, at_epoch + 1))

    resumed = sprkd_json(db, command, "--resume", stopped[:8])
    assert resumed["run_id"] == stopped and resumed["status"] == "finished"
    assert resumed["test_acc"] == reference["test_acc"]
    assert_same(recorded(store, reference["run_id"]), recorded(store, stopped))
    [event] = [e for e in store.events(stopped) if e.kind == "resumed"]
    assert event.payload["from_epoch"] == at_epoch - 1 and event.payload["was"] == "failed"
    assert not state.exists()  # a finished run keeps no training state
    if case == "sprkd":
        kinds = {e.kind for e in store.events(stopped) if (e.step or 0) > event.step}
        assert {"nhe_kept", "pgd_kept"} & kinds, "precondition: NHE/PGD acted after the resume point"
    if case == "sage":
        rounds = [e for e in store.events(stopped) if e.kind == "sage_round"]
        assert [e.epoch for e in rounds] == [2, 3]  # a round in the saved state, one after it


# -- kill -9 mid-epoch ---------------------------------------------------------------------------

SLOW = ["train-teacher", "--dataset", "synthetic:n=2000,features=16,classes=3", "--model", "mlp:width=32,depth=1",
        "--epochs", "40", "--batch-size", "16", "--seed", "1"]


def wait_for_epochs(db: Path, run_epochs: int, child: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert child.poll() is None, "the run ended before it could be killed"
        if db.exists():
            try:
                with sqlite3.connect(db) as conn:
                    if (conn.execute("SELECT max(epoch) FROM metrics").fetchone()[0] or 0) >= run_epochs:
                        return
            except sqlite3.OperationalError:  # tables not created yet
                pass
        time.sleep(0.01)
    raise AssertionError(f"no {run_epochs} epochs within {timeout} s")


def kill_9_after(db, args: list[str], epochs: int = 3) -> None:
    """`sprkd --db DB ARGS` in a child process, killed with SIGKILL once `epochs` epochs are stored."""
    argv = [sys.executable, "-m", "sprkd_cli", "--db", str(db), *args]
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))
    try:
        wait_for_epochs(db, epochs, child)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()


@pytest.mark.slow
def test_kill_9_mid_epoch_then_crashed_then_resumed_to_the_uninterrupted_numbers(db):
    kill_9_after(db, [*SLOW, "--checkpoint-every", "0"])
    store = open_test_store(db)  # readable after the kill
    [run] = read_runs(store)
    assert run.status == "running"  # its heartbeat is fresh: not crashed yet, but its process is gone
    epochs = {m.epoch for m in store.metrics([run.id])}
    assert 3 <= max(epochs) < 40 and epochs == set(range(1, max(epochs) + 1))

    store.update_run(run.id, heartbeat_at=utcnow() - CRASH_AFTER)  # two minutes pass
    listed = sprkd_json(db, "runs", "list", "--status", "crashed")
    assert [r["id"] for r in listed] == [run.id]

    resumed = sprkd_json(db, "train-teacher", "--resume", run.id)
    assert resumed["status"] == "finished" and resumed["run_id"] == run.id
    event = [e for e in store.events(run.id) if e.kind == "resumed"][0]
    assert event.payload["was"] == "crashed" and event.payload["from_epoch"] >= 2
    reference = sprkd_json(db, *SLOW)
    assert_same(recorded(store, reference["run_id"]), recorded(store, run.id))


COMPARE = ["compare", "--dataset", DATA, "--student", STUDENT_MODEL, *FIVE, "--methods", "sgd", "--seeds", "0"]


def interrupted_copy(reference_store, reference: str, store, at_epoch: int) -> str:
    """The reference run's configuration trained in `store`, ended by a real SIGINT during the epoch
    after `at_epoch` (states saved every epoch): an `interrupted` run."""
    cfg = TrainConfig.from_dict(reference_store.get_run(reference).config)
    cfg.checkpoint_every = 0
    with pytest.raises(Interrupted):
        train_run(cfg, store, on_epoch=lambda record: record.epoch == at_epoch and os.kill(os.getpid(), signal.SIGINT))
    [run] = [r for r in store.list_runs() if r.config_hash == cfg.config_hash()]
    assert run.status == "interrupted"
    return run.id


def test_compare_resumes_an_interrupted_run_to_the_uninterrupted_numbers(db, tmp_path):
    reference_db = tmp_path / "reference.db"
    [reference] = sprkd_json(reference_db, *COMPARE)["arms"][0]["run_ids"]
    reference_store, store = open_test_store(reference_db), open_test_store(db)
    stopped = interrupted_copy(reference_store, reference, store, at_epoch=2)

    result = sprkd_json(db, *COMPARE)
    assert (result["ran"], result["reused"], result["resumed"], result["not_resumed"]) == (1, 0, [stopped], [])
    assert result["arms"][0]["run_ids"] == [stopped]
    [event] = [e for e in store.events(stopped) if e.kind == "resumed"]
    assert event.payload["was"] == "interrupted" and event.payload["from_epoch"] == 2
    assert_same(recorded(reference_store, reference), recorded(store, stopped))
    assert sprkd_json(db, *COMPARE)["reused"] == 1  # and now it is simply finished


def test_compare_trains_afresh_when_a_run_cannot_be_resumed(db, tmp_path, monkeypatch):
    import sprkd_cli.services.training as training

    reference_db = tmp_path / "reference.db"
    [reference] = sprkd_json(reference_db, *COMPARE)["arms"][0]["run_ids"]
    store = open_test_store(db)
    stopped = interrupted_copy(open_test_store(reference_db), reference, store, at_epoch=1)

    def refuse(run, kind=None):
        raise UserError(f"run {run.id} was trained on other data")
    monkeypatch.setattr(training, "check_resumable", refuse)
    result = sprkd(db, *COMPARE)
    assert result.exit_code == 0, result.output
    assert f"run {stopped} not resumed: run {stopped} was trained on other data; trained afresh" in result.stdout
    assert "1 run(s) trained, 0 reused" in result.stdout
    assert store.get_run(stopped).status == "interrupted"  # left as it was
    [fresh] = [r for r in store.list_runs() if r.status == "finished"]
    assert fresh.id != stopped


# -- the state file ------------------------------------------------------------------------------

def test_training_state_round_trips_exactly():
    from sprkd_cli.engine.state import load_state, save_state

    shared = torch.randn(3, 4)
    state = {"epoch": 3, "best": -1.0, "inf": float("inf"), "none": None, "flag": True, "name": "adamw",
             "optimizer": {"state": {0: {"step": torch.tensor(7.0), "exp_avg": torch.randn(2, 2)}},
                           "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.99), "params": [0, 1]}]},
             "generator": torch.Generator().manual_seed(5).get_state(), "tied": [shared, shared],
             "history": [(1, 12, {("val", "acc"): 0.5}, 0.01)], "python": (3, tuple(range(5)), None),
             "halves": torch.randn(4).half(), "labels": torch.arange(5), "mask": torch.tensor([True, False])}
    path = Path("state.safetensors")
    save_state(state, path)
    back = load_state(path)
    assert back.keys() == state.keys()

    def same(a, b):
        if isinstance(a, torch.Tensor):
            return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
        if isinstance(a, dict):
            return type(b) is dict and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, (list, tuple)):
            return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        return type(a) is type(b) and a == b

    assert same(state, back)
    assert not path.with_name(path.name + ".partial").exists()


def test_a_pickled_state_is_refused_without_running_it(tmp_path):
    from sprkd_cli.engine.state import load_state

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    path = tmp_path / STATE_FILE
    path.write_bytes(pickle.dumps({"model": Boom()}))
    with pytest.raises(UserError, match="not a safetensors file"):
        load_state(path)
    torch.save({"epoch": 1}, path)
    with pytest.raises(UserError, match="not a safetensors file"):
        load_state(path)
    assert not (tmp_path / "ran").exists()


# -- what is refused -----------------------------------------------------------------------------

def test_resume_refusals_are_one_line(db):
    finished = sprkd_json(db, *teacher_args())["run_id"]
    assert_user_error(sprkd(db, "train-teacher", "--resume", finished), "finished", "nothing to resume")
    assert_user_error(sprkd(db, "distill", "--resume", finished), f"train-teacher --resume {finished}")
    assert_user_error(sprkd(db, "train-teacher", "--resume", finished, "--epochs", "9", "--lr", "1"),
                      "stored configuration", "drop --epochs, --lr")
    assert_user_error(sprkd(db, "train-teacher", "--resume", "nope"), "no run 'nope'")
    assert_user_error(sprkd(db, *teacher_args("--checkpoint-every", "-1")), "--checkpoint-every must be >= 0")

    store = open_test_store(db)
    alive = stopped_copy(db, finished, 2)
    store.update_run(alive, status="running", pid=os.getpid())  # this test's own process: alive
    assert_user_error(sprkd(db, "train-teacher", "--resume", alive), "still running", f"pid {os.getpid()}")
    store.update_run(alive, status="failed", error="diverged: loss nan at step 3 (epoch 1)")
    assert_user_error(sprkd(db, "train-teacher", "--resume", alive), "diverge again")


def test_epoch_metrics_fall_back_to_the_orm_free_insert_for_other_drivers(db, monkeypatch):
    """A driver whose parameter style the plain-SQL writer does not speak still gets every epoch."""
    from sprkd_cli.store import writer

    def unknown_style(self, engine, run_id):
        raise NotImplementedError("named")

    monkeypatch.setattr(writer.EpochWriter, "__init__", unknown_style)
    run = sprkd_json(db, *teacher_args())
    rows = open_test_store(db).metrics([run["run_id"]])
    assert sorted({m.epoch for m in rows}) == [1, 2, 3, 4, 5] and len(rows) == 25


def test_two_resumers_cannot_both_take_a_run(store_url):
    db = store_url
    run = stopped_copy(db, sprkd_json(db, *teacher_args())["run_id"], 2)
    store = open_test_store(db)
    seen = read_run(store, run)
    store.reopen_run(seen, 1, 10, this_process())
    with pytest.raises(UserError, match="changed while being resumed"):
        store.reopen_run(seen, 1, 10, this_process())


def test_a_tracked_teacher_that_dropped_a_saddle_after_its_state_is_refused(db):
    tracked = sprkd_json(db, *teacher_args(*TRACK, "--max-saddles", "1"))
    store = open_test_store(db)
    stopped = stopped_copy(db, tracked["run_id"], 5)  # the state of epoch 4 is saved; epoch 5 stops it
    from sprkd_cli.engine.state import save_state

    # A candidate is dropped when later ones outscore it (both in S-/S+ and in S-). On this data the first
    # candidate stays the best, so the drop is written into the log as the tracker writes it.
    kept = store.saddle_points(stopped)[0]
    store.add_event(stopped, "saddle_dropped", {"saddle_id": kept.id, "step": kept.step, "probe_loss": kept.probe_loss,
                                                "reason": "test"}, step=kept.step + 3, epoch=kept.epoch)
    # as if the last state had been saved at the step of the saddle that is dropped later
    save_state({"epoch": 1, "step": kept.step}, Path(store.get_run(stopped).artifact_dir) / STATE_FILE)
    with pytest.raises(UserError, match=f"dropped the saddle point of step {kept.step}"):
        resume_run(stopped, store)


def test_weights_of_another_architecture_are_one_line_before_the_run_is_touched(db):
    from sprkd_cli.engine.state import load_state, save_state
    from sprkd_cli.models import build_model

    reference = sprkd_json(db, *teacher_args())["run_id"]
    stopped = stopped_copy(db, reference, 3)
    store = open_test_store(db)
    path = Path(store.get_run(stopped).artifact_dir) / STATE_FILE
    state = load_state(path)
    state["model"] = build_model("mlp:width=24,depth=1", (8,), 3).state_dict()  # another run's shapes
    save_state(state, path)
    before = (store.get_run(stopped).status, len(store.metrics([stopped])))
    line = assert_user_error(sprkd(db, "train-teacher", "--resume", stopped), stopped, "does not fit the model",
                             "embed.1.weight is (24, 8) there and (16, 8) in the model")
    assert str(path) in line
    assert (store.get_run(stopped).status, len(store.metrics([stopped]))) == before  # nothing was touched

    # a checkpoint of other shapes: hessian-report, and as a teacher
    from sprkd_cli.engine.checkpoint import save_weights

    for name in ("best.safetensors", "model.safetensors"):
        save_weights(build_model("mlp:width=24,depth=1", (8,), 3).state_dict(),
                     Path(store.get_run(reference).artifact_dir) / name)
    assert_user_error(sprkd(db, "hessian-report", reference), "does not fit the model", "model.safetensors")
    assert_user_error(sprkd(db, "distill", "--method", "kd", "--teacher", reference, "--dataset", DATA, "--student",
                            STUDENT_MODEL, "--epochs", "1"), "does not fit the model")
