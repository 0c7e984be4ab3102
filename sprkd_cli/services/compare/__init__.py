"""compare: plan a run per (arm, seed) (planner), train every missing one, N at once, resuming those that
were interrupted or crashed (executors, ray_executor), measure the claims the finished runs lack, then sum
up per arm (summary) and draw the curves (services.figures). A PlannedRun carries each run from the plan to
the summary, its run id set once it is known."""

from __future__ import annotations

from collections.abc import Callable

from ...arms import Arm
from ...config import TrainConfig
from ...store import Store
from .planner import PlannedRun


def compare(store: Store, template: TrainConfig, arms: list[Arm], seeds: list[int], *, teachers: list[str] | None,
            option_flags: dict, jobs: int,
            on_planned: Callable[[str, int, int], None] = lambda phase, total, todo: None,
            on_done: Callable[[dict], None] = lambda outcome: None, executor: str = "local",
            ray_address: str | None = None, gpus_per_run: float = 0.0, hessian: bool = False,
            ray_verbose: bool = False, tune: list | None = None, tune_seeds: list[int] | None = None,
            converged_at: float | None = None) -> dict:
    """Plan, train what is missing (`executor` local: `jobs` processes here; ray: Ray tasks, see
    compare.ray_executor), measure the claims the finished runs lack (see measure_claims) and sum up.
    `template` is the command's checked config; `teachers` the --teacher run refs; `option_flags` the
    command's method options.

    With `tune` (tuning.parse_tune's keys) each arm first runs its grid on `tune_seeds` (default: the first
    seed), recorded for the arm "NAME:tune", and its seeds then run with the grid point chosen on
    validation (tuning.choose); the chosen runs carry a "tuned" event that names the grid. With
    `converged_at` X each arm's row says how many runs reached validation accuracy X, and the Kaplan–Meier
    median epoch to it."""
    from .executors import train_missing
    from .planner import choose_points, plan, record_tuning, tuning_grid

    run = lambda phase, planned: train_missing(store, planned, jobs, executor, ray_address,  # noqa: E731
                                               lambda total, todo: on_planned(phase, total, todo), on_done,
                                               diverged_done=phase == "tuning", gpus_per_run=gpus_per_run,
                                               ray_verbose=ray_verbose)
    store.check_artifact_root()
    tuning: dict[str, dict] = {}
    outcomes: list[dict] = []
    if tune:
        tune_seeds = tune_seeds or seeds[:1]
        grid = tuning_grid(store, template, arms, tune, tune_seeds, teachers, option_flags)
        outcomes += run("tuning", [p for points in grid.values() for _, planned in points for p in planned])
        tuning = choose_points(store, arms, grid, tune_seeds)
    chosen = {name: t["chosen"] for name, t in tuning.items()}
    planned = plan(store, template, arms, seeds, teachers, option_flags, chosen)
    final = run("runs", planned)
    outcomes += final
    if tuning:
        record_tuning(store, planned, tuning)
    measured = measure_claims(store, template, planned, hessian)
    return comparison_result(store, template, arms, planned, final, tuning, converged_at) | measured | {
        "ran_tuning": len(outcomes) - len(final)}


def measure_claims(store: Store, template: TrainConfig, planned: list[PlannedRun], hessian: bool) -> dict:
    """After the runs, for each finished run of the comparison: the --eval-noise levels a reused run has not
    measured (from its checkpoints), and with `hessian` a Hessian report on its best-val weights where it
    has none (stored ones are reused). Returns {"noise_added": [run ids]} and, with `hessian`,
    {"hessian": {"made": [...], "reused": [...]}}."""
    from ...config import noise_levels
    from ..claims import add_noise_claims, ensure_hessian_reports

    ids = list(dict.fromkeys(p.run_id for p in planned if p.run_id is not None))  # one run may serve several arms
    runs = [store.get_run(run_id) for run_id in ids]
    levels = noise_levels(template.eval_noise) if template.eval_noise else []
    out: dict = {"noise_added": [r.id for r in runs if levels and add_noise_claims(store, r, levels)]}
    if hessian:
        out["hessian"] = ensure_hessian_reports(store, ids)
    return out


def comparison_result(store: Store, template: TrainConfig, arms: list[Arm], planned: list[PlannedRun],
                      outcomes: list[dict], tuning: dict[str, dict] | None = None,
                      converged_at: float | None = None) -> dict:
    """compare's result: per arm a row of numbers (summary.arm_rows; with `converged_at` X, its "epochs_to":
    how many runs reached validation accuracy X, how many are censored at their last epoch, and the
    Kaplan–Meier median epoch with its 95% interval, None: not reached), the counts of runs, and the paths
    of the learning-curve PNG ("plot") and, with `converged_at`, the Kaplan–Meier PNG ("km_plot")."""
    from ..figures import kaplan_meier_plot, learning_curves
    from .summary import arm_rows, epochs_to_summary, run_counts

    rows, runs_by_arm = arm_rows(store, arms, planned, tuning)
    km_plot = None
    if converged_at is not None:
        reached = epochs_to_summary(store, runs_by_arm, converged_at)
        for row in rows:
            row["epochs_to"] = {k: v for k, v in reached[row["arm"]].items() if k != "curve"}
        km_plot = kaplan_meier_plot(store, {arm: r["curve"] for arm, r in reached.items()}, template.dataset,
                                    converged_at)
    plot = learning_curves(store, runs_by_arm, template.dataset, template.model)
    return run_counts(template, planned, rows, outcomes, converged_at) | {
        "plot": str(plot) if plot else None, "km_plot": str(km_plot) if km_plot else None}
