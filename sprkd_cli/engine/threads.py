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
depend on its thread count; `--threads N` repeats a run's count. Importable without torch.
"""

from __future__ import annotations

import os

from ..errors import UserError

ENV = "SPRKD_THREADS"
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
