"""Where compare's runs train: here, one process at a time or in a pool of worker processes (their
lifecycle: signals passed on, workers that die with compare), or as Ray tasks (compare.ray_executor).
Each executor gives every PlannedRun it trains the outcome (PlannedRun.note: the run id, when it finished)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, wait
from multiprocessing import active_children, get_context

from ...choices import EXECUTORS
from ...config import TrainConfig
from ...errors import Interrupted, UserError
from ...store import Store
from .planner import PlannedRun

Work = tuple[PlannedRun, str | None]  # a run to train, and the id of an unfinished run of it to resume (or None)


def train_missing(store: Store, planned: list[PlannedRun], jobs: int, executor: str, ray_address: str | None,
                  on_planned: Callable[[int, int], None], on_done: Callable[[dict], None], *,
                  diverged_done: bool = False, gpus_per_run: float = 0.0, ray_verbose: bool = False) -> list[dict]:
    """Train the planned runs that have no finished run of their hash and seed (once each, however many arms
    ask for it), resuming an interrupted or crashed one from its state; every run found or trained belongs
    to the arms that asked for it, and its id goes into their PlannedRuns. With `diverged_done` (a --tune
    grid) a run that diverged counts as done: the same config and seed would diverge again."""
    from ..lifecycle import find_unfinished

    work: list[Work] = []
    first: dict[tuple[str, int], PlannedRun] = {}  # the planned run that trains each experiment
    for p in planned:
        existing = store.find_finished(*p.key)
        if existing is not None:  # a run reused under another arm's name belongs to this arm too
            p.run_id = existing.id
            store.link_arm(existing.id, p.arm)
            continue
        if p.key in first or (diverged_done and store.diverged_run(*p.key) is not None):
            continue
        first[p.key] = p
        unfinished = find_unfinished(store, *p.key)  # goes on from its saved state
        if unfinished is not None:
            store.link_arm(unfinished.id, p.arm)
        work.append((p, unfinished.id if unfinished else None))
    on_planned(len(planned), len(work))
    if executor == "ray" and work:
        from .ray_executor import execute_ray

        outcomes = execute_ray(store, work, jobs, on_done, address=ray_address, gpus=gpus_per_run,
                               verbose=ray_verbose)
    else:
        outcomes = execute(store, work, jobs, on_done)
    for p in planned:  # a run asked for by two arms was trained once, for the first
        if p.run_id is None and p.key in first:
            p.run_id = first[p.key].run_id
        if p.run_id is not None:
            store.link_arm(p.run_id, p.arm)
    return outcomes


_worker_store: Store | None = None
_worker_signal: int | None = None  # the SIGINT or SIGTERM this worker has had: it starts no further run
_worker_parent: int | None = None  # the compare process that started this worker
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_SECONDS = 1.0


def _init_worker(url: str, artifacts: str | None, jobs: int) -> None:
    global _worker_store, _worker_parent
    from ..training import set_threads

    _worker_parent = os.getppid()
    from ..lifecycle import SIGNALS

    for signum in SIGNALS:  # between runs; during one, train_run ends it as interrupted
        signal.signal(signum, _note_signal)
    _die_with_parent()
    set_threads(jobs)
    _worker_store = Store(url, artifacts)


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
    from ..training import train_or_resume

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
    from ..training import set_threads, train_or_resume

    outcomes: list[dict] = []
    if jobs <= 1 or len(work) <= 1:
        set_threads(1)
        for item in work:
            outcomes.append(item[0].note(train_or_resume(item[0].config, store, item[1])))
            on_done(outcomes[-1])
        return outcomes
    _quiet_resource_tracker()
    pending = list(work)
    while pending:
        broken = _execute_in_pool(store, pending, jobs, on_done, outcomes)
        died = [(item, outcome) for item in broken if (outcome := _end_if_died(store, item[0].config)) is not None]
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

    from ..lifecycle import Interruptible

    broken: list[Work] = []
    with Interruptible(), ProcessPoolExecutor(max_workers=min(jobs, len(work)), mp_context=get_context("spawn"),
                                              initializer=_init_worker,
                                              initargs=(store.url, store.artifacts, jobs)) as pool:
        futures = [(item, pool.submit(_train_in_worker, item[0].config.to_dict(), item[1])) for item in work]
        try:
            for item, future in futures:
                try:
                    outcomes.append(item[0].note(future.result()))
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
    from ..lifecycle import died_here

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


def check_jobs(jobs: int) -> None:
    """--jobs: at least one process."""
    if jobs < 1:
        raise UserError(f"--jobs must be >= 1 (got {jobs})")
