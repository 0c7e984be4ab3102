"""Run every missing (method, seed) of a comparison, N processes at once (resuming those that were
interrupted or crashed), then summarise."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, wait
from multiprocessing import active_children, get_context
from pathlib import Path

from ..arms import Arm
from ..choices import EXECUTORS
from ..config import TrainConfig
from ..errors import Interrupted, UserError
from ..store import Store

Work = tuple[TrainConfig, str | None]  # a run to train, and the id of an unfinished run of it to resume (or None)


def plan(store: Store, template: TrainConfig, arms: list[Arm], seeds: list[int], teacher_ref: str | None,
         method_overrides: dict, chosen: dict[str, dict] | None = None) -> list[TrainConfig]:
    """One config per (arm, seed), each with the arm's chosen grid point (`chosen[arm name]`, from --tune)."""
    chosen = chosen or {}
    return [cfg for arm in arms
            for cfg in arm_configs(store, template, arm, seeds, teacher_ref, method_overrides, chosen.get(arm.name, {}))]


def arm_configs(store: Store, template: TrainConfig, arm: Arm, seeds: list[int], teacher_ref: str | None,
                method_overrides: dict, point: dict, *, recorded_as: str | None = None) -> list[TrainConfig]:
    """An arm's config per seed. Its method options are its method's defaults, overridden by
    `method_overrides` (the command's flags), then by the grid point's method values, then by the arm's own;
    its training options are the template's with the point's training values. Its teachers are the arm's
    `teacher=`, else `teacher_ref`, else the dataset's latest (for sprkd: the latest with tracked saddles
    that fits the student). The runs are recorded for the arm `recorded_as` (default: the arm's name)."""
    from ..arms import teacher_refs
    from ..methods import training_fields, typed_options
    from ..tuning import apply_training, split_point

    training, method = split_point(point)
    base = apply_training(template, training) if training else template
    where = lambda name, declared: f"arm {arm.name}: {name}"  # noqa: E731
    typed = typed_options(arm.method, method_overrides | method | arm.options, where=where)
    teachers = typed.choose_teachers(store, teacher_refs(arm.teacher or teacher_ref), base.dataset, base.split_seed,
                                     base.model)
    options = typed.to_dict() | training_fields(arm.method, base)
    return [dataclasses.replace(base, method=arm.method, seed=seed, teacher_ids=teachers, method_options=options,
                                arm=recorded_as or arm.name) for seed in seeds]


_worker_store: Store | None = None
_worker_signal: int | None = None  # the SIGINT or SIGTERM this worker has had: it starts no further run
_worker_parent: int | None = None  # the compare process that started this worker
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_SECONDS = 1.0


def _init_worker(url: str, jobs: int) -> None:
    global _worker_store, _worker_parent
    from .training import set_threads

    _worker_parent = os.getppid()
    from .lifecycle import SIGNALS

    for signum in SIGNALS:  # between runs; during one, train_run ends it as interrupted
        signal.signal(signum, _note_signal)
    _die_with_parent()
    set_threads(jobs)
    _worker_store = Store(url)


def _die_with_parent() -> None:
    """A worker whose compare process dies (SIGKILL, a crash) gets SIGTERM: from the kernel on Linux
    (PR_SET_PDEATHSIG; it follows the thread that started the worker, and execute() submits, and so
    starts every worker, from the thread that waits on the pool to its end), and from a daemon thread
    that sees its parent pid change (elsewhere, and should the kernel's signal be missed). A run in
    progress then ends as interrupted and the worker exits; an idle worker exits at once."""
    if sys.platform == "linux":
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass
    threading.Thread(target=_watch_parent, daemon=True, name="sprkd-parent-watch").start()


def _parent_gone() -> bool:
    return _worker_parent is not None and os.getppid() != _worker_parent


def _watch_parent() -> None:
    while not _parent_gone():
        time.sleep(PARENT_POLL_SECONDS)
    if _worker_signal is None:  # the kernel's SIGTERM has not come (not Linux), or came before it was asked for
        os.kill(os.getpid(), signal.SIGTERM)


def _note_signal(signum, _frame) -> None:
    """Between runs: a signal from compare (passing on its own) stops this worker taking further runs;
    once compare is gone, nobody will hand it work or shut it down, so it exits."""
    global _worker_signal
    _worker_signal = signum
    if _parent_gone():
        os._exit(128 + signum)


def _train_in_worker(config: dict, resume_id: str | None) -> dict:
    global _worker_signal
    from .training import train_or_resume

    if _worker_signal is not None:
        raise Interrupted(_worker_signal)
    try:
        return train_or_resume(TrainConfig.from_dict(config), _worker_store, resume_id)
    except Interrupted as exc:  # the run is stored as interrupted
        _worker_signal = exc.signum
        if _parent_gone():  # nobody to report to, nor to shut this worker down
            os._exit(exc.exit_code)
        raise


def execute(store: Store, work: list[Work], jobs: int, on_done: Callable[[dict], None]) -> list[dict]:
    """Train (or resume) the runs of `work`, in this process (jobs=1) or in `jobs` worker processes.
    SIGINT or SIGTERM cancels the runs not started, passes the signal on to the workers (their runs end
    as interrupted) and raises Interrupted once they have. A worker that dies (SIGKILL, the out-of-memory
    killer) ends its run as interrupted, with one line saying so, and the comparison goes on with the
    other runs in new workers (a run the pool stopped on the way is resumed); a rerun resumes that run."""
    from .training import set_threads, train_or_resume

    outcomes: list[dict] = []
    if jobs <= 1 or len(work) <= 1:
        set_threads(1)
        for cfg, resume_id in work:
            outcomes.append(train_or_resume(cfg, store, resume_id))
            on_done(outcomes[-1])
        return outcomes
    _quiet_resource_tracker()
    pending = list(work)
    while pending:
        broken = _execute_in_pool(store, pending, jobs, on_done, outcomes)
        died = [(item, outcome) for item in broken if (outcome := _end_if_died(store, item[0])) is not None]
        for _, outcome in died:
            outcomes.append(outcome)
            on_done(outcome)
        left = [item for item in broken if all(item is not gone for gone, _ in died)]
        if left and len(left) == len(pending):
            raise UserError(f"compare's worker processes died before any run of theirs started ({len(left)} runs "
                            "not trained); see the lines above, or run with --jobs 1")
        pending = left
    return outcomes


def _execute_in_pool(store: Store, work: list[Work], jobs: int, on_done: Callable[[dict], None],
                     outcomes: list[dict]) -> list[Work]:
    """Run `work` in a pool of `jobs` workers, each outcome appended to `outcomes` as it comes; returns the
    items the pool did not finish because a worker died (the pool is then broken)."""
    from concurrent.futures.process import BrokenProcessPool

    from .lifecycle import Interruptible

    broken: list[Work] = []
    with Interruptible(), ProcessPoolExecutor(max_workers=min(jobs, len(work)), mp_context=get_context("spawn"),
                                              initializer=_init_worker, initargs=(store.url, jobs)) as pool:
        futures = [(item, pool.submit(_train_in_worker, item[0].to_dict(), item[1])) for item in work]
        try:
            for item, future in futures:
                try:
                    outcomes.append(future.result())
                except BrokenProcessPool:
                    broken.append(item)
                    continue
                on_done(outcomes[-1])
        except Interrupted as exc:
            for _, future in futures:
                future.cancel()
            for worker in active_children():
                os.kill(worker.pid, exc.signum)
            wait([future for _, future in futures])
            raise
    return broken


def _end_if_died(store: Store, cfg: TrainConfig) -> dict | None:
    """When the run of `cfg` is stored as running in a process of this host that is gone (its worker was
    killed), end it as interrupted, say so in one line on stderr and return its outcome; else None."""
    from .lifecycle import died_here

    dead = [r for r in store.unfinished_runs(cfg.config_hash(), cfg.seed) if r.status == "running" and died_here(r)]
    if not dead:
        return None
    run = dead[0]
    reason = "its compare worker process died (killed: SIGKILL, or out of memory)"
    store.interrupt_run(run.id, reason)
    print(f"run {run.id} ({cfg.arm or cfg.method}, seed {cfg.seed}) stopped: {reason}; the comparison goes on, and "
          "running it again resumes this run", file=sys.stderr, flush=True)
    return {"run_id": run.id, "status": "interrupted", "error": reason, "method": cfg.method, "seed": cfg.seed}


def _quiet_resource_tracker() -> None:
    """multiprocessing's resource tracker (a process of its own, started with this interpreter's -W
    options) warns of 'leaked semaphore objects' when compare is killed with its workers: not a problem
    of the user's, so not shown."""
    option = "ignore:resource_tracker:UserWarning"
    if option not in sys.warnoptions:
        sys.warnoptions.append(option)


def compare(store: Store, template: TrainConfig, arms: list[Arm], seeds: list[int], *, teacher_ref: str | None,
            method_overrides: dict, jobs: int, on_planned: Callable[[str, int, int], None] = lambda phase, total, todo: None,
            on_done: Callable[[dict], None] = lambda outcome: None, executor: str = "local",
            ray_address: str | None = None, gpus_per_run: float = 0.0, hessian: bool = False,
            ray_verbose: bool = False, tune: list | None = None, tune_seeds: list[int] | None = None,
            converged_at: float | None = None) -> dict:
    """Plan, train what is missing (`executor` local: `jobs` processes here; ray: Ray tasks, see
    services.ray_executor), measure the claims the finished runs lack (see measure_claims) and summarise.

    With `tune` (tuning.parse_tune's keys) each arm first runs its grid on `tune_seeds` (default: the first
    seed), recorded for the arm "NAME:tune", and its seeds then run with the grid point chosen on
    validation (tuning.choose); the chosen runs carry a "tuned" event that names the grid. With
    `converged_at` X each arm's row says how many runs reached validation accuracy X, and the Kaplan–Meier
    median epoch to it."""
    run = lambda phase, configs: _train_missing(store, configs, jobs, executor, ray_address,  # noqa: E731
                                                lambda total, todo: on_planned(phase, total, todo), on_done,
                                                diverged_done=phase == "tuning", gpus_per_run=gpus_per_run,
                                                ray_verbose=ray_verbose)
    store.check_artifact_root()
    tuning: dict[str, dict] = {}
    outcomes: list[dict] = []
    if tune:
        tune_seeds = tune_seeds or seeds[:1]
        grid = tuning_grid(store, template, arms, tune, tune_seeds, teacher_ref, method_overrides)
        outcomes += run("tuning", [cfg for points in grid.values() for _, configs in points for cfg in configs])
        tuning = choose_points(store, arms, grid, tune_seeds)
    chosen = {name: t["chosen"] for name, t in tuning.items()}
    configs = plan(store, template, arms, seeds, teacher_ref, method_overrides, chosen)
    final = run("runs", configs)
    outcomes += final
    if tuning:
        record_tuning(store, configs, tuning)
    measured = measure_claims(store, template, configs, hessian)
    return summarise(store, template, arms, configs, final, tuning, converged_at) | measured | {
        "ran_tuning": len(outcomes) - len(final)}


def _train_missing(store: Store, configs: list[TrainConfig], jobs: int, executor: str, ray_address: str | None,
                   on_planned: Callable[[int, int], None], on_done: Callable[[dict], None], *,
                   diverged_done: bool = False, gpus_per_run: float = 0.0, ray_verbose: bool = False) -> list[dict]:
    """Train the configs that have no finished run of their hash and seed (once each, however many arms
    ask for it), resuming an interrupted or crashed one from its state; every run found or trained
    belongs to the arms that asked for it. With `diverged_done` (a --tune grid) a run that diverged counts
    as done: the same config and seed would diverge again."""
    from .lifecycle import find_unfinished

    work, seen = [], set()
    for cfg in configs:
        key = (cfg.config_hash(), cfg.seed)
        existing = store.find_finished(*key)
        if existing is not None:  # a run reused under another arm's name belongs to this arm too
            store.link_arm(existing.id, cfg.arm)
            continue
        if key in seen or (diverged_done and store.diverged_run(*key) is not None):
            continue
        seen.add(key)
        unfinished = find_unfinished(store, *key)  # goes on from its saved state
        if unfinished is not None:
            store.link_arm(unfinished.id, cfg.arm)
        work.append((cfg, unfinished.id if unfinished else None))
    on_planned(len(configs), len(work))
    if executor == "ray" and work:
        from .ray_executor import execute_ray

        outcomes = execute_ray(store, work, jobs, on_done, address=ray_address, gpus=gpus_per_run,
                               verbose=ray_verbose)
    else:
        outcomes = execute(store, work, jobs, on_done)
    for cfg in configs:  # a config asked for by two arms was trained once, for the first
        found = store.find_finished(cfg.config_hash(), cfg.seed)
        if found is not None:
            store.link_arm(found.id, cfg.arm)
    return outcomes


def tuning_grid(store: Store, template: TrainConfig, arms: list[Arm], keys: list, tune_seeds: list[int],
                teacher_ref: str | None, method_overrides: dict) -> dict[str, list[tuple[dict, list[TrainConfig]]]]:
    """{arm name: [(grid point, its configs on the tuning seeds)]} for every arm some tuned key applies to."""
    from ..tuning import arm_grid, tuning_arm

    grid = {}
    for arm in arms:
        points = arm_grid(keys, arm.method, arm.options)
        if points == [{}]:
            continue  # no tuned key applies to this arm: it runs with the flags' values
        grid[arm.name] = [(point, arm_configs(store, template, arm, tune_seeds, teacher_ref, method_overrides, point,
                                              recorded_as=tuning_arm(arm.name))) for point in points]
    return grid


def choose_points(store: Store, arms: list[Arm], grid: dict, tune_seeds: list[int]) -> dict[str, dict]:
    """Per tuned arm: {"chosen": point, "grid": {key: values}, "seeds", "scores": [...]} from the grid runs'
    validation numbers at their selected epochs. A grid point with a failed run (diverged) is not chosen;
    an arm whose every point failed is a UserError."""
    from ..tuning import Score, choose
    from .analysis import selected_epochs

    out = {}
    for arm in arms:
        if arm.name not in grid:
            continue
        scores, failed = [], []
        for point, configs in grid[arm.name]:
            runs = [store.find_finished(c.config_hash(), c.seed) for c in configs]
            if any(r is None for r in runs):
                failed.append(point)
                continue
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


def record_tuning(store: Store, configs: list[TrainConfig], tuning: dict[str, dict]) -> None:
    """A "tuned" event on each chosen run (once): its arm, the grid, the tuning seeds, what won and the scores."""
    for cfg in configs:
        if cfg.arm not in tuning:
            continue
        found = store.find_finished(cfg.config_hash(), cfg.seed)
        if found is None:
            continue
        payload = {"arm": cfg.arm} | tuning[cfg.arm]
        if not any(e.kind == "tuned" and e.payload == payload for e in store.events(found.id)):
            store.add_event(found.id, "tuned", payload)


def measure_claims(store: Store, template: TrainConfig, configs: list[TrainConfig], hessian: bool) -> dict:
    """After the runs, for each finished run of the comparison: the --eval-noise levels a reused run has not
    measured (from its checkpoints), and with `hessian` a Hessian report on its best-val weights where it
    has none (stored ones are reused). Returns {"noise_added": [run ids]} and, with `hessian`,
    {"hessian": {"made": [...], "reused": [...]}}."""
    from ..config import noise_levels
    from .claims import add_noise_claims, ensure_hessian_reports

    runs = [r for r in (store.find_finished(c.config_hash(), c.seed) for c in configs) if r is not None]
    runs = list({r.id: r for r in runs}.values())  # one run may serve several arms
    levels = noise_levels(template.eval_noise) if template.eval_noise else []
    out: dict = {"noise_added": [r.id for r in runs if levels and add_noise_claims(store, r, levels)]}
    if hessian:
        out["hessian"] = ensure_hessian_reports(store, [r.id for r in runs])
    return out


ACC_RANGE = (0.0, 1.0)


def summarise(store: Store, template: TrainConfig, arms: list[Arm], configs: list[TrainConfig],
              outcomes: list[dict], tuning: dict[str, dict] | None = None, converged_at: float | None = None) -> dict:
    """Test accuracy at the best-validation epoch per arm over its finished runs (its 95% CI the t interval
    cut to [0, 1]; no_variation: an sd below half a test example's step, 1/(2·n_test)), whether they reached their
    plateau (selection.plateau_reached), what --tune chose, and the learning curves; with `converged_at` X,
    per arm "epochs_to": how many runs reached validation accuracy X, how many are censored (at their last
    epoch) and the Kaplan–Meier median epoch with its 95% interval (None: not reached)."""
    from ..selection import plateau_reached, plateau_window
    from ..stats import summarize
    from ..stats.summary import ci_method

    tuning = tuning or {}

    rows = []
    curves: dict[str, list[str]] = {}
    for arm in arms:
        mine = [c for c in configs if c.arm == arm.name]
        runs = [r for r in (store.find_finished(c.config_hash(), c.seed) for c in mine) if r is not None]
        stats = summarize([r.summary["test_acc"] for r in runs], bounds=ACC_RANGE)
        n_test = max((r.config.get("data", {}).get("n_test") or 0 for r in runs), default=0)
        accs = [r.summary["test_acc"] for r in runs]
        flat = stats.n >= 2 and max(accs) - min(accs) <= (0.5 / n_test if n_test else 0.0)
        rows.append({"arm": arm.name, "method": arm.method, "options": arm.options, "n": stats.n, "mean": stats.mean,
                     "sd": stats.sd, "ci_low": stats.ci_low, "ci_high": stats.ci_high, "no_variation": flat,
                     "ci_method": ci_method(ACC_RANGE), "seeds": [r.seed for r in runs],
                     "run_ids": [r.id for r in runs], "teacher_ids": mine[0].teacher_ids if mine else [],
                     "best_val_accs": [r.summary["best_val_acc"] for r in runs],
                     "asr_fallback": sum(1 for r in runs if r.summary.get("asr_fallback")),
                     "epochs_run": [r.summary["epochs"] for r in runs],
                     "stopped_early": sum(1 for r in runs if r.summary.get("stopped_early")),
                     "plateau": sum(1 for r in runs if plateau_reached(
                         r.summary["best_epoch"], r.summary["epochs"], bool(r.summary.get("stopped_early")),
                         plateau_window(r.config.get("patience", 0), r.config["epochs"]))),
                     "tuned": tuning.get(arm.name, {}).get("chosen", {}), "tuning": tuning.get(arm.name)})
        curves[arm.name] = [r.id for r in runs]
    km_plot = None
    if converged_at is not None:
        reached = epochs_to_summary(store, curves, converged_at)
        for row in rows:
            row["epochs_to"] = {k: v for k, v in reached[row["arm"]].items() if k != "curve"}
        km_plot = kaplan_meier_plot(store, {arm: r["curve"] for arm, r in reached.items()}, template.dataset,
                                    converged_at)
    plot = learning_curves(store, curves, template.dataset, template.model)
    ran = sum(1 for o in outcomes if not o.get("reused"))  # a run another process trained meanwhile is reused
    first_teacher = next((c.teacher_ids[0] for c in configs if c.teacher_ids), None)
    return {"dataset": template.dataset, "student": template.model, "teacher": first_teacher, "metric": "test_acc",
            "at": "best-val", "converged_at": converged_at, "methods": rows, "ran": ran, "reused": len(configs) - ran,
            "resumed": [o["resumed"] for o in outcomes if "resumed" in o],
            "not_resumed": [o["resume_refused"] for o in outcomes if "resume_refused" in o],
            "failed": [o for o in outcomes if o["status"] != "finished"], "plot": str(plot) if plot else None,
            "km_plot": str(km_plot) if km_plot else None}


def epochs_to_summary(store: Store, runs_by_arm: dict[str, list[str]], threshold: float) -> dict[str, dict]:
    """{arm: {"reached", "censored", "median", "ci_low", "ci_high"}}: epochs to validation accuracy `threshold`
    of the arm's runs as censored time-to-event data (stats.survival.kaplan_meier; None: not reached)."""
    from ..stats import epochs_to
    from ..stats.survival import Censored, kaplan_meier

    ids = [rid for ids in runs_by_arm.values() for rid in ids]
    found = store.metric_curves(ids, "val", "acc") if ids else {}
    out = {}
    for arm, run_ids in runs_by_arm.items():
        values = []
        for rid in run_ids:
            curve = found.get(rid, [])
            first = epochs_to(curve, threshold)
            values.append(Censored(len(curve)) if first is None else first)
        km = kaplan_meier(values)
        finite = lambda x: None if x != x or x in (float("inf"), float("-inf")) else x  # noqa: E731
        out[arm] = {"threshold": threshold, "reached": km.reached, "censored": km.censored,
                    "median": finite(km.median), "ci_low": finite(km.ci_low), "ci_high": finite(km.ci_high),
                    "curve": (km.n, km.times, km.survival, max((v.at for v in values if isinstance(v, Censored)),
                                                               default=0))}
    return out


def kaplan_meier_plot(store: Store, curves: dict[str, tuple], dataset: str, threshold: float) -> "Path | str | None":
    """Per arm, the Kaplan–Meier curve of the share of runs not yet at validation accuracy `threshold`, by epoch
    (a step function; censored runs end their arm's curve at their last epoch), as a PNG."""
    if not any(n for n, *_ in curves.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, (n, times, survival, last_censored) in curves.items():
        if not n:
            continue
        end = max([*times, last_censored])
        xs, ys = [0.0, *times, end], [1.0, *survival, survival[-1] if survival else 1.0]
        ax.step(xs, ys, where="post", label=f"{arm} (n={n})")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"share of runs not yet at val acc {threshold:g}")
    ax.set_title(f"{dataset}: epochs to validation accuracy {threshold:g} (Kaplan–Meier)")
    ax.legend()
    ax.grid(alpha=0.3)
    out = store.artifact_path("compare", f"{dataset}-{'-'.join(curves)}-epochs-to-{threshold:g}.png")
    fig.tight_layout()
    from ..store.artifacts import local_file_for

    with local_file_for(out, ".png") as local:
        fig.savefig(local, dpi=120, format="png")
    plt.close(fig)
    return out


def learning_curves(store: Store, runs_by_method: dict[str, list[str]], dataset: str,
                    student: str | None = None) -> "Path | str | None":
    """Validation accuracy and loss per epoch, mean ± sample sd over seeds, one line per arm, as a PNG
    named for the dataset, the arms and the runs (another comparison of the same arms gets its own file)."""
    import hashlib

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    all_ids = [rid for ids in runs_by_method.values() for rid in ids]
    if not all_ids:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    curve_axes(store, runs_by_method, axes)
    fig.suptitle(f"{dataset}: {student + ' students, ' if student else ''}mean ± sd over seeds")
    fig.tight_layout()
    runs = hashlib.sha256(",".join(sorted(all_ids)).encode()).hexdigest()[:8]
    out = store.artifact_path("compare", f"{dataset}-{'-'.join(runs_by_method)}-{runs}.png")
    from ..store.artifacts import local_file_for

    with local_file_for(out, ".png") as local:  # a remote `out` (store.artifacts): saved, then uploaded
        fig.savefig(local, dpi=120, format="png")
    plt.close(fig)
    return out


def curve_axes(store: Store, runs_by_arm: dict[str, list[str]], axes) -> None:
    """On two matplotlib axes: validation accuracy and validation loss per epoch, each arm's mean across its
    runs with a band of ± one sample sd (none where one run reaches that epoch), integer epoch ticks."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    by_run = {rid: arm for arm, ids in runs_by_arm.items() for rid in ids}
    series: dict[tuple[str, str], dict[int, list[float]]] = {}
    for m in store.metrics(list(by_run)):
        if m.split == "val" and m.name in ("acc", "loss"):
            series.setdefault((by_run[m.run_id], m.name), {}).setdefault(m.epoch, []).append(m.value)
    for ax, name, label in zip(axes, ("acc", "loss"), ("validation accuracy", "validation loss")):
        for index, arm in enumerate(runs_by_arm):
            per_epoch = series.get((arm, name))
            if not per_epoch:
                continue
            epochs = sorted(per_epoch)
            mean = np.array([np.mean(per_epoch[e]) for e in epochs])
            sd = np.array([np.std(per_epoch[e], ddof=1) if len(per_epoch[e]) > 1 else 0.0 for e in epochs])
            ax.plot(epochs, mean, color=f"C{index}", label=f"{arm} (n={len(runs_by_arm[arm])})")
            ax.fill_between(epochs, mean - sd, mean + sd, color=f"C{index}", alpha=0.2)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)


def in_flight(store: Store, since) -> list[dict]:
    """The runs running now that have shown life since `since` (a UTC time, as the store keeps them): per
    run its id, arms, seed, epochs done and planned, and latest validation accuracy (None before its first
    epoch). Read from the store, so it sees the runs of every executor (worker processes, Ray)."""
    runs = [r for r in store.list_runs(status="running") if (r.heartbeat_at or r.created_at) >= since]
    if not runs:
        return []
    arms = store.arms_of_runs([r.id for r in runs])
    latest: dict[str, dict] = {}
    for m in store.metrics([r.id for r in runs]):
        row = latest.setdefault(m.run_id, {"epoch": 0, "val_acc": None})
        row["epoch"] = max(row["epoch"], m.epoch)
        if m.split == "val" and m.name == "acc" and m.epoch >= row["epoch"]:
            row["val_acc"] = m.value
    return [{"run_id": r.id, "arms": arms.get(r.id, [r.method]), "seed": r.seed, "epochs": r.config.get("epochs"),
             **latest.get(r.id, {"epoch": 0, "val_acc": None})} for r in runs]


def check_executor(executor: str, ray_address: str | None, gpus_per_run: float = 0.0, device: str = "auto") -> None:
    """Before any work: a known executor, its flags only with it, a --gpus-per-run that fits --device,
    and Ray importable when it is asked for."""
    if executor not in EXECUTORS:
        raise UserError(f"unknown --executor '{executor}'; valid: {', '.join(EXECUTORS)}")
    if ray_address and executor != "ray":
        raise UserError("--ray-address goes with --executor ray")
    if gpus_per_run and executor != "ray":
        raise UserError("--gpus-per-run goes with --executor ray (locally, --device picks the GPU)")
    if executor == "ray":
        from .ray_executor import check_gpus_per_run, import_ray

        check_gpus_per_run(gpus_per_run)
        if gpus_per_run and device not in ("auto", "cuda"):
            raise UserError(f"--gpus-per-run reserves CUDA GPUs for the runs; with --device {device} they would "
                            "not use them: drop one of the two")
        if not gpus_per_run and device == "cuda":
            raise UserError("--device cuda with --executor ray needs --gpus-per-run (each run's share of a GPU); "
                            "a Ray task holding no GPU sees none")
        import_ray()


def check_jobs(jobs: int) -> int:
    if jobs < 1:
        raise UserError(f"--jobs must be >= 1 (got {jobs})")
    return jobs
