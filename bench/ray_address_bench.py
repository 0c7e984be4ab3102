"""compare on an existing Ray cluster by address: the time from `sprkd compare` starting to its first
run starting (the run's started_at in the store), as a ratio to the same compare with --executor local,
measured side by side in one go (the teacher trained first, each executor on its own new store).

Starts its own `ray start --head` (token authentication on, a fresh token, killed alone afterwards) and
a PostgreSQL server (pgserver, as the tests do; or SPRKD_TEST_PG=postgresql+psycopg://user@host:port).

    PYTHONPATH=. python bench/ray_address_bench.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_ray_address import start_head  # noqa: E402  the tests' head

from sprkd_cli.store import open_store  # noqa: E402

from conftest import STUDENT_ARGS, TEACHER_ARGS  # noqa: E402


def new_database(server: str) -> str:
    import psycopg

    name = f"sprkd_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.replace("postgresql+psycopg://", "postgresql://") + "/postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def cli(db: str, *args: str, env: dict) -> None:
    result = subprocess.run([sys.executable, "-m", "sprkd_cli", "--db", db, *args, "--json"], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]


def to_first_run(db: str, executor_args: list[str], env: dict) -> float:
    """Seconds from launching compare to its first run's started_at (a fresh store, the teacher in it)."""
    cli(db, *TEACHER_ARGS, env=env)
    started = datetime.now(timezone.utc).replace(tzinfo=None)
    cli(db, "compare", *STUDENT_ARGS, "--seeds", "0-1", *executor_args, env=env)
    first = min(r.started_at for r in open_store(db).list_runs(kind="student"))
    return (first - started).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    server, pg = os.environ.get("SPRKD_TEST_PG"), None
    if not server:
        import pgserver

        pg = pgserver.start(Path(tempfile.mkdtemp(prefix="sprkd-pg-")))
        server = pg.url
    head = start_head()
    address, token = next(head)
    env = dict(os.environ, RAY_AUTH_TOKEN=token, PYTHONPATH=str(ROOT),
               SPRKD_ARTIFACTS=tempfile.mkdtemp(prefix="sprkd-bench-art-"))
    env.pop("RAY_AUTH_MODE", None)
    try:
        rows = []
        for _ in range(args.repeats):  # side by side: local, then ray, each repeat
            local = to_first_run(new_database(server), ["--executor", "local"], env)
            ray = to_first_run(new_database(server), ["--executor", "ray", "--ray-address", address], env)
            rows.append((local, ray))
            print(f"to first run: local {local:.2f} s, ray at {address} {ray:.2f} s, ratio {ray / local:.2f}",
                  flush=True)
        local, ray = (min(col) for col in zip(*rows))
        print(f"best of {args.repeats}: local {local:.2f} s, ray {ray:.2f} s; ratio ray/local {ray / local:.2f}")
    finally:
        head.close()  # kills this head's process group only
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
