"""compare --executor ray: each (arm, seed) as a Ray task on an existing Ray cluster (or a local
one started for the comparison), every task writing to the one store given by --db.

Ray is optional (`pip install 'sprkd[ray]'`). The workers import sprkd_cli, so sprkd must be installed
on every node, and the store URL and the artifact root must be reachable from every node (a
PostgreSQL URL and a shared folder; a SQLite file only on one machine).

With `gpus` (compare --gpus-per-run G) each task asks Ray for G of a GPU (a fraction shares one GPU,
e.g. 0.5: two runs on each); Ray points the task's CUDA_VISIBLE_DEVICES at the GPU it holds, so
--device auto trains there. Without, a task holds no GPU and sees none (auto trains on the CPU)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

from ...config import TrainConfig
from ...errors import Interrupted, UserError
from ...store import Store
from .planner import PlannedRun

INSTALL = "pip install 'sprkd[ray]'"
WAIT_SECONDS = 0.5
LOCAL_OBJECT_STORE_BYTES = 200 * 2**20  # a local cluster holds only small outcomes; Ray's default is 30% of RAM
REACH_SECONDS = 10.0  # a cluster's GCS port that does not accept a TCP connection in this long is unreachable
TOKEN_HELP = ("put the head's token (`ray get-auth-token` on the head: its ~/.ray/auth_token) in the "
              "RAY_AUTH_TOKEN environment variable, in ~/.ray/auth_token, or in a file named by RAY_AUTH_TOKEN_PATH")
RAY_LOGGERS = ("ray", "ray.data", "ray.tune", "ray.train", "ray.serve")


def train_task(url: str, config: dict, artifact_root: str, resume_id: str | None = None, gpus: float = 0.0) -> dict:
    """One run (trained, or resumed: see training.train_or_resume), in a Ray worker: one torch thread
    (the task holds one CPU), the store at `url` with the driver's artifact root, and the GPU share Ray
    gave it (`gpus`; none: no GPU visible, so that tasks holding no GPU do not crowd onto one). The run
    gets a "ray_task" event: the node, the GPU share asked for, the GPU ids Ray gave and the device the
    run used."""
    import ray

    if not gpus:  # before torch initialises CUDA (a task with GPUs gets its own worker: Ray's max_calls=1)
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch

    from ..training import train_or_resume

    os.environ["SPRKD_THREADS"] = "1"  # the task holds one CPU; the others are other tasks' (engine.threads)
    torch.set_num_threads(1)
    store = Store(url, artifact_root)
    try:
        outcome = train_or_resume(TrainConfig.from_dict(config), store, resume_id)
    except Interrupted as exc:  # cancelled: the run is stored as interrupted; report it like a failure
        return {"run_id": getattr(exc, "run_id", None), "status": "interrupted", "error": str(exc)}
    if outcome.get("run_id"):
        run = store.get_run(outcome["run_id"])
        store.add_event(run.id, "ray_task", {
            "node_ip": ray.util.get_node_ip_address(), "node_id": ray.get_runtime_context().get_node_id(),
            "gpus_per_run": gpus,
            "gpu_ids": [str(i) for i in ray.get_gpu_ids()],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "device": run.device})
    return outcome


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def ray_token_available() -> bool:
    """Whether this process has a Ray authentication token where Ray looks for one: the RAY_AUTH_TOKEN
    environment variable, the file named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(path).expanduser().is_file() if path else (Path.home() / ".ray" / "auth_token").is_file()


def use_token_if_available() -> bool:
    """Ray (2.5x+) connects to an explicit address without a token unless RAY_AUTH_MODE=token, even when
    its token file is there; `ray start --head` turns token authentication on when it finds a token. With
    RAY_AUTH_MODE unset and a token available, set it to token (a cluster without authentication ignores
    the token). An explicit RAY_AUTH_MODE is left as it is. Returns whether token mode is on."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None:
        return mode.lower() == "token"
    if not ray_token_available():
        return False
    os.environ["RAY_AUTH_MODE"] = "token"
    from ray._raylet import Config

    Config.initialize("")  # Ray's own way to make this process see the mode (authentication_token_setup)
    return True


@contextlib.contextmanager
def quiet_stderr(verbose: bool):
    """Ray's C++ core writes its warnings (a failed GCS connection: one a second) to file descriptor 2,
    past Python's logging: unless `verbose`, send fd 2 to a scratch file while Ray connects, and quieten
    Ray's Python loggers. sprkd's own errors are raised, and printed, after."""
    if verbose:
        yield
        return
    for name in RAY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    import sys

    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (an embedded interpreter): nothing to redirect
        yield
        return
    with tempfile.TemporaryFile() as scratch:
        os.dup2(scratch.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def split_address(address: str) -> tuple[str, int] | None:
    """HOST:PORT of a GCS address (None for auto, ray://, or anything else Ray resolves itself)."""
    if address == "auto" or "://" in address or ":" not in address:
        return None
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    return (host, int(port)) if port.isdigit() and host else None


def check_cluster(address: str) -> None:
    """Before ray.init (whose failures take 20 s or more, with a warning a second): the GCS port at
    `address` accepts a connection within REACH_SECONDS, and accepts this process's token (one GCS call,
    under a second). Either failing is a one-line UserError; the token one says where the token goes."""
    hostport = split_address(address)
    if hostport is None:
        return
    try:
        socket.create_connection(hostport, timeout=REACH_SECONDS).close()
    except OSError as exc:
        raise UserError(f"cannot reach Ray at {address}: nothing answers on {hostport[0]}:{hostport[1]} "
                        f"within {REACH_SECONDS:g} s ({exc.strerror or exc}); is `ray start --head "
                        f"--port={hostport[1]}` running there, and the port open to this machine?") from None
    from ray._raylet import GcsClient

    try:
        GcsClient(address=address).cluster_id  # noqa: B018  one call; raises at once on a bad token
    except Exception as exc:
        text = " ".join(str(exc).split())
        if "InvalidAuthToken" in text or "AuthenticationError" in type(exc).__name__ \
                or "no authentication token" in text:
            found = "a token that the cluster refused" if ray_token_available() else "no token"
            raise UserError(f"Ray at {address} needs its authentication token and this machine has {found}: "
                            f"{TOKEN_HELP}") from None
        # anything else: left to ray.init, which says what it is


def check_gpus_per_run(gpus: float) -> float:
    """--gpus-per-run: 0 (no GPU), a share of one GPU (0 < G <= 1), or whole GPUs (as Ray schedules them)."""
    if not gpus >= 0:  # NaN too
        raise UserError(f"--gpus-per-run must be >= 0 (got {gpus:g})")
    if gpus > 1 and gpus != int(gpus):
        raise UserError(f"--gpus-per-run {gpus:g}: above 1 it must be a whole number of GPUs "
                        "(Ray gives a task a share of one GPU, or whole GPUs)")
    return gpus


def check_cluster_has_gpus(ray, gpus: float) -> None:
    """A task asking for more GPUs than any live node has would wait forever: refused before submitting."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    most = max((n.get("Resources", {}).get("GPU", 0) for n in nodes), default=0)
    if most < gpus:
        total = ray.cluster_resources().get("GPU", 0)
        raise UserError(f"--gpus-per-run {gpus:g}: no node of the Ray cluster has {gpus:g} GPU(s) "
                        f"({len(nodes)} node(s), {total:g} GPU(s) in all); lower it, or add GPU nodes")


def execute_ray(store: Store, work: list[tuple[PlannedRun, str | None]], jobs: int,
                on_done: Callable[[dict], None], *, address: str | None, gpus: float = 0.0,
                verbose: bool = False) -> list[dict]:
    """Train (or resume) the runs of `work` as Ray tasks of one CPU (and `gpus` of a GPU) each, on the
    cluster at `address` (None: a local one of `jobs` CPUs and the machine's GPUs, started here and shut
    down after). A GPU request no node can meet is a UserError before any task is submitted. SIGINT or
    SIGTERM cancels the tasks (running ones end their runs as interrupted) and raises Interrupted.
    Ray's own log lines stay off stderr unless `verbose`; a cluster that is unreachable or refuses the
    token is a one-line UserError within check_cluster's bound."""
    from ..lifecycle import Interruptible

    ray = import_ray()
    if store.url.startswith("sqlite") and address:
        raise UserError("a SQLite store is one machine's file: with --ray-address give a --db every node reaches "
                        "(postgresql+psycopg://...)")
    started_here = not ray.is_initialized()
    if started_here:
        try:
            # workers' output never comes here (stdout stays --json's); --verbose lets Ray's own lines through
            quiet = {"log_to_driver": False, "logging_level": logging.INFO if verbose else logging.ERROR}
            with quiet_stderr(verbose):
                if address:
                    use_token_if_available()
                    check_cluster(address)
                    ray.init(address=address, **quiet)
                else:
                    ray.init(num_cpus=jobs, include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                             **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"cannot start or reach Ray{f' at {address}' if address else ''}: "
                            + " ".join(str(exc).split())[:300]) from None
    outcomes: list[dict] = []
    try:
        if gpus:
            check_cluster_has_gpus(ray, gpus)
        task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(train_task)
        # the root as the driver resolves it: a default one (beside the store, or ./runs) would differ on a node
        refs = {task.remote(store.url, p.config.to_dict(), str(store.artifact_root), resume_id, gpus): p
                for p, resume_id in work}
        pending = list(refs)
        # a signal is noted and raised between short waits (raised inside Ray's wait it would be garbled)
        with Interruptible(defer=True) as stop:
            try:
                while pending:
                    done, pending = ray.wait(pending, num_returns=1, timeout=WAIT_SECONDS)
                    for ref in done:
                        outcomes.append(refs[ref].note(_outcome(ray, ref, refs[ref].config)))
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
            with quiet_stderr(verbose):
                ray.shutdown()
    return outcomes


def _outcome(ray, ref, cfg: TrainConfig) -> dict:
    """The task's outcome; a task that died (its worker killed, an exception) is a failed outcome."""
    try:
        return ray.get(ref)
    except Exception as exc:  # ray.exceptions.RayTaskError and kin
        reason = " ".join(str(exc).split())[-300:]
        return {"run_id": None, "status": "failed", "error": f"{cfg.method} seed {cfg.seed}: Ray task failed: {reason}"}
