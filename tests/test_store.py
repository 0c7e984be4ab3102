"""The result store: created at the Alembic head, refuses unknown (newer) schemas, and keeps every
row when several processes write one SQLite file at once."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
from conftest import (
    DATA,
    METRIC_NAMES,
    REPO,
    TEACHER_MODEL,
    assert_user_error,
    open_test_store,
    sprkd,
    sprkd_json,
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


def versions(path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]


def tables(path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_fresh_store_is_created_at_alembic_head(db):
    from sprkd_cli.store.schema import Base

    assert not db.exists()
    result = sprkd(db, "runs", "list", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    assert db.exists()
    assert versions(db) == [alembic_head()]
    assert set(Base.metadata.tables) | {"alembic_version"} == tables(db)
    # opening again changes nothing
    open_test_store(db)
    assert versions(db) == [alembic_head()]


def test_the_fast_path_knows_alembics_head_and_the_registries_names():
    """A store at SCHEMA_HEAD opens without Alembic, and stats/runs check names without torch: both
    lists are copies, kept equal to their sources here."""
    from sprkd_cli import names
    from sprkd_cli.data import LOADERS
    from sprkd_cli.methods import METHODS
    from sprkd_cli.store.engine import SCHEMA_HEAD

    assert SCHEMA_HEAD == alembic_head()
    assert names.DATASETS == tuple(sorted(LOADERS))
    assert names.METHODS == tuple(METHODS)
    assert names.PLAIN_METHODS == tuple(n for n, c in METHODS.items() if not c.needs_saddles and not c.needs_matched_student)


def test_reading_commands_load_no_torch_and_no_alembic_on_a_current_store(db):
    train_teacher(db)
    code = ("import sys; from typer.testing import CliRunner; from sprkd_cli.cli import app; "
            f"r = CliRunner().invoke(app, ['--db', {str(db)!r}, *sys.argv[1:]]); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'alembic') if m in sys.modules))")
    for args in (["stats", "--methods", "sgd,kd", "--json"], ["runs", "list", "--json"], ["runs", "list"]):
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().splitlines()[-1] == "[]", (args, out.stdout)


def test_metric_values_reads_one_metric_of_many_runs(db):
    store = open_test_store(db)
    ids = []
    for seed in range(3):
        run = store.create_run(kind="student", method="kd", dataset=DATA, model="m", seed=seed, config={},
                               config_hash="h", teacher_ids=[], provenance={}, device="cpu")
        store.add_metrics(run.id, [(e * 10, e, "test", "acc", seed + e / 10) for e in (1, 2)]
                          + [(e * 10, e, "val", "acc", -1.0) for e in (1, 2)])
        ids.append(run.id)
    assert store.metric_values(ids, "test", "acc") == {(ids[s], e): s + e / 10 for s in range(3) for e in (1, 2)}
    assert store.metric_values(ids[:1], "train", "loss") == {}
    assert store.get_run(ids[0]).heartbeat_at is not None


def test_empty_file_is_initialised(db):
    db.write_bytes(b"")
    assert sprkd_json(db, "runs", "list") == []
    assert versions(db) == [alembic_head()]


def test_store_from_a_newer_sprkd_is_refused(db):
    train_teacher(db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'f00dfacecafe'")
    for args in (["runs", "list"], ["runs", "list", "--json"], ["train-teacher", "--dataset", DATA]):
        assert_user_error(sprkd(db, *args), "f00dfacecafe", "newer sprkd")
    assert versions(db) == ["f00dfacecafe"]  # left alone: not "upgraded", not stamped
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (1,)


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


def test_db_from_environment_variable(tmp_path, monkeypatch):
    path = tmp_path / "from-env.db"
    monkeypatch.setenv("SPRKD_DB", str(path))
    assert sprkd_json(None, "runs", "list") == []
    assert versions(path) == [alembic_head()]
    assert not (tmp_path / "runs.db").exists()


def test_run_lookup_by_prefix(db):
    from sprkd_cli.errors import UserError

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


def test_concurrent_processes_on_one_fresh_store_lose_nothing(db, tmp_path):
    """Four `sprkd train-teacher` processes started at once on a store that does not exist yet:
    all create (migrate) it together, all finish, and every epoch's metrics are there."""
    assert not db.exists()
    epochs = 3
    argv = [sys.executable, "-m", "sprkd_cli", "--db", str(db), "train-teacher", "--dataset", DATA,
            "--model", TEACHER_MODEL, "--epochs", str(epochs), "--batch-size", "16", "--json"]
    # seeds 0, 0, 1, 1: same-seed runs in different processes must also agree exactly
    seeds = [0, 0, 1, 1]
    procs = [subprocess.Popen(argv + ["--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in seeds]
    outputs = [proc.communicate(timeout=180) for proc in procs]
    outcomes = []
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert "database is locked" not in out + err
        assert "Traceback" not in out + err
        outcomes.append(json.loads(out))
    assert all(o["status"] == "finished" for o in outcomes)

    assert versions(db) == [alembic_head()]
    store = open_test_store(db)
    runs = store.list_runs()
    assert {r.id for r in runs} == {o["run_id"] for o in outcomes}
    assert len(runs) == 4 and all(r.status == "finished" for r in runs)
    assert len({r.pid for r in runs}) == 4
    per_run = {}
    for run in runs:
        rows = store.metrics([run.id])
        assert len(rows) == epochs * len(METRIC_NAMES), run.id
        assert {(m.epoch, m.split, m.name) for m in rows} == {(e, s, n) for e in range(1, epochs + 1)
                                                              for s, n in METRIC_NAMES}
        assert len(store.predictions(run.id)) == run.config["data"]["n_test"]
        per_run[run.id] = [(m.step, m.epoch, m.split, m.name, m.value) for m in rows]
    by_seed: dict[int, list] = {}
    for run in runs:
        by_seed.setdefault(run.seed, []).append(per_run[run.id])
    assert by_seed[0][0] == by_seed[0][1]
    assert by_seed[1][0] == by_seed[1][1]
    assert by_seed[0][0] != by_seed[1][0]
