"""The run lifecycle. A training process's side: the process a run records, its heartbeat, and
SIGINT/SIGTERM as Interrupted. A reader's side: a running run whose process is gone reads as crashed."""

from __future__ import annotations

import os
import signal
import socket
import threading
from datetime import datetime, timedelta

from sqlalchemy.exc import DBAPIError

from ..errors import Interrupted
from ..store import Run, Store, utcnow

HEARTBEAT_SECONDS = 30.0
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: the terminal closed


class Interruptible:
    """While open in the main thread, SIGINT and SIGTERM become Interrupted. With defer=True (a training
    process) a signal is only noted, and check() raises it at a safe point (between steps, once an
    epoch's metrics are stored), so no store write is cut in half (a repeated signal, such as Ctrl-C
    reaching compare's workers both from the terminal and from compare, changes nothing). With
    defer=False it raises at once. After raising, signals are ignored until the block ends, so that
    ending the run in the store is not cut short. A signal noted and not yet raised when the block ends
    is raised then. Outside the main thread (where handlers cannot be set) nothing changes."""

    def __init__(self, defer: bool = False):
        self.defer = defer
        self.signum: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, _frame) -> None:
        if not self.defer:
            self._raise(signum)
        self.signum = self.signum or signum

    def _raise(self, signum: int):
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        raise Interrupted(signum)

    def check(self) -> None:
        if self.signum is not None:
            self._raise(self.signum)

    def __enter__(self) -> "Interruptible":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, exc_type, _exc, _tb) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        if exc_type is None and self.signum is not None:
            raise Interrupted(self.signum)


class Heartbeat:
    """A daemon thread that writes the run's heartbeat every `interval` seconds until the block ends.
    One short UPDATE per beat; a beat that finds the
    store locked is skipped, the next one comes `interval` later."""

    def __init__(self, store: Store, run_id: str, interval: float = HEARTBEAT_SECONDS):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(store, run_id, interval), daemon=True,
                                        name=f"sprkd-heartbeat-{run_id}")

    def _beat(self, store: Store, run_id: str, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                store.touch_run(run_id)
            except DBAPIError:
                pass

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# -- the process behind a run ------------------------------------------------------------------------

def this_process() -> dict:
    """This process as a run records it (Store.create_run, Store.reopen_run), for is_crashed and
    died_here to check later."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_started": process_started(pid)}


def process_alive(pid: int, started: int | None = None) -> bool:
    """Whether process `pid` exists and, when `started` is known, is the one that started then (not a
    later process given the same pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    if started is None:
        return True
    now = process_started(pid)
    return now is None or now == started


def process_started(pid: int) -> int | None:
    """When process `pid` started, in clock ticks after boot (Linux's /proc/<pid>/stat, field 22);
    None where there is no /proc or the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()  # after "pid (comm) ": the name may hold spaces
    return int(fields[19])


# -- runs as a reader sees them ----------------------------------------------------------------------

# A running run is shown as crashed once its heartbeat is this old and its process is gone. Nothing is
# written: the status is computed when runs are read, so a slow reader never marks a live run.
CRASH_AFTER = timedelta(minutes=2)


def is_crashed(run: Run, now: datetime | None = None) -> bool:
    """A `running` run whose heartbeat is older than CRASH_AFTER and whose process is gone (on this
    host: its pid is not alive; on another host the heartbeat's age alone decides)."""
    if run.status != "running":
        return False
    if run.heartbeat_at is not None and (now or utcnow()) - run.heartbeat_at < CRASH_AFTER:
        return False
    if run.host == socket.gethostname() and run.pid is not None:
        return not process_alive(run.pid, run.pid_started)
    return True


def died_here(run: Run) -> bool:
    """A `running` run of this host whose process is gone: dead for certain, whatever its heartbeat's age."""
    return (run.status == "running" and run.host == socket.gethostname() and run.pid is not None
            and not process_alive(run.pid, run.pid_started))


def as_read(runs: list) -> list:
    """The runs (rows read from the store) with the status a reader sees: `crashed` in place of a dead
    run's `running`. The rows are detached copies; nothing is written back."""
    now = utcnow()
    for run in runs:
        if is_crashed(run, now):
            run.status = "crashed"
    return runs


def read_run(store: Store, ref: str) -> Run:
    """The run `ref` (id or unique id prefix) as a reader sees it."""
    return as_read([store.get_run(ref)])[0]


def read_runs(store: Store, *, status: str | None = None, limit: int | None = None, **filters) -> list:
    """Store.list_runs as a reader sees the runs: `running` and `crashed` are both stored as running and
    told apart here, before `limit` applies."""
    stored_status = "running" if status == "crashed" else status
    split_later = stored_status == "running"
    runs = as_read(store.list_runs(status=stored_status, limit=None if split_later else limit, **filters))
    if split_later:
        runs = [r for r in runs if r.status == status][:limit or None]
    return runs


def find_unfinished(store: Store, config_hash: str, seed: int) -> Run | None:
    """The newest run of this config and seed that stopped before it finished and can go on from its
    saved state: interrupted, crashed (as read), or running on this host with its process gone.
    Failed runs are left alone: what failed them would fail them again."""
    runs = as_read(store.unfinished_runs(config_hash, seed))
    return next((r for r in runs if r.status in ("interrupted", "crashed") or died_here(r)), None)
