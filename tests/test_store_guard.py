"""The store is never overwritten nor adopted: exports refuse it (by any path) and any SQLite file,
replace other files only with --force and whole; another program's file is left byte for byte; an
empty or in-memory store is refused."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from conftest import assert_user_error, sprkd, train_teacher


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def store_files(db: Path) -> dict[str, str]:
    """The store's files and their hashes (the WAL checkpointed first, so the hash is of everything; the
    shared-memory index is left out: every connection rewrites it)."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {p.name: digest(p) for p in db.parent.glob(db.name + "*") if not p.name.endswith("-shm")}


@pytest.fixture
def filled(db) -> Path:
    train_teacher(db)
    return db


def test_export_onto_the_store_by_any_path_is_refused_and_the_store_is_unchanged(filled, tmp_path):
    db = filled
    before = store_files(db)
    (tmp_path / "x").mkdir()
    os.link(db, tmp_path / "hardlink.db")
    os.symlink(db, tmp_path / "symlink.csv")
    for target in (db, tmp_path / "x" / ".." / db.name, Path(os.path.relpath(db)), tmp_path / "symlink.csv",
                   tmp_path / "hardlink.db", Path(f"{db}-wal"), Path(f"{db}.lock")):
        for extra in ([], ["--force"]):
            assert_user_error(sprkd(db, "runs", "export", "-o", str(target), *extra), str(target), "store")
    assert store_files(db) == before
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (1,)


def test_export_onto_another_sqlite_file_is_refused_even_with_force(filled, tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    before = digest(other)
    for extra in ([], ["--force"]):
        assert_user_error(sprkd(filled, "runs", "export", "-o", str(other), *extra), str(other), "SQLite database")
    assert digest(other) == before


def test_export_replaces_an_existing_file_only_with_force_and_whole(filled, tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("keep me\n")
    assert_user_error(sprkd(filled, "runs", "export", "-o", str(out)), str(out), "--force")
    assert out.read_text() == "keep me\n"
    result = sprkd(filled, "runs", "export", "-o", str(out), "--force")
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("id,arm,kind,method") and len(out.read_text().splitlines()) == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []  # no temporary left


def test_export_to_dash_is_stdout(filled, tmp_path):
    result = sprkd(filled, "runs", "export", "-o", "-")
    assert result.exit_code == 0 and result.stdout.startswith("id,arm,kind,method")
    assert not (tmp_path / "-").exists()


def test_an_export_that_cannot_be_written_leaves_no_file(filled, tmp_path, monkeypatch):
    """A full disk while writing: one line naming the file, and neither the file nor a part of it."""
    import errno

    import sprkd_cli.services.outputs as outputs

    real = outputs.os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outputs.os, "fsync", full)
    out = tmp_path / "out.csv"
    assert_user_error(sprkd(filled, "runs", "export", "-o", str(out)), str(out), "No space left on device")
    monkeypatch.setattr(outputs.os, "fsync", real)
    assert sorted(p.name for p in tmp_path.iterdir() if "out" in p.name) == []


def test_another_programs_sqlite_file_is_refused_and_left_byte_for_byte(tmp_path):
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('ada')")
    before = digest(foreign)
    for args in (["runs", "list"], ["runs", "list", "--json"], ["train-teacher", "--dataset", "digits"],
                 ["runs", "export"]):
        assert_user_error(sprkd(foreign, *args), str(foreign), "another program", "customers")
    assert digest(foreign) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("foreign")) == ["foreign.db"]


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("id,name\n1,ada\n")
    assert_user_error(sprkd(other, "runs", "list"), str(other), "not a SQLite database")
    assert other.read_text() == "id,name\n1,ada\n"


@pytest.mark.parametrize("db", ["", " ", "sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=memory&uri=true"])
def test_an_empty_or_in_memory_store_is_refused(db, tmp_path):
    assert_user_error(sprkd(db, "runs", "list"), "store")
    assert not (tmp_path / "runs.db").exists()


def test_a_symlink_loop_as_the_store_is_one_line(tmp_path):
    loop = tmp_path / "loop.db"
    os.symlink(loop, loop)
    assert_user_error(sprkd(loop, "runs", "list"), "loop.db")
