"""Torch's thread count: --threads, SPRKD_THREADS, OMP_NUM_THREADS, else shared with the sprkd processes
training on the machine (engine.threads)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from sprkd_cli.cli import app
from sprkd_cli.engine import threads
from sprkd_cli.errors import UserError


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("SPRKD_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def _proc(root, pid: int, argv: list[str], parent: int = 1) -> None:
    d = root / str(pid)
    d.mkdir()
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (d / "stat").write_text(f"{pid} (py thon) S {parent} 1 1 0 -1")


def test_explicit_threads_order(no_env, monkeypatch):
    assert threads.explicit_threads() is None
    monkeypatch.setenv("OMP_NUM_THREADS", "3,2")
    assert threads.explicit_threads() == 3
    monkeypatch.setenv("SPRKD_THREADS", "5")
    assert threads.explicit_threads() == 5 and threads.choose_threads(jobs=4) == 5
    monkeypatch.setenv("SPRKD_THREADS", "two")
    with pytest.raises(UserError, match="SPRKD_THREADS='two'"):
        threads.explicit_threads()


def test_sprkd_trainers_counts_commands_and_compare_workers(tmp_path, monkeypatch):
    me = os.getpid()
    _proc(tmp_path, 10, ["/v/bin/python", "/v/bin/sprkd", "--db", "a.db", "distill", "--seed", "1"])
    _proc(tmp_path, 11, ["python", "-m", "sprkd_cli", "train-teacher"])
    _proc(tmp_path, 12, ["/v/bin/sprkd", "runs", "list"])  # not training
    _proc(tmp_path, 13, ["python", "train.py", "distill"])  # not sprkd
    _proc(tmp_path, 20, ["/v/bin/sprkd", "compare", "--jobs", "3"])
    for pid in (21, 22, 23):
        _proc(tmp_path, pid, ["python", "-c", "from multiprocessing.spawn import spawn_main", "--multiprocessing-fork"],
              parent=20)
    _proc(tmp_path, 24, ["python", "-c", "spawn_main", "--multiprocessing-fork"], parent=13)  # another program's worker
    # distill, train-teacher, compare's 3 workers, and this process (not among them)
    assert threads.sprkd_trainers(str(tmp_path)) == 6
    _proc(tmp_path, me, ["/v/bin/sprkd", "distill"])
    assert threads.sprkd_trainers(str(tmp_path)) == 6  # this process, counted once
    assert threads.sprkd_trainers(str(tmp_path / "missing")) == 1


def test_default_shares_the_cores(no_env, monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 8)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.3, 0.0, 0.0))
    monkeypatch.setattr(threads, "sprkd_trainers", lambda proc="/proc": 1)
    assert threads.choose_threads() == 8
    assert threads.choose_threads(jobs=3) == 2
    monkeypatch.setattr(threads, "sprkd_trainers", lambda proc="/proc": 4)
    assert threads.choose_threads() == 2
    monkeypatch.setattr(threads, "sprkd_trainers", lambda proc="/proc": 20)
    assert threads.choose_threads() == 1
    monkeypatch.setattr(threads, "sprkd_trainers", lambda proc="/proc": 1)
    monkeypatch.setattr(os, "getloadavg", lambda: (6.0, 0.0, 0.0))  # 5 cores busy beyond one
    assert threads.choose_threads() == 3


@pytest.mark.parametrize("value", ["0", "x", "-1"])
def test_bad_threads_flag_is_one_line(value, no_env, tmp_path):
    result = CliRunner().invoke(app, ["--db", str(tmp_path / "r.db"), "--threads", value, "runs", "list"])
    assert result.exit_code == 2
    expected = f"error: --threads (or SPRKD_THREADS) must be a whole number >= 1 (got '{value}')"
    assert result.output.strip().splitlines() == [expected]


def test_threads_flag_sets_the_run_threads(no_env, tmp_path, monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        runner = CliRunner()
        db = ["--db", str(tmp_path / "r.db")]
        result = runner.invoke(app, [*db, "--threads", "1", "train-teacher", "--dataset", "synthetic:n=120,classes=3",
                                     "--model", "mlp:width=8,depth=1", "--epochs", "1", "--json"])
        assert result.exit_code == 0, result.output
        assert '"threads": 1' in result.output and os.environ["SPRKD_THREADS"] == "1"
    finally:
        os.environ.pop("SPRKD_THREADS", None)
        torch.set_num_threads(before)


# -- training slots ----------------------------------------------------------------------------------

@pytest.fixture
def slots_here(tmp_path, monkeypatch):
    """The slot files in this test's tmp dir (for this process and, through TMPDIR, its children)."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("SPRKD_SLOTS", raising=False)
    monkeypatch.setattr(threads.TrainingSlot, "_said", False)
    return tmp_path / f"sprkd-slots-{os.getuid()}"


def _hold(path) -> int:
    """An exclusive flock on `path`, as another holder would have it (flock: per open file, so this
    process's own TrainingSlot contends with it)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_slot_is_taken_and_released(slots_here):
    import fcntl

    slot = threads.TrainingSlot().take(count=2)
    try:
        assert slot.index == 0 and slot.waited < 1
        assert (slots_here / "slot-0.lock").read_text() == f"{os.getpid()}\n"
        assert threads.holders(2) == [str(os.getpid())]
        inner = threads.TrainingSlot().take(count=2)  # a run inside a run: no second slot
        assert inner.index is None
        fd = os.open(slots_here / "slot-0.lock", os.O_RDWR)
        with pytest.raises(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        slot.release()
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
    os.close(fd)
    assert (slots_here / "slot-0.lock").read_text() == ""
    with threads.TrainingSlot().take(count=2) as again:
        assert again.index == 0
    assert threads.TrainingSlot._held == 0


def test_waits_while_every_slot_is_held_saying_so_once(slots_here):
    import threading

    fds = [_hold(slots_here / f"slot-{k}.lock") for k in range(2)]
    said, checks = [], []
    with pytest.raises(TimeoutError):
        threads.TrainingSlot().take(count=2, say=said.append, check=lambda: checks.append(1), timeout=0.3, poll=0.02)
    assert len(said) == 1
    assert said[0].startswith("waiting for a free training slot (2 held by sprkd processes on this machine")
    with pytest.raises(TimeoutError):  # a second wait of the process: not said again
        threads.TrainingSlot().take(count=2, say=said.append, timeout=0.1, poll=0.02)
    assert len(said) == 1
    assert len(checks) >= 2
    threading.Timer(0.3, os.close, [fds[1]]).start()  # the second holder ends
    slot = threads.TrainingSlot().take(count=2, poll=0.02, timeout=5)
    try:
        assert slot.index == 1 and 0.2 <= slot.waited < 5
    finally:
        slot.release()
        os.close(fds[0])


def test_a_dead_holders_slot_is_free(slots_here):
    script = ("import fcntl, os, sys, time; os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True); "
              "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); "
              "print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", script, str(slots_here / "slot-0.lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TimeoutError):  # another process holds the only slot: this one waits
            threads.TrainingSlot().take(count=1, timeout=0.3, poll=0.02)
        holder.kill()
        holder.wait()
        with threads.TrainingSlot().take(count=1, timeout=5, poll=0.02) as slot:
            assert slot.index == 0
    finally:
        holder.kill()
        holder.wait()


def test_no_cap_takes_no_slot(slots_here, monkeypatch):
    fd = _hold(slots_here / "slot-0.lock")
    try:
        monkeypatch.setenv("SPRKD_SLOTS", "0")
        assert threads.slot_count() == 0
        with threads.TrainingSlot().take(timeout=0.1) as slot:
            assert slot.index is None and slot.waited == 0
        monkeypatch.setenv("SPRKD_SLOTS", "1")
        with pytest.raises(TimeoutError):
            threads.TrainingSlot().take(timeout=0.1, poll=0.02)
    finally:
        os.close(fd)


def test_by_default_a_run_trains_beside_others_only_on_an_idle_core(slots_here, monkeypatch):
    assert threads.default_slots(held=0, total=2, idle=None) == 1  # at least one, whatever the load
    assert threads.default_slots(held=1, total=2, idle=0.9) == 2
    assert threads.default_slots(held=1, total=2, idle=0.3) == 1
    assert threads.default_slots(held=2, total=2, idle=1.8) == 2
    monkeypatch.setattr(threads, "cores", lambda: 2)
    fd = _hold(slots_here / "slot-1.lock")  # one run trains (in the higher slot)
    try:
        monkeypatch.setattr(threads.IdleCores, "__call__", lambda self: 0.1)  # other work keeps the cores busy
        said = []
        with pytest.raises(TimeoutError):  # slot 0 is free, but no core is idle
            threads.TrainingSlot().take(timeout=0.2, poll=0.02, say=said.append)
        assert "no more while no core of the 2 is idle" in said[0]
        monkeypatch.setattr(threads.IdleCores, "__call__", lambda self: 1.0)
        with threads.TrainingSlot().take(timeout=1, poll=0.02) as slot:
            assert slot.index == 0
    finally:
        os.close(fd)
    monkeypatch.setattr(threads.IdleCores, "__call__", lambda self: 0.0)
    with threads.TrainingSlot().take(timeout=1, poll=0.02) as slot:  # none held: one run trains, whatever the load
        assert slot.index == 0


def test_idle_cores_from_proc_stat(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    clock = [100.0]
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    idle = threads.IdleCores(str(stat))
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 ...\n")
    assert idle() is None  # nothing measured yet
    clock[0] += 0.5
    stat.write_text("cpu  250 0 150 900 0 0 0 0 0 0\n")  # 300 ticks more: 200 busy, 100 idle
    assert idle() == pytest.approx(100 / 300 * 4)
    assert threads.IdleCores(str(tmp_path / "missing"))() is None


def test_slots_option_and_its_errors(slots_here, tmp_path, monkeypatch):
    monkeypatch.setenv("SPRKD_SLOTS", "")
    assert threads.slot_count() == threads.cores()
    runner = CliRunner()
    db = ["--db", str(tmp_path / "r.db")]
    result = runner.invoke(app, [*db, "--slots", "0", "runs", "list"])
    assert result.exit_code == 0 and os.environ["SPRKD_SLOTS"] == "0"
    result = runner.invoke(app, [*db, "--slots", "x", "runs", "list"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --slots (or SPRKD_SLOTS) must be a whole number >= 0, 0 for no cap (got 'x')"]


def test_threads_shared_between_no_more_processes_than_slots(no_env, monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 8)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.3, 0.0, 0.0))
    monkeypatch.setattr(threads, "sprkd_trainers", lambda proc="/proc": 4)
    monkeypatch.setenv("SPRKD_SLOTS", "1")  # one trains at a time: it may take every core
    assert threads.choose_threads() == 8
    monkeypatch.setenv("SPRKD_SLOTS", "")  # the default, a slot per core: as without slots
    assert threads.choose_threads() == 2 and threads.choose_threads(jobs=16) == 1


def _train_teacher(tmp_path, epochs: int = 2, db: str = "r.db"):
    """train-teacher in this process, on one thread ($SPRKD_THREADS: set and undone by the callers'
    monkeypatch), torch's thread count put back afterwards."""
    import torch

    before = torch.get_num_threads()
    os.environ["SPRKD_THREADS"] = "1"
    try:
        return CliRunner().invoke(app, ["--db", str(tmp_path / db), "train-teacher", "--dataset",
                                        "synthetic:n=120,classes=3", "--model", "mlp:width=8,depth=1",
                                        "--epochs", str(epochs), "--json"])
    finally:
        torch.set_num_threads(before)


def test_a_run_waits_for_a_slot_outside_its_training_seconds_with_the_same_numbers(no_env, slots_here, tmp_path,
                                                                                   monkeypatch):
    import json
    import threading

    from sprkd_cli.services import training

    monkeypatch.setenv("SPRKD_THREADS", "1")
    monkeypatch.setenv("SPRKD_SLOTS", "1")
    fd = _hold(slots_here / "slot-0.lock")
    said = []

    def say(line):  # the run starts waiting: the holder ends half a second later
        said.append(line)
        threading.Timer(0.5, os.close, [fd]).start()

    monkeypatch.setattr(training, "_to_stderr", say)
    result = _train_teacher(tmp_path)
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["slot_wait_seconds"] >= 0.45 and outcome["wall_seconds"] >= outcome["slot_wait_seconds"]
    assert outcome["seconds"] < outcome["slot_wait_seconds"]  # the loop's own time leaves the wait out
    assert len(said) == 1
    assert said[0].startswith("waiting for a free training slot (1 held by sprkd processes on this machine; "
                              "--slots allows 1;")
    monkeypatch.setenv("SPRKD_SLOTS", "0")  # the same run without slots: the same numbers
    alone = json.loads(_train_teacher(tmp_path, db="r2.db").stdout)
    assert {k: alone[k] for k in ("final_train_loss", "best_val_loss", "test_acc")} == \
        {k: outcome[k] for k in ("final_train_loss", "best_val_loss", "test_acc")}
    assert alone["slot_wait_seconds"] == 0


def test_a_signal_while_waiting_ends_the_run_as_interrupted(no_env, slots_here, tmp_path, monkeypatch):
    import signal

    from sprkd_cli.services import training

    from conftest import open_test_store

    monkeypatch.setenv("SPRKD_THREADS", "1")
    monkeypatch.setenv("SPRKD_SLOTS", "1")
    monkeypatch.setattr(training, "_to_stderr", lambda line: os.kill(os.getpid(), signal.SIGTERM))  # once it waits
    fd = _hold(slots_here / "slot-0.lock")
    try:
        result = _train_teacher(tmp_path, epochs=1000)
    finally:
        os.close(fd)
    assert result.exit_code == 143, result.output
    [run] = open_test_store(tmp_path / "r.db").list_runs()
    assert run.status == "interrupted" and run.error == "interrupted by SIGTERM"


def _stat(path, user: int, idle: int) -> str:
    path.write_text(f"cpu  {user} 0 0 {idle} 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n")
    return str(path)


def test_free_cores_measured_since_the_command_started(no_env, tmp_path, monkeypatch):
    """Busy cores seen since mark_start count against the thread count at once (the load average trails
    by a minute); the command's own CPU time does not."""
    clock, own = [100.0], [5.0]
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(threads, "_own_cpu_seconds", lambda: own[0])
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(threads, "cores", lambda: 4)
    monkeypatch.setattr(threads, "sprkd_trainers", lambda proc="/proc": 1)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))  # the trailing average still says idle
    monkeypatch.setattr(threads, "_started", None)
    stat = tmp_path / "stat"
    threads.mark_start(_stat(stat, user=0, idle=0))
    # 2 s later: of 4 cores x 2 s (800 jiffies), this process kept one busy and other work two
    clock[0], own[0] = 102.0, 7.0
    _stat(stat, user=600, idle=200)
    assert threads.measured_free_cores(str(stat)) == pytest.approx(2.0)
    monkeypatch.setattr(threads, "measured_free_cores", lambda stat="/proc/stat": 2.0)
    assert threads.free_cores() == 2 and threads.choose_threads() == 2


def test_free_cores_falls_back_to_the_load_average(no_env, tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 8)
    monkeypatch.setattr(os, "getloadavg", lambda: (6.0, 0.0, 0.0))
    monkeypatch.setattr(threads, "_started", None)  # no mark_start: not started through sprkd's main
    assert threads.measured_free_cores() is None and threads.free_cores() == 3
    clock = [50.0]
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock[0])
    threads.mark_start(_stat(tmp_path / "stat", user=0, idle=0))
    clock[0] = 50.1  # too short a window to measure
    assert threads.measured_free_cores(str(tmp_path / "stat")) is None and threads.free_cores() == 3
    threads.mark_start(str(tmp_path / "missing"))  # no /proc/stat (not Linux)
    clock[0] = 60.0
    assert threads.measured_free_cores() is None and threads.free_cores() == 3


def _busy_proc(root, pid: int, argv: list[str], ticks: int) -> None:
    """A /proc/<pid> whose stat holds `ticks` of CPU time (utime; stime 0)."""
    d = root / str(pid)
    d.mkdir(exist_ok=True)
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (d / "stat").write_text(f"{pid} (py thon) R 1 1 1 0 -1 0 0 0 0 0 {ticks} 0 0 0 20 0")


def test_sprkd_starting_counts_busy_sprkd_processes_outside_slots(tmp_path, monkeypatch):
    distill = ["/v/bin/sprkd", "distill", "--seed", "1"]
    clock = [100.0]
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(threads.os, "sysconf", lambda name: 100)
    ticks = {10: 50, 11: 50, 12: 50, 13: 50}  # 10 starts up, 11 trains in a slot, 12 is not sprkd, 13 waits
    argv = {10: distill, 11: distill, 12: ["python", "train.py"], 13: distill}

    def write():
        for pid, t in ticks.items():
            _busy_proc(tmp_path, pid, argv[pid], t)

    def sleep(seconds):  # the first call's window: 10, 11 and 12 each keep a core busy
        clock[0] += seconds
        for pid in (10, 11, 12):
            ticks[pid] += int(seconds * 100)
        write()

    monkeypatch.setattr(threads.time, "sleep", sleep)
    write()
    starting = threads.SprkdStarting(str(tmp_path))
    assert starting(holders=["11"]) == 1  # 10; 11 holds a slot, 12 is another program, 13 sleeps
    clock[0] += 1.0
    ticks[10] += 10  # a tenth of a core: it waits for a slot now
    write()
    assert starting(holders=["11"]) == 0
    assert threads.SprkdStarting(str(tmp_path / "missing"))(holders=[]) == 0


def test_a_run_waits_for_other_sprkd_commands_starting_on_busy_cores(slots_here, monkeypatch):
    """With none training, a run waits (at most the grace) while other sprkd commands start and no core is
    idle; a second run never trains beside another while they start; without them it takes its slot."""
    monkeypatch.setattr(threads, "cores", lambda: 2)
    others = [1]
    monkeypatch.setattr(threads.SprkdStarting, "__call__", lambda self, holders: others[0])
    monkeypatch.setattr(threads.IdleCores, "__call__", lambda self: 0.2)
    with pytest.raises(TimeoutError):
        threads.TrainingSlot().take(timeout=0.2, poll=0.02, starting_grace=10)
    started = threads.time.monotonic()
    with threads.TrainingSlot().take(timeout=5, poll=0.02, starting_grace=0.1) as slot:  # the grace ends
        assert slot.index == 0 and threads.time.monotonic() - started >= 0.1
    monkeypatch.setattr(threads.IdleCores, "__call__", lambda self: 1.0)  # a core idle: no need to wait
    with threads.TrainingSlot().take(timeout=0.2, poll=0.02, starting_grace=10) as slot:
        assert slot.index == 0
    fd = _hold(slots_here / "slot-1.lock")  # one run trains: the idle core would allow a second
    try:
        with pytest.raises(TimeoutError):
            threads.TrainingSlot().take(timeout=0.2, poll=0.02, starting_grace=10)
        others[0] = 0
        with threads.TrainingSlot().take(timeout=0.5, poll=0.02, starting_grace=10) as slot:
            assert slot.index == 0
    finally:
        os.close(fd)


def test_a_compare_worker_does_not_wait_for_its_own_compare(tmp_path, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(threads.os, "sysconf", lambda name: 100)
    monkeypatch.setattr(threads.os, "getpid", lambda: 22)
    monkeypatch.setattr(threads.os, "getppid", lambda: 20)
    worker = ["python", "-c", "from multiprocessing.spawn import spawn_main", "--multiprocessing-fork"]
    procs = {20: (["/v/bin/sprkd", "compare", "--jobs", "2"], 1), 21: (worker, 20), 22: (worker, 20),
             10: (["/v/bin/sprkd", "distill"], 1)}
    ticks = {pid: 50 for pid in procs}

    def write():
        for pid, (argv, parent) in procs.items():
            d = tmp_path / str(pid)
            d.mkdir(exist_ok=True)
            (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
            (d / "stat").write_text(f"{pid} (python) R {parent} 1 1 0 -1 0 0 0 0 0 {ticks[pid]} 0 0 0 20 0")

    def sleep(seconds):  # every one of them busy
        clock[0] += seconds
        for pid in ticks:
            ticks[pid] += int(seconds * 100)
        write()

    monkeypatch.setattr(threads.time, "sleep", sleep)
    write()
    assert threads.SprkdStarting(str(tmp_path))(holders=[]) == 1  # the other command, not its compare or sibling
