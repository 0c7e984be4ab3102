"""Shared helpers for the runner's tests: tiny configs, the CLI in-process and as a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sprkd_cli.cli import app

# Tiny enough that one run takes a fraction of a second on one core.
DATA = "synthetic:n=200,features=8,classes=3"
DATA_4 = "synthetic:n=200,features=8,classes=4"
TEACHER_MODEL = "mlp:width=16,depth=1"
STUDENT_MODEL = "mlp:width=8,depth=1"
TRAIN = ["--epochs", "3", "--lr", "1e-2"]
TEACHER_ARGS = ["train-teacher", "--dataset", DATA, "--model", TEACHER_MODEL, *TRAIN]
STUDENT_ARGS = ["--dataset", DATA, "--student", STUDENT_MODEL, *TRAIN]
METRIC_NAMES = {("train", "loss"), ("val", "loss"), ("val", "acc"), ("test", "loss"), ("test", "acc")}

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Artifacts under the test's tmp dir; no store from the environment; cwd in tmp so nothing
    (such as a default ./runs.db) lands in the checkout."""
    monkeypatch.setenv("SPRKD_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.delenv("SPRKD_DB", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("SPRKD_NO_CAPS", "")  # `sprkd --no-caps` sets it in the process: undone after each test
    # no training slots (engine.threads): a test never waits for runs outside it, on a machine shared with
    # other work; tests/test_threads.py turns them on where it tests them
    monkeypatch.setenv("SPRKD_SLOTS", "0")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "runs.db"


# -- PostgreSQL --------------------------------------------------------------------------------------
# The store tests that take `store_url` run on SQLite and on PostgreSQL: $SPRKD_TEST_PG (a server URL
# without a database, as .ci/run starts one), else a throwaway server started here from the machine's
# binaries. Without either they are skipped, except where $SPRKD_REQUIRE_PG is set (CI), where that
# is a failure.

@pytest.fixture(scope="session")
def pg_server():
    url = os.environ.get("SPRKD_TEST_PG")
    if url:
        yield url
        return
    import shutil
    import tempfile

    import pgserver

    # not under pytest's tmp folders: as root, the server runs as `postgres`, which cannot enter them
    folder = Path(tempfile.mkdtemp(prefix="sprkd-pg-"))
    server = pgserver.start(folder)
    yield None if server is None else server.url
    if server is not None:
        server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server):
    """A new, empty database on the test server, dropped afterwards."""
    import uuid

    import psycopg

    if pg_server is None:
        if os.environ.get("SPRKD_REQUIRE_PG"):
            pytest.fail("SPRKD_REQUIRE_PG is set but no PostgreSQL server is available")
        pytest.skip("no PostgreSQL server binaries here (apt-get install postgresql; CI installs them)")
    admin = pg_server.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    name = f"sprkd_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"{pg_server}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """A store that does not exist yet: a SQLite file path, or a PostgreSQL database URL."""
    if request.param == "sqlite":
        return str(tmp_path / "runs.db")
    return request.getfixturevalue("pg_url")


def free_port_url() -> str:
    """A PostgreSQL URL where no server listens."""
    from pgserver import free_port

    return f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/nothing"


def sql(url: str, statement: str, params: dict | None = None) -> list:
    """Run one SQL statement on the store at `url` (either backend) and return its rows (if any)."""
    from sqlalchemy import create_engine, text

    from sprkd_cli.store.database import resolve_url

    engine = create_engine(resolve_url(str(url)))
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params or {})
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def sprkd(db: Path | str | None, *args: str):
    """Run `sprkd [--db DB] ARGS` in this process; stdout and stderr stay separate."""
    argv = (["--db", str(db)] if db is not None else []) + [str(a) for a in args]
    return CliRunner().invoke(app, argv)


def sprkd_json(db, *args: str):
    """Run a command with --json that must succeed; its stdout must be exactly one JSON document."""
    result = sprkd(db, *args, "--json")
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    assert result.stderr == "", result.stderr
    return json.loads(result.stdout)


def assert_user_error(result, *needles: str) -> str:
    """Exit code 2, nothing on stdout, one line on stderr (`error: ...`, besides progress lines) containing
    every needle, and no exception escaped (it would have been a traceback outside the test runner)."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = without_progress(result.stderr)  # progress lines may come before the error
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def train_teacher(db, *extra: str) -> dict:
    return sprkd_json(db, *TEACHER_ARGS, *extra)


def run_subprocess(db, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real entry point, `python -m sprkd_cli`, as a user would run it."""
    argv = [sys.executable, "-m", "sprkd_cli"] + (["--db", str(db)] if db is not None else []) + list(args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


PROGRESS_LINE = re.compile(r"^\[ *\d+s\] ")  # a progress line on stderr when it is not a terminal


def without_progress(stderr: str) -> list[str]:
    """The lines of `stderr` that are not progress lines."""
    return [line for line in stderr.strip().splitlines() if not PROGRESS_LINE.match(line)]


def open_test_store(db):
    from sprkd_cli.store import open_store

    return open_store(str(db))


def metric_rows(store, run_id: str) -> list[tuple]:
    return [(m.step, m.epoch, m.split, m.name, m.value) for m in store.metrics([run_id])]


# -- S3 (artifacts in object storage) ------------------------------------------------------------

@pytest.fixture(scope="session")
def s3_endpoint():
    """An S3-compatible server: $SPRKD_TEST_S3 (.ci/run starts moto's standalone server), else moto's server
    started here on a free localhost port (moto[server] is in the dev extra)."""
    pytest.importorskip("s3fs")
    if os.environ.get("SPRKD_TEST_S3"):
        yield os.environ["SPRKD_TEST_S3"]
        return
    moto_server = pytest.importorskip("moto.server")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint, monkeypatch, tmp_path):
    """A fresh bucket; SPRKD_ARTIFACTS points into it. The endpoint is given the way a user points
    botocore (and so s3fs) at an S3-compatible server: AWS_ENDPOINT_URL."""
    import uuid

    import boto3

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(name, value)
    name = f"sprkd-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    monkeypatch.setenv("SPRKD_ARTIFACTS", f"s3://{name}/sweep")
    yield name
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "runs").exists(), \
        "an artifact was written to the local disk"


def bucket_keys(bucket: str) -> set[str]:
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


# -- a small study: a saddle-tracked teacher, then compare with four arms (one of them kd again under
# another name, so that its runs belong to two arms), a --tune grid and Hessian reports ------------------

STUDY_ARMS = ("sgd", "kd", "kd2", "sprkd")


@pytest.fixture(scope="session")
def study(tmp_path_factory) -> Path:
    """The store of the study (runs.db; artifacts beside it), made once per session."""
    folder = tmp_path_factory.mktemp("study")
    db = folder / "runs.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPRKD_ARTIFACTS", str(folder / "runs"))
        patch.delenv("SPRKD_DB", raising=False)
        teacher = sprkd_json(db, *TEACHER_ARGS, "--track-saddles", "--saddle-every", "1", "--saddle-top-n", "8")
        assert teacher["status"] == "finished"
        result = sprkd(db, "compare", *STUDENT_ARGS, "--arm", "sgd", "--arm", "kd", "--arm", "kd2=kd", "--arm", "sprkd",
                       "--seeds", "0-1", "--tune", "lr=0.01,0.03", "--hessian", "--saddle-alpha", "0", "--json")
        assert result.exit_code == 0, (result.output, result.exception)
    return db


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest (and steadiest on a shared machine) on one thread; the count is put back after
    the module (use with pytestmark = pytest.mark.usefixtures("one_thread"))."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
