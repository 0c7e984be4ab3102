"""Open a store by URL and bring it to the current schema (Alembic), safely under concurrency."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, DBAPIError, NoSuchModuleError

from ..errors import UserError
from ..redact import display_url, scrub

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 60_000
PG_CONNECT_TIMEOUT_S = 10
# A write that finds SQLite's write lock held past the busy timeout is tried again this many times,
# after pauses of LOCK_BACKOFF_S, then twice that, and so on (a long write by another process, such
# as a compare's other runs, does not fail a run).
LOCK_RETRIES = 3
LOCK_BACKOFF_S = 1.0
# A wait for a lock longer than this says on stderr what it waits for (then waits on, up to the timeout).
LOCK_NOTICE_MS = 5_000
_last_notice = [0.0]


def lock_notice(line: str) -> None:
    """`line` on stderr: what a process waits for, said at most every 30 s (a compare's many writes)."""
    import sys

    if time.monotonic() - _last_notice[0] >= 30:
        _last_notice[0] = time.monotonic()
        print(line, file=sys.stderr, flush=True)


SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def resolve_url(db: str) -> str:
    """A SQLAlchemy URL as given, or a filesystem path turned into a SQLite URL. An empty name and an
    in-memory SQLite store (lost when the process exits, with every run in it) are refused."""
    if not db.strip():
        raise UserError("the store is an empty name (--db ''); give a file such as runs.db or a URL such as "
                        "postgresql+psycopg://host/db")
    if "://" not in db:
        try:
            return f"sqlite:///{Path(db).expanduser().resolve()}"
        except (OSError, RuntimeError) as exc:  # a symlink loop: RuntimeError before Python 3.13, OSError after
            raise UserError(f"cannot open the store {db}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        parsed = make_url(db)
    except ArgumentError:
        return db  # make_engine says what is wrong with it
    if parsed.get_backend_name() == "sqlite" and (
            parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"):
        raise UserError(f"'{display_url(db)}' is an in-memory store, lost with every run in it when sprkd exits; "
                        "give a file such as runs.db or sqlite:////abs/path/runs.db")
    return db


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _configure_sqlite(engine: Engine) -> None:
    """WAL for concurrent readers, a busy timeout, and BEGIN IMMEDIATE so a writer waits for the
    lock up front instead of failing on a read-to-write upgrade."""

    path = engine.url.database

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {_first_wait_ms()}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        """BEGIN IMMEDIATE, waiting for the write lock LOCK_NOTICE_MS; if it is still held, a line on
        stderr says so, and the wait goes on to SQLITE_BUSY_TIMEOUT_MS in all."""
        first = _first_wait_ms()
        if first < SQLITE_BUSY_TIMEOUT_MS:
            raw = connection.connection.driver_connection
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
            lock_notice(f"waiting for the write lock of the store {path}: another process is writing to it "
                        f"(up to {(SQLITE_BUSY_TIMEOUT_MS - first) / 1000:g} s more)")
            raw.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS - first}")
            try:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            finally:
                raw.execute(f"PRAGMA busy_timeout = {first}")
            return
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _first_wait_ms() -> int:
    return min(LOCK_NOTICE_MS, SQLITE_BUSY_TIMEOUT_MS)


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UserError(f"'{display_url(url)}' is not a database URL; give a path or e.g. "
                        "postgresql+psycopg://host/db") from None
    path = sqlite_path(url)
    if path is not None:
        _check_sqlite_path(path)
    connect_args = {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S  # an unreachable server is an error, not a hang
    try:
        engine = create_engine(parsed, future=True, connect_args=connect_args, json_deserializer=_json_reader(url))
    except ModuleNotFoundError as exc:
        extra = " (pip install 'sprkd[postgres]')" if parsed.get_backend_name() == "postgresql" else ""
        raise UserError(f"the driver for {parsed.drivername} is not installed ({exc.name}); "
                        f"install it{extra}") from None
    except NoSuchModuleError:
        raise UserError(f"unknown database kind '{parsed.drivername}' in {display_url(url)}; give a SQLite path or "
                        "a URL such as sqlite:///runs.db or postgresql+psycopg://host/db") from None
    except ArgumentError as exc:  # the driver refuses the URL's form (sqlite://user:pw@host/...): what it says,
        reason = str(exc).splitlines()[0].split(": ")[0]  # without the URL it quotes
        raise UserError(f"cannot open the store {display_url(url)}: {reason}; give a SQLite path or a URL such as "
                        "sqlite:////abs/path/runs.db or postgresql+psycopg://user:password@host/db") from None
    if parsed.get_backend_name() == "sqlite":
        _configure_sqlite(engine)
    return engine


def _check_sqlite_path(path: Path) -> None:
    """UserError naming what keeps SQLite from opening (or creating) the store file `path`, which
    SQLite itself only reports as 'unable to open database file'."""
    if not path.parent.is_dir():
        problem = f"{path.parent} is not a folder" if path.parent.exists() else f"folder {path.parent} does not exist"
        raise UserError(f"cannot open the store {path}: {problem}")
    if path.is_dir():
        raise UserError(f"cannot open the store {path}: it is a folder; "
                        f"give a file in it, e.g. --db {path / 'runs.db'}")
    if path.exists() and not path.is_file():
        raise UserError(f"cannot open the store {path}: it is not a regular file")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise UserError(f"cannot open the store {path}: it is not readable and writable by you")
    if path.is_file() and path.stat().st_size > 0:
        _check_sqlite_file(path)
    if not os.access(path.parent, os.W_OK | os.X_OK):
        if not path.exists():
            raise UserError(f"cannot create the store {path}: folder {path.parent} is not writable")
        raise UserError(f"cannot open the store {path}: folder {path.parent} is not writable, and SQLite writes its "
                        f"journal ({path.name}-wal) beside the file")


def _check_sqlite_file(path: Path) -> None:
    """UserError unless the non-empty file `path` is a SQLite database that is a sprkd store or holds no
    tables yet: another program's file, SQLite or not, is left exactly as it is (it is read here
    read-only, before sprkd's own connection would switch it to WAL and add its tables)."""
    from .schema import Base

    with open(path, "rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise UserError(f"cannot open the store {path}: it is not a SQLite database; give a new file or a sprkd "
                        "store (sprkd leaves this one alone)")
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        try:
            found = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return  # damaged or locked: sprkd's own connection says so, naming the store
    ours = set(Base.metadata.tables)
    theirs = sorted(n for n in found - ours - {"alembic_version"} if not n.startswith("sqlite_"))
    if theirs and not found & ours:
        shown = ", ".join(theirs[:5]) + (", ..." if len(theirs) > 5 else "")
        raise UserError(f"cannot open the store {path}: it is another program's SQLite database (tables {shown}), "
                        "not a sprkd store; sprkd leaves it alone: give a new file or a sprkd store")


class _json_reader:
    """The engine's JSON decoder: a stored value that is not JSON is a UserError naming the store. A callable
    object, not a closure: psycopg caches its loaders by the function's code and logs a warning (on every
    PostgreSQL command) for a closure."""

    def __init__(self, url: str):
        self.url = url

    def __call__(self, text):
        try:
            return json.loads(text)
        except ValueError as exc:
            shown = text if len(text) <= 40 else text[:37] + "..."
            raise UserError(f"the store {display_url(self.url)} holds a value that is not JSON ({shown!r}: {exc}); "
                            "the row was written by something other than sprkd, or the file is damaged") from None


def store_error(url: str, exc: DBAPIError) -> UserError:
    """A database error of the store at `url` as the one line a user sees: the driver's reason, and
    what it means where that is known."""
    reason = " ".join(str(getattr(exc, "orig", None) or exc).split())  # drivers' messages span lines (psycopg's hints)
    hint = ""
    if is_locked(exc):
        hint = (f" (another process held its write lock longer than sprkd waits: {SQLITE_BUSY_TIMEOUT_MS / 1000:g} s "
                "a try); try again when it is done")
    elif "malformed" in reason or "not a database" in reason:
        hint = " (the file is damaged; restore it from a copy, or start a new store)"
    return UserError(f"cannot use the store {display_url(url)}: {scrub(reason, url)}{hint}")


def is_locked(exc: BaseException) -> bool:
    """Whether `exc` is SQLite's 'database is locked' (its busy timeout ran out)."""
    orig = getattr(exc, "orig", exc)
    return isinstance(orig, sqlite3.OperationalError) and "locked" in str(orig)


def retry_when_locked(write):
    """`write` (a store's write, one transaction) tried again after a pause when SQLite's write lock
    stayed taken past the busy timeout, at most LOCK_RETRIES times, each pause twice the last."""

    @functools.wraps(write)
    def retried(*args, **kwargs):
        pause = LOCK_BACKOFF_S
        for attempt in range(LOCK_RETRIES + 1):
            try:
                return write(*args, **kwargs)
            except (DBAPIError, sqlite3.OperationalError) as exc:
                if attempt == LOCK_RETRIES or not is_locked(exc):
                    raise
            time.sleep(pause)
            pause *= 2

    return retried


@contextmanager
def _migration_lock(url: str):
    """Serialise schema upgrades of one SQLite file across processes started at once."""
    path = sqlite_path(url)
    if path is None:
        yield
        return
    with open(f"{path}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another process upgrades (or creates) the store: wait, saying so after a while
            import threading

            notice = threading.Timer(LOCK_NOTICE_MS / 1000, lock_notice,
                                     [f"waiting for another process to create or upgrade the store {path}"])
            notice.daemon = True
            notice.start()
            try:
                fcntl.flock(handle, fcntl.LOCK_EX)
            finally:
                notice.cancel()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alembic_config(url: str):
    from alembic.config import Config

    if not (MIGRATIONS_DIR / "env.py").exists():
        raise UserError(f"migrations not found at {MIGRATIONS_DIR}; install sprkd from its checkout (pip install -e .)")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# The newest migration's revision (tests/test_store.py checks it is Alembic's head): a store already
# there is opened without importing Alembic, an import every command would pay.
SCHEMA_HEAD = "0004"
PG_MIGRATION_LOCK = 0x5B2D  # the PostgreSQL advisory-lock key that serialises schema upgrades


def _stored_revision(engine: Engine) -> str | None:
    """alembic_version's row, read with plain SQL; None when the table is missing or holds another shape.
    A store that cannot be reached at all raises (once: its caller reports it without trying again)."""
    with engine.connect() as conn:
        try:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        except DatabaseError:
            return None
    return rows[0][0] if len(rows) == 1 else None


def upgrade(engine: Engine, url: str) -> None:
    """Bring the store to the newest schema; refuse a store written by a newer sprkd."""
    try:
        if _stored_revision(engine) == SCHEMA_HEAD:
            return
        _upgrade_with_alembic(engine, url)
    except DatabaseError as exc:  # OperationalError, and e.g. 'file is not a database'
        raise store_error(url, exc) from None


def _refuse_unversioned(conn, url: str, head: str) -> None:
    """A store that holds sprkd's tables but no revision (its alembic_version table missing or empty):
    upgrading would try to create the tables again, so say what is wrong and how to mark its revision.
    Read on `conn`, under the migration lock: a store another process is creating right now is either
    still empty or already at a revision."""
    from sqlalchemy import inspect

    from .schema import Base

    found = set(inspect(conn).get_table_names())
    ours = set(Base.metadata.tables)
    if not found & ours:
        return  # a new store (or someone else's tables only): the migrations create sprkd's
    missing = sorted(ours - found)
    stamp = (f"alembic -c {MIGRATIONS_DIR.parent / 'alembic.ini'} -x url='{display_url(url)}' stamp "
             f"{head if not missing else '<revision>'}")
    which = (f"its tables are those of this sprkd's newest schema ({head}): if nothing else changed them, mark it so "
             f"with `{stamp}`"
             if not missing else f"its tables lack {', '.join(missing)}, so it predates revision {head}: mark the "
                                 "revision "
                                 f"that made it (see {MIGRATIONS_DIR / 'versions'}) with `{stamp}`")
    raise UserError(f"the store {display_url(url)} has sprkd's tables but no schema revision (its alembic_version "
                    f"table is missing or empty), so its revision is unknown; {which}")


def _upgrade_with_alembic(engine: Engine, url: str) -> None:
    """The schema's check and upgrade in one transaction under the migration lock (a file lock beside a
    SQLite store, an advisory lock on PostgreSQL): processes opening a new store at once find it either
    not created yet (and the first creates it) or at the head, never half made."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = _alembic_config(url)
    script = ScriptDirectory.from_config(cfg)
    head = script.get_current_head()
    known = {rev.revision for rev in script.walk_revisions()}
    with _migration_lock(url), engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # processes started at once upgrade one at a time
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
        current = MigrationContext.configure(conn).get_current_revision()
        if current == head:
            return
        if current is None:
            _refuse_unversioned(conn, url, head)
        elif current not in known:
            raise UserError(
                f"the store {display_url(url)} has schema revision {current}, which this sprkd does not know: "
                "it was written by a newer sprkd; upgrade sprkd to use it"
            )
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
