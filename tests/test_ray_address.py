"""compare --executor ray --ray-address HOST:PORT on a cluster started by `ray start --head` (a real
head, in its own process group, killed alone afterwards: `ray stop` would stop every Ray on the
machine). Ray 2.5x+ turns token authentication on at `ray start --head` when it finds a token; the
driver passes it from RAY_AUTH_TOKEN (or ~/.ray/auth_token, or RAY_AUTH_TOKEN_PATH). Ray's own log lines
stay off stderr; an unreachable cluster or a missing/wrong token is one line, within a bound.

TODO(two nodes, S3): a second `ray start --address=HEAD --num-cpus=1` in another cwd, with the
PostgreSQL store and, once h-i18a's S3 artifact roots land, an s3:// artifact root instead of the local
SPRKD_ARTIFACTS folder (a local root is only right while every node is this machine)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import STUDENT_ARGS, open_test_store, run_subprocess, train_teacher

ray = pytest.importorskip("ray")
RAY = str(Path(sys.executable).with_name("ray"))
PSYCOPG_NOISE = "using a closure in a dumps/loads"  # the PostgreSQL store's warning, not Ray's (not ours to fix here)
BOUND_SECONDS = 30  # an unreachable or unauthenticated cluster is one line within this


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    yield from start_head()


def start_head():
    """A Ray head (2 CPUs, no dashboard) with token authentication and its own token; yields
    (address, token). The workers import sprkd_cli from this checkout (PYTHONPATH)."""
    port, token = free_port(), secrets.token_hex(32)
    temp = tempfile.mkdtemp(prefix="rayh")  # short: Ray's unix sockets live under it
    home = tempfile.mkdtemp(prefix="rayhome")
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, HOME=home,
               PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen([RAY, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                             f"--temp-dir={temp}", "--node-ip-address=127.0.0.1", "--block"],
                            env=env, cwd=temp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None and time.monotonic() < deadline, "the Ray head did not start"
                time.sleep(0.5)
        yield f"127.0.0.1:{port}", token
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):  # this head's process group only
            try:
                os.killpg(head.pid, sig)
                head.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def driver_env(monkeypatch, tmp_path):
    """The driver as a user on another machine: no token anywhere until the test gives one."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ray/auth_token
    for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def one_line_error(result, *needles: str) -> str:
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip() and PSYCOPG_NOISE not in line]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.slow
def test_compare_on_a_cluster_by_address_with_its_token(ray_head, driver_env, pg_url):
    address, token = ray_head
    train_teacher(pg_url)
    driver_env.setenv("RAY_AUTH_TOKEN", token)  # RAY_AUTH_MODE unset: sprkd turns token mode on
    result = run_subprocess(pg_url, "compare", *STUDENT_ARGS, "--seeds", "0-1", "--executor", "ray",
                            "--ray-address", address, "--json", timeout=300)
    assert result.returncode == 0, result.stderr
    # no Ray log lines (psycopg's "closure in a dumps/loads" warning is the store's, not Ray's)
    assert not [line for line in result.stderr.splitlines() if "ray" in line.lower() or "gcs" in line.lower()], \
        result.stderr
    store = open_test_store(pg_url)
    assert sorted((r.method, r.seed, r.status) for r in store.list_runs(kind="student")) == [
        (m, s, "finished") for m in ("kd", "sgd") for s in (0, 1)]


def test_an_unreachable_address_is_one_line_at_once(driver_env, pg_url):
    train_teacher(pg_url)
    port = free_port()  # nothing listens there
    started = time.monotonic()
    result = run_subprocess(pg_url, "compare", *STUDENT_ARGS, "--seeds", "0", "--executor", "ray",
                            "--ray-address", f"127.0.0.1:{port}", timeout=120)
    assert time.monotonic() - started < BOUND_SECONDS
    one_line_error(result, f"cannot reach Ray at 127.0.0.1:{port}", "ray start --head")
    assert open_test_store(pg_url).list_runs(kind="student") == []


@pytest.mark.parametrize("token", [None, "wrong"])
def test_a_missing_or_wrong_token_is_one_line_naming_where_it_goes(ray_head, driver_env, pg_url, token):
    address, _ = ray_head
    train_teacher(pg_url)
    if token:
        driver_env.setenv("RAY_AUTH_TOKEN", token)
    started = time.monotonic()
    result = run_subprocess(pg_url, "compare", *STUDENT_ARGS, "--seeds", "0", "--executor", "ray",
                            "--ray-address", address, timeout=120)
    assert time.monotonic() - started < BOUND_SECONDS
    one_line_error(result, "needs its authentication token", "RAY_AUTH_TOKEN", "~/.ray/auth_token",
                   "a token that the cluster refused" if token else "no token")
    assert open_test_store(pg_url).list_runs(kind="student") == []
