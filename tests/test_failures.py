"""Every failure is one line (exit 2, no traceback), and nothing is left behind: a refused command
writes no run; a run that fails while training ends `failed` with the reason."""

from __future__ import annotations

import errno
import os
import random
import shlex
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import (
    DATA,
    REPO,
    STUDENT_MODEL,
    TEACHER_ARGS,
    assert_user_error,
    open_test_store,
    sprkd,
    sql,
    train_teacher,
)

# --- OS errors, store errors after open, and messages that say which problem it is ----------------


def test_os_overlong_folder_name_in_db_or_data_dir(db, tmp_path):
    long = tmp_path / ("a" * 300)
    assert_user_error(sprkd(long / "runs.db", "runs", "list"), str(long), "File name too long")
    result = sprkd(db, "train-teacher", "--dataset", "malaria", "--data-dir", str(long), "--epochs", "1")
    assert_user_error(result, str(long), "File name too long")
    assert open_test_store(db).list_runs() == []


def test_os_artifact_root_that_cannot_be_written_is_refused_before_training(db, tmp_path, monkeypatch):
    plain = tmp_path / "plain-file"
    plain.write_text("x")
    monkeypatch.setenv("SPRKD_ARTIFACTS", str(plain))
    assert_user_error(sprkd(db, *TEACHER_ARGS), "artifact root", str(plain), "is a file", "SPRKD_ARTIFACTS")
    assert_user_error(sprkd(db, "compare", "--dataset", DATA, "--methods", "sgd", "--seeds", "0",
                            "--student", STUDENT_MODEL, "--epochs", "1"), "artifact root", "is a file")
    monkeypatch.setenv("SPRKD_ARTIFACTS", str(plain / "under"))
    assert_user_error(sprkd(db, *TEACHER_ARGS), "artifact root", str(plain / "under"), "Not a directory")
    assert open_test_store(db).list_runs() == []


def _read_only_folder(path: Path) -> Path:
    """`path` made a folder its owner may not write into; the test is skipped where this process writes
    there all the same (root, with its capabilities)."""
    path.mkdir()
    path.chmod(0o500)
    try:
        (path / "probe").write_text("x")
    except PermissionError:
        return path
    (path / "probe").unlink()
    path.chmod(0o700)
    pytest.skip("this process (root) writes into read-only folders; the cases of a file in the way cover it")


def test_os_read_only_artifact_root_is_refused_before_training(db, tmp_path, monkeypatch):
    root = _read_only_folder(tmp_path / "read-only")
    monkeypatch.setenv("SPRKD_ARTIFACTS", str(root))
    try:
        assert_user_error(sprkd(db, *TEACHER_ARGS), "artifact root", str(root), "Permission denied")
    finally:
        root.chmod(0o700)
    assert open_test_store(db).list_runs() == []


@pytest.mark.parametrize("raised", ["oserror", "safetensors"])
def test_os_disk_full_while_saving_weights_fails_the_run(db, monkeypatch, raised):
    """The disk fills while the weights are written (safetensors reports it as its own error, wrapping the
    system's): the run fails with one line naming the file and the reason, and no partial file is left."""
    from safetensors import SafetensorError

    import sprkd_cli.engine.safetensors_io as safetensors_io
    from sprkd_cli.services.loading import FINAL_CHECKPOINT

    real = safetensors_io.save_file

    def full_disk(tensors, filename, metadata=None):
        if Path(filename).name.startswith(FINAL_CHECKPOINT):
            Path(filename).write_bytes(b"half a file")
            if raised == "oserror":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
            raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                                  '"No space left on device" })')
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors_io, "save_file", full_disk)
    line = assert_user_error(sprkd(db, *TEACHER_ARGS), FINAL_CHECKPOINT, "No space left on device")
    [run] = open_test_store(db).list_runs()
    assert run.status == "failed"
    assert "No space left on device" in run.error and FINAL_CHECKPOINT in run.error
    assert line == f"error: {run.error}"
    assert not [p.name for p in Path(run.artifact_dir).iterdir() if p.name.startswith(FINAL_CHECKPOINT)]


def test_os_checkpoint_that_is_a_folder_is_named(db):
    from sprkd_cli.services.loading import FINAL_CHECKPOINT

    teacher = train_teacher(db)
    checkpoint = Path(teacher["artifact_dir"]) / FINAL_CHECKPOINT
    checkpoint.unlink()
    checkpoint.mkdir()
    assert_user_error(sprkd(db, "hessian-report", teacher["run_id"]), str(checkpoint), "is a folder")
    assert open_test_store(db).hessian_reports(teacher["run_id"]) == []


def _damage_pages(db: Path, keep_tables: set[str]) -> None:
    """Random bytes over every page but the first (the header and schema) and those of `keep_tables`."""
    sql(db, "PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = sql(db, "PRAGMA page_size")[0][0]
    kept = {1} | {page for (page,) in sql(db, "SELECT rootpage FROM sqlite_master WHERE tbl_name IN ("
                                              + ", ".join(f"'{t}'" for t in keep_tables) + ")")}
    data = bytearray(db.read_bytes())
    rng = random.Random(0)
    for page in range(1, len(data) // page_size + 1):
        if page not in kept:
            data[(page - 1) * page_size:page * page_size] = rng.randbytes(page_size)
    db.write_bytes(bytes(data))


def test_store_with_damaged_pages_is_one_line(db):
    from sqlalchemy.exc import DatabaseError

    train_teacher(db)
    _damage_pages(db, {"alembic_version"})
    store = open_test_store(db)  # it opens (its revision reads fine); then its tables do not
    with pytest.raises(DatabaseError, match="malformed"):
        store.list_runs()
    for args in (["runs", "list"], ["stats", "--dataset", DATA]):
        assert_user_error(sprkd(db, *args), "cannot use the store", str(db), "malformed", "damaged")


def test_store_row_whose_json_is_not_json_is_one_line(db):
    teacher = train_teacher(db)
    sql(db, "UPDATE runs SET config = '{oops' WHERE id = :id", {"id": teacher["run_id"]})
    assert_user_error(sprkd(db, "runs", "show", teacher["run_id"]), str(db), "not JSON", "{oops")
    sql(db, "UPDATE runs SET summary = 'garbage' WHERE id = :id", {"id": teacher["run_id"]})
    assert_user_error(sprkd(db, "runs", "list"), str(db), "not JSON", "garbage")


class WriteLock:
    """Another process's hold on a SQLite store's write lock (BEGIN IMMEDIATE), taken and let go at will."""

    def __init__(self, db: Path):
        self.connection = sqlite3.connect(db, isolation_level=None, check_same_thread=False)

    def take(self) -> None:
        self.connection.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self.connection.in_transaction:
            self.connection.execute("COMMIT")


@pytest.fixture
def quick_lock_timeouts(monkeypatch):
    """Busy timeouts and retry pauses of milliseconds; returns the list of lock errors seen."""
    import sprkd_cli.store.database as database

    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 50)
    monkeypatch.setattr(database, "LOCK_BACKOFF_S", 0.1)
    monkeypatch.setattr(database, "LOCK_RETRIES", 3)
    seen = []
    real = database.is_locked

    def counted(exc):
        locked = real(exc)
        seen.extend([exc] if locked else [])
        return locked

    monkeypatch.setattr(database, "is_locked", counted)
    return seen


def _lock_before_predictions(monkeypatch, db: Path, hold_s: float | None) -> WriteLock:
    """Another process takes the store's write lock just before the run stores its predictions (its
    weights saved), for `hold_s` seconds (None: until released)."""
    import sprkd_cli.engine as engine

    lock = WriteLock(db)
    real = engine.save_weights

    def save_then_lock(state, path, metadata=None):
        real(state, path, metadata)
        if path.name == "best.safetensors":
            lock.take()
            if hold_s is not None:
                threading.Timer(hold_s, lock.release).start()

    monkeypatch.setattr(engine, "save_weights", save_then_lock)
    return lock


def test_store_write_lock_held_for_a_while_is_waited_out(db, monkeypatch, quick_lock_timeouts):
    open_test_store(db)
    lock = _lock_before_predictions(monkeypatch, db, hold_s=0.3)
    result = sprkd(db, *TEACHER_ARGS, "--json")
    lock.release()
    assert result.exit_code == 0, (result.output, result.exception)
    assert quick_lock_timeouts  # it did wait for the lock
    [run] = open_test_store(db).list_runs()
    assert run.status == "finished"
    assert len(open_test_store(db).predictions(run.id)) > 0


def test_store_write_lock_never_let_go_is_one_line_and_fails_the_run(db, monkeypatch, quick_lock_timeouts):
    from sprkd_cli.store import Store

    open_test_store(db)
    lock = _lock_before_predictions(monkeypatch, db, hold_s=None)
    real_fail = Store.fail_run

    def fail_once_let_go(self, *args, **kwargs):  # the other process is done by the time the run is ended
        lock.release()
        return real_fail(self, *args, **kwargs)

    monkeypatch.setattr(Store, "fail_run", fail_once_let_go)
    line = assert_user_error(sprkd(db, *TEACHER_ARGS), "cannot use the store", str(db), "database is locked",
                             "write lock")
    assert len(quick_lock_timeouts) == 4
    [run] = open_test_store(db).list_runs()
    assert run.status == "failed" and "database is locked" in run.error, (run.status, run.error, line)


def test_message_db_that_is_a_folder(tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert_user_error(sprkd(folder, "runs", "list"), str(folder), "is a folder", str(folder / "runs.db"))
    assert_user_error(sprkd(folder, *TEACHER_ARGS), "is a folder")
    assert list(folder.iterdir()) == []


def test_message_db_in_a_folder_you_cannot_write(tmp_path):
    folder = _read_only_folder(tmp_path / "read-only")
    folder.chmod(0o700)
    open_test_store(folder / "runs.db")
    folder.chmod(0o500)
    try:
        assert_user_error(sprkd(folder / "runs.db", "runs", "list"), str(folder), "not writable", "runs.db-wal")
        assert_user_error(sprkd(folder / "new.db", "runs", "list"), "cannot create", str(folder), "not writable")
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("how", ["DROP TABLE alembic_version", "DELETE FROM alembic_version"])
def test_message_store_without_revision_says_how_to_stamp_it(db, how):
    from sprkd_cli.store.database import SCHEMA_HEAD

    train_teacher(db)
    sql(db, how)
    line = assert_user_error(sprkd(db, "runs", "list"), str(db), "revision is unknown", f"stamp {SCHEMA_HEAD}")
    assert_user_error(sprkd(db, *TEACHER_ARGS), "revision is unknown")
    assert sql(db, "SELECT count(*) FROM runs") == [(1,)]
    # the command it gives works (as `python -m alembic`), and then the store opens as before
    command = shlex.split(line.split("`")[1])
    assert command[0] == "alembic"
    subprocess.run([sys.executable, "-m", *command], check=True, capture_output=True, cwd=REPO,
                   env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert len(open_test_store(db).list_runs()) == 1


def test_message_store_without_revision_and_older_tables(db):
    train_teacher(db)
    sql(db, "DROP TABLE alembic_version")
    sql(db, "DROP TABLE run_arms")
    assert_user_error(sprkd(db, "runs", "list"), "revision is unknown", "lack run_arms", "stamp <revision>")


@pytest.mark.parametrize("suffix, expected", [(".tsv", "tab-separated"), (".parquet", "a Parquet file")])
def test_message_glue_file_of_binary_garbage_names_it(db, tmp_path, suffix, expected):
    from textdata import tiny_model

    model = tiny_model(tmp_path / "model")
    glue = tmp_path / "glue"
    glue.mkdir()
    rng = random.Random(0)
    for split in ("train", "validation"):
        (glue / f"{split}{suffix}").write_bytes(rng.randbytes(4000))
    result = sprkd(db, "train-teacher", "--dataset", "sst2", "--data-dir", str(glue), "--model", f"hf:{model}",
                   "--epochs", "1")
    line = assert_user_error(result, "cannot read", str(glue / f"train{suffix}"), expected, "sentence, label")
    assert "An error occurred while generating the dataset" not in line
    assert open_test_store(db).list_runs() == []


def test_a_wait_for_the_write_lock_says_what_it_waits_for(db, monkeypatch):
    """Another process holds the store's write lock for a second: after LOCK_NOTICE_MS a line on stderr
    names the store and what holds it up, and the command then goes on and succeeds."""
    import threading

    import sprkd_cli.store.database as database

    train_teacher(db)
    monkeypatch.setattr(database, "LOCK_NOTICE_MS", 200)
    monkeypatch.setattr(database, "_last_notice", [-1e9])
    lock = WriteLock(db)
    lock.take()
    threading.Timer(1.5, lock.release).start()
    result = sprkd(db, "runs", "list", "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("\n") == 1 and "waiting for the write lock of the store" in result.stderr, result.stderr
    assert str(db) in result.stderr


def test_a_library_warning_is_one_line(db, monkeypatch):
    """A warning raised inside a command reaches stderr as one line, without Python's file and source line."""
    import warnings

    import sprkd_cli.services.runs as runs

    real = runs.check_filters

    def warn(**kwargs):
        warnings.warn("Image size (144000000 pixels) exceeds limit\nof 89478485 pixels", UserWarning)
        return real(**kwargs)

    monkeypatch.setattr(runs, "check_filters", warn)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        result = sprkd(db, "runs", "list", "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == "warning: Image size (144000000 pixels) exceeds limit of 89478485 pixels\n"
