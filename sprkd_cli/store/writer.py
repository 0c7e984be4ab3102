"""The per-epoch write of a training run: its metric rows as one INSERT statement (atomic by itself),
in plain SQL on a database connection held for the whole run. It runs after every epoch, and
SQLAlchemy's per-statement work (compiling, caching, pool checkout, a transaction) cost several times
what this does, a noticeable share of a small digits epoch (docs/performance.md, measured by
bench/store_bench.py). The run's heartbeat is the
heartbeat thread's (services.lifecycle)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Engine

from .database import retry_when_locked

COLUMNS = "run_id, step, epoch, split, name, value"


class EpochWriter:
    def __init__(self, engine: Engine, run_id: str):
        dialect = engine.dialect
        self.mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
        if self.mark is None:  # a driver with another parameter style: no fast path for it
            raise NotImplementedError(dialect.paramstyle)
        self.run_id = run_id
        self.autocommit = dialect.name == "sqlite"  # store.database puts SQLite connections in autocommit mode
        self.statements: dict[int, str] = {}
        self.connection = engine.raw_connection()

    @retry_when_locked
    def write(self, rows: Sequence[tuple[int, int, str, str, float]]) -> None:
        """rows: (step, epoch, split, name, value)."""
        if not rows:
            return
        statement = self.statements.get(len(rows))
        if statement is None:
            one = "(" + ", ".join([self.mark] * 6) + ")"
            statement = self.statements[len(rows)] = (f"INSERT INTO metrics ({COLUMNS}) VALUES "
                                                      + ", ".join([one] * len(rows)))
        values = [v for step, epoch, split, name, value in rows
                  for v in (self.run_id, int(step), int(epoch), split, name, float(value))]
        cursor = self.connection.cursor()
        try:
            cursor.execute(statement, values)
            if not self.autocommit:
                self.connection.commit()
        except BaseException:
            if not self.autocommit:
                self.connection.rollback()
            raise
        finally:
            cursor.close()

    def close(self) -> None:
        self.connection.close()  # back to the pool
