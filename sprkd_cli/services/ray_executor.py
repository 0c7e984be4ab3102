"""compare --executor ray: each (method, seed) as a Ray task on an existing Ray cluster (or a local
one started for the comparison), every task writing to the one store given by --db.

Ray is optional (`pip install 'sprkd[ray]'`). The workers import sprkd_cli, so sprkd must be installed
on every node, and the store URL and the artifact root must be reachable from every node (a
PostgreSQL URL and a shared folder; a SQLite file only on one machine)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from ..config import TrainConfig
from ..errors import Interrupted, UserError
from ..store import Store

INSTALL = "pip install 'sprkd[ray]'"
WAIT_SECONDS = 0.5
LOCAL_OBJECT_STORE_BYTES = 200 * 2**20  # a local cluster holds only small outcomes; Ray's default is 30% of RAM


def train_task(url: str, config: dict, artifact_root: str, resume_id: str | None = None) -> dict:
    """One run (trained, or resumed: see training.train_or_resume), in a Ray worker: one torch thread
    (the task holds one CPU), the driver's artifact root."""
    import torch

    from .training import train_or_resume

    os.environ["SPRKD_ARTIFACTS"] = artifact_root
    torch.set_num_threads(1)  # the task holds one CPU; the others are other tasks'
    try:
        return train_or_resume(TrainConfig.from_dict(config), Store(url), resume_id)
    except Interrupted as exc:  # cancelled: the run is stored as interrupted; report it like a failure
        return {"run_id": getattr(exc, "run_id", None), "status": "interrupted", "error": str(exc)}


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def execute_ray(store: Store, work: list[tuple[TrainConfig, str | None]], jobs: int,
                on_done: Callable[[dict], None], *, address: str | None) -> list[dict]:
    """Train (or resume) the runs of `work` as Ray tasks of one CPU each, on the cluster at `address` (None: a local one of
    `jobs` CPUs, started here and shut down after). SIGINT or SIGTERM cancels the tasks (running ones
    end their runs as interrupted) and raises Interrupted."""
    from .lifecycle import Interruptible

    ray = import_ray()
    if store.url.startswith("sqlite") and address:
        raise UserError("a SQLite store is one machine's file: with --ray-address give a --db every node reaches "
                        "(postgresql+psycopg://...)")
    started_here = not ray.is_initialized()
    if started_here:
        try:
            quiet = {"log_to_driver": False, "logging_level": logging.ERROR}  # stdout stays --json's
            if address:
                ray.init(address=address, **quiet)
            else:
                ray.init(num_cpus=jobs, include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"cannot start or reach Ray{f' at {address}' if address else ''}: "
                            + " ".join(str(exc).split())[:300]) from None
    outcomes: list[dict] = []
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(train_task)
        refs = {task.remote(store.url, cfg.to_dict(), str(store.artifact_root), resume_id): cfg
                for cfg, resume_id in work}
        pending = list(refs)
        # a signal is noted and raised between short waits (raised inside Ray's wait it would be garbled)
        with Interruptible(defer=True) as stop:
            try:
                while pending:
                    done, pending = ray.wait(pending, num_returns=1, timeout=WAIT_SECONDS)
                    for ref in done:
                        outcomes.append(_outcome(ray, ref, refs[ref]))
                        on_done(outcomes[-1])
                    stop.check()
            except Interrupted:
                for ref in pending:
                    ray.cancel(ref)  # a running task gets KeyboardInterrupt: its run ends as interrupted
                for ref in pending:
                    try:
                        ray.get(ref)
                    except Exception:  # cancelled: that is the point
                        pass
                raise
    finally:
        if started_here:
            ray.shutdown()
    return outcomes


def _outcome(ray, ref, cfg: TrainConfig) -> dict:
    """The task's outcome; a task that died (its worker killed, an exception) is a failed outcome."""
    try:
        return ray.get(ref)
    except Exception as exc:  # ray.exceptions.RayTaskError and kin
        reason = " ".join(str(exc).split())[-300:]
        return {"run_id": None, "status": "failed", "error": f"{cfg.method} seed {cfg.seed}: Ray task failed: {reason}"}
