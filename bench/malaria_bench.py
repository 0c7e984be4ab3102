"""Issue 6 performance figures for the malaria loader.

1. Decoding: images per second turning PNGs of the real size range (about 40x40 to 390x390 RGB; most
   near 130x130, as in the published folder) into 32x32 RGB, one thread vs the loader's thread pool.
2. The folder at full size: 27,558 images in the published layout (hard links to the generated PNGs,
   so the files are real PNGs of the real sizes): the first load decodes and writes the cache; the
   cached loads (`load_dataset("malaria")`, listing and fingerprinting the folder, reading the cache,
   scaling and splitting) are timed. Target: a cached load under 1 s.

Run: .venv/bin/python bench/malaria_bench.py [--distinct 600]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sprkd_cli.data import load_dataset  # noqa: E402
from sprkd_cli.data.malaria import CLASSES, decode_all, decode_image, list_images, read_cache  # noqa: E402
from sprkd_cli.data.source import DataSource  # noqa: E402

FULL_SIZE = 27_558  # 13,779 per class


def cell_png(rng: np.random.Generator, path: Path, side: int | None = None) -> None:
    """A stained-cell-like crop: a textured disc on black, of a size drawn like the real ones."""
    side = side or int(np.clip(rng.lognormal(np.log(130), 0.3), 40, 390))
    h, w = side, int(np.clip(side + rng.integers(-12, 13), 40, 390))
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 2.1) ** 2
    image = np.zeros((h, w, 3), np.uint8)
    image[disc] = np.clip(rng.normal((205, 120, 160), 18, size=(int(disc.sum()), 3)), 0, 255)
    Image.fromarray(image).save(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--distinct", type=int, default=600, help="distinct generated PNGs (the rest are links)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        originals = Path(tmp) / "originals"
        originals.mkdir()
        files = [originals / f"{i}.png" for i in range(args.distinct)]
        for i, path in enumerate(files):
            cell_png(rng, path, {0: 40, 1: 390, 2: 300, 3: 60}.get(i))  # the extremes of the real range too
        sides = [Image.open(p).size for p in files]
        print(f"{len(files)} generated PNGs, sides {min(min(s) for s in sides)}..{max(max(s) for s in sides)} px, "
              f"median {int(np.median([s[0] for s in sides]))} px, "
              f"{sum(p.stat().st_size for p in files) / len(files) / 1024:.1f} KiB each")

        # 1. decoding speed, one thread vs the pool: 3 interleaved rounds each, medians (the machine may be shared)
        serial_times, pooled_times = [], []
        for _ in range(3):
            serial_times.append(_timed(lambda: [decode_image(p, 32) for p in files]))
            pooled_times.append(_timed(lambda: decode_all(files, 32, DataSource())))
        serial, pooled = statistics.median(serial_times), statistics.median(pooled_times)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"decode to 32x32: one thread {len(files) / serial:,.0f} images/s; thread pool ({min(8, cores)} threads "
              "on "
              f"{cores} cores) {len(files) / pooled:,.0f} images/s ({serial / pooled:.2f}x)")

        # 2. the full-size folder
        root = Path(tmp) / "data"
        for label, name in enumerate(CLASSES):
            folder = root / "cell_images" / name
            folder.mkdir(parents=True)
            for i in range(FULL_SIZE // 2):
                os.link(files[(i * 2 + label) % len(files)], folder / f"C{i}_{label}.png")
            (folder / "Thumbs.db").write_bytes(b"not an image")
        caches = str(Path(tmp) / "cache")
        first = _timed(lambda: load_dataset("malaria", 0, data_dir=str(root), cache_dir=caches))
        print(f"first load of {FULL_SIZE:,} images (decode + cache): {first:.1f} s ({FULL_SIZE / first:,.0f} images/s)")
        cached = [_timed(lambda: load_dataset("malaria", 0, data_dir=str(root), cache_dir=caches)) for _ in range(5)]
        folder = root / "cell_images"
        listing = _timed(lambda: list_images(folder))
        cache_file = next(Path(caches).glob("malaria-32px-*.pt"))
        reading = _timed(lambda: read_cache(cache_file))
        print(f"cached load of {FULL_SIZE:,} images at 32x32: median {statistics.median(cached):.3f} s "
              f"(min {min(cached):.3f}, max {max(cached):.3f}; of which listing + fingerprint {listing:.3f} s, reading "
              f"the {cache_file.stat().st_size / 2**20:.0f} MiB cache {reading:.3f} s); target < 1 s: "
              f"{'met' if statistics.median(cached) < 1.0 else 'NOT met'}")


def _timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
