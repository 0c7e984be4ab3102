"""The teachers of a sprkd student: each one's strong saddle for the ASR (under the student's rule), and the
default teacher when none is named."""

from __future__ import annotations

from ...errors import UserError
from ...store import Run, Store
from ...store import artifacts as store_artifacts
from .saddles import saddle_ratio
from .tracking import load_snapshot


def no_saddles_message(store: Store, run: Run) -> str:
    if not run.config.get("track_saddles"):
        return (f"teacher {run.id} has no saddle snapshot: it was trained without saddle tracking; train one with "
                f"`sprkd train-teacher --dataset {run.dataset} --model {run.model} --track-saddles`")
    checks = [e.payload for e in store.events(run.id) if e.kind == "saddle_check"]
    return (f"teacher {run.id} has no saddle candidate: none of its {len(checks)} saddle checks saw negative "
            f"curvature among its {run.config.get('saddle_top_n')} eigenvalues of largest magnitude; train a teacher "
            f"that checks more often or more eigenvalues, e.g. `sprkd train-teacher --dataset {run.dataset} "
            f"--model {run.model} --track-saddles --saddle-every 5 --saddle-top-n 16`")


def no_strong_message(run: Run, points: list, options) -> str:
    ratios = [saddle_ratio(p.s_neg, p.s_pos) for p in points]
    return (f"teacher {run.id}: none of its {len(points)} saddle candidates passes the {options.saddle_rule} rule "
            f"(alpha {options.saddle_alpha:g}, beta {options.saddle_beta:g}; largest S-/S+ {max(ratios):.3g}, "
            f"largest S- {max(p.s_neg for p in points):.3g}); lower --saddle-alpha or --saddle-beta, or use "
            "--saddle-fallback last or best (see `sprkd runs show " + run.id + "`)")


def teacher_saddles(store: Store, runs: list[Run], options) -> list:
    """One saddle snapshot per teacher run for the ASR: its strong saddle under the student's rule (`options`:
    SPRKDOptions), or with --saddle-fallback its latest or best candidate."""
    from .asr import TeacherSaddle
    from .saddles import choose_saddle

    saddles = []
    for run in runs:
        points = store.saddle_points(run.id)
        if not points:
            raise UserError(no_saddles_message(store, run))
        chosen, fell_back = choose_saddle(points, options.saddle_rule, options.saddle_alpha, options.saddle_beta,
                                          options.asr_pick, options.saddle_fallback)
        if chosen is None:
            raise UserError(no_strong_message(run, points, options))
        saddles.append(TeacherSaddle(run.id, run.model, chosen.id, chosen.step, chosen.probe_loss,
                                     load_snapshot(store_artifacts.location(chosen.artifact)), fell_back))
    return saddles


def latest_saddle_teacher(store: Store, dataset: str, split_seed: int, student: str) -> Run:
    """The newest finished teacher of the dataset and split with stored saddles whose parameter tensors
    the student can take (same count, same ranks)."""
    from ...models import build_model

    wanted = None
    for run in store.list_runs(kind="teacher", dataset=dataset, status="finished"):
        if run.config.get("split_seed") != split_seed or not run.config.get("track_saddles"):
            continue
        points = store.saddle_points(run.id)
        if not points:
            continue
        if wanted is None:  # the split's shapes as stored with the run: no need to load the data
            split = run.config["data"]
            wanted = [p.dim() for p in build_model(student, tuple(split["input_shape"]),
                                                   split["n_classes"]).parameters()]
        if [t.dim() for _, t in load_snapshot(store_artifacts.location(points[0].artifact))] == wanted:
            return run
    raise UserError(
        f"no finished teacher of {dataset} (split seed {split_seed}) with tracked saddles that fits student {student} "
        f"in {store.shown_url}; train one with the student's layer layout, e.g. `sprkd train-teacher --dataset "
        f"{dataset} "
        f"--split-seed {split_seed} --model {_teacher_like(student)} --track-saddles`")


def _teacher_like(student: str) -> str:
    """A wider model of the student's layout, for the hint above."""
    from ...models import check_model
    from ...specs import parse_spec

    name = parse_spec(student)[0]
    options = check_model(student)
    if "width" in options and "depth" in options:
        return f"mlp:width={4 * options['width']},depth={options['depth']}"
    if "channels" in options:
        return f"{name}:channels={2 * options['channels']}"
    return name
