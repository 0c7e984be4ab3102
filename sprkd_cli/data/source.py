"""Where a dataset's files live and what a loader may do to get them (download, report progress)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse


DEFAULT_DATA_DIR = "data"
CACHE_ENV = "SPRKD_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("runs") / "cache"  # without a store (library use): ./runs/cache
# Data sets whose images come in varying sizes and are resized: their default side in pixels.
DEFAULT_IMAGE_SIZE = {"malaria": 32}
NETWORK_TIMEOUT = 5.0  # seconds to reach a download host before saying there is no network


@dataclass(frozen=True)
class DataSource:
    """`data_dir` (default ./data) holds the data set's files and downloads; `cache_dir` (see cache_root)
    what sprkd derives from them; `image_size` is the side images are resized to where a data set has
    images of varying size (None: the data set's default); `download` allows the network.
    `progress(what, done, total)` is told how decoding goes."""

    data_dir: str | None = None
    cache_dir: str | None = None
    image_size: int | None = None
    download: bool = False
    progress: Callable[[str, int, int], None] | None = field(default=None, compare=False, repr=False)

    @property
    def root(self) -> Path:
        return Path(self.data_dir or DEFAULT_DATA_DIR).expanduser()

    @property
    def cache(self) -> Path:
        return cache_root(self.cache_dir)

    def report(self, what: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(what, done, total)


def cache_root(cache_dir: str | None = None, artifact_root: Path | None = None) -> Path:
    """Where sprkd keeps what it derives from a data set (decoded images, token tensors, the `datasets`
    library's files), never inside the data folder, where other tools would take it for data:
    `cache_dir` (--cache-dir), else $SPRKD_CACHE_DIR, else cache/ in the store's artifact root
    (runs/cache beside a SQLite store), else ./runs/cache."""
    given = cache_dir or os.environ.get(CACHE_ENV)
    if given:
        return Path(given).expanduser()
    return artifact_root / "cache" if artifact_root is not None else DEFAULT_CACHE_DIR


def reachable(url: str, timeout: float = NETWORK_TIMEOUT) -> bool:
    """Whether `url`'s host accepts a TCP connection within `timeout` seconds. The name lookup runs
    in a daemon thread, so a resolver that never answers cannot hang the caller either."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    answer: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((parsed.hostname, port), timeout=timeout):
                answer.append(True)
        except OSError:
            answer.append(False)

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(answer and answer[0])
