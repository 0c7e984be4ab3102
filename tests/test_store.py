"""The result store: created at the Alembic head, refuses unknown (newer) schemas, and keeps every
row when several processes write one SQLite file at once."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from sprkd_cli.services.lifecycle import this_process

from conftest import (
    DATA,
    METRIC_NAMES,
    REPO,
    TEACHER_MODEL,
    assert_user_error,
    open_test_store,
    sprkd,
    sprkd_json,
    sql,
    train_teacher,
)


def alembic_head() -> str:
    """The newest revision in migrations/, read by Alembic itself from the files."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(REPO / "migrations"))
    heads = ScriptDirectory.from_config(cfg).get_heads()
    assert len(heads) == 1, heads
    return heads[0]


def versions(url) -> list[str]:
    return [row[0] for row in sql(url, "SELECT version_num FROM alembic_version")]


def tables(url) -> set[str]:
    from sqlalchemy import create_engine, inspect

    from sprkd_cli.store.database import resolve_url

    engine = create_engine(resolve_url(str(url)))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_fresh_store_is_created_at_alembic_head(store_url):
    from sprkd_cli.store.schema import Base

    db = store_url
    assert not tables(db)
    result = sprkd(db, "runs", "list", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    assert versions(db) == [alembic_head()]
    assert set(Base.metadata.tables) | {"alembic_version"} == tables(db)
    # the migrations build exactly the columns the models declare
    from sqlalchemy import inspect

    inspector = inspect(open_test_store(db).engine)
    for name, table in Base.metadata.tables.items():
        assert {c["name"] for c in inspector.get_columns(name)} == set(table.columns.keys()), name
    # opening again changes nothing
    open_test_store(db)
    assert versions(db) == [alembic_head()]


def test_the_fast_path_knows_alembics_head():
    """A store at SCHEMA_HEAD opens without Alembic: the constant must be Alembic's head."""
    from sprkd_cli.store.database import SCHEMA_HEAD

    assert SCHEMA_HEAD == alembic_head()


def test_reading_commands_load_no_torch_and_no_alembic_on_a_current_store(db):
    train_teacher(db)
    code = ("import sys; from typer.testing import CliRunner; from sprkd_cli.cli import app; "
            f"r = CliRunner().invoke(app, ['--db', {str(db)!r}, *sys.argv[1:]]); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'alembic') if m in sys.modules))")
    for args in (["stats", "--methods", "sgd,kd", "--json"], ["runs", "list", "--json"], ["runs", "list"]):
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().splitlines()[-1] == "[]", (args, out.stdout)


def test_the_artifact_root_is_the_stores_own_setting(db, tmp_path, monkeypatch):
    """A Store's artifact root is its parameter (compare hands it to its workers and Ray tasks as one);
    $SPRKD_ARTIFACTS is read where a store is opened, and --artifacts leaves the environment alone."""
    import os

    from sprkd_cli.store import Store, open_store, store_url

    monkeypatch.setenv("SPRKD_ARTIFACTS", str(tmp_path / "from-env"))
    assert Store(store_url(str(db)), str(tmp_path / "given")).artifact_root == tmp_path / "given"
    assert Store(store_url(str(db))).artifact_root == db.parent / "runs"  # the default beside the SQLite file
    assert open_store(str(db)).artifact_root == tmp_path / "from-env"
    assert open_store(str(db), str(tmp_path / "flag")).artifact_root == tmp_path / "flag"
    assert sprkd(db, "--artifacts", str(tmp_path / "flag"), "runs", "list").exit_code == 0
    assert os.environ["SPRKD_ARTIFACTS"] == str(tmp_path / "from-env")


def test_metric_at_reads_one_metric_at_given_epochs(store_url):
    store = open_test_store(store_url)
    ids = []
    for seed in range(3):
        run = store.create_run(kind="student", method="kd", dataset=DATA, model="m", seed=seed, config={},
                               config_hash="h", teacher_ids=[], provenance={}, device="cpu",
                               process=this_process())
        store.add_metrics(run.id, [(e * 10, e, "test", "acc", seed + e / 10) for e in (1, 2)]
                          + [(e * 10, e, "val", "acc", -1.0) for e in (1, 2)])
        ids.append(run.id)
    everything = [(i, e) for i in ids for e in (1, 2)]
    assert store.metric_at(everything, "test", "acc") == {(ids[s], e): s + e / 10 for s in range(3) for e in (1, 2)}
    assert store.metric_at([(ids[0], 2), (ids[2], 1), (ids[1], 9)], "test", "acc") == {(ids[0], 2): 0.2,
                                                                                      (ids[2], 1): 2.1}
    assert store.metric_at(everything[:1], "train", "loss") == {}
    assert store.get_run(ids[0]).heartbeat_at is not None


def test_empty_file_is_initialised(db):
    db.write_bytes(b"")
    assert sprkd_json(db, "runs", "list") == []
    assert versions(db) == [alembic_head()]


def test_store_from_a_newer_sprkd_is_refused(store_url):
    db = store_url
    train_teacher(db)
    sql(db, "UPDATE alembic_version SET version_num = 'f00dfacecafe'")
    for args in (["runs", "list"], ["runs", "list", "--json"], ["train-teacher", "--dataset", DATA]):
        assert_user_error(sprkd(db, *args), "f00dfacecafe", "newer sprkd")
    assert versions(db) == ["f00dfacecafe"]  # left alone: not "upgraded", not stamped
    assert sql(db, "SELECT count(*) FROM runs") == [(1,)]


def test_store_from_a_newer_sprkd_is_refused_by_the_real_entry_point(db):
    open_test_store(db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'f00dfacecafe'")
    done = subprocess.run([sys.executable, "-m", "sprkd_cli", "--db", str(db), "runs", "list"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and "f00dfacecafe" in done.stderr


# One process that opens a store at a given moment (time.time()), through the real CLI.
FIRST_OPEN = """
import sys, time
from sprkd_cli.cli import app

url, at = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, at - time.time()))
app(["--db", url, "runs", "list", "--json"])
"""


@pytest.mark.slow
def test_eight_processes_opening_a_new_store_at_once_all_find_it_current(store_url):
    """The schema check and its upgrade happen under the migration lock: of 8 processes opening a store
    that does not exist yet at the same moment, none finds it half made (sprkd's tables without a
    revision), and it ends at the head."""
    import time

    at = time.time() + 3  # every process imported and waiting by then (a late one only makes it less of a race)
    procs = [subprocess.Popen([sys.executable, "-c", FIRST_OPEN, store_url, str(at)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        said = [line for line in err.splitlines() if not line.startswith("waiting for")]  # a slow machine's waits
        assert proc.returncode == 0 and out == "[]\n" and said == [], (proc.returncode, out, err)
    assert versions(store_url) == [alembic_head()]


# One process, from a given moment (time.time()), `sprkd train-teacher --json` commands in a row, through
# the real CLI.
SWEEP = """
import sys, time
from sprkd_cli.cli import app

url, data, at, seeds = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]
time.sleep(max(0.0, at - time.time()))
for seed in seeds:
    try:
        app(["--db", url, "train-teacher", "--dataset", data, "--model", "mlp:width=16,depth=1", "--epochs", "3",
             "--batch-size", "16", "--lr", "1e-2", "--seed", seed, "--json"])
    except SystemExit as exc:
        if exc.code:
            raise
"""


@pytest.mark.slow
def test_four_processes_of_two_runs_each_on_one_new_store_lose_nothing(store_url):
    """A sweep as researchers run it: 4 processes started at the same moment on a store that does not exist
    yet (all upgrade it together), each training 2 runs one after another: 8 finished runs with every
    epoch's metrics, no 'database is locked' anywhere, and runs of the same seed in different processes
    with identical numbers. (8 processes opening a new store at once: the test above.)"""
    import time

    seeds = [[str((2 * p + k) % 4) for k in range(2)] for p in range(4)]  # each of 4 seeds twice
    at = time.time() + 3
    procs = [subprocess.Popen([sys.executable, "-c", SWEEP, store_url, DATA, str(at), *s], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for s in seeds]
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "locked" not in out + err and "Traceback" not in out + err, err
        outcomes += [json.loads(line) for line in out.splitlines()]
    assert len(outcomes) == 8 and {o["status"] for o in outcomes} == {"finished"}
    store = open_test_store(store_url)
    runs = store.list_runs()
    assert {r.id for r in runs} == {o["run_id"] for o in outcomes} and len({r.pid for r in runs}) == 4
    assert versions(store_url) == [alembic_head()]
    rows = store.metrics([r.id for r in runs])
    assert len(rows) == 8 * 3 * len(METRIC_NAMES)
    assert {(m.run_id, m.epoch, m.split, m.name) for m in rows} == {
        (r.id, e, s, n) for r in runs for e in (1, 2, 3) for s, n in METRIC_NAMES}
    by_seed: dict[int, list] = {}
    for run in runs:
        assert len(store.predictions(run.id)) == run.config["data"]["n_test"]
        by_seed.setdefault(run.seed, []).append([(m.step, m.split, m.name, m.value)
                                                 for m in rows if m.run_id == run.id])
    assert sorted(by_seed) == list(range(4))
    assert all(len(v) == 2 and v[0] == v[1] for v in by_seed.values())  # same seed, other process: identical
    assert by_seed[0][0] != by_seed[1][0]


def test_db_from_environment_variable(tmp_path, monkeypatch):
    path = tmp_path / "from-env.db"
    monkeypatch.setenv("SPRKD_DB", str(path))
    assert sprkd_json(None, "runs", "list") == []
    assert versions(path) == [alembic_head()]
    assert not (tmp_path / "runs.db").exists()


def test_run_lookup_by_prefix(store_url):
    from sprkd_cli.errors import UserError

    db = store_url
    teacher = train_teacher(db)
    store = open_test_store(db)
    run = store.get_run(teacher["run_id"][:4])
    assert run.id == teacher["run_id"]
    assert run.config["data"]["n_classes"] == 3 and run.config["model"] == TEACHER_MODEL
    assert run.git_commit is None or len(run.git_commit) == 40
    assert run.versions["sprkd"] and run.versions["torch"]
    with pytest.raises(UserError, match="no run"):
        store.get_run("zz")
    # an ambiguous prefix: the empty prefix matches every run once there are two
    train_teacher(db, "--seed", "1")
    with pytest.raises(UserError, match="ambiguous"):
        store.get_run("")


def test_an_unreachable_postgresql_server_is_one_line(tmp_path):
    from conftest import free_port_url

    line = assert_user_error(sprkd(free_port_url(), "runs", "list"), "cannot use the store")
    assert "127.0.0.1" in line


def test_a_silent_postgresql_server_is_one_line_after_one_connect_timeout(monkeypatch):
    """A server that accepts and never answers: the connect timeout, once (not once per schema check)."""
    import socket
    import time

    import sprkd_cli.store.database as database

    monkeypatch.setattr(database, "PG_CONNECT_TIMEOUT_S", 2)  # libpq's smallest
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"postgresql+psycopg://nobody@127.0.0.1:{silent.getsockname()[1]}/nothing"
        started = time.monotonic()
        assert_user_error(sprkd(url, "runs", "list"), "cannot use the store", "timeout")
        assert time.monotonic() - started < 3.9


@pytest.mark.parametrize("url", ["postgresql+psycopg://alice:s3cretpw@127.0.0.1:1/x", "foo://alice:s3cretpw@host/db",
                                 "postgresql+psycopg://alice:s3cretpw@127.0.0.1:1/x?sslmode=bogus"])
def test_a_store_password_is_never_printed(url):
    for args in (["runs", "list"], ["stats"], ["runs", "show", "abc"], ["compare", "--seeds", "0"]):
        result = sprkd(url, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "s3cretpw" not in result.output and "alice:***@" in result.stderr, (args, result.stderr)


PASSWORD = "s3cretpw"


@pytest.fixture
def url_with_password(pg_url):
    """pg_url's database, reached as a role of its own whose password is PASSWORD (dropped afterwards)."""
    import gc
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    role = f"sprkd_pw_{uuid.uuid4().hex[:8]}"
    admin = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
        conn.execute(f"GRANT ALL ON SCHEMA public TO {role}")
    yield make_url(pg_url).set(username=role, password=PASSWORD).render_as_string(hide_password=False)
    gc.collect()  # the commands' engines, and their connections
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {role}")
    with psycopg.connect(admin.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f"DROP ROLE {role}")


def test_a_store_password_is_in_no_output_nor_anywhere_in_the_store(url_with_password, tmp_path, monkeypatch):
    """Every command, on a store whose URL carries a password: not in what they print (tables, JSON,
    errors, exports), not in any row of the store, not in any file written (plots, artifacts, exports)."""
    url = url_with_password
    assert PASSWORD in url
    printed = []

    def run(*args: str, db: str | None = url):
        result = sprkd(db, *args)
        printed.append((args, result.stdout + result.stderr))
        return result

    def run_json(*args: str):
        result = run(*args, "--json")
        assert result.exit_code == 0, (args, result.output)
        return json.loads(result.stdout)

    from conftest import STUDENT_ARGS, TEACHER_ARGS

    teacher = run_json(*TEACHER_ARGS)
    assert run(*TEACHER_ARGS, "--seed", "1").exit_code == 0
    student = run_json("distill", "--method", "kd", *STUDENT_ARGS)
    plain = run_json("distill", "--method", "sgd", *STUDENT_ARGS)
    run("compare", *STUDENT_ARGS, "--seeds", "0-1", "--eval-noise", "0.1")
    run_json("compare", *STUDENT_ARGS, "--seeds", "0-1")
    for args in (["stats"], ["stats", "--json"], ["stats", "--mcnemar", student["run_id"], plain["run_id"]],
                 ["runs", "list"], ["runs", "list", "--json"], ["runs", "show", teacher["run_id"]],
                 ["runs", "show", student["run_id"], "--json"], ["runs", "export"],
                 ["runs", "export", "--metrics", "--format", "json"],
                 ["runs", "export", "-o", str(tmp_path / "export.csv")],
                 ["hessian-report", teacher["run_id"], "--top-k", "1", "--bottom-k", "0", "--probe-size", "32"],
                 ["hessian-report", "--compare", teacher["run_id"]]):
        assert run(*args).exit_code == 0, (args, printed[-1])
    # errors that name the store
    assert run("runs", "show", "zzzz").exit_code == 2
    assert run("distill", "--method", "kd", "--dataset", "digits", "--student", "mlp-small").exit_code == 2
    assert run("compare", "--dataset", "digits", "--methods", "kd", "--seeds", "0").exit_code == 2
    monkeypatch.setenv("SPRKD_DB", url)
    assert run("runs", "list", db=None).exit_code == 0
    run("--help", db=None)
    run("runs", "show", "zzzz", db=None)

    leaks = [args for args, output in printed if PASSWORD in output]
    assert not leaks, leaks
    assert any("***@" in output for _, output in printed)  # the errors name the store, masked
    for table in tables(url):
        rows = sql(url, f"SELECT * FROM {table}")
        assert PASSWORD not in repr(rows), table
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".png" for p in written) and (tmp_path / "export.csv").is_file()
    assert not [p for p in written if PASSWORD.encode() in p.read_bytes()]


def test_an_unreachable_store_with_a_password_is_one_line_without_it():
    for args in (["runs", "list"], ["train-teacher", "--dataset", "digits"], ["runs", "export"]):
        line = assert_user_error(sprkd(f"postgresql+psycopg://alice:{PASSWORD}@127.0.0.1:1/x", *args),
                                 "cannot use the store", "alice:***@127.0.0.1:1/x")
        assert PASSWORD not in line


@pytest.mark.parametrize("url", ["sqlite://alice:s3cretpw@localhost//tmp/x.db",
    "postgresql://alice:s3c@r/et@127.0.0.1:1/x",
                                 "no url://alice:s3c@retpw@h/x"])
def test_a_password_the_url_parser_would_split_is_masked_whole(url):
    """A URL the SQLite driver refuses, and passwords holding an unencoded @ or / (SQLAlchemy splits at
    the first @): one line, the whole password masked."""
    result = sprkd(url, "runs", "list")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.stderr.count("\n") == 1 and "alice:***@" in result.stderr
    for piece in ("s3c", "r/et", "retpw", "s3cretpw"):
        assert piece not in result.stderr, result.stderr


# Every form a password takes in a store URL: in the userinfo, as a query parameter (libpq's password=,
# sslpassword=), holding an '@' or a '/' unencoded (SQLAlchemy then splits it, and psycopg quotes the
# rest as a host name) or percent-encoded.
SECRET_FORMS = [
    "postgresql+psycopg://alice:Zq7secretpw@127.0.0.1:1/x",
    "postgresql+psycopg://alice@127.0.0.1:1/x?password=Zq7secretpw",
    "postgresql+psycopg://alice@127.0.0.1:1/x?connect_timeout=2&password=Zq7sec@retpw",
    "postgresql+psycopg://alice@127.0.0.1:1/x?sslpassword=Zq7secretpw",
    "postgresql+psycopg://alice:Zq7sec@retpw@127.0.0.1:1/x",
    "postgresql+psycopg://alice:Zq7sec/retpw@127.0.0.1:1/x",
    "postgresql+psycopg://alice:Zq7sec%40retpw@127.0.0.1:1/x",
    "postgresql+psycopg://alice:Zq7sec:retpw@127.0.0.1:1/x",
]


def assert_no_secret(text: str) -> None:
    for piece in ("Zq7sec", "retpw", "secretpw", "sec@ret", "sec%40ret"):
        assert piece not in text, (piece, text)


@pytest.mark.parametrize("url", SECRET_FORMS)
def test_no_form_of_a_password_is_printed_by_an_unreachable_store(url, monkeypatch):
    for args in (["runs", "list"], ["runs", "export"], ["train-teacher", "--dataset", DATA], ["stats"]):
        result = sprkd(url, *args)
        assert result.exit_code == 2 and "Traceback" not in result.output, (args, result.output)
        assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
        assert_no_secret(result.stderr)
    monkeypatch.setenv("SPRKD_DB", url)
    result = sprkd(None, "runs", "list")
    assert result.exit_code == 2
    assert_no_secret(result.stderr)


@pytest.mark.parametrize("form", ["query", "encoded_at"])
def test_a_password_in_a_query_or_with_an_at_sign_is_nowhere_on_a_live_store(form, pg_url, tmp_path):
    """A live PostgreSQL store reached with a password given as `?password=`, or holding an `@` that is
    percent-encoded: not in what the commands print, not in any row, not in any file written."""
    import gc
    import uuid
    from urllib.parse import quote

    import psycopg
    from sqlalchemy.engine import make_url

    password = "Zq7sec@retpw"
    role = f"sprkd_pw_{uuid.uuid4().hex[:8]}"
    admin = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f"GRANT ALL ON SCHEMA public TO {role}")
    base = make_url(pg_url).set(username=role, password=None).render_as_string(hide_password=False)
    url = f"{base}?password={quote(password, safe='')}" if form == "query" else \
        base.replace(f"{role}@", f"{role}:{quote(password, safe='')}@")
    try:
        printed = []
        teacher = sprkd_json(url, "train-teacher", "--dataset", DATA, "--model", TEACHER_MODEL, "--epochs", "2")
        for args in (["runs", "list"], ["runs", "show", teacher["run_id"]],
                     ["runs", "export", "-o", str(tmp_path / "e.csv")],
                     ["runs", "show", "zzzz"], ["distill", "--method", "kd", "--dataset", "digits"]):
            result = sprkd(url, *args)
            printed.append(result.stdout + result.stderr)
        assert "***" in printed[-1] or "***" in printed[-2]
        for output in printed:
            assert_no_secret(output)
        for table in tables(url):
            assert_no_secret(repr(sql(url, f"SELECT * FROM {table}")))
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert_no_secret(path.read_bytes().decode("latin-1"))
    finally:
        gc.collect()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
        with psycopg.connect(admin.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f"DROP ROLE {role}")


def test_runs_and_reports_stored_before_precision_and_weights_are_brought_forward(store_url):
    """Migration 0004 on rows of revision 0003: a run stored before --precision (no such key, the hash of
    its body without it) gets precision fp32 and the hash this sprkd computes for its config, so --reuse
    and compare find it; a bf16 run keeps its hash; a run hashed under a still earlier rule keeps its own;
    a Hessian report made before --weights is on the final weights."""
    from alembic import command

    from sprkd_cli.config import TrainConfig
    from sprkd_cli.store.database import _alembic_config, resolve_url

    db = store_url
    command.upgrade(_alembic_config(resolve_url(db)), "0003")
    base = TrainConfig(kind="teacher", method="sgd", dataset=DATA, model=TEACHER_MODEL, seed=2)
    earlier = {k: v for k, v in base.to_dict().items() if k != "precision"}  # as stored before --precision

    def earlier_hash(config: dict) -> str:  # the rule of revision 0003: precision left out at fp32
        import hashlib

        from sprkd_cli.config import LOCATION_FIELDS, MEASUREMENT_FIELDS, RECORDING_FIELDS

        left_out = MEASUREMENT_FIELDS + LOCATION_FIELDS + RECORDING_FIELDS
        body = {k: v for k, v in config.items() if k not in left_out and not (k == "precision" and v == "fp32")}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    bf16 = base.to_dict() | {"precision": "bf16", "seed": 3}
    rows = {"aaaa00000001": (earlier, earlier_hash(earlier), 2), "bbbb00000002": (bf16, earlier_hash(bf16), 3),
            "cccc00000003": ({"lr": 0.01}, "h-older-rule", 4)}
    for run_id, (config, config_hash, seed) in rows.items():
        sql(db, "INSERT INTO runs (id, kind, method, dataset, model, seed, status, config, config_hash, teacher_ids,"
                " versions, device, created_at, summary) VALUES (:id, 'teacher', 'sgd', :data, :model, :seed,"
                " 'finished', :config, :hash, '[]', '{}', 'cpu', '2026-12-01 00:00:00', '{}')",
            {"id": run_id, "data": DATA, "model": TEACHER_MODEL, "seed": seed, "config": json.dumps(config),
             "hash": config_hash})
    sql(db, "INSERT INTO hessian_reports (run_id, step, created_at, config, result, n_hvp, seconds) VALUES"
            " ('aaaa00000001', NULL, '2026-12-01 00:00:01', :config, :result, 10, 0.5)",
        {"config": json.dumps({"top_k": 5, "bottom_k": 1, "seed": 0, "dtype": "float32"}),
         "result": json.dumps({"top_eigenvalues": [2.0], "bottom_eigenvalues": [-0.5], "trace": None,
                             "trace_se": None})})

    store = open_test_store(db)  # upgrades to the head
    assert versions(db) == [alembic_head()]
    old, other, oldest = (store.get_run(run_id) for run_id in rows)
    assert old.config == base.to_dict() and old.config["precision"] == "fp32"
    assert old.config_hash == TrainConfig.from_dict(old.config).config_hash() == base.config_hash()
    assert old.config_hash != earlier_hash(earlier)  # fp32 is hashed now
    assert store.find_finished(base.config_hash(), 2).id == old.id
    assert other.config_hash == earlier_hash(bf16) == TrainConfig.from_dict(bf16).config_hash()
    assert (oldest.config, oldest.config_hash) == ({"lr": 0.01, "precision": "fp32"}, "h-older-rule")
    (report,) = store.hessian_reports(old.id)
    assert report.config["weights"] == "final" and report.config["top_k"] == 5
    assert sprkd_json(db, "runs", "show", "aaaa")["precision"] == "fp32"

    # and back: 0003's hashes again
    command.downgrade(_alembic_config(resolve_url(db)), "0003")
    assert [r[0] for r in sql(db, "SELECT config_hash FROM runs ORDER BY id")] == [
        earlier_hash(earlier), earlier_hash(bf16), "h-older-rule"]
