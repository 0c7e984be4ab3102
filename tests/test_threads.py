"""Torch's thread count: --threads, SPRKD_THREADS, OMP_NUM_THREADS, else shared with the sprkd processes
training on the machine (engine.threads)."""

from __future__ import annotations

import os

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
    assert result.output.strip().splitlines() == [f"error: --threads (or SPRKD_THREADS) must be a whole number >= 1 (got '{value}')"]


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
