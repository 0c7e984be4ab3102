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
from ..config import TrainConfig
from ..errors import Interrupted, UserError
from ..store import Store

Work = tuple[TrainConfig, str | None]  # a run to train, and the id of an unfinished run of it to resume (or None)


def plan(store: Store, template: TrainConfig, arms: list[Arm], seeds: list[int], teacher_ref: str | None,
         method_overrides: dict) -> list[TrainConfig]:
    """One config per (arm, seed). An arm's method options are its method's defaults, overridden by
    `method_overrides` (the command's flags), then by the arm's own; its teachers are the arm's
    `teacher=`, else `teacher_ref`, else the dataset's latest (for sprkd: the latest with tracked saddles
    that fits the student)."""
    from ..methods import method_options
    from .saddles import teacher_ids_for

    configs = []
    for arm in arms:
        where = lambda name, declared, arm=arm: f"arm {arm.name}: {name}"  # noqa: E731
        options = method_options(arm.method, method_overrides | arm.options, template, where=where)
        teachers = teacher_ids_for(store, arm.method, arm.teacher or teacher_ref, template.dataset,
                                   template.split_seed, template.model, options)
        for seed in seeds:
            configs.append(dataclasses.replace(template, method=arm.method, seed=seed, teacher_ids=teachers,
                                               method_options=options, arm=arm.name))
    return configs


_worker_store: Store | None = None
_worker_signal: int | None = None  # the SIGINT or SIGTERM this worker has had: it starts no further run
_worker_parent: int | None = None  # the compare process that started this worker
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_SECONDS = 1.0


def _init_worker(url: str, jobs: int) -> None:
    global _worker_store, _worker_parent
    from .training import set_threads

    _worker_parent = os.getppid()
    for signum in (signal.SIGINT, signal.SIGTERM):  # between runs; during one, train_run ends it as interrupted
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
    as interrupted) and raises Interrupted once they have."""
    from .lifecycle import Interruptible
    from .training import set_threads, train_or_resume

    outcomes = []
    if jobs <= 1 or len(work) <= 1:
        set_threads(1 if jobs > 1 else 0)
        for cfg, resume_id in work:
            outcomes.append(train_or_resume(cfg, store, resume_id))
            on_done(outcomes[-1])
        return outcomes
    with Interruptible(), ProcessPoolExecutor(max_workers=min(jobs, len(work)), mp_context=get_context("spawn"),
                                              initializer=_init_worker, initargs=(store.url, jobs)) as pool:
        futures = [pool.submit(_train_in_worker, cfg.to_dict(), resume_id) for cfg, resume_id in work]
        try:
            for future in futures:
                outcomes.append(future.result())
                on_done(outcomes[-1])
        except Interrupted as exc:
            for future in futures:
                future.cancel()
            for worker in active_children():
                os.kill(worker.pid, exc.signum)
            wait(futures)
            raise
    return outcomes


EXECUTORS = ("local", "ray")


def compare(store: Store, template: TrainConfig, arms: list[Arm], seeds: list[int], *, teacher_ref: str | None,
            method_overrides: dict, jobs: int, on_planned: Callable[[int, int], None] = lambda total, todo: None,
            on_done: Callable[[dict], None] = lambda outcome: None, executor: str = "local",
            ray_address: str | None = None, hessian: bool = False) -> dict:
    """Plan, train what is missing (`executor` local: `jobs` processes here; ray: Ray tasks, see
    services.ray_executor), measure the claims the finished runs lack (see measure_claims) and summarise."""
    from .lifecycle import find_unfinished

    configs = plan(store, template, arms, seeds, teacher_ref, method_overrides)
    existing = {(c.arm, c.seed): store.find_finished(c.config_hash(), c.seed) for c in configs}
    for cfg in configs:  # a run reused under another arm's name belongs to this arm too
        if existing[(cfg.arm, cfg.seed)] is not None:
            store.link_arm(existing[(cfg.arm, cfg.seed)].id, cfg.arm)
    todo = [c for c in configs if existing[(c.arm, c.seed)] is None]
    work = []
    for cfg in todo:  # an interrupted or crashed run of the same config and seed goes on from its state
        unfinished = find_unfinished(store, cfg.config_hash(), cfg.seed)
        if unfinished is not None:
            store.link_arm(unfinished.id, cfg.arm)
        work.append((cfg, unfinished.id if unfinished else None))
    on_planned(len(configs), len(todo))
    if executor == "ray" and work:
        from .ray_executor import execute_ray

        outcomes = execute_ray(store, work, jobs, on_done, address=ray_address)
    else:
        outcomes = execute(store, work, jobs, on_done)
    measured = measure_claims(store, template, configs, hessian)
    return summarise(store, template, arms, configs, outcomes) | measured


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


def summarise(store: Store, template: TrainConfig, arms: list[Arm], configs: list[TrainConfig],
              outcomes: list[dict]) -> dict:
    """Test accuracy at the best-validation epoch per arm over its finished runs, and the learning curves."""
    from ..stats import summarize

    rows = []
    curves: dict[str, list[str]] = {}
    for arm in arms:
        mine = [c for c in configs if c.arm == arm.name]
        runs = [r for r in (store.find_finished(c.config_hash(), c.seed) for c in mine) if r is not None]
        stats = summarize([r.summary["test_acc"] for r in runs])
        rows.append({"arm": arm.name, "method": arm.method, "options": arm.options, "n": stats.n, "mean": stats.mean,
                     "sd": stats.sd, "ci_low": stats.ci_low, "ci_high": stats.ci_high, "seeds": [r.seed for r in runs],
                     "run_ids": [r.id for r in runs], "teacher_ids": mine[0].teacher_ids if mine else [],
                     "asr_fallback": sum(1 for r in runs if r.summary.get("asr_fallback"))})
        curves[arm.name] = [r.id for r in runs]
    plot = learning_curves(store, curves, template.dataset)
    ran = len(outcomes)
    first_teacher = next((c.teacher_ids[0] for c in configs if c.teacher_ids), None)
    return {"dataset": template.dataset, "student": template.model, "teacher": first_teacher, "metric": "test_acc",
            "at": "best-val", "methods": rows, "ran": ran, "reused": len(configs) - ran,
            "resumed": [o["resumed"] for o in outcomes if "resumed" in o],
            "not_resumed": [o["resume_refused"] for o in outcomes if "resume_refused" in o],
            "failed": [o for o in outcomes if o["status"] != "finished"], "plot": str(plot) if plot else None}


def learning_curves(store: Store, runs_by_method: dict[str, list[str]], dataset: str) -> Path | None:
    """Validation accuracy per epoch, mean ± sd over seeds, one line per arm, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    all_ids = [rid for ids in runs_by_method.values() for rid in ids]
    if not all_ids:
        return None
    series: dict[str, dict[int, list[float]]] = {}
    by_run = {rid: method for method, ids in runs_by_method.items() for rid in ids}
    for m in store.metrics(all_ids):
        if m.split == "val" and m.name == "acc":
            series.setdefault(by_run[m.run_id], {}).setdefault(m.epoch, []).append(m.value)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, per_epoch in series.items():
        epochs = sorted(per_epoch)
        mean = np.array([np.mean(per_epoch[e]) for e in epochs])
        sd = np.array([np.std(per_epoch[e]) for e in epochs])
        ax.plot(epochs, mean, label=f"{method} (n={len(runs_by_method[method])})")
        ax.fill_between(epochs, mean - sd, mean + sd, alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"{dataset}: validation accuracy, mean ± sd over seeds")
    ax.legend()
    ax.grid(alpha=0.3)
    out = store.artifact_path("compare", f"{dataset}-{'-'.join(runs_by_method)}.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def check_executor(executor: str, ray_address: str | None) -> None:
    """Before any work: a known executor, and Ray importable when it is asked for."""
    if executor not in EXECUTORS:
        raise UserError(f"unknown --executor '{executor}'; valid: {', '.join(EXECUTORS)}")
    if ray_address and executor != "ray":
        raise UserError("--ray-address goes with --executor ray")
    if executor == "ray":
        from .ray_executor import import_ray

        import_ray()


def check_jobs(jobs: int) -> int:
    if jobs < 1:
        raise UserError(f"--jobs must be >= 1 (got {jobs})")
    return jobs
