"""sprkd around the store: saddle tracking of teachers, their snapshots as artifacts, the teacher
inputs of a sprkd student, and the event log of a run."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from ..config import TrainConfig
from ..errors import UserError
from ..store import Run, Store, artifacts as store_artifacts

SADDLE_DIR = "saddles"


# -- snapshots ----------------------------------------------------------------------------------
def save_snapshot(model, path: Path) -> None:
    """The model's trainable parameters as safetensors, their order kept in the metadata."""
    from ..engine.safetensors_io import write_tensors

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    write_tensors(path, dict(named), {"order": json.dumps([n for n, _ in named])})


def load_snapshot(path: Path) -> list[tuple[str, object]]:
    """[(name, tensor)] in the model's parameter order; nothing is unpickled."""
    from ..engine.safetensors_io import read_tensors

    tensors, metadata = read_tensors(path, "saddle snapshot")
    order = json.loads(metadata.get("order", "null")) or sorted(tensors)
    return [(name, tensors[name]) for name in order]


# -- phase 1: tracking during train-teacher -----------------------------------------------------
def saddle_tracker(cfg: TrainConfig, store: Store, run_id: str, model, data,
                   artifacts: Path) -> Callable[[int, int], None]:
    """on_step hook of --track-saddles: a saddle check every cfg.saddle_every steps (docs/methods.md, sprkd
    phase 1). A check with negative curvature among its eigenvalues is a candidate; the cfg.max_saddles
    candidates of highest S-/S+ and the cfg.max_saddles of highest S- are kept (parameters as an
    artifact, a saddle_points row), whatever rule a student applies later. Every check is a
    `saddle_check` event; storing and dropping are events too."""
    from ..activity import doing
    from ..hessian import ProbeSet
    from ..methods.sprkd.saddles import measure_saddle
    from .hessian import out_of_memory_message

    probe = ProbeSet.draw(data.x_train, data.y_train, n_batches=cfg.probe_batches, size=cfg.probe_size, seed=cfg.seed)

    def track(step: int, epoch: int) -> None:
        if step % cfg.saddle_every:
            return
        with out_of_memory_message(lambda: cfg.probe_micro_batch or sum(probe.sizes)), \
                doing(f"saddle check at step {step}"):
            loss, s, iterations = measure_saddle(model, probe, cfg.saddle_top_n, cfg.probe_mode, seed=cfg.seed + step)
        candidate = s.s_neg > 0
        facts = {"probe_loss": loss, "eigenvalues": s.eigenvalues, "s_neg": s.s_neg, "s_pos": s.s_pos,
                 "ratio": _finite(s.ratio)}
        store.add_event(run_id, "saddle_check", facts | {"candidate": candidate, "lanczos_iterations": iterations,
                                                         "top_n": cfg.saddle_top_n}, step=step, epoch=epoch)
        if not candidate:
            return
        kept = store.saddle_points(run_id)
        new = SimpleNamespace(id=None, step=step, s_neg=s.s_neg, s_pos=s.s_pos)
        keep = {id(p) for p in kept_candidates([*kept, new], cfg.max_saddles)}
        if id(new) not in keep:
            store.add_event(run_id, "saddle_dropped", facts | {"reason": _not_kept(cfg.max_saddles)},
                            step=step, epoch=epoch)
            return
        path = store_artifacts.join(artifacts, SADDLE_DIR, f"step-{step:07d}.safetensors")
        save_snapshot(model, path)
        saddle_id = store.add_saddle_point(run_id, step=step, epoch=epoch, probe_loss=loss, eigenvalues=s.eigenvalues,
                                           s_neg=s.s_neg, s_pos=s.s_pos, artifact=str(path))
        store.add_event(run_id, "saddle_stored", facts | {"saddle_id": saddle_id, "artifact": str(path)},
                        step=step, epoch=epoch)
        for old in kept:
            if id(old) not in keep:
                store.delete_saddle_point(old.id)
                store_artifacts.remove(store_artifacts.location(old.artifact))
                store.add_event(run_id, "saddle_dropped", {"saddle_id": old.id, "step": old.step,
                                                           "probe_loss": old.probe_loss, "s_neg": old.s_neg,
                                                           "s_pos": old.s_pos, "reason": _not_kept(cfg.max_saddles)},
                                step=step, epoch=epoch)

    return track


def _ratio(point) -> float:
    return point.s_neg / point.s_pos if point.s_pos > 0 else (float("inf") if point.s_neg > 0 else 0.0)


def kept_candidates(points: list, limit: int) -> list:
    """The `limit` points of highest S-/S+ and the `limit` of highest S- (earlier steps first on ties), in
    their given order; a point in both is kept once."""
    by_ratio = sorted(points, key=lambda p: (-_ratio(p), p.step))[:limit]
    by_neg = sorted(points, key=lambda p: (-p.s_neg, p.step))[:limit]
    chosen = {id(p) for p in by_ratio + by_neg}
    return [p for p in points if id(p) in chosen]


def _not_kept(limit: int) -> str:
    return f"not among the {limit} of highest S-/S+ nor the {limit} of highest S-"


def _finite(x: float) -> float | None:
    return x if x != float("inf") else None


def same_tracking(run: Run, cfg: TrainConfig) -> bool:
    """Whether a stored run tracked saddles as `cfg` asks (for --reuse: an untracked teacher is not one)."""
    from ..config import SADDLE_FIELDS

    if not cfg.track_saddles:
        return True
    defaults = TrainConfig(kind="", method="", dataset="", model="")
    return all(run.config.get(f, getattr(defaults, f)) == getattr(cfg, f) for f in SADDLE_FIELDS)


# -- phase 2: the teachers of a sprkd student ---------------------------------------------------
def no_saddles_message(store: Store, run: Run) -> str:
    if not run.config.get("track_saddles"):
        return (f"teacher {run.id} has no saddle snapshot: it was trained without saddle tracking; train one with "
                f"`sprkd train-teacher --dataset {run.dataset} --model {run.model} --track-saddles`")
    checks = [e.payload for e in store.events(run.id) if e.kind == "saddle_check"]
    return (f"teacher {run.id} has no saddle candidate: none of its {len(checks)} saddle checks saw negative "
            f"curvature among its {run.config.get('saddle_top_n')} eigenvalues of largest magnitude; train a teacher "
            f"that checks more often or more eigenvalues, e.g. `sprkd train-teacher --dataset {run.dataset} "
            f"--model {run.model} --track-saddles --saddle-every 5 --saddle-top-n 16`")


def no_strong_message(run: Run, points: list, options: dict) -> str:
    from ..methods.sprkd.saddles import SaddleScore

    ratios = [SaddleScore([], p.s_neg, p.s_pos).ratio for p in points]
    return (f"teacher {run.id}: none of its {len(points)} saddle candidates passes the {options['saddle_rule']} rule "
            f"(alpha {options['saddle_alpha']:g}, beta {options['saddle_beta']:g}; largest S-/S+ {max(ratios):.3g}, "
            f"largest S- {max(p.s_neg for p in points):.3g}); lower --saddle-alpha or --saddle-beta, or use "
            "--saddle-fallback last or best (see `sprkd runs show " + run.id + "`)")


def saddle_inputs(store: Store, runs: list[Run], options: dict) -> dict:
    """What a sprkd student takes from its teacher runs: one saddle snapshot each (for the ASR: its strong
    saddle under the student's rule, or its best candidate as a fallback) and the teacher models (for
    the optional KD term)."""
    from ..methods.sprkd import TeacherSaddle
    from ..methods.sprkd.saddles import choose_saddle

    from .runs import load_run_model

    saddles = []
    if options.get("asr", True):
        for run in runs:
            points = store.saddle_points(run.id)
            if not points:
                raise UserError(no_saddles_message(store, run))
            chosen, fell_back = choose_saddle(points, options["saddle_rule"], options["saddle_alpha"],
                                              options["saddle_beta"], options["asr_pick"], options["saddle_fallback"])
            if chosen is None:
                raise UserError(no_strong_message(run, points, options))
            saddles.append(TeacherSaddle(run.id, run.model, chosen.id, chosen.step, chosen.probe_loss,
                                         load_snapshot(store_artifacts.location(chosen.artifact)), fell_back))
    teachers = [load_run_model(r) for r in runs] if options.get("kd_weight", 0) > 0 else []
    return {"saddles": saddles, "teachers": teachers}


def latest_saddle_teacher(store: Store, dataset: str, split_seed: int, student: str) -> Run:
    """The newest finished teacher of the dataset and split with stored saddles whose parameter tensors
    the student can take (same count, same ranks)."""
    from ..models import build_model

    wanted = None
    for run in store.list_runs(kind="teacher", dataset=dataset, status="finished"):
        if run.config.get("split_seed") != split_seed or not run.config.get("track_saddles"):
            continue
        points = store.saddle_points(run.id)
        if not points:
            continue
        if wanted is None:  # the split's shapes as stored with the run: no need to load the data
            split = run.config["data"]
            wanted = [p.dim() for p in build_model(student, tuple(split["input_shape"]), split["n_classes"]).parameters()]
        if [t.dim() for _, t in load_snapshot(store_artifacts.location(points[0].artifact))] == wanted:
            return run
    raise UserError(
        f"no finished teacher of {dataset} (split seed {split_seed}) with tracked saddles that fits student {student} "
        f"in {store.shown_url}; train one with the student's layer layout, e.g. `sprkd train-teacher --dataset {dataset} "
        f"--split-seed {split_seed} --model {_teacher_like(student)} --track-saddles`")


def _teacher_like(student: str) -> str:
    """A wider model of the student's layout, for the hint above."""
    from ..models import check_model
    from ..specs import parse_spec

    name = parse_spec(student)[0]
    options = check_model(student)
    if "width" in options and "depth" in options:
        return f"mlp:width={4 * options['width']},depth={options['depth']}"
    if "channels" in options:
        return f"{name}:channels={2 * options['channels']}"
    return name


# -- the event log ------------------------------------------------------------------------------
class EventSink:
    """emit(kind, payload, step=None, epoch=None) for a method: events are held until the run exists
    (a method's setup runs before the run is recorded), then written as they come."""

    def __init__(self):
        self.pending: list[tuple] = []
        self.store: Store | None = None
        self.run_id: str | None = None

    def __call__(self, kind: str, payload: dict | None = None, step: int | None = None, epoch: int | None = None):
        if self.store is None:
            self.pending.append((kind, payload, step, epoch))
        else:
            self.store.add_event(self.run_id, kind, payload, step=step, epoch=epoch)

    def discard(self) -> None:
        """Drop the events held so far (a resumed run's setup: they were recorded when it started)."""
        self.pending = []

    def attach(self, store: Store, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        for kind, payload, step, epoch in self.pending:
            store.add_event(run_id, kind, payload, step=step, epoch=epoch)
        self.pending = []


COUNTED = ("saddle_stored", "saddle_dropped", "asr_fallback", "nhe_kept", "nhe_halved", "nhe_reverted", "nhe_skipped", "pgd_kept",
           "pgd_reverted")


def event_counts(store: Store, run_id: str) -> dict:
    """Saddles kept and stored, NHE and PGD outcomes, and the approach's step count of a run."""
    events = store.events(run_id)
    counts = Counter(e.kind for e in events)
    approach = [e.payload for e in events if e.kind == "approach_finished"]
    return {"saddles": len(store.saddle_points(run_id)), **{k: counts.get(k, 0) for k in COUNTED},
            "approach_steps": approach[-1]["steps"] if approach else 0, "events": len(events)}


def injection_mapping(store: Store, run_id: str) -> list[dict]:
    return next((e.payload["mapping"] for e in store.events(run_id) if e.kind == "injection"), [])


# -- which teachers a student gets ----------------------------------------------------------------
def teacher_ids_for(store: Store, method: str, teacher: str | None, dataset: str, split_seed: int, student: str,
                    options: dict) -> list[str]:
    """The teacher run ids of a student of `method`: those of `--teacher a,b` (ids or unique prefixes), else
    the dataset's latest finished teacher; for sprkd, the latest one with tracked saddles that fits the student."""
    from ..methods import method_class
    from .runs import latest_teacher

    cls = method_class(method)
    if not cls.needs_teacher:
        return []
    if teacher is not None:
        refs = [r.strip() for r in teacher.split(",") if r.strip()]
        if not refs:
            raise UserError(f"bad --teacher '{teacher}': give a run id, or several separated by commas")
        ids = list(dict.fromkeys(store.get_run(r).id for r in refs))
        if cls.needs_saddles and options.get("asr", True):
            for run_id in ids:
                if not store.saddle_points(run_id):
                    raise UserError(no_saddles_message(store, store.get_run(run_id)))
        return ids
    if cls.needs_saddles and options.get("asr", True):
        return [latest_saddle_teacher(store, dataset, split_seed, student).id]
    if reads_no_teacher(cls, options):
        return []
    return [latest_teacher(store, dataset, split_seed).id]


def reads_no_teacher(cls, options: dict) -> bool:
    """sprkd without the ASR and without a KD term reads nothing from a teacher, and needs none."""
    return cls.needs_saddles and not options.get("asr", True) and not options.get("kd_weight", 0)
