"""The NIH/NLM malaria cell images (Rajaraman et al. 2018): 27,558 RGB crops of thin blood-smear cells,
of varying size, half parasitized and half uninfected.

Read from the published folder layout `cell_images/Parasitized/*.png`, `cell_images/Uninfected/*.png`
under the data dir (files that are not images, such as Thumbs.db, are skipped), or with `--download`
from the Hugging Face hub through `datasets`. Each image is converted to RGB, resized to
`--image-size` (default 32, as the research did) with bilinear filtering and scaled to [0, 1]; no
mean/std normalisation. Labels: 0 Parasitized, 1 Uninfected. The decoded images are cached as one
uint8 tensor file in the cache folder (data.source.cache_root: --cache-dir, default runs/cache beside the
store; never inside the data folder, where a third folder beside Parasitized/ and Uninfected/ would
be a third class to torchvision's ImageFolder and the like), keyed by the folder's fingerprint (every
image's name, size and modification time) and the image size, so a second run does not decode again.
The split is stratified: 70%
train, 10% val, 20% test, fixed by the split seed."""

from __future__ import annotations

import hashlib
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..specs import typed_options
from .source import DEFAULT_IMAGE_SIZE, DataSource, reachable
from .splits import Splits, stratified_split

CLASSES = ("Parasitized", "Uninfected")  # label = index, the folder names in alphabetical order
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DEFAULT_SIZE = DEFAULT_IMAGE_SIZE["malaria"]
CACHE_FORMAT = 1  # bump when the decoded tensors would differ for the same files
HUB_DATASET = "dpdl-benchmark/malaria"
HOMEPAGE = "https://lhncbc.nlm.nih.gov/publication/pub9932"
PROGRESS_EVERY = 256


def load_malaria(spec: str, options: dict, split_seed: int, source: DataSource) -> Splits:
    typed_options(spec, options, {})
    size = DEFAULT_SIZE if source.image_size is None else source.image_size
    if not 4 <= size <= 1024:
        raise UserError(f"--image-size must be between 4 and 1024 pixels (got {size})")
    images, labels = malaria_tensors(source, size)
    train, val, test = (torch.from_numpy(i) for i in stratified_split(labels.numpy(), split_seed, 0.1, 0.2))
    # split the uint8 images first, then scale each part: no full-size float copy in between
    x = {name: images[index].float().div_(255.0) for name, index in (("train", train), ("val", val), ("test", test))}
    return Splits(name=spec, x_train=x["train"], y_train=labels[train], x_val=x["val"], y_val=labels[val],
                  x_test=x["test"], y_test=labels[test], n_classes=len(CLASSES), split_seed=split_seed)


def malaria_tensors(source: DataSource, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All images as uint8 (N, 3, size, size) and labels (N,), from the cache when it is current."""
    folder = image_folder(source.root)
    if folder is None:
        if not source.download:
            raise UserError(
                f"no malaria images under {source.root}: put the published folder there as "
                f"{source.root / 'cell_images' / 'Parasitized'}/*.png and .../Uninfected/*.png "
                f"(from {HOMEPAGE}), pass --data-dir DIR where DIR/cell_images is, or add --download")
        return _from_hub(source, size)
    if source.cache.resolve().is_relative_to(folder.resolve()):
        raise UserError(f"the cache folder {source.cache} is inside the malaria folder {folder}, where it would "
                        "read as a third class; pass --cache-dir (or set $SPRKD_CACHE_DIR to) a folder outside it")
    files, labels, listing = list_images(folder)
    key = hashlib.sha256(f"malaria {CACHE_FORMAT} {size} {listing}".encode()).hexdigest()[:16]
    cache = source.cache / f"malaria-{size}px-{key}.pt"
    cached = read_cache(cache)
    if cached is not None:
        return cached
    images = decode_all(files, size, source)
    result = (images, torch.tensor(labels, dtype=torch.int64))
    write_cache(cache, *result)
    return result


def image_folder(root: Path) -> Path | None:
    """The folder holding Parasitized/ and Uninfected/: root/cell_images or root itself."""
    for candidate in (root / "cell_images", root):
        if any((candidate / name).is_dir() for name in CLASSES):
            return candidate
    return None


def list_images(folder: Path) -> tuple[list[str], list[int], str]:
    """Every image file of each class folder, sorted by name (other files are skipped), their labels,
    and the folder's fingerprint: a digest of every image's name, size and modification time, which
    changes when an image is added, removed, renamed or rewritten. One directory scan, no per-file
    Path objects."""
    files: list[str] = []
    labels: list[int] = []
    digest = hashlib.sha256()
    for label, name in enumerate(CLASSES):
        directory = folder / name
        if not directory.is_dir():
            raise UserError(f"{directory} is missing: the malaria folder needs both {' and '.join(CLASSES)}/")
        with os.scandir(directory) as entries:
            found = sorted((e.name, e.stat()) for e in entries
                           if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES and e.is_file())
        if not found:
            raise UserError(f"no images in {directory}: it must hold the {name} cell images (*.png)")
        for file_name, stat in found:
            digest.update(f"{name}/{file_name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        files += [os.path.join(directory, file_name) for file_name, _ in found]
        labels += [label] * len(found)
    return files, labels, digest.hexdigest()


def decode_image(path: str, size: int) -> np.ndarray:
    """One image as RGB uint8 (size, size, 3), resized with bilinear filtering."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        # a header claiming more pixels than Pillow's bomb limit is as undecodable as a broken one
        reason = " ".join(str(exc).split())
        raise UserError(f"cannot decode image {path} ({reason}); delete or replace that file") from None


def decode_all(files: list[str], size: int, source: DataSource) -> torch.Tensor:
    """Decode `files` in a few threads (Pillow releases the GIL while it decodes and resizes; see
    bench/malaria_bench.py for the speed-up), reporting progress as it goes."""
    images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    workers = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    source.report("decoding malaria images", 0, len(files))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, image in enumerate(pool.map(decode_image, files, [size] * len(files))):
            images[i] = image
            if (i + 1) % PROGRESS_EVERY == 0 or i + 1 == len(files):
                source.report("decoding malaria images", i + 1, len(files))
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def read_cache(path: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The cached (images, labels), or None when there is no readable cache (it is then rebuilt)."""
    if not path.is_file():
        return None
    try:
        stored = torch.load(path, weights_only=True)
        return stored["images"], stored["labels"]
    except (OSError, RuntimeError, KeyError, TypeError, EOFError, pickle.UnpicklingError):
        return None  # weights_only=True: a cache holding code is refused, not run


def write_cache(path: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Written to a temporary name and renamed, so a run that reads it at the same time sees all or nothing."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        torch.save({"images": images, "labels": labels}, partial)
        os.replace(partial, path)
    except OSError as exc:
        raise UserError(f"cannot write the decoded-image cache {path} ({exc}); "
                        "pass a --cache-dir you can write to") from None


def _from_hub(source: DataSource, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The published data set through `datasets` (its own cache under <data dir>/hub), then decoded
    and cached like the folder."""
    if not reachable("https://huggingface.co"):
        raise UserError(
            f"--download: huggingface.co cannot be reached (no network?); put the published folder at "
            f"{source.root / 'cell_images'} (Parasitized/*.png, Uninfected/*.png, from {HOMEPAGE}) and run without "
            "--download")
    import datasets

    hub = datasets.load_dataset(HUB_DATASET, split="train", cache_dir=str(source.root / "hub"))
    image_column = next((k for k, f in hub.features.items() if isinstance(f, datasets.Image)), None)
    label_column = next((k for k, f in hub.features.items() if isinstance(f, datasets.ClassLabel)), None)
    if image_column is None or label_column is None:
        raise UserError(f"{HUB_DATASET} on the hub has no image and class-label columns; use the folder instead")
    mapping = [_class_of(name) for name in hub.features[label_column].names]
    cache = source.cache / f"malaria-{size}px-hub-{hub._fingerprint[:16]}.pt"
    cached = read_cache(cache)
    if cached is not None:
        return cached
    images = np.empty((len(hub), size, size, 3), dtype=np.uint8)
    from PIL import Image

    for i, row in enumerate(hub):
        images[i] = np.asarray(row[image_column].convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
        if (i + 1) % PROGRESS_EVERY == 0 or i + 1 == len(hub):
            source.report("decoding malaria images", i + 1, len(hub))
    labels = torch.tensor([mapping[v] for v in hub[label_column]], dtype=torch.int64)
    result = (torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels)
    write_cache(cache, *result)
    return result


def _class_of(hub_name: str) -> int:
    lowered = hub_name.lower()
    for label, name in enumerate(CLASSES):
        if lowered.startswith(name.lower()[:6]):
            return label
    raise UserError(f"{HUB_DATASET} has a class '{hub_name}' that is neither {' nor '.join(CLASSES)}; use the folder")
