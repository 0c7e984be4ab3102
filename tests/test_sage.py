"""sage on vision models: anchors, teacher-labelled synthetic vectors, the round budget, UMAP refitted
on real vectors only, seeded reproducibility through the CLI, and the width check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sprkd_cli.data import load_dataset
from sprkd_cli.methods import declared_options
from sprkd_cli.methods.sage.method import SAGE
from sprkd_cli.models import build_model

from conftest import DATA, TRAIN, assert_user_error, open_test_store, sprkd, sprkd_json


def _sage(model_spec: str, dataset: str = DATA, **options):
    data = load_dataset(dataset, 0)
    torch.manual_seed(0)
    teacher = build_model(model_spec, data.input_shape, data.n_classes).eval()
    torch.manual_seed(1)
    student = build_model(model_spec, data.input_shape, data.n_classes)
    method = SAGE(declared_options("sage", options), teacher, data)
    events = []
    method.setup(student, seed=0, emit=lambda kind, payload, **where: events.append((kind, payload, where)))
    return data, teacher, student, method, events


@pytest.mark.slow
def test_a_round_anchors_labels_budget_and_real_only_umap(monkeypatch):
    import sprkd_cli.methods.sage.method as sage_module

    fitted = []
    real_fit = sage_module.fit_umap
    monkeypatch.setattr(sage_module, "fit_umap",
                        lambda points, seed: fitted.append(points.copy()) or real_fit(points, seed))
    data, teacher, student, method, events = _sage("mlp:width=16,depth=1", sage_max_synth=7, sage_per_anchor=3)
    n = len(data.y_train)
    assert method.budget == min(int(0.1 * n), 7) == 7
    # the student got the teacher's input layer, frozen
    assert torch.equal(student.embed[1].weight, teacher.embed[1].weight)
    assert not any(p.requires_grad for p in student.embed.parameters())
    for round_number in (1, 2):
        before = len(method.pool.p)
        record = method.run_round(student, epoch=round_number + 1, step=10 * round_number)
        last = method.last_round
        # anchors: exactly the real examples at or above the 90th percentile of the student's loss
        with torch.no_grad():
            logits = student.eval().body(teacher.embed(data.x_train))
        losses = (0.1 * F.cross_entropy(logits, data.y_train, reduction="none") + 0.9 * 16 * (
            method.neg_entropy - (method.p_teacher * F.log_softmax(logits / 4, dim=1)).sum(1))).numpy()
        assert np.allclose(last["losses"], losses, atol=1e-5)
        expected = np.flatnonzero(last["losses"] >= np.percentile(last["losses"], 90))
        assert np.array_equal(last["anchors"], expected) and record["anchors"] == len(expected)
        # a round adds at most its budget
        assert len(method.pool.p) - before == record["synthetic"] <= method.budget
        assert record["synthetic"] == 7 and record["pool_synthetic"] == 7 * round_number
        # synthetic targets are the teacher body's softmax (at the kd temperature) on the new vectors
        with torch.no_grad():
            p = F.softmax(teacher.body(method.pool.vectors) / 4, dim=1)
        assert torch.allclose(method.pool.p, p, atol=1e-6)
        # UMAP was fitted on real vectors only: all anchors plus a sample, no synthetic vector
        rows = last["rows"]
        assert set(last["anchors"]) <= set(rows) and rows.max() < n
        assert np.array_equal(fitted[-1], method.real.stored[rows].numpy())
        assert (events[-1][0], events[-1][2]) == ("sage_round", {"step": 10 * round_number, "epoch": round_number + 1})
    # anchors with the highest loss get their synthetic points first (budget 7 of 3 per anchor)
    top = last["anchors"][np.argsort(-last["losses"][last["anchors"]], kind="stable")][:3]
    assert np.array_equal(last["synthesis"].anchors, np.repeat(top, 3)[:7])
    assert len(fitted) == 2


@pytest.mark.slow
def test_cnn_vectors_round_trip_through_inverse_and_interpolate():
    for mode in ("inverse", "interpolate"):
        data, teacher, student, method, _ = _sage("cnn:channels=4", "digits", sage_synth=mode, sage_umap_max=300)
        record = method.run_round(student, epoch=2, step=1)
        made = method.last_round["synthesis"]
        assert made.vectors.shape == (record["synthetic"], 4, 8, 8) and record["synthetic"] == method.budget
        if mode == "interpolate":  # on the segment between the anchor's vector and its neighbour's
            a, j = method.real.stored[made.anchors], method.real.stored[made.neighbours]
            u = torch.from_numpy(made.u).float().reshape(-1, 1, 1, 1)
            assert torch.allclose(made.vectors, a + u * (j - a), atol=1e-6)
        assert torch.isfinite(made.vectors).all()


def test_pool_trains_each_synthetic_vector_once_per_epoch():
    data, teacher, student, method, _ = _sage("mlp:width=16,depth=1")
    method.run_round(student, epoch=2, step=1)
    method.start_epoch(student, 3, 10)  # rounds_done 1 < 3: a second round, then the epoch's order
    seen = []
    original = method.pool.p
    n = len(data.y_train)
    order = method._order.clone()
    for start in range(0, n, 64):
        index = torch.arange(start, min(n, start + 64))
        used = method._syn_used
        method.loss(student, data.x_train[index], data.y_train[index], index)
        seen.append(order[used:method._syn_used])
    assert torch.equal(torch.sort(torch.cat(seen)).values, torch.arange(len(original)))


@pytest.mark.slow
def test_distill_sage_same_seed_same_numbers_and_events(db):
    teacher = sprkd_json(db, "train-teacher", "--dataset", DATA, "--model", "mlp:width=16,depth=1", *TRAIN)
    args = ["distill", "--method", "sage", "--dataset", DATA, "--student", "mlp:width=16,depth=2",
            "--teacher", teacher["run_id"], "--epochs", "3", "--lr", "1e-2", "--sage-rounds", "2", "--seed", "5"]
    first, second = sprkd_json(db, *args), sprkd_json(db, *args)
    store = open_test_store(db)
    metrics = [[(m.step, m.split, m.name, m.value) for m in store.metrics([r["run_id"]])] for r in (first, second)]
    assert metrics[0] == metrics[1] and len(metrics[0]) == 15
    rounds = [[e.payload for e in store.events(r["run_id"]) if e.kind == "sage_round"] for r in (first, second)]
    strip = lambda p: {k: v for k, v in p.items() if not k.endswith("seconds")}  # noqa: E731
    assert [strip(p) for p in rounds[0]] == [strip(p) for p in rounds[1]] and len(rounds[0]) == 2
    assert [p["pool_synthetic"] for p in rounds[0]] == [p["synthetic"] for p in rounds[0][:1]] + [
        rounds[0][0]["synthetic"] + rounds[0][1]["synthetic"]]
    assert first["test_acc"] == second["test_acc"]


@pytest.mark.parametrize("bad, needle", [(["--sage-synth", "nope"], "bad --sage-synth 'nope'"),
                                         (["--sage-percentile", "101"], "--sage-percentile"),
                                         (["--sage-every", "0"], "--sage-every")])
def test_bad_sage_flags_are_one_line(db, bad, needle):
    assert_user_error(sprkd(db, "distill", "--method", "sage", "--dataset", DATA, *bad), needle)


def test_student_of_another_width_is_refused(db):
    teacher = sprkd_json(db, "train-teacher", "--dataset", DATA, "--model", "mlp:width=16,depth=1", *TRAIN)
    result = sprkd(db, "distill", "--method", "sage", "--dataset", DATA, "--student", "mlp:width=8,depth=1",
                   "--teacher", teacher["run_id"], *TRAIN)
    assert_user_error(result, "teacher's embed width is 16", "student's body takes width 8")
    assert [r.kind for r in open_test_store(db).list_runs()] == ["teacher"]


def test_a_vision_pool_saved_in_the_older_form_restores():
    """Earlier states held syn_vectors, syn_mask (None), syn_p and syn_neg_entropy: a vision pool still
    restores from them."""
    data, teacher, student, method, _ = _sage("mlp:width=16,depth=1")
    method.run_round(student, epoch=2, step=1)
    pool = method.state_dict()
    assert set(pool) == {"rounds_done", "syn_vectors", "syn_p", "syn_neg_entropy"}
    older = dict(pool, syn_mask=None)
    _, _, student2, other, _ = _sage("mlp:width=16,depth=1")
    other.check_state(older)
    other.load_state_dict(older)
    assert other.rounds_done == 1 and len(other.pool) == len(method.pool)
    assert torch.equal(other.pool.vectors, method.pool.vectors) and torch.equal(other.pool.p, method.pool.p)


# --- devices -------------------------------------------------------------------------------------------------
def test_vectors_targets_pool_and_recipes_follow_the_models_device():
    """Everything sage keeps lives where the model is (here the CPU, the only device the tests have); a
    round's UMAP side hands its synthesis back there, for kept vectors and for recipes alike."""
    data, teacher, student, method, _ = _sage("mlp:width=16,depth=1", sage_max_synth=5)
    device = next(student.parameters()).device
    assert method.device == device == next(teacher.parameters()).device
    method.run_round(student, epoch=2, step=10)
    pool = method.pool
    kept = [method.real.stored, method.labels, method.p_teacher, method.neg_entropy, pool.vectors, pool.p,
            pool.neg_entropy, pool.anchors, pool.neighbours, pool.u]
    assert len(pool) == 5 and all(t.device == device for t in kept)
    method.start_epoch(student, 3, 20)
    assert method._order.device == device
    loss = method.loss(student, data.x_train[:8], data.y_train[:8], torch.arange(8))
    assert loss.device == device and torch.isfinite(loss)
    # a restored pool comes back onto the pool's device from the CPU tensors a saved state holds
    state = {k: v.cpu() if torch.is_tensor(v) else v for k, v in method.state_dict().items()}
    method.load_state_dict(state)
    assert all(t.device == device for t in (pool.vectors, pool.p, pool.neg_entropy))


def test_the_cpu_boundary_moves_both_ways():
    """to_device takes what the CPU side made (NumPy arrays, CPU tensors) to the requested device, with the
    dtype asked for; to_host brings a tensor back as NumPy, bfloat16 (which NumPy lacks) as float32. The
    meta device stands in for a GPU: a tensor that stayed on the CPU would say so."""
    from sprkd_cli.methods.sage.pool import to_device, to_host

    meta = torch.device("meta")
    index = to_device(np.array([3, 1, 2]), meta, torch.long)
    assert index.device == meta and index.dtype == torch.long and index.shape == (3,)
    u = to_device(torch.tensor([0.25, 0.5], dtype=torch.float64), meta, torch.float32)
    assert u.device == meta and u.dtype == torch.float32
    back = to_host(torch.tensor([[1.5, 2.0]], dtype=torch.bfloat16, requires_grad=True))
    assert isinstance(back, np.ndarray) and back.dtype == np.float32 and back.tolist() == [[1.5, 2.0]]
