"""compare --executor ray --ray-address HOST:PORT on a cluster started by `ray start --head` (a real
head, in its own process group, killed alone afterwards: `ray stop` would stop every Ray on the
machine). Ray 2.5x+ turns token authentication on at `ray start --head` when it finds a token; the
driver passes it from RAY_AUTH_TOKEN (or ~/.ray/auth_token, or RAY_AUTH_TOKEN_PATH). Ray's own log lines
stay off stderr; an unreachable cluster or a missing/wrong token is one line, within a bound.

Two nodes: a head and a second `ray start --address=HEAD` node, each in its own working directory, with
a PostgreSQL store and an s3:// artifact root (moto): compare over both nodes finishes, every artifact
reads back on the driver, and stats works."""

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

from conftest import STUDENT_ARGS, open_test_store, run_subprocess, train_teacher, without_progress

ray = pytest.importorskip("ray")
RAY = str(Path(sys.executable).with_name("ray"))
BOUND_SECONDS = 30  # an unreachable or unauthenticated cluster is one line within this


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    yield from start_head()


def start_head(extra_env: dict | None = None, cpus: int = 2):
    """A Ray head (`cpus` CPUs, no dashboard) with token authentication and its own token; yields
    (address, token, env). The workers import sprkd_cli from this checkout (PYTHONPATH); `extra_env` is
    what the node's tasks see besides (e.g. the object store's credentials)."""
    port, token = free_port(), secrets.token_hex(32)
    temp = tempfile.mkdtemp(prefix="rayh")  # short: Ray's unix sockets live under it
    home = tempfile.mkdtemp(prefix="rayhome")
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, HOME=home,
               PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p), **(extra_env or {}))
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen([RAY, "start", "--head", f"--port={port}", f"--num-cpus={cpus}",
                             "--include-dashboard=false", f"--temp-dir={temp}",
                             "--node-ip-address=127.0.0.1", "--block"],
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
        yield f"127.0.0.1:{port}", token, env
    finally:
        for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 20)):  # this head's process group only
            try:
                os.killpg(head.pid, sig)
                head.wait(timeout=grace)
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
    lines = [line for line in without_progress(result.stderr) if line.strip()]  # progress lines may come first
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


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
    address, _, _ = ray_head
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


@pytest.mark.slow
def test_two_nodes_with_postgresql_and_s3_artifacts(driver_env, pg_url, bucket, tmp_path):
    """A head (1 CPU) and a second node (1 CPU) started with `ray start --address`, each in its own working
    directory, both given the object store's credentials as a node of a cloud cluster has them; the
    driver's artifact root is the bucket. Runs land on both nodes, every artifact reads back on the
    driver, and stats works."""
    from sprkd_cli.services.loading import load_run_model

    s3_env = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                         "AWS_ENDPOINT_URL")}
    head = start_head(s3_env, cpus=1)
    address, token, env = next(head)
    worker_cwd = tmp_path / "node2"
    worker_cwd.mkdir()
    worker = subprocess.Popen([RAY, "start", f"--address={address}", "--num-cpus=1", "--node-ip-address=127.0.0.1",
                               "--block"], env=env, cwd=worker_cwd, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        driver_env.setenv("RAY_AUTH_TOKEN", token)
        deadline = time.monotonic() + 90
        while len([n for n in _nodes(address, token) if n]) < 2:
            assert worker.poll() is None and time.monotonic() < deadline, "the second Ray node did not join"
            time.sleep(1)
        train_teacher(pg_url)
        # RAY_AUTH_MODE unset: sprkd turns token mode on for the token in RAY_AUTH_TOKEN
        result = run_subprocess(pg_url, "compare", *STUDENT_ARGS, "--seeds", "0-2", "--executor", "ray",
                                "--ray-address", address, "--json", timeout=600)
        assert result.returncode == 0, result.stderr
        assert not [line for line in without_progress(result.stderr) if line.strip()], result.stderr  # no Ray log lines
        store = open_test_store(pg_url)
        students = store.list_runs(kind="student")
        assert sorted((r.method, r.seed, r.status) for r in students) == [
            (m, s, "finished") for m in ("kd", "sgd") for s in (0, 1, 2)]
        nodes = {e.payload.get("node_id") for r in students for e in store.events(r.id) if e.kind == "ray_task"}
        assert len(nodes) == 2, nodes  # both nodes trained
        for run in students:  # every run's weights read back from the bucket on the driver
            assert run.artifact_dir.startswith(f"s3://{bucket}/")
            load_run_model(store.get_run(run.id))
        assert not list(worker_cwd.iterdir())  # nothing written in the second node's working directory
        stats = run_subprocess(pg_url, "stats", "--methods", "sgd,kd", "--dataset", STUDENT_ARGS[1], "--json")
        assert stats.returncode == 0, stats.stderr
    finally:
        for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 20)):
            try:
                os.killpg(worker.pid, sig)
                worker.wait(timeout=grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        head.close()


def _nodes(address: str, token: str) -> list[bool]:
    """Whether each node of the cluster is alive, asked in a subprocess (ray.init in this process would stay)."""
    code = ("import ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
            "print(' '.join(str(n['Alive']) for n in ray.nodes()))" % address)
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    return [word == "True" for word in done.stdout.split()]
