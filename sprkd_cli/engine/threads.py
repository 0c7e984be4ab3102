"""How many CPU threads torch uses in a process that trains or measures.

In order: `--threads N` (a global option, passed on as $SPRKD_THREADS to compare's worker processes),
$SPRKD_THREADS, $OMP_NUM_THREADS; otherwise the cores this process may use, shared between the sprkd
processes training on the machine when it starts (this one included, a `compare --jobs J` counting as
its J workers) and between `jobs` worker processes of one compare, and no more than the cores the
machine's load leaves free (the 1-minute load average less one, for the process that ran just before
this one in a sequential loop). On a machine where several
`sprkd distill ... &` run at once, each then takes its share instead of every one taking every core:
torch's threads spin-wait for each other, and oversubscribed they slow a small model's step by an
order of magnitude.

The count is chosen once per process, when its work starts, and a run records it (its summary's
`threads`): torch's CPU reductions may split their sums by thread, so the last digits of a run can
depend on its thread count; `--threads N` repeats a run's count.

Training slots. Fewer threads per process still leave several one-thread runs sharing each core when more
runs train than there are cores, and then every run's epochs take longer. So a run takes one of N
training slots on the machine before its training loop starts, and waits while all N are held:
`--slots N` (a global option, passed on as $SPRKD_SLOTS to compare's workers), else $SPRKD_SLOTS, else
the cores this process may use; 0 takes none (no cap). A slot is an exclusive flock on a file of a
per-user folder under the temp dir (`slots_folder()`), so the kernel frees it when its process ends,
however it ends. The thread count above divides the cores between at most N processes, since no more
train at once. Importable without torch.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import UserError

ENV = "SPRKD_THREADS"
SLOTS_ENV = "SPRKD_SLOTS"
SLOT_POLL_SECONDS = 0.1  # how often a waiting process tries the slots again
TRAINING_COMMANDS = ("train-teacher", "distill", "compare", "hessian-report")
WORKER_FLAG = "--multiprocessing-fork"  # the last argument of compare's spawned worker processes


def cores() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def explicit_threads() -> int | None:
    """$SPRKD_THREADS (set by --threads too), else $OMP_NUM_THREADS (its first level), else None."""
    raw = os.environ.get(ENV, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise UserError(f"{ENV}={raw!r}: give a whole number of threads >= 1 (or unset it)")
        return value
    raw = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if raw.isdigit() and int(raw) >= 1:
        return int(raw)
    return None


def _cmdline(proc: str, pid: str) -> list[str]:
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _parent(proc: str, pid: str) -> str | None:
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
    return fields[1] if len(fields) > 1 else None


def is_training_command(argv: list[str]) -> bool:
    """argv of `sprkd train-teacher|distill|compare|hessian-report ...` (the script, or python -m sprkd_cli)."""
    if not any(os.path.basename(a) == "sprkd" or a == "sprkd_cli" for a in argv):
        return False
    return any(a in TRAINING_COMMANDS for a in argv)


def sprkd_trainers(proc: str = "/proc") -> int:
    """Processes training for sprkd on this machine, this one included: every `sprkd train-teacher`,
    `distill` or `compare` command, a compare with worker processes counting as its workers (Linux's
    /proc; elsewhere 1)."""
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return 1
    commands, parents = set(), {}
    for pid in pids:
        argv = _cmdline(proc, pid)
        if is_training_command(argv):
            commands.add(pid)
        elif WORKER_FLAG in argv:
            parents[pid] = _parent(proc, pid)
    workers: dict[str, int] = {}
    for pid, parent in parents.items():
        if parent in commands:
            workers[parent] = workers.get(parent, 0) + 1
    total = sum(max(1, workers.get(pid, 0)) for pid in commands)
    me = str(os.getpid())
    counted = me in commands or parents.get(me) in commands
    return max(1, total + (0 if counted else 1))


def choose_threads(jobs: int = 1) -> int:
    """Torch threads for one of `jobs` processes training at once (see the module's docstring)."""
    explicit = explicit_threads()
    if explicit is not None:
        return explicit
    sharing = max(1, jobs, sprkd_trainers())
    slots = slot_count()
    if slots:  # no more than `slots` of them train at once
        sharing = min(sharing, slots)
    return max(1, min(cores() // sharing, free_cores()))


def free_cores() -> int:
    """The cores the machine's load leaves free: cores less the 1-minute load average beyond one (rounded),
    at least 1; all of them where the system reports no load average."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return cores()
    return max(1, int(cores() - max(0.0, load - 1.0) + 0.5))


def set_threads(jobs: int = 1) -> int:
    """torch.set_num_threads(choose_threads(jobs)); returns the count."""
    import torch

    threads = choose_threads(jobs)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


# -- training slots ----------------------------------------------------------------------------------

def slot_count() -> int:
    """$SPRKD_SLOTS (set by --slots too): how many sprkd processes train at once on this machine, 0 for
    no cap; unset, the cores this process may use."""
    raw = os.environ.get(SLOTS_ENV, "").strip()
    if not raw:
        return cores()
    if not raw.isdigit():
        raise UserError(f"{SLOTS_ENV}={raw!r}: give a whole number of training slots >= 0 (0: no cap), or unset it")
    return int(raw)


def slots_folder() -> Path:
    """The folder of this user's slot files: <temp dir>/sprkd-slots-<uid>."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"sprkd-slots-{user}"


class TrainingSlot:
    """One of the machine's training slots, held from `take()` until `release()` (or the process's end).
    `waited`: the seconds take() waited for it; `index`: which slot (None: no cap, or none needed)."""

    _held = 0  # slots this process holds: a run inside a run takes no second one

    def __init__(self) -> None:
        self.fd: int | None = None
        self.index: int | None = None
        self.waited = 0.0

    def take(self, count: int | None = None, *, check: Callable[[], None] | None = None,
             say: Callable[[str], None] | None = None, timeout: float | None = None,
             poll: float = SLOT_POLL_SECONDS) -> "TrainingSlot":
        """Take a free slot of `count` (default slot_count()), waiting while all are held: `say` hears one
        line when the wait starts, `check()` is called between tries (it may raise, e.g. Interrupted, to
        end the wait). TimeoutError after `timeout` seconds. Nothing is taken with a count of 0, where
        there is no flock (not POSIX), or when this process holds a slot already."""
        count = slot_count() if count is None else count
        try:
            import fcntl
        except ImportError:
            return self
        if count < 1 or TrainingSlot._held:
            return self
        folder = slots_folder()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fds = [os.open(folder / f"slot-{k}.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600) for k in range(count)]
        started, said = time.monotonic(), False
        try:
            while True:
                for k, fd in enumerate(fds):
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:  # held by another process (EWOULDBLOCK)
                        continue
                    self.fd, self.index = fds.pop(k), k
                    self.waited = time.monotonic() - started
                    os.ftruncate(self.fd, 0)
                    os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)  # for a waiting process's message
                    TrainingSlot._held += 1
                    return self
                if not said and say is not None:
                    pids = holders(count)
                    say(f"waiting for a free training slot ({count} of {count} held by sprkd processes on this "
                        f"machine{': pids ' + ', '.join(pids) if pids else ''}; --slots N or {SLOTS_ENV} sets how "
                        "many train at once, 0 for no cap)")
                said = True
                if check is not None:
                    check()
                if timeout is not None and time.monotonic() - started >= timeout:
                    raise TimeoutError(f"no free training slot of {count} in {timeout:g} s")
                time.sleep(poll)
        finally:
            for fd in fds:
                os.close(fd)

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            finally:
                os.close(self.fd)  # closing the file drops its flock
                self.fd = None
                TrainingSlot._held -= 1

    def __enter__(self) -> "TrainingSlot":
        return self

    def __exit__(self, *_exc) -> None:
        self.release()


def holders(count: int) -> list[str]:
    """The pids written in the first `count` slot files (a holder writes its own; a freed slot is emptied)."""
    pids = []
    for k in range(count):
        try:
            pid = (slots_folder() / f"slot-{k}.lock").read_text().strip()
        except OSError:
            continue
        if pid.isdigit():
            pids.append(pid)
    return pids
