"""A throwaway PostgreSQL server for the store tests, started from the machine's server binaries
(Debian's postgresql package: /usr/lib/postgresql/<version>/bin) in a temporary folder, on a free
localhost port, with trust authentication. As root it runs as the `postgres` user (the server refuses
root). Also a command (.ci/run): `python3 tests/pgserver.py start DIR` starts one and prints its URL
(a server URL without a database), `python3 tests/pgserver.py stop DIR` stops it."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

USER = "postgres"  # the server's superuser


def server_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return found[-1] if found else shutil.which(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


class Server:
    def __init__(self, folder: Path):
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}"

    def start(self) -> "Server":
        initdb, pg_ctl = server_bin("initdb"), server_bin("pg_ctl")
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        def run(argv):
            done = subprocess.run(_as_server_user(argv), capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}")
        run([initdb, "-D", str(self.data), "-U", USER, "--auth=trust", "--no-sync", "-E", "UTF8"])
        options = f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off -c max_connections=200"
        run([pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "start"])
        return self

    def stop(self) -> None:
        stop(self.folder)


def start(folder: Path) -> Server | None:
    """A started server, or None when this machine has no PostgreSQL server binaries."""
    if server_bin("initdb") is None or server_bin("pg_ctl") is None:
        return None
    return Server(folder).start()


def stop(folder: Path) -> None:
    subprocess.run(_as_server_user([server_bin("pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "stop"]),
                   capture_output=True)


if __name__ == "__main__":
    action, where = sys.argv[1], Path(sys.argv[2])
    if action == "stop":
        stop(where)
    else:
        server = start(where)
        if server is None:
            sys.exit("no PostgreSQL server binaries (initdb, pg_ctl); apt-get install postgresql")
        print(server.url)
