"""Where run artifacts live: a local folder (a plain path, as always) or any fsspec URL (`s3://bucket/prefix`,
`gs://…`, `az://…`), so that sweeps on several machines share checkpoints, saddle snapshots, training
states and plots through object storage.

A location is a `Path` when local (a plain path or a `file://` URL) and a URL string otherwise; the store
records it as `str(location)`, so local runs keep plain paths. Only the few operations sprkd needs are
here. Local locations use pathlib and os only; fsspec (the `s3` extra: fsspec + s3fs) is imported only
for a URL with another scheme.

Atomicity: a write is seen whole or not at all. Locally the bytes go to a temporary file in the same
folder, then os.replace. Remotely the full bytes go up in one `fs.pipe_file`: on S3 that is one PUT, or
a multipart upload completed at its end (and aborted on an error), and an object store shows an object
only once its upload completes, so a killed or failed upload leaves no object at the key (S3 has no
atomic rename, so a temporary key and a move would add nothing but a copy)."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

Location = Union[Path, str]


def _scheme(text: str) -> str | None:
    head, sep, _ = text.partition("://")
    return head.lower() if sep and head.replace("+", "").replace("-", "").replace(".", "").isalnum() else None


def location(text: str | os.PathLike) -> Location:
    """`text` (a stored artifact location, $SPRKD_ARTIFACTS) as a location: a Path when local, the URL
    (without trailing slashes) otherwise."""
    if isinstance(text, Path):
        return text
    text = os.fspath(text)
    scheme = _scheme(text)
    if scheme is None:
        return Path(text)
    if scheme in ("file", "local"):
        return Path(text.partition("://")[2])
    return text.rstrip("/")


def is_remote(loc: Location) -> bool:
    return isinstance(loc, str)


def join(loc: Location, *names: str) -> Location:
    if is_remote(loc):
        return "/".join([loc, *(n.strip("/") for n in names)])
    return loc.joinpath(*names)


def name(loc: Location) -> str:
    return loc.rsplit("/", 1)[-1] if is_remote(loc) else loc.name


def _fs(url: str):
    """(filesystem, path) of a URL; UserError when its protocol's package is not installed."""
    from ..errors import UserError

    try:
        import fsspec
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise UserError(f"artifacts at {url} need fsspec and the package of its protocol ({exc}); "
                        "for S3: pip install 'sprkd[s3]'") from None
    except ValueError as exc:
        raise UserError(f"artifact location {url}: {exc}") from None
    return fs, path


def write_bytes(loc: Location, data: bytes) -> None:
    """Write `data` at `loc` atomically: a reader sees the previous content or this, never a part."""
    if is_remote(loc):
        fs, path = _fs(loc)
        fs.pipe_file(path, bytes(data))
        return
    loc.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=loc.parent, prefix=f".{loc.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, loc)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_bytes(loc: Location, start: int | None = None, end: int | None = None) -> bytes:
    """The content at `loc` (bytes start to end when given); FileNotFoundError when there is none."""
    if is_remote(loc):
        fs, path = _fs(loc)
        return fs.cat_file(path, start=start, end=end)
    data = loc.read_bytes()
    return data if start is None and end is None else data[start:end]


def exists(loc: Location) -> bool:
    if is_remote(loc):
        fs, path = _fs(loc)
        fs.invalidate_cache(path)  # another node may have written or removed it since
        return fs.isfile(path)
    return loc.exists()


def remove(loc: Location) -> None:
    """Remove the file at `loc`; nothing when there is none."""
    if is_remote(loc):
        fs, path = _fs(loc)
        try:
            fs.rm_file(path)
        except FileNotFoundError:
            pass
        return
    loc.unlink(missing_ok=True)


@contextmanager
def local_file_for(loc: Location, suffix: str = "") -> Iterator[Path]:
    """A local path for a library that writes a file (matplotlib's savefig): `loc` itself when local
    (its folder created), else a temporary file uploaded to `loc` when the block ends without error."""
    if not is_remote(loc):
        loc.parent.mkdir(parents=True, exist_ok=True)
        yield loc
        return
    with tempfile.TemporaryDirectory(prefix="sprkd-upload-") as tmp:
        path = Path(tmp) / (name(loc) or f"artifact{suffix}")
        yield path
        write_bytes(loc, path.read_bytes())


def check_writable(root: Location) -> None:
    """OSError (or UserError) unless an object can be written and removed under the remote `root`."""
    import uuid

    probe = join(root, f".sprkd-write-check-{uuid.uuid4().hex}")
    write_bytes(probe, b"")
    remove(probe)
