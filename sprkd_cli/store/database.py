"""Open a store by URL and bring it to the current schema (Alembic), safely under concurrency."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError

from ..errors import UserError

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 60_000
PG_CONNECT_TIMEOUT_S = 10


def resolve_url(db: str) -> str:
    """A SQLAlchemy URL as given, or a filesystem path turned into a SQLite URL."""
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _configure_sqlite(engine: Engine) -> None:
    """WAL for concurrent readers, a busy timeout, and BEGIN IMMEDIATE so a writer waits for the
    lock up front instead of failing on a read-to-write upgrade."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def display_url(url: str) -> str:
    """`url` as it may be printed or logged: everything between `user:` and the last `@` masked, so a
    password holding an unencoded `@` or `/` (which SQLAlchemy would split in the wrong place) is
    masked whole, and a string that does not parse as a URL is masked too."""
    import re

    return re.sub(r"^([^/]*//[^:/@]*:).*@", r"\1***@", url, flags=re.DOTALL)


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UserError(f"'{display_url(url)}' is not a database URL; give a path or e.g. "
                        "postgresql+psycopg://host/db") from None
    path = sqlite_path(url)
    if path is not None:
        if not path.parent.is_dir():
            problem = f"{path.parent} is not a folder" if path.parent.exists() else f"folder {path.parent} does not exist"
            raise UserError(f"cannot open the store {path}: {problem}")
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise UserError(f"cannot open the store {path}: it is not readable and writable by you")
        if not path.exists() and not os.access(path.parent, os.W_OK):
            raise UserError(f"cannot create the store {path}: folder {path.parent} is not writable")
    connect_args = {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S  # an unreachable server is an error, not a hang
    try:
        engine = create_engine(parsed, future=True, connect_args=connect_args)
    except ModuleNotFoundError as exc:
        extra = " (pip install 'sprkd[postgres]')" if parsed.get_backend_name() == "postgresql" else ""
        raise UserError(f"the driver for {parsed.drivername} is not installed ({exc.name}); install it{extra}") from None
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


@contextmanager
def _migration_lock(url: str):
    """Serialise schema upgrades of one SQLite file across processes started at once."""
    path = sqlite_path(url)
    if path is None:
        yield
        return
    with open(f"{path}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
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


def _current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


# The newest migration's revision (tests/test_store.py checks it is Alembic's head): a store already
# there is opened without importing Alembic, which costs a tenth of a second per command.
SCHEMA_HEAD = "0003"
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
        reason = " ".join(str(exc.orig).split())  # drivers' messages span lines (psycopg's hints)
        raise UserError(f"cannot use the store {display_url(url)}: {reason}") from None


def _upgrade_with_alembic(engine: Engine, url: str) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory

    cfg = _alembic_config(url)
    script = ScriptDirectory.from_config(cfg)
    head = script.get_current_head()
    current = _current_revision(engine)
    if current == head:
        return
    known = {rev.revision for rev in script.walk_revisions()}
    if current is not None and current not in known:
        raise UserError(
            f"the store {display_url(url)} has schema revision {current}, which this sprkd does not know: "
            "it was written by a newer sprkd; upgrade sprkd to use it"
        )
    with _migration_lock(url), engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # processes started at once upgrade one at a time
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")  # after waiting, finds the schema current and does nothing
