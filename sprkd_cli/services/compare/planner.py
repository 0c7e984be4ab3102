"""compare's plan: a PlannedRun per (arm, seed), with the arm's options and teachers; with --tune, each
arm's grid on the tuning seeds first, and the grid point chosen on validation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ...arms import Arm
from ...config import TrainConfig
from ...errors import UserError
from ...store import Store


@dataclass
class PlannedRun:
    """One run of a comparison, from planning to summary: the arm it is recorded for (NAME, or NAME:tune
    for a --tune grid run), its seed and config, and the id of its finished run (None until known: set
    from the store for a run finished before, else from the executor's outcome)."""

    arm: str
    seed: int
    config: TrainConfig
    run_id: str | None = None

    @property
    def key(self) -> tuple[str, int]:
        """The experiment: config hash and seed (two arms may plan the same one; it is trained once)."""
        return self.config.config_hash(), self.seed

    def note(self, outcome: dict) -> dict:
        """An executor's `outcome` of this run: its run id is taken when it finished. Returns `outcome`."""
        if outcome.get("status") == "finished" and outcome.get("run_id"):
            self.run_id = outcome["run_id"]
        return outcome


Grid = dict[str, list[tuple[dict, list[PlannedRun]]]]  # {arm name: [(grid point, its runs on the tuning seeds)]}


def plan(store: Store, template: TrainConfig, arms: list[Arm], seeds: list[int], teachers: list[str] | None,
         option_flags: dict, chosen: dict[str, dict] | None = None) -> list[PlannedRun]:
    """One PlannedRun per (arm, seed), each with the arm's chosen grid point (`chosen[arm name]`, from --tune)."""
    chosen = chosen or {}
    return [run for arm in arms
            for run in arm_runs(store, template, arm, seeds, teachers, option_flags, chosen.get(arm.name, {}))]


def arm_runs(store: Store, template: TrainConfig, arm: Arm, seeds: list[int], teachers: list[str] | None,
             option_flags: dict, point: dict, *, recorded_as: str | None = None) -> list[PlannedRun]:
    """An arm's run per seed. Its method options are its method's defaults, overridden by `option_flags`
    (the command's flags), then by the grid point's method values, then by the arm's own; its training
    options are the template's with the point's training values (checked with the grid, at the command's
    edge: tuning.check_training_grid). Its teachers are the arm's `teacher=`, else `teachers`, else the
    dataset's latest (for sprkd: the latest with tracked saddles that fits the student). The runs are
    recorded for the arm `recorded_as` (default: the arm's name)."""
    from ...methods import declared_options
    from ...tuning import split_point

    training, method = split_point(point)
    base = dataclasses.replace(template, **training) if training else template
    where = lambda name, declared: f"arm {arm.name}: {name}"  # noqa: E731
    typed = declared_options(arm.method, option_flags | method | arm.options, where=where)
    teacher_ids = typed.choose_teachers(store, list(arm.teachers or teachers or ()), base.dataset, base.split_seed,
                                        base.model)
    options = typed.stored(base)
    name = recorded_as or arm.name
    return [PlannedRun(name, seed, dataclasses.replace(base, method=arm.method, seed=seed, teacher_ids=teacher_ids,
                                                       method_options=options, arm=name)) for seed in seeds]


def tuning_grid(store: Store, template: TrainConfig, arms: list[Arm], keys: list, tune_seeds: list[int],
                teachers: list[str] | None, option_flags: dict) -> Grid:
    """{arm name: [(grid point, its runs on the tuning seeds)]} for every arm some tuned key applies to."""
    from ...tuning import arm_grid, tuning_arm

    grid = {}
    for arm in arms:
        points = arm_grid(keys, arm.method, arm.options)
        if points == [{}]:
            continue  # no tuned key applies to this arm: it runs with the flags' values
        grid[arm.name] = [(point, arm_runs(store, template, arm, tune_seeds, teachers, option_flags, point,
                                           recorded_as=tuning_arm(arm.name))) for point in points]
    return grid


def choose_points(store: Store, arms: list[Arm], grid: Grid, tune_seeds: list[int]) -> dict[str, dict]:
    """Per tuned arm: {"chosen": point, "grid": {key: values}, "seeds", "scores": [...]} from the grid runs'
    validation numbers at their selected epochs. A grid point with a run that did not finish (diverged) is
    not chosen; an arm whose every point failed is a UserError."""
    from ...tuning import Score, choose
    from ..analysis import selected_epochs

    out = {}
    for arm in arms:
        if arm.name not in grid:
            continue
        scores, failed = [], []
        for point, planned in grid[arm.name]:
            if any(p.run_id is None for p in planned):
                failed.append(point)
                continue
            runs = [store.get_run(p.run_id) for p in planned]
            epochs = selected_epochs(store, runs)
            points = [(r.id, epochs[r.id]) for r in runs]
            acc, loss = store.metric_at(points, "val", "acc"), store.metric_at(points, "val", "loss")
            scores.append(Score(point, sum(acc[p] for p in points) / len(points),
                                sum(loss[p] for p in points) / len(points), [r.id for r in runs]))
        if not scores:
            raise UserError(f"arm {arm.name}: no grid point of --tune finished (every one failed); see sprkd runs "
                            f"list --status failed")
        best = choose(scores)
        out[arm.name] = {"chosen": best.point, "seeds": tune_seeds,
                         "grid": {k: sorted({s.point[k] for s in scores} | {p[k] for p in failed if k in p})
                                  for k in best.point},
                         "scores": [{"values": s.point, "val_acc": s.val_acc, "val_loss": s.val_loss,
                                     "run_ids": s.run_ids} for s in scores],
                         "failed": failed}
    return out


def record_tuning(store: Store, planned: list[PlannedRun], tuning: dict[str, dict]) -> None:
    """A "tuned" event on each chosen run (once): its arm, the grid, the tuning seeds, what won and the scores."""
    for p in planned:
        if p.arm not in tuning or p.run_id is None:
            continue
        payload = {"arm": p.arm} | tuning[p.arm]
        if not any(e.kind == "tuned" and e.payload == payload for e in store.events(p.run_id)):
            store.add_event(p.run_id, "tuned", payload)
