"""Files a command writes where the user says (`runs export -o`): never the store, never a SQLite
database, never another existing file unless asked to (--force), and never half written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import UserError
from ..store.database import SQLITE_HEADER, sqlite_path

# The files of a SQLite store at path P: P itself, its WAL and shared-memory files, and sprkd's lock file.
STORE_COMPANIONS = ("", "-wal", "-shm", "-journal", ".lock")


def check_output(path: Path, store_url: str, *, force: bool = False) -> None:
    """UserError unless `path` may be written: it is none of the store's files (by any path to them:
    links, `..`, another name of the same file), not a SQLite database, not a folder, and, when it
    exists, `force` is given."""
    try:
        if path.is_dir():
            raise UserError(f"cannot write {path}: it is a folder; give a file name")
        exists = path.exists()
    except OSError as exc:  # a symlink loop, a name too long
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    store = sqlite_path(store_url)
    if store is not None:
        for suffix in STORE_COMPANIONS:
            companion = Path(f"{store}{suffix}")
            if _same_file(path, companion):
                raise UserError(f"refusing to write to {path}: it is "
                                f"{'the store' if not suffix else 'a file of the store'} "
                                f"{store} itself; give another file")
    if not exists:
        return
    if _is_sqlite(path):
        raise UserError(f"refusing to write to {path}: it is a SQLite database (a store?); give another file")
    if not force:
        raise UserError(f"{path} exists; pass --force to replace it, or give another file")


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def write_output(path: Path, text: str | bytes) -> None:
    """`text` (or bytes) into `path`, whole or not at all: written to a temporary file beside it, then renamed over
    it. On failure (a full disk, a folder not writable) the temporary file is removed and a UserError
    names the path."""
    folder = path.parent
    try:
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with (os.fdopen(fd, "wb") if isinstance(text, bytes) else os.fdopen(fd, "w", encoding="utf-8")) as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, _mode_for(path))
        os.replace(temporary, path)
    except OSError as exc:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


def _mode_for(path: Path) -> int:
    """The permissions `path` has (when replaced), else those of a new file under the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
