"""sprkd end to end: saddle-tracked teachers, the ASR and its injection, the approach, negative
Hessian eigensteps and Gaussian perturbations with their gates, the event log, and the CLI."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import (
    DATA,
    STUDENT_ARGS,
    TEACHER_MODEL,
    TRAIN,
    assert_user_error,
    metric_rows,
    open_test_store,
    sprkd,
    sprkd_json,
)

# Settings under which tiny teachers do have saddle candidates: with docs/methods.md's default top 4
# eigenvalues by magnitude these MLPs show none (their largest |λ| are all positive).
TRACK = ["--track-saddles", "--saddle-every", "1", "--saddle-top-n", "8"]
TRACKED_TEACHER = ["train-teacher", "--dataset", DATA, "--model", TEACHER_MODEL, *TRAIN, *TRACK]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """One intra-op thread, as in the rest of the suite's budget (tiny HVPs crawl on busy cores)."""
    import sprkd_cli.services.training as training

    monkeypatch.setattr(training, "set_threads", lambda jobs: torch.set_num_threads(1))
    torch.set_num_threads(1)


def tracked_teacher(db, *extra: str) -> dict:
    return sprkd_json(db, *TRACKED_TEACHER, *extra)


def model_input_shape(store, run_id: str) -> tuple:
    return tuple(store.get_run(run_id).config["data"]["input_shape"])


def events_of(store, run_id: str, kind: str | None = None) -> list:
    return [e for e in store.events(run_id) if kind is None or e.kind == kind]


# --- phase 1: saddle tracking -------------------------------------------------------------------


def test_digits_teacher_keeps_the_candidates_of_highest_ratio_and_highest_s_neg(db):
    from sprkd_cli.methods.sprkd.saddles import score
    from sprkd_cli.methods.sprkd.tracking import kept_candidates, load_snapshot

    outcome = sprkd_json(db, "train-teacher", "--dataset", "digits", "--model", "mlp:width=16,depth=1", "--epochs", "1",
                         "--track-saddles", "--saddle-every", "2", "--saddle-top-n", "8", "--max-saddles", "3")
    store = open_test_store(db)
    run = store.get_run(outcome["run_id"])
    points = store.saddle_points(run.id)
    checks = [SimpleNamespace(**e.payload, step=e.step) for e in events_of(store, run.id, "saddle_check")]
    assert len(checks) == 20 // 2 and all(c.step % 2 == 0 for c in checks)
    candidates = [c for c in checks if c.candidate]
    assert all(c.candidate == (c.s_neg > 0) for c in checks)  # negative curvature makes a candidate, no rule
    assert len(candidates) > 6, "precondition: more candidates than the two lists of --max-saddles keep"
    # kept: the 3 of highest S-/S+ and the 3 of highest S- over every candidate, whatever any rule says
    expected = kept_candidates(candidates, 3)
    assert [p.step for p in points] == [c.step for c in expected] and 3 <= len(points) <= 6
    by_ratio = sorted(candidates, key=lambda c: -c.s_neg / c.s_pos)[:3]
    by_neg = sorted(candidates, key=lambda c: -c.s_neg)[:3]
    assert {p.step for p in points} == {c.step for c in by_ratio + by_neg}
    assert len(points) == outcome["events"]["saddles"]
    assert "saddle_rule" not in run.config and run.config["saddle_top_n"] == 8
    for p in points:
        assert len(p.eigenvalues) == 8
        assert list(map(abs, p.eigenvalues)) == sorted(map(abs, p.eigenvalues), reverse=True)
        recomputed = score(p.eigenvalues)
        assert recomputed.s_neg == pytest.approx(p.s_neg) and recomputed.s_pos == pytest.approx(p.s_pos)
        snapshot = load_snapshot(Path(p.artifact))
        assert [n for n, _ in snapshot] == ["embed.1.weight", "embed.1.bias", "body.1.weight", "body.1.bias"]
    shown = sprkd_json(db, "runs", "show", run.id)
    assert [s["step"] for s in shown["saddle_points"]] == [p.step for p in points]
    for row, p in zip(shown["saddle_points"], points):
        assert row["ratio"] == pytest.approx(p.s_neg / p.s_pos)
        assert row["passes_ratio"] == (p.s_neg >= 0.4 * p.s_pos) and row["passes_magnitude"] == (p.s_neg >= 7)
    assert shown["event_counts"]["saddle_dropped"] >= 1
    text = sprkd(db, "runs", "show", run.id)
    assert text.exit_code == 0 and "saddle candidates" in text.stdout


def test_the_rule_is_applied_at_distill_time_to_the_stored_eigenvalues():
    from sprkd_cli.methods.sprkd.saddles import choose_saddle

    def point(step, loss, eigenvalues):
        values = np.asarray(eigenvalues)
        return SimpleNamespace(step=step, probe_loss=loss, eigenvalues=eigenvalues,
                               s_neg=float(-values[values < 0].sum()), s_pos=float(values[values > 0].sum()))

    points = [point(10, 0.5, [4.0, -1.0]),  # ratio 0.25, S- 1
              point(20, 0.9, [2.0, -1.0]),  # ratio 0.5, S- 1
              point(30, 0.7, [10.0, -8.0]),  # ratio 0.8, S- 8
              point(40, 0.3, [10.0, -2.0])]  # ratio 0.2, S- 2
    # every rule picks exactly among the candidates it makes strong, lowest loss first (or the last)
    assert choose_saddle(points, "ratio", 0.4, 7, "lowest-loss", "none") == (points[2], False)
    assert choose_saddle(points, "ratio", 0.2, 7, "lowest-loss", "none") == (points[3], False)
    assert choose_saddle(points, "ratio", 0.2, 7, "last", "none") == (points[3], False)
    assert choose_saddle(points, "ratio", 0.45, 7, "last", "none") == (points[2], False)
    assert choose_saddle(points, "magnitude", 0.0, 2, "lowest-loss", "none") == (points[3], False)
    assert choose_saddle(points, "both", 0.6, 2, "lowest-loss", "none") == (points[2], False)
    # none strong: the best candidate by the rule's own score, flagged; or nothing
    assert choose_saddle(points, "ratio", 0.9, 7, "lowest-loss", "best") == (points[2], True)
    assert choose_saddle(points[:2] + points[3:], "magnitude", 0, 9, "lowest-loss", "best") == (points[3], True)
    assert choose_saddle(points, "ratio", 0.9, 7, "lowest-loss", "none") == (None, False)


def test_saddle_rules():
    from sprkd_cli.methods.sprkd.saddles import is_strong, score

    s = score([5.0, -3.0, 2.0, 1.0])
    assert s.eigenvalues == [5.0, -3.0, 2.0, 1.0]
    assert (s.s_neg, s.s_pos) == (3.0, 8.0)
    assert is_strong(s, "ratio", 0.375, 7) and not is_strong(s, "ratio", 0.4, 7)
    assert is_strong(s, "magnitude", 0.9, 3) and not is_strong(s, "magnitude", 0.0, 3.1)
    assert not is_strong(s, "both", 0.3, 3.1) and is_strong(s, "both", 0.3, 3)
    assert not is_strong(score([1.0, 0.5]), "ratio", 0.0, 0.0)  # no negative curvature: no saddle


def test_tracking_does_not_change_what_the_teacher_learns(db):
    from safetensors.torch import load_file

    plain = sprkd_json(db, "train-teacher", "--dataset", DATA, "--model", TEACHER_MODEL, *TRAIN, "--seed", "3")
    # same config hash and seed, but --reuse does not hand back the untracked teacher when saddles are asked for
    tracked = sprkd_json(db, *TRACKED_TEACHER, "--seed", "3", "--reuse")
    assert not tracked.get("reused") and tracked["run_id"] != plain["run_id"]
    assert tracked["events"]["saddles"] > 0, "precondition: the probes did run"
    store = open_test_store(db)
    assert metric_rows(store, plain["run_id"]) == metric_rows(store, tracked["run_id"])
    assert plain["config_hash"] == tracked["config_hash"]
    a = load_file(f"{plain['artifact_dir']}/model.safetensors")
    b = load_file(f"{tracked['artifact_dir']}/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


# --- phase 2: ASR and injection -----------------------------------------------------------------


def test_fit_tensor_centre_crops_and_zero_pads():
    from sprkd_cli.methods.sprkd.inject import fit_tensor

    t = torch.arange(24.0).view(4, 6)
    assert torch.equal(fit_tensor(t, (2, 2)), t[1:3, 2:4])
    padded = fit_tensor(t, (6, 8))
    assert torch.equal(padded[1:5, 1:7], t) and padded.sum() == t.sum()
    mixed = fit_tensor(t, (2, 8))
    assert torch.equal(mixed[:, 1:7], t[1:3]) and torch.equal(mixed[:, [0, 7]], torch.zeros(2, 2))


def test_inject_refuses_what_the_student_cannot_take():
    from sprkd_cli.errors import UserError
    from sprkd_cli.methods.sprkd.inject import inject

    asr = [("a.weight", torch.zeros(4, 3)), ("a.bias", torch.zeros(4))]
    with pytest.raises(UserError, match=r"tensor 0 teacher a.weight \(4x3, rank 2\) vs student c.weight \(2x3x3x3, "
                                        r"rank 4\)"):
        inject(asr, [("c.weight", torch.zeros(2, 3, 3, 3)), ("c.bias", torch.zeros(2))])
    with pytest.raises(UserError, match="the ASR has 2 parameter tensors but the student has 3: student tensor 2"):
        inject(asr, [("x", torch.zeros(2, 3)), ("y", torch.zeros(2)), ("z", torch.zeros(1))])
    targets, mapping = inject(asr, [("x", torch.zeros(2, 5)), ("y", torch.zeros(4))])
    assert [m["op"] for m in mapping] == ["crop+pad", "copy"] and targets[0].shape == (2, 5)


def test_asr_is_the_mean_of_each_teachers_chosen_snapshot_and_the_approach_reaches_it(db):
    from sprkd_cli.config import TrainConfig
    from sprkd_cli.engine import seed_everything
    from sprkd_cli.methods import method_options
    from sprkd_cli.methods.sprkd.approach import distance
    from sprkd_cli.methods.sprkd.inject import fit_tensor
    from sprkd_cli.methods.sprkd.tracking import load_snapshot
    from sprkd_cli.models import build_model
    from sprkd_cli.services.training import prepare

    teachers = [tracked_teacher(db, "--seed", str(s))["run_id"] for s in (0, 1)]
    store = open_test_store(db)
    chosen = [min(store.saddle_points(t), key=lambda p: p.probe_loss) for t in teachers]
    snapshots = [load_snapshot(Path(p.artifact)) for p in chosen]
    mean = [(snapshots[0][i][1].double() + snapshots[1][i][1].double()) / 2 for i in range(len(snapshots[0]))]

    cfg = TrainConfig(kind="student", method="sprkd", dataset=DATA, model="mlp:width=8,depth=1", seed=4, epochs=1,
                      teacher_ids=teachers, method_options=method_options("sprkd", {"saddle_alpha": 0.0}))
    emitted = []
    _, model, method = prepare(cfg, store, lambda kind, payload=None, **where: emitted.append((kind, payload)))
    asr_event = dict(emitted)["asr_built"]
    assert [t["saddle_id"] for t in asr_event["teachers"]] == [p.id for p in chosen]
    params = [p for p in model.parameters()]
    seed_everything(4)
    fresh = build_model(cfg.model, model_input_shape(store, teachers[0]), 3)
    assert all(torch.equal(a, b) for a, b in zip(params, fresh.parameters())), "the student starts from its own init"
    for target, m, p in zip(method.approach.targets, mean, params):
        assert torch.allclose(target.double(), fit_tensor(m, tuple(p.shape)), atol=1e-7, rtol=0)
    assert all(distance(p, t) > 1e-3 for p, t in zip(params, method.approach.targets)), "precondition"

    step = 0
    while method.approach.active:
        step += 1
        assert method.replace_step(model, step, 1)
    assert not method.replace_step(model, step + 1, 1)
    assert not method.approach.stopped_by_limit and step < 200
    for p, t in zip(params, method.approach.targets):
        assert distance(p, t) <= cfg.method_options["approach_eps"]
    finished = dict(emitted)["approach_finished"]
    assert finished["steps"] == step and finished["stopped_by"] == "eps"


def test_approach_weights_follow_the_decaying_transformation():
    from sprkd_cli.methods.sprkd.approach import Approach, weight

    assert weight(1) == pytest.approx(1 - 2 ** -0.1 / 2) and weight(10) == pytest.approx(0.75)
    s, t = torch.zeros(3), torch.ones(3)
    approach = Approach([s], [t], eps=1e-3, max_steps=2)
    approach.step(1)
    assert torch.allclose(s, torch.full((3,), weight(1)))
    approach.step(2)  # the limit stops every tensor, reached or not
    assert not approach.active and approach.stopped_by_limit and approach.steps == 2


def test_revive_gives_dead_units_their_own_initial_weights_and_a_zero_bias():
    from sprkd_cli.hessian import ProbeSet
    from sprkd_cli.methods.sprkd.revive import dead_units, revive

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 4), torch.nn.ReLU(),
                                torch.nn.Linear(4, 2))
    x = torch.randn(64, 3)
    probe = ProbeSet.from_indices(x, torch.zeros(64, dtype=torch.long), [torch.arange(64)], seed=0)
    targets = [p.detach().clone() + 0.5 for p in model.parameters()]  # an "ASR" unlike the student's init
    targets[1][2] = -100.0  # unit 2 of the first layer never fires
    targets[3][0] = -100.0  # nor unit 0 of the second
    before = [t.clone() for t in targets]
    found = revive(model, targets, probe)
    assert found == [{"layer": "0", "units": 4, "dead": 1, "revived": 1},
                     {"layer": "2", "units": 4, "dead": 1, "revived": 1}]
    assert torch.equal(targets[0][2], model[0].weight[2]) and targets[1][2] == 0
    assert torch.equal(targets[2][0], model[2].weight[0]) and targets[3][0] == 0
    untouched = [(0, [0, 1, 3]), (1, [0, 1, 3]), (2, [1, 2, 3]), (3, [1, 2, 3]), (4, [0, 1]), (5, [0, 1])]
    for i, rows in untouched:
        assert torch.equal(targets[i][rows], before[i][rows])
    at = copy.deepcopy(model)
    with torch.no_grad():
        for p, t in zip(at.parameters(), targets):
            p.copy_(t)
    assert all(not dead.any() for _, dead in dead_units(at, probe))


# --- phase 3: NHE and PGD -----------------------------------------------------------------------


class SaddleModel(torch.nn.Module):
    """Logits (0, w0² − w1²) for class 0 labels: the probe loss is softplus(w0² − w1²), a saddle at the
    origin with Hessian diag(1, −1) there (λmin = −1 along ±e1 = (0, 1))."""

    def __init__(self, w0: float, w1: float):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([w0, w1]))

    def forward(self, x):
        z = (self.w[0] ** 2 - self.w[1] ** 2) * torch.ones(len(x))
        return torch.stack([torch.zeros_like(z), z], dim=1)


def _probe():
    from sprkd_cli.hessian import ProbeSet

    x, y = torch.zeros(8, 1), torch.zeros(8, dtype=torch.long)
    return ProbeSet.from_indices(x, y, [torch.arange(8)], seed=0)


def _minibatch_grad(model, probe):
    model.zero_grad()
    x, y = probe.batches[0]
    F.cross_entropy(model(x), y).backward()
    return [p.grad.clone() for p in model.parameters()]


def test_nhe_steps_along_the_negative_eigenvector_and_lowers_the_loss():
    from sprkd_cli.methods.sprkd.nhe import eigenstep, most_negative
    from sprkd_cli.methods.sprkd.probe import probe_loss

    model, probe = SaddleModel(0.0, 0.01), _probe()
    pair = most_negative(model, probe)
    assert pair.value == pytest.approx(-2 * torch.sigmoid(torch.tensor(-1e-4)).item(), rel=1e-3)
    assert torch.allclose(pair.vector[0].abs(), torch.tensor([0.0, 1.0]), atol=1e-4)
    before_w, before_loss = model.w.detach().clone(), probe_loss(model, probe)
    grads = _minibatch_grad(model, probe)
    outcome = eigenstep(model, list(model.parameters()), grads, pair, probe, scale=0.5)
    moved = model.w.detach() - before_w
    assert outcome.kept and outcome.halvings == 0
    assert outcome.alpha == pytest.approx(0.5 * abs(pair.value))
    assert moved[0] == pytest.approx(0.0, abs=1e-6) and moved[1] == pytest.approx(outcome.alpha, rel=1e-4)
    # downhill: g_1 < 0 at w1 = 0.01, so s = -sign(gᵀv) sends w1 up, away from the saddle
    assert probe_loss(model, probe) == pytest.approx(outcome.loss_after) and outcome.loss_after < before_loss
    assert outcome.loss_after == pytest.approx(math.log1p(math.exp(-(0.01 + outcome.alpha) ** 2)), rel=1e-4)


def test_a_step_that_raises_the_probe_loss_is_undone_bit_for_bit():
    from sprkd_cli.methods.sprkd.nhe import Eigenpair, eigenstep
    from sprkd_cli.methods.sprkd.pgd import perturbation_step

    model, probe = SaddleModel(0.0, 0.3), _probe()  # along w0 the loss only rises
    before = model.w.detach().clone()
    halvings = []
    outcome = eigenstep(model, list(model.parameters()), [torch.tensor([0.0, 0.0])],
                        Eigenpair(-1.0, [torch.tensor([1.0, 0.0])], 1, True), probe, scale=0.5,
                        on_halve=lambda *args: halvings.append(args))
    assert not outcome.kept and len(halvings) == 3 and outcome.alpha == pytest.approx(0.5 / 8)
    assert model.w.detach().numpy().tobytes() == before.numpy().tobytes()

    model = SaddleModel(0.0, 0.0)  # zero RMS: a zero perturbation, which does not increase the loss
    assert perturbation_step(model, list(model.parameters()), probe, 0.1, torch.Generator().manual_seed(0)).kept
    model = SaddleModel(0.3, 0.0)  # large perturbations: some raise the loss (w0 grows), some lower it
    generator = torch.Generator().manual_seed(1)
    reverted = 0
    for _ in range(20):
        before = model.w.detach().numpy().tobytes()
        o = perturbation_step(model, list(model.parameters()), probe, 5.0, generator)
        assert o.kept == (o.tried_loss <= o.loss_before)
        if not o.kept:
            reverted += 1
            assert model.w.detach().numpy().tobytes() == before
    assert reverted > 0


class DiagonalModel(torch.nn.Module):
    """Logits (0, Σ d_i w_i²) for class 0 labels: at w = 0 the probe Hessian is diag(d_i) (σ(0) = 1/2)."""

    def __init__(self, d: list[float]):
        super().__init__()
        self.d = torch.tensor(d)
        self.w = torch.nn.Parameter(torch.zeros(len(d)))

    def forward(self, x):
        z = (self.d * self.w ** 2).sum() * torch.ones(len(x))
        return torch.stack([torch.zeros_like(z), z], dim=1)


def test_leading_pair_is_the_smaller_of_the_two_largest_in_magnitude():
    from sprkd_cli.methods.sprkd.nhe import leading_pair

    pair = leading_pair(DiagonalModel([3.0, -2.5, 1.0]), _probe())
    assert pair.value == pytest.approx(-2.5, rel=1e-4) and pair.converged  # {3, -2.5}: the smaller is negative
    assert torch.allclose(pair.vector[0].abs(), torch.tensor([0.0, 1.0, 0.0]), atol=1e-4)
    # λmin = -1 exists but is not among the two of largest magnitude {3, 2}: no negative λ, no step
    assert leading_pair(DiagonalModel([3.0, 2.0, -1.0]), _probe()).value == pytest.approx(2.0, rel=1e-4)


def test_elementwise_eigenstep_moves_each_coordinate_by_its_gradient_times_v_squared():
    from sprkd_cli.methods.sprkd.nhe import elementwise_step, leading_pair

    model, probe = SaddleModel(0.2, 0.01), _probe()
    pair = leading_pair(model, probe)
    grads = _minibatch_grad(model, probe)
    before = model.w.detach().clone()
    weight = elementwise_step(list(model.parameters()), grads, pair)
    assert weight == pytest.approx(1 / abs(pair.value)) and pair.value < 0
    expected = before - grads[0] * pair.vector[0] ** 2 / abs(pair.value)  # θ − (g ⊙ v ⊙ v)/|λ|
    assert torch.allclose(model.w.detach(), expected, atol=1e-7)
    assert model.w[1] > before[1] > 0  # away from the saddle along the negative direction


def test_the_gate_needs_a_small_gradient_distance_from_the_start_a_loss_drop_cooldown_and_epochs():
    from sprkd_cli.methods import declared_options
    from sprkd_cli.methods.sprkd.gate import Gate

    options = declared_options("sprkd", {"nhe_gate": "tensor", "nhe_grad_threshold": 0.01, "gate_distance": 1.0,
                                      "gate_loss_drop": 0.1, "cooldown": 2, "gate_epochs": 3})
    params = [torch.full((4,), 1.0), torch.full((4,), 1.0)]
    gate = Gate(options, ["a", "b"], params, [torch.zeros(4), torch.zeros(4)])  # start norms 0, now 2 and 2
    assert gate.distance() == pytest.approx(2.0)
    opened = gate.check([0.5, 0.001], loss=1.0, step=1, epoch=1)
    assert opened["tensor"] == "b" and opened["tensor_index"] == 1 and opened["distance"] == pytest.approx(2.0)
    assert gate.check([0.5, 0.02], 1.0, 1, 1) is None  # no tensor's gradient under j
    assert gate.check([0.5, 0.001], 1.0, 1, 4) is None  # past --gate-epochs
    gate.fired(1, loss=1.0)
    assert gate.check([0.5, 0.001], 0.5, 3, 1) is None  # cooldown: two steps must pass
    assert gate.check([0.5, 0.001], 0.95, 4, 1) is None  # the loss fell by 0.05 < 0.1 since the event
    assert gate.check([0.5, 0.001], 0.85, 4, 1) is not None
    near = Gate(options, ["a", "b"], params, [torch.full((4,), 0.9), torch.full((4,), 0.9)])
    assert near.check([0.5, 0.001], 1.0, 1, 1) is None  # moved 0.2 < δ from its start
    stats = gate.epoch_statistics()
    assert stats == {"gate_tensor_norm": 0.001, "gate_grad_norm": pytest.approx(math.hypot(0.5, 0.001)),
                     "gate_distance": pytest.approx(2.0)}
    assert gate.epoch_statistics() == {}  # a new epoch starts afresh
    wide = Gate(dataclasses.replace(options, nhe_gate="global", nhe_grad_threshold=1.0), ["a", "b"], params,
                [torch.zeros(4), torch.zeros(4)])
    assert wide.check([0.5, 0.6], 1.0, 1, 1)["gate"] == "global" and wide.check([0.9, 0.6], 1.0, 1, 1) is None


OPEN_GATE = ["--nhe-grad-threshold", "1e9", "--gate-distance", "0", "--gate-loss-drop", "0", "--epochs", "6",
             "--lr", "1e-2"]  # every base step opens the gate


def test_events_follow_the_gate_the_budget_and_the_ablations(db):
    teacher = tracked_teacher(db)["run_id"]
    store = open_test_store(db)
    args = ["distill", "--method", "sprkd", "--teacher", teacher, "--dataset", DATA, "--student", "mlp:width=8,depth=1"]
    run = sprkd_json(db, *args, *OPEN_GATE, "--cooldown", "2", "--nhe-max", "2", "--gate-epochs", "5")["run_id"]
    events = [e for e in store.events(run) if e.kind != "asr_fallback"]
    assert [e.kind for e in events][:2] == ["asr_built", "injection"]
    approach = events_of(store, run, "approach_finished")[0]
    nhe = [e for e in events if e.kind in ("nhe_kept", "nhe_reverted", "nhe_skipped")]
    pgd = [e for e in events if e.kind.startswith("pgd_")]
    assert len(nhe) == 2 and all(e.step > approach.step for e in nhe + pgd)  # --nhe-max counts every attempt
    assert [e.payload["attempt"] for e in nhe] == [1, 2]
    assert {e.step for e in nhe} <= {e.step for e in pgd}  # PGD follows every opening, NHE budget or not
    assert all(e.kind == "pgd_kept" for e in pgd) and len(pgd) > len(nhe)  # --accept always: nothing undone
    steps = [e.step for e in pgd]
    assert min(b - a for a, b in zip(steps, steps[1:])) == 3  # the cooldown: two steps pass, the third may act
    assert max(e.epoch for e in pgd) == 5  # --gate-epochs
    from sprkd_cli.services.loading import load_run_model

    names = [n for n, p in load_run_model(store.get_run(run)).named_parameters()]
    for e in nhe + pgd:  # the tensor gate names the tensor and the norm that opened it
        assert e.payload["gate"] == "tensor" and e.payload["tensor"] in names
        assert e.payload["tensor_norm"] < 1e9 and e.payload["tensor_norm"] <= e.payload["grad_norm"]
    for e in pgd:
        assert e.payload["noise"] == "tensor" and e.payload["sigma"] == pytest.approx(0.316)
    for e in nhe:
        assert e.payload["hessian"] == "batch" and e.payload["step_kind"] == "elementwise"
        if e.kind == "nhe_kept":
            assert e.payload["weight"] == pytest.approx(1 / abs(e.payload["lambda"]))

    no_nhe = sprkd_json(db, *args, *OPEN_GATE, "--cooldown", "2", "--gate-epochs", "4", "--no-nhe")["run_id"]
    assert not [e for e in store.events(no_nhe) if e.kind.startswith("nhe_")]
    assert events_of(store, no_nhe, "pgd_kept") and all(e.epoch <= 4 for e in events_of(store, no_nhe, "pgd_kept"))

    bare = sprkd_json(db, *args, *OPEN_GATE, "--no-asr", "--no-pgd")
    bare_events = store.events(bare["run_id"])
    assert {"asr_built", "injection", "approach_finished"}.isdisjoint(e.kind for e in bare_events)
    assert not [e for e in bare_events if e.kind.startswith("pgd_")] and bare["events"]["approach_steps"] == 0
    assert len({store.get_run(r).config_hash for r in (run, no_nhe, bare["run_id"])}) == 3


def test_the_paper_prose_variants_revert_what_raises_the_probe_loss(db):
    teacher = tracked_teacher(db)["run_id"]
    store = open_test_store(db)
    run = sprkd_json(db, "distill", "--method", "sprkd", "--teacher", teacher, "--dataset", DATA, "--student",
                     "mlp:width=8,depth=1", *OPEN_GATE, "--cooldown", "2", "--nhe-step", "eigenvector",
                     "--nhe-hessian", "probe", "--pgd-noise", "relative", "--pgd-sigma", "0.1",
                     "--accept", "probe-loss", "--nhe-budget", "100")["run_id"]  # the probe set is larger than an epoch
    nhe = events_of(store, run, "nhe_kept") + events_of(store, run, "nhe_reverted")
    pgd = events_of(store, run, "pgd_kept") + events_of(store, run, "pgd_reverted")
    assert nhe and pgd
    for e in nhe:
        p = e.payload
        assert (p["step_kind"] == "eigenvector"
                and p["alpha"] == pytest.approx(0.5 * abs(p["lambda"]) / 2 ** p["halvings"]))
        assert (p["loss_after"] < p["loss_before"]) if e.kind == "nhe_kept" else (p["loss_after"] == p["loss_before"])
    for e in pgd:
        p = e.payload
        assert p["noise"] == "relative" and (p["loss_tried"] <= p["loss_before"]) == (e.kind == "pgd_kept")


def test_nhe_lanczos_work_per_epoch_stays_within_its_budget():
    from sprkd_cli.data import load_dataset
    from sprkd_cli.methods import declared_options
    from sprkd_cli.models import build_model

    data = load_dataset(DATA)
    from sprkd_cli.config import TrainConfig

    steps_per_epoch = math.ceil(len(data.y_train) / TrainConfig("student", "sprkd", DATA, "mlp").batch_size)
    budget = 10.5 / steps_per_epoch  # ten products an epoch
    options = declared_options("sprkd", {"asr": False, "nhe_grad_threshold": 1e9, "gate_distance": 0.0,
                                      "gate_loss_drop": 0.0, "cooldown": 0, "nhe_budget": budget})
    allowed = int(budget * steps_per_epoch)
    assert allowed == 10
    method = _sprkd(options, data)
    model = build_model("mlp:width=8,depth=1", data.input_shape, data.n_classes)
    events = []
    method.setup(model, seed=0, emit=lambda kind, payload=None, step=None, epoch=None: events.append((kind, payload)))
    index = torch.arange(32)
    for epoch in (1, 2):
        for step in range(1, 8):
            model.zero_grad()
            method.loss(model, data.x_train[index], data.y_train[index], index).backward()
            method.after_step(model, (epoch - 1) * 7 + step, epoch)
        assert 0 < method.products_this_epoch <= allowed
    attempts = [p for kind, p in events if kind.startswith("nhe_")]
    assert attempts and all(p["lanczos_iterations"] <= p["lanczos_steps_allowed"] <= allowed for p in attempts)
    assert attempts[0]["lanczos_steps_allowed"] == min(allowed, options.nhe_lanczos_steps)


def test_an_attempt_without_negative_curvature_backs_off():
    """A miss doubles the wait before the next NHE attempt; PGD does not wait."""
    from sprkd_cli.data import load_dataset
    from sprkd_cli.methods import declared_options
    from sprkd_cli.models import build_model

    data = load_dataset(DATA)
    options = declared_options("sprkd", {"asr": False, "nhe_grad_threshold": 1e9, "gate_distance": 0.0,
                                      "gate_loss_drop": 0.0, "cooldown": 0, "nhe_tol": 1e9,  # every λ is a miss
                                      "nhe_budget": 1e3})
    method = _sprkd(options, data)
    model = build_model("mlp:width=8,depth=1", data.input_shape, data.n_classes)
    events = []
    method.setup(model, seed=0, emit=lambda kind, payload=None, step=None, epoch=None: events.append((kind, step)))
    index = torch.arange(32)
    for step in range(1, 12):
        model.zero_grad()
        method.loss(model, data.x_train[index], data.y_train[index], index).backward()
        method.after_step(model, step, 1)
    misses = [step for kind, step in events if kind == "nhe_skipped"]
    assert misses == [1, 3, 7]  # waits of 2, 4, 8 steps after each miss
    assert [step for kind, step in events if kind == "pgd_kept"] == list(range(1, 12))
    assert method.nhe_attempts == 3


def test_a_teacher_without_strong_saddles_falls_back_to_its_best_candidate(db):
    teacher = tracked_teacher(db)["run_id"]
    store = open_test_store(db)
    args = ["distill", "--method", "sprkd", "--teacher", teacher, *STUDENT_ARGS, "--saddle-rule", "ratio",
            "--saddle-alpha", "1000", "--saddle-fallback", "best"]
    outcome = sprkd_json(db, *args)
    run = store.get_run(outcome["run_id"])
    assert run.summary["asr_fallback"] == [teacher] and outcome["events"]["asr_fallback"] == 1
    assert outcome["warnings"] == [f"no saddle candidate of teacher {teacher} passes the rule; its best candidate "
                                   "went into the ASR (--saddle-fallback best)"]
    (fallback,) = events_of(store, run.id, "asr_fallback")
    best = max(store.saddle_points(teacher), key=lambda p: p.s_neg / p.s_pos)
    assert fallback.payload["saddle_id"] == best.id and fallback.payload["saddle_alpha"] == 1000
    (built,) = events_of(store, run.id, "asr_built")
    assert built.payload["teachers"][0]["fallback"] is True
    text = sprkd(db, *args, "--seed", "1")
    assert text.exit_code == 0 and f"warning: no saddle candidate of teacher {teacher}" in text.stdout
    # a rule some candidate passes: no fallback, and the strong one of lowest loss
    alpha = min(p.s_neg / p.s_pos for p in store.saddle_points(teacher))
    strong = sprkd_json(db, "distill", "--method", "sprkd", "--teacher", teacher, *STUDENT_ARGS,
                        "--saddle-rule", "ratio", "--saddle-alpha", str(alpha * 0.999), "--asr-pick", "lowest-loss")
    assert "warnings" not in strong and "asr_fallback" not in store.get_run(strong["run_id"]).summary
    (built,) = events_of(store, strong["run_id"], "asr_built")
    lowest = min(store.saddle_points(teacher), key=lambda p: (p.probe_loss, p.step))
    assert built.payload["teachers"][0]["saddle_id"] == lowest.id
    # the defaults: the magnitude rule, and the latest strong candidate or, failing that, the latest candidate
    latest = max(store.saddle_points(teacher), key=lambda p: p.step)
    default = sprkd_json(db, "distill", "--method", "sprkd", "--teacher", teacher, *STUDENT_ARGS, "--saddle-beta",
                         "1e9")
    assert default["warnings"] == [f"no saddle candidate of teacher {teacher} passes the rule; its latest candidate "
                                   "went into the ASR (--saddle-fallback last)"]
    (built,) = events_of(store, default["run_id"], "asr_built")
    assert built.payload["teachers"][0]["saddle_id"] == latest.id and built.payload["saddle_rule"] == "magnitude"


def test_nhe_gate_statistic_is_stored_every_epoch(db):
    teacher = tracked_teacher(db)["run_id"]
    outcome = sprkd_json(db, "distill", "--method", "sprkd", "--teacher", teacher, *STUDENT_ARGS,
                         "--approach-max-steps", "2")
    rows = {(epoch, name): value for _, epoch, split, name, value in metric_rows(open_test_store(db), outcome["run_id"])
            if split == "train"}
    for epoch in (1, 2, 3):  # (an epoch of approach steps alone would have no base step to measure)
        assert 0 < rows[(epoch, "gate_tensor_norm")] <= rows[(epoch, "gate_grad_norm")]


# --- errors -------------------------------------------------------------------------------------


def test_sprkd_user_errors_are_one_line(db):
    plain = sprkd_json(db, "train-teacher", "--dataset", DATA, "--model", TEACHER_MODEL, *TRAIN)["run_id"]
    narrow = tracked_teacher(db)["run_id"]
    wide = tracked_teacher(db, "--model", "mlp:width=24,depth=1")["run_id"]
    never = sprkd_json(db, *TRACKED_TEACHER, "--saddle-top-n", "1", "--seed", "5")["run_id"]
    base = ["distill", "--method", "sprkd", *STUDENT_ARGS]
    students = len(open_test_store(db).list_runs(kind="student"))

    line = assert_user_error(sprkd(db, *base, "--teacher", plain), plain, "without saddle tracking", "--track-saddles")
    assert f"--model {TEACHER_MODEL}" in line
    assert_user_error(sprkd(db, *base, "--teacher", never), never, "no saddle candidate", "saw negative curvature",
                      "--saddle-top-n")
    assert_user_error(sprkd(db, *base, "--teacher", narrow, "--saddle-rule", "ratio", "--saddle-alpha", "1000",
                            "--saddle-fallback", "none"), narrow, "passes the ratio rule", "alpha 1000",
                      "--saddle-fallback last or best")
    assert_user_error(sprkd(db, *base, "--teacher", f"{narrow},{wide}"), "different architectures", narrow, wide,
                      "tensor 0: embed.1.weight 16x8 vs embed.1.weight 24x8")
    assert_user_error(sprkd(db, "distill", "--method", "sprkd", "--teacher", narrow, "--dataset", DATA,
                            "--student", "mlp:width=8,depth=2", *TRAIN),
                      "the ASR has 4 parameter tensors but the student has 6", "student tensor 4")
    assert_user_error(sprkd(db, *base, "--teacher", narrow, "--asr-pick", "best"), "bad --asr-pick 'best'")
    assert_user_error(sprkd(db, *base, "--teacher", narrow, "--saddle-rule", "nope"), "bad --saddle-rule 'nope'")
    assert_user_error(sprkd(db, *base, "--teacher", narrow, "--nhe-gate", "loose"), "bad --nhe-gate 'loose'")
    assert_user_error(sprkd(db, *base, "--teacher", ","), "bad --teacher")
    assert len(open_test_store(db).list_runs(kind="student")) == students  # nothing was recorded


def test_sprkd_without_a_fitting_saddle_teacher_says_how_to_train_one(db):
    sprkd_json(db, "train-teacher", "--dataset", DATA, "--model", TEACHER_MODEL, *TRAIN)
    line = assert_user_error(sprkd(db, "distill", "--method", "sprkd", *STUDENT_ARGS), "with tracked saddles",
                             "sprkd train-teacher", "--track-saddles")
    assert "--model mlp:width=32,depth=1" in line
    # the ablation without the ASR takes any teacher
    assert sprkd_json(db, "distill", "--method", "sprkd", "--no-asr", *STUDENT_ARGS)["status"] == "finished"


# --- the CLI end to end -------------------------------------------------------------------------


def test_distill_sprkd_with_two_teachers_end_to_end(db):
    teachers = [tracked_teacher(db, "--seed", str(s))["run_id"] for s in (0, 1)]
    result = sprkd(db, "distill", "--method", "sprkd", "--teacher", ",".join(t[:8] for t in teachers), *STUDENT_ARGS)
    assert result.exit_code == 0, result.output
    assert "injected tensor 0: embed.1.weight (16, 8) -> embed.1.weight (8, 8) (crop)" in result.stdout
    store = open_test_store(db)
    (student,) = store.list_runs(kind="student")
    assert student.teacher_ids == teachers and student.status == "finished"
    shown = sprkd_json(db, "runs", "show", student.id, "--events")
    counts = shown["event_counts"]
    assert counts["approach_steps"] > 0 and counts["events"] == len(shown["events"])
    kinds = [e["kind"] for e in shown["events"] if e["kind"] != "asr_fallback"]  # tiny teachers: none may be strong
    assert kinds[:3] == ["asr_built", "injection", "approach_finished"]
    assert {m["epoch"] for m in shown["metrics"]} == {1, 2, 3}
    assert shown["config"]["method_options"]["nhe_grad_threshold"] == 0.01
    assert shown["config"]["method_options"]["nhe_gate"] == "tensor"
    text = sprkd(db, "runs", "show", student.id, "--events")
    assert text.exit_code == 0 and "approach_finished" in text.stdout and "injection" in text.stdout


@pytest.mark.slow
def test_compare_and_stats_take_sprkd_like_any_method(db):
    plain = sprkd_json(db, "train-teacher", "--dataset", DATA, "--model", TEACHER_MODEL, *TRAIN, "--seed", "1")
    tracked = tracked_teacher(db)
    newest = sprkd_json(db, "train-teacher", "--dataset", DATA, "--model", TEACHER_MODEL, *TRAIN, "--seed", "2")
    compared = sprkd_json(db, "compare", *STUDENT_ARGS, "--methods", "sgd,kd,sprkd", "--seeds", "0-1")
    rows = {row["method"]: row for row in compared["arms"]}
    assert compared["failed"] == [] and all(rows[m]["n"] == 2 for m in ("sgd", "kd", "sprkd"))
    assert rows["kd"]["teacher_ids"] == [newest["run_id"]] and rows["sprkd"]["teacher_ids"] == [tracked["run_id"]]
    assert plain["run_id"] not in rows["sprkd"]["teacher_ids"]
    pairs = sprkd_json(db, "stats", "--dataset", DATA, "--methods", "sgd,kd,sprkd")
    assert {frozenset((p["a"], p["b"])) for p in pairs} == {frozenset(x) for x in (("sgd", "kd"), ("sgd", "sprkd"),
                                                                                  ("kd", "sprkd"))}
    again = sprkd_json(db, "compare", *STUDENT_ARGS, "--methods", "sprkd", "--seeds", "0-1")
    assert (again["ran"], again["reused"]) == (0, 2)


def test_optional_kd_term_uses_the_teachers_mean_softened_outputs():
    from sprkd_cli.data import load_dataset
    from sprkd_cli.methods import declared_options
    from sprkd_cli.methods.targets import teacher_targets
    from sprkd_cli.models import build_model

    data = load_dataset(DATA)
    torch.manual_seed(0)
    teachers = [build_model(TEACHER_MODEL, data.input_shape, data.n_classes) for _ in range(2)]
    options = declared_options("sprkd", {"kd_weight": 0.5, "asr": False})
    method = _sprkd(options, data, teachers=teachers)
    expected = (teacher_targets(teachers[0], data.x_train, 4.0)[0]
                + teacher_targets(teachers[1], data.x_train, 4.0)[0]) / 2
    assert torch.allclose(method.p_teacher, expected)
    student = build_model("mlp:width=8,depth=1", data.input_shape, data.n_classes)
    method.setup(student, seed=0, emit=lambda *a, **k: None)
    index = torch.arange(16)
    x, y = data.x_train[index], data.y_train[index]
    plain = _sprkd(declared_options("sprkd", {"asr": False}), data)
    assert method.loss(student, x, y, index).item() > plain.loss(student, x, y, index).item()  # CE + 0.5·T²·KL


@pytest.mark.slow
def test_a_converging_digits_student_takes_eigensteps_and_perturbations_through_the_tensor_gate(db):
    """The paper-prose variants under the gradient test alone (no distance or loss-drop condition): small
    per-tensor gradients come as a student converges (40 epochs at lr 3e-3 on digits), and then eigenvector
    NHE steps and relative PGD run, kept, halved or undone on the probe loss; the ablations switch each off."""
    teacher = sprkd_json(db, "train-teacher", "--dataset", "digits", "--model", "mlp:width=32,depth=1", "--epochs", "3",
                         "--track-saddles", "--saddle-every", "5", "--saddle-top-n", "16")["run_id"]
    args = ["distill", "--method", "sprkd", "--teacher", teacher, "--dataset", "digits", "--student",
            "mlp:width=64,depth=1", "--epochs", "40", "--lr", "3e-3", "--probe-size", "128", "--gate-distance", "0",
            "--gate-loss-drop", "0", "--cooldown", "10", "--nhe-step", "eigenvector", "--nhe-hessian", "probe",
            "--nhe-budget", "100", "--pgd-noise", "relative", "--pgd-sigma", "0.1", "--accept", "probe-loss"]
    store = open_test_store(db)
    run = sprkd_json(db, *args)
    counts = run["events"]
    eigensteps = events_of(store, run["run_id"], "nhe_kept") + events_of(store, run["run_id"], "nhe_reverted")
    assert eigensteps and counts["pgd_kept"] + counts["pgd_reverted"] > 0
    scale = store.get_run(run["run_id"]).config["method_options"]["nhe_scale"]
    for e in eigensteps:  # keep / halve / revert, as with any gate
        p = e.payload
        assert p["gate"] == "tensor" and p["tensor_norm"] < 0.01
        assert p["alpha"] == pytest.approx(scale * abs(p["lambda"]) / 2 ** p["halvings"])
        if e.kind == "nhe_kept":
            assert p["loss_after"] < p["loss_before"] and p["halvings"] <= 3
        else:
            assert p["halvings"] == 3 and p["loss_after"] == p["loss_before"]
    assert counts["nhe_halved"] == sum(e.payload["halvings"] for e in eigensteps)
    # the gate's statistic: under the threshold in some epoch, as the events say
    tensor_norms = [v for _, _, split, name, v in metric_rows(store, run["run_id"]) if name == "gate_tensor_norm"]
    assert min(tensor_norms) < 0.01 < max(tensor_norms)

    no_nhe = sprkd_json(db, *args, "--no-nhe")["events"]
    assert sum(no_nhe[k] for k in ("nhe_kept", "nhe_halved", "nhe_reverted", "nhe_skipped")) == 0
    assert no_nhe["pgd_kept"] + no_nhe["pgd_reverted"] > 0
    no_pgd = sprkd_json(db, *args, "--no-pgd")["events"]
    assert no_pgd["pgd_kept"] + no_pgd["pgd_reverted"] == 0 and no_pgd["nhe_kept"] + no_pgd["nhe_reverted"] > 0


def test_a_teacher_tracked_by_the_earlier_version_still_serves(db):
    """Teachers tracked before candidates existed stored their strong saddles only, with the rule in their
    config: those snapshots are read as candidates, and the old keys are ignored."""
    from conftest import sql

    teacher = tracked_teacher(db)["run_id"]
    store = open_test_store(db)
    config = store.get_run(teacher).config | {"saddle_rule": "ratio", "saddle_alpha": 0.1, "saddle_beta": 7.0}
    store.update_run(teacher, config=config)
    assert sql(db, "select count(*) from saddle_points where run_id = :r", {"r": teacher})[0][0] > 0
    outcome = sprkd_json(db, "distill", "--method", "sprkd", "--teacher", teacher, *STUDENT_ARGS, "--saddle-rule",
                         "ratio", "--saddle-alpha", "0", "--asr-pick", "lowest-loss")
    (built,) = events_of(store, outcome["run_id"], "asr_built")
    lowest = min(store.saddle_points(teacher), key=lambda p: (p.probe_loss, p.step))
    assert built.payload["teachers"][0]["saddle_id"] == lowest.id and "warnings" not in outcome


def _sprkd(options, data, teachers=None):
    """sprkd's method on `data` without a run: the probe and batch settings of a default TrainConfig."""
    from sprkd_cli.config import TrainConfig
    from sprkd_cli.methods.sprkd.method import SPRKD

    cfg = TrainConfig("student", "sprkd", DATA, "mlp")
    return SPRKD(options, data, probe_batches=cfg.probe_batches, probe_size=cfg.probe_size, probe_mode=cfg.probe_mode,
                 batch_size=cfg.batch_size, saddles=[], teachers=teachers)
