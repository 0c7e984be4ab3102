"""A training process's side of the run lifecycle: its heartbeat, and SIGINT/SIGTERM as Interrupted."""

from __future__ import annotations

import signal
import threading

from sqlalchemy.exc import DBAPIError

from ..errors import Interrupted
from ..store import Store

HEARTBEAT_SECONDS = 30.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
