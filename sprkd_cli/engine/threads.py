"""How many CPU threads torch uses in a process that trains or measures.

In order: `--threads N` (a global option, passed on as $SPRKD_THREADS to compare's worker processes),
$SPRKD_THREADS, $OMP_NUM_THREADS; otherwise the cores this process may use, shared between the sprkd
processes training on the machine when it starts (this one included, a `compare --jobs J` counting as
its J workers) and between `jobs` worker processes of one compare, and no more than the cores the
machine's other work leaves free (free_cores: measured over the seconds since the command started, when it
imported and loaded its data, else from the 1-minute load average). On a machine where several
`sprkd distill ... &` run at once, each then takes its share instead of every one taking every core:
torch's threads spin-wait for each other, and oversubscribed they slow a small model's step by an
order of magnitude.

The count is chosen when a command's work starts (for its loading and a teacher's pass) and again when
a CPU run starts training, after it has taken its training slot (reset_threads), and the run records the
latter (its summary's `threads`): torch's CPU reductions may split their sums by thread, so the last digits of a run can
depend on its thread count; `--threads N` repeats a run's count.

Training slots. Fewer threads per process still leave several one-thread runs sharing each core when more
runs train than there are cores free, and then every run's epochs take longer. So a run takes a training
slot on the machine before its training loop starts (and holds it until the loop ends), waiting while
none may be taken: with `--slots N` (a global option, passed on as $SPRKD_SLOTS to compare's workers) or
$SPRKD_SLOTS, one of N (0: no cap, nothing taken); by default one of the cores', and beside the runs
already holding one only while a core is idle (default_slots), so that on a machine busy with other work
one run trains at a time and on an idle one a run per core. By default, too, a run does not start training
while other sprkd commands are busy outside a slot (starting up: imports, loading data; SprkdStarting)
and no core is idle for it, nor beside another training run while they are, for at most STARTING_GRACE
seconds: a shell loop's commands start together, and the first to finish starting would otherwise train
beside the others' start-ups. A slot is an exclusive flock on a file of a
per-user folder under the temp dir (`slots_folder()`), so the kernel frees it when its process ends,
however it ends. The thread count above divides the cores between no more processes than the slots, since
no more train at once. Importable without torch.
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
STARTING_GRACE = 5.0  # the most a run waits, none training, while other sprkd commands start on busy cores
IDLE_WINDOW = 1.0  # seconds of CPU time over which a waiting process measures the idle cores
IDLE_MIN_WINDOW = 0.3  # and the least it measures before it takes a slot beside another run
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


def _stat(proc: str, pid: str) -> list[str]:
    """The fields of /proc/<pid>/stat after "pid (comm) ": state, ppid, ... (none when unreadable)."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return text[text.rfind(")") + 2:].split()


def _parent(proc: str, pid: str) -> str | None:
    fields = _stat(proc, pid)
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


class SprkdStarting:
    """How many other sprkd training commands and compare workers on this machine used a CPU since the last
    call (more than a fifth of a core: starting up, loading data, a teacher's pass, or other work outside a
    training slot), the holders of training slots aside, and for a compare worker its own compare and
    that compare's other workers (they take turns through `--jobs`). The first call measures over
    FIRST_WINDOW seconds (none where no other sprkd process is there). 0 where there is no /proc. One
    waiting for a slot sleeps and uses none."""

    FIRST_WINDOW = 0.05

    def __init__(self, proc: str = "/proc"):
        self.proc = proc
        self.last: tuple[float, dict[str, int]] | None = None
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        # a compare worker does not wait for its own compare: the compare and its other workers
        self.family = str(os.getppid()) if WORKER_FLAG in _cmdline(proc, str(os.getpid())) else None

    def _sample(self) -> tuple[float, dict[str, int]]:
        """(now, utime + stime ticks of each other sprkd training process)."""
        try:
            pids = [p for p in os.listdir(self.proc) if p.isdigit() and p != str(os.getpid())]
        except OSError:
            pids = []
        ticks = {}
        for pid in pids:
            argv = _cmdline(self.proc, pid)
            if is_training_command(argv) or WORKER_FLAG in argv:
                fields = _stat(self.proc, pid)
                parent = fields[1] if len(fields) > 1 else None
                if self.family is not None and self.family in (pid, parent):
                    continue
                if len(fields) > 12 and fields[11].isdigit() and fields[12].isdigit():
                    ticks[pid] = int(fields[11]) + int(fields[12])
        return time.monotonic(), ticks

    def __call__(self, holders: list[str]) -> int:
        if self.last is None:
            self.last = self._sample()
            if not self.last[1]:
                return 0
            time.sleep(self.FIRST_WINDOW)
        (before, old), (now, ticks) = self.last, self._sample()
        self.last = (now, ticks)
        least = 0.2 * max(now - before, 1e-3) * self.tick
        return sum(1 for pid, t in ticks.items() if pid not in holders and pid in old and t - old[pid] > least)


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
    """The cores the machine's other work leaves free, at least 1: measured since the command started
    (measured_free_cores) where it can be, else the cores less the 1-minute load average beyond one (one for
    the process that ran just before this one in a sequential loop), rounded; all of them where the system
    reports neither."""
    measured = measured_free_cores()
    if measured is not None:
        return max(1, min(cores(), int(measured + 0.5)))
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return cores()
    return max(1, int(cores() - max(0.0, load - 1.0) + 0.5))


_started: tuple[float, list[int], float] | None = None  # mark_start(): (monotonic, /proc/stat's cpu line, own CPU s)


def _cpu_line(stat: str) -> list[int] | None:
    try:
        with open(stat) as f:
            return [int(v) for v in f.readline().split()[1:]]  # "cpu  user nice system idle iowait ..."
    except (OSError, ValueError):
        return None


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def mark_start(stat: str = "/proc/stat") -> None:
    """Note the machine's CPU counters and this process's CPU time as a command starts (cli.main), so that
    its thread count can be chosen from what the machine did while the command imported and loaded, not
    from the load average, which trails other work by a minute."""
    global _started
    line = _cpu_line(stat)
    _started = None if line is None else (time.monotonic(), line, _own_cpu_seconds())


def measured_free_cores(stat: str = "/proc/stat") -> float | None:
    """The cores left to this process since mark_start(): the machine's idle cores over that time plus the
    cores this process kept busy itself (its imports and loading), so other work that keeps cores busy,
    another sprkd command's included, counts against them. None without mark_start(), without /proc/stat
    (not Linux), or before IDLE_MIN_WINDOW seconds have passed."""
    if _started is None:
        return None
    since, first, own = _started
    line = _cpu_line(stat)
    elapsed = time.monotonic() - since
    if line is None or elapsed < IDLE_MIN_WINDOW:
        return None
    total = sum(line) - sum(first)
    if total <= 0:
        return None
    idle = (sum(line[3:5]) - sum(first[3:5])) / total * (os.cpu_count() or 1)  # idle and iowait
    return idle + (_own_cpu_seconds() - own) / elapsed


_jobs = 1  # the last set_threads call's jobs, which reset_threads keeps


def set_threads(jobs: int = 1) -> int:
    """torch.set_num_threads(choose_threads(jobs)); returns the count."""
    import torch

    global _jobs
    _jobs = jobs
    threads = choose_threads(jobs)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def reset_threads() -> int:
    """set_threads again, for the jobs of the last call: when a run starts training, after it has loaded and
    waited for its slot, what the machine does may have changed since the command chose its count."""
    return set_threads(_jobs)


# -- training slots ----------------------------------------------------------------------------------

def slot_setting() -> int | None:
    """$SPRKD_SLOTS (set by --slots too): how many sprkd processes train at once on this machine, 0 for
    no cap; None when unset (the default: see default_slots)."""
    raw = os.environ.get(SLOTS_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise UserError(f"{SLOTS_ENV}={raw!r}: give a whole number of training slots >= 0 (0: no cap), or unset it")
    return int(raw)


def slot_count() -> int:
    """The most sprkd processes that train at once on this machine: --slots, $SPRKD_SLOTS, else the cores
    this process may use (0: no cap)."""
    setting = slot_setting()
    return cores() if setting is None else setting


class IdleCores:
    """The machine's idle cores, measured over the last IDLE_WINDOW seconds of calls (Linux's /proc/stat);
    None until IDLE_MIN_WINDOW seconds have been measured, or where there is no /proc/stat."""

    def __init__(self, stat: str = "/proc/stat"):
        self.stat = stat
        self.samples: list[tuple[float, list[int]]] = []

    def __call__(self) -> float | None:
        fields = _cpu_line(self.stat)
        if fields is None:
            return None
        now = time.monotonic()
        self.samples.append((now, fields))
        while len(self.samples) > 2 and now - self.samples[1][0] >= IDLE_WINDOW:
            self.samples.pop(0)
        since, first = self.samples[0]
        total = sum(fields) - sum(first)
        if now - since < IDLE_MIN_WINDOW or total <= 0:
            return None
        idle = sum(fields[3:5]) - sum(first[3:5])  # idle and iowait
        return idle / total * (os.cpu_count() or 1)


def default_slots(held: int, total: int, idle: float | None) -> int:
    """The default's slots at this moment: the `held` ones, and one more for each core left idle (`idle`,
    IdleCores: the waiting processes sleep, so what keeps the cores busy is the runs holding slots and
    any other work); at least one, at most `total` (the cores this process may use). On an idle machine
    every core trains, and `compare --jobs J` with J up to the cores is never held back; where other work
    keeps the cores busy, fewer runs train at once, so that each keeps a core to itself."""
    extra = int(idle + 0.25) if idle is not None else 0
    return max(1, min(total, held + extra))


def slots_folder() -> Path:
    """The folder of this user's slot files: <temp dir>/sprkd-slots-<uid>."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"sprkd-slots-{user}"


class TrainingSlot:
    """One of the machine's training slots, held from `take()` until `release()` (or the process's end).
    `waited`: the seconds take() waited for it; `index`: which slot (None: no cap, or none needed)."""

    _held = 0  # slots this process holds: a run inside a run takes no second one
    _said = False  # whether this process has said it waits

    def __init__(self) -> None:
        self.fd: int | None = None
        self.index: int | None = None
        self.waited = 0.0

    def take(self, count: int | None = None, *, check: Callable[[], None] | None = None,
             say: Callable[[str], None] | None = None, timeout: float | None = None,
             poll: float = SLOT_POLL_SECONDS, starting_grace: float = STARTING_GRACE) -> "TrainingSlot":
        """Take a free slot, waiting while none may be taken: one of `count` (default --slots or
        $SPRKD_SLOTS), else (the default) one of the cores' slots while default_slots() allows one more.
        By default it also waits, at most `starting_grace` seconds, while other sprkd commands are busy
        outside a slot, when no core is idle or another run trains (see the module's docstring).
        `say` hears one line when a wait for a held slot starts (the first of the process only); `check()` is called
        between tries (it may raise, e.g. Interrupted, to end the wait). TimeoutError after `timeout`
        seconds. Nothing is taken with a count of 0, where there is no flock (not POSIX), or when this
        process holds a slot already (a run inside a run)."""
        fixed = slot_setting() if count is None else count
        total = cores() if fixed is None else fixed
        try:
            import fcntl
        except ImportError:
            return self
        if total < 1 or TrainingSlot._held:
            return self
        folder = slots_folder()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        fds = {k: os.open(folder / f"slot-{k}.lock", flags, 0o600) for k in range(total)}
        started, said, idle, starting = time.monotonic(), False, IdleCores(), SprkdStarting()
        try:
            while True:
                free, held = [], 0
                for k, fd in fds.items():
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        free.append(k)
                    except OSError:  # held by another process (EWOULDBLOCK)
                        held += 1
                idle_now = idle() if fixed is None else None
                allowed = total if fixed is not None else default_slots(held, total, idle_now if held else None)
                keep = free[0] if free and held < allowed else None
                # Other sprkd commands busy outside a slot (starting up, loading) take cores from a run that
                # trains now: it waits for them (at most starting_grace), when no core is idle for it, and
                # always before it trains beside another run.
                others = 0
                if keep is not None and fixed is None and time.monotonic() - started < starting_grace:
                    others = starting(holders(total))
                if others and (held or (idle_now or 0.0) < 0.75):
                    keep = None  # unlocked with the other free ones below
                for k in free:
                    if k != keep:
                        fcntl.flock(fds[k], fcntl.LOCK_UN)
                if keep is not None:
                    self.fd, self.index = fds.pop(keep), keep
                    self.waited = time.monotonic() - started
                    os.ftruncate(self.fd, 0)
                    os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)  # for a waiting process's message
                    TrainingSlot._held += 1
                    return self
                if not said and say is not None and not TrainingSlot._said and held:  # not the starting grace
                    pids = holders(total)
                    room = (f"--slots allows {total}" if fixed is not None else
                            f"no more while no core of the {total} is idle")
                    say(f"waiting for a free training slot ({held} held by sprkd processes on this machine"
                        f"{': pids ' + ', '.join(pids) if pids else ''}; {room}; --slots N or {SLOTS_ENV} sets how "
                        "many train at once, 0 for no cap)")
                    TrainingSlot._said = True  # once per process (a compare worker waits before many runs)
                    said = True
                if check is not None:
                    check()
                if timeout is not None and time.monotonic() - started >= timeout:
                    raise TimeoutError(f"no free training slot in {timeout:g} s")
                time.sleep(poll)
        finally:
            for fd in fds.values():
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
        if pid.isdigit() and _alive(int(pid)):
            pids.append(pid)
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's
        pass
    return True
