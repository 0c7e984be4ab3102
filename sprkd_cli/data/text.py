"""GLUE text tasks (sst2, qnli) as token tensors, tokenised once per (data, tokenizer, max length).

Inputs are LongTensors [n, 3, L]: input ids, attention mask, token type ids, padded to the longest
sequence of the data (at most `max_len`), so they slice by index like any other dataset. GLUE's test
labels are hidden: GLUE validation is the test split and validation is carved from train by the
split seed (stratified). The raw data come from `--data-dir` (a `save_to_disk` folder, or
train/validation files in parquet, csv, tsv or json with GLUE's columns, in that folder itself, in
<task>/ or in glue/<task>/ under it) or else from the hub, saved under <data dir>/glue/<task> after
the first download. Token tensors are cached under <cache dir>/text/, and the `datasets` library's
files under <cache dir>/hf/ (data.source.cache_root: --cache-dir, default runs/cache beside the
store), not in the data folder. The data dir defaults to ./data.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..specs import typed_options
from .source import DEFAULT_DATA_DIR, cache_root, reachable
from .splits import Splits, stratified_split

TASKS = {"sst2": ("sentence",), "qnli": ("question", "sentence")}
N_CLASSES = 2
DEFAULTS = {"max_len": 128, "val_fraction": 0.1}
FILE_FORMATS = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}
FILE_KINDS = {".parquet": "a Parquet file", ".csv": "comma-separated UTF-8 text with a header row",
              ".tsv": "tab-separated UTF-8 text with a header row", ".json": "JSON (one object per line)",
              ".jsonl": "JSON lines (one object per line)"}
SPLIT_FILES = {"train": ("train",), "validation": ("validation", "dev")}
CACHE_VERSION = "1"


@dataclass
class TextSplits(Splits):
    tokenizer: str = ""  # digest of the tokenizer (vocabulary and normalisation)
    source: str = ""  # digest of the raw data
    max_len: int = 0

    def describe(self) -> dict:
        return super().describe() | {"tokenizer": self.tokenizer, "source": self.source, "max_len": self.max_len}


def load_sst2(spec: str, options: dict, split_seed: int, *, data_dir: str | None = None,
              tokenizer: str | None = None, cache_dir: str | None = None) -> TextSplits:
    """GLUE SST-2: one sentence, positive or negative. Options: max_len=128, val_fraction=0.1."""
    return load_glue("sst2", spec, options, split_seed, data_dir, tokenizer, cache_dir)


def load_qnli(spec: str, options: dict, split_seed: int, *, data_dir: str | None = None,
              tokenizer: str | None = None, cache_dir: str | None = None) -> TextSplits:
    """GLUE QNLI: does the sentence answer the question. Options: max_len=128, val_fraction=0.1."""
    return load_glue("qnli", spec, options, split_seed, data_dir, tokenizer, cache_dir)


def load_glue(task: str, spec: str, options: dict, split_seed: int, data_dir: str | None,
              tokenizer_name: str | None, cache_dir: str | None = None) -> TextSplits:
    """`task` tokenised by the tokenizer of the transformer `tokenizer_name` (a name or local path)."""
    o = typed_options(spec, options, DEFAULTS)
    if not tokenizer_name:
        raise UserError(f"{task} is a text dataset: train a transformer on it, e.g. --model hf:PATH (a local model "
                        "folder)")
    if o["max_len"] < 8 or not 0.0 < o["val_fraction"] < 0.5:
        raise UserError(f"'{spec}': need max_len >= 8 and 0 < val_fraction < 0.5")
    from ..models.hf import load_tokenizer

    root = Path(data_dir or DEFAULT_DATA_DIR).expanduser()
    if data_dir and not root.is_dir():
        raise UserError(f"--data-dir {data_dir} is not a folder; give a folder with train and validation files of "
                        f"{task}")
    tokenizer = load_tokenizer(tokenizer_name)
    tok_digest = tokenizer_digest(tokenizer)
    local = find_local(task, root)
    source = source_digest(task, local)
    caches = cache_root(cache_dir)
    cache = caches / "text" / f"{task}-{source}-{tok_digest}-L{o['max_len']}.safetensors"
    tensors = read_cache(cache)
    if tensors is None:
        raw = read_raw(task, local, root, caches / "hf")
        tensors = tokenize_splits(tokenizer, task, raw, o["max_len"])
        write_cache(cache, tensors)
    x_all, y_all = tensors["train_x"].long(), tensors["train_y"].long()
    train, val, _ = stratified_split(y_all.numpy(), split_seed, o["val_fraction"], 0.0)
    train, val = torch.from_numpy(train), torch.from_numpy(val)
    return TextSplits(
        name=spec, x_train=x_all[train], y_train=y_all[train], x_val=x_all[val], y_val=y_all[val],
        x_test=tensors["test_x"].long(), y_test=tensors["test_y"].long(), n_classes=N_CLASSES,
        split_seed=split_seed, tokenizer=tok_digest, source=source, max_len=o["max_len"],
    )


# --- raw data -----------------------------------------------------------------------------------


def _quiet_datasets():
    import datasets

    datasets.disable_progress_bars()
    # CRITICAL: a file that does not parse is also logged as an error; sprkd says so itself, in one line
    datasets.utils.logging.set_verbosity(datasets.utils.logging.CRITICAL)
    return datasets


def _split_files(path: Path) -> dict[str, Path]:
    found = {}
    for split, stems in SPLIT_FILES.items():
        for stem in stems:
            for ext in FILE_FORMATS:
                if (path / f"{stem}{ext}").is_file():
                    found.setdefault(split, path / f"{stem}{ext}")
    return found


def find_local(task: str, root: Path) -> Path | None:
    """The first of root, root/<task>, root/glue/<task> that holds the task's files, if any."""
    for folder in (root, root / task, root / "glue" / task):
        if (folder / "dataset_dict.json").is_file() or _split_files(folder):
            return folder
    return None


def source_digest(task: str, path: Path | None) -> str:
    """What identifies the raw data: the bytes of the local files, or GLUE on the hub."""
    if path is None:
        return hashlib.sha256(f"nyu-mll/glue/{task}".encode()).hexdigest()[:12]
    if (path / "dataset_dict.json").is_file():
        files = sorted(p for p in path.rglob("*") if p.is_file())
    else:
        files = sorted(_split_files(path).values())
    digest = hashlib.sha256(task.encode())
    for file in files:
        digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


def read_raw(task: str, path: Path | None, root: Path, hf_cache: Path) -> dict:
    """{"train": Dataset, "validation": Dataset} with the task's columns and `label`; the `datasets`
    library keeps its files in `hf_cache`."""
    splits = read_local(task, path, hf_cache) if path is not None else read_hub(task, root, hf_cache)
    need = [*TASKS[task], "label"]
    for split in ("train", "validation"):
        if split not in splits:
            raise UserError(f"{path or 'GLUE'} has no {split} split of {task}; need train and validation")
        missing = [c for c in need if c not in splits[split].column_names]
        if missing:
            raise UserError(
                f"the {split} data of {task} in {path or 'GLUE'} has columns {', '.join(splits[split].column_names)}; "
                f"{task} needs {', '.join(need)} (GLUE's columns); missing: {', '.join(missing)}"
            )
    return splits


def read_local(task: str, path: Path, hf_cache: Path) -> dict:
    datasets = _quiet_datasets()
    if (path / "dataset_dict.json").is_file():
        return dict(datasets.load_from_disk(str(path)))
    files = _split_files(path)
    if "train" not in files or "validation" not in files:
        raise UserError(
            f"--data-dir {path} needs train and validation files of {task} (train.csv and validation.csv, or "
            f".tsv/.parquet/.json/.jsonl; dev.* for validation) or a folder written by save_to_disk"
        )
    out = {}
    for split, file in files.items():
        kind = FILE_FORMATS[file.suffix]
        extra = {"delimiter": "\t", "quoting": 3} if file.suffix == ".tsv" else {}
        try:
            out[split] = datasets.load_dataset(kind, data_files=str(file), split="train",
                                               cache_dir=str(hf_cache), **extra)
        except Exception as exc:  # a malformed file: the parser's own reason, on one line, and what was expected
            raise UserError(f"cannot read {file}: {_parse_failure(exc)}; expected {FILE_KINDS[file.suffix]} holding "
                            f"GLUE's columns {', '.join([*TASKS[task], 'label'])}") from None
    return out


def _parse_failure(exc: BaseException) -> str:
    """Why a file did not parse, in one line: the first cause under the datasets library's own wrapper
    ('An error occurred while generating the dataset')."""
    seen = exc
    while type(seen).__name__ == "DatasetGenerationError" and (seen.__cause__ or seen.__context__) is not None:
        seen = seen.__cause__ or seen.__context__
    text = " ".join(str(seen).split()).rstrip(".")
    return text or type(seen).__name__


def _offline() -> bool:
    flags = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    if any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in flags):
        return True
    return not reachable("https://huggingface.co")


def read_hub(task: str, root: Path, hf_cache: Path) -> dict:
    """GLUE from the hub (checked reachable first, so an offline machine gets an answer in seconds)."""
    saved = root / "glue" / task
    if _offline():
        raise UserError(
            f"no {task} files under {root} and the Hugging Face hub cannot be reached (offline): pass --data-dir PATH "
            f"with train and validation files ({', '.join([*TASKS[task], 'label'])}) or a save_to_disk folder"
        )
    datasets = _quiet_datasets()
    glue = datasets.load_dataset("nyu-mll/glue", task, cache_dir=str(hf_cache))
    glue.save_to_disk(str(saved))
    return dict(glue)


# --- tokenisation and its cache -----------------------------------------------------------------


def tokenizer_digest(tokenizer) -> str:
    """Identifies what a tokenizer does to text: its vocabulary, normaliser and special tokens."""
    if getattr(tokenizer, "is_fast", False):
        state = json.loads(tokenizer.backend_tokenizer.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        payload = json.dumps(state, sort_keys=True)
    else:
        payload = json.dumps(sorted(tokenizer.get_vocab().items()))
    payload += f"|{type(tokenizer).__name__}|{tokenizer.pad_token_id}"
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def tokenize(tokenizer, columns: list[list[str]], max_len: int) -> dict[str, list[list[int]]]:
    """Token ids, attention masks and token types of one split, truncated to `max_len`, unpadded."""
    return tokenizer(*columns, truncation=True, max_length=max_len, padding=False,
                     return_token_type_ids=True, return_attention_mask=True)


def _padded(encoded: dict, length: int, pad_id: int) -> np.ndarray:
    n = len(encoded["input_ids"])
    out = np.zeros((n, 3, length), dtype=np.int32)
    out[:, 0] = pad_id
    for i, (ids, mask, types) in enumerate(zip(encoded["input_ids"], encoded["attention_mask"],
                                               encoded["token_type_ids"])):
        out[i, 0, :len(ids)] = ids
        out[i, 1, :len(mask)] = mask
        out[i, 2, :len(types)] = types
    return out


def tokenize_splits(tokenizer, task: str, raw: dict, max_len: int) -> dict[str, torch.Tensor]:
    encoded, labels = {}, {}
    for split in ("train", "validation"):
        table = raw[split]
        columns = [[str(t) for t in table[c]] for c in TASKS[task]]
        labels[split] = np.asarray(table["label"], dtype=np.int64)
        if len(labels[split]) == 0 or labels[split].min() < 0 or labels[split].max() >= N_CLASSES:
            raise UserError(f"the {split} labels of {task} must be 0 or 1 (GLUE's test split, with hidden labels, "
                            "cannot be used)")
        encoded[split] = tokenize(tokenizer, columns, max_len)
    length = max(len(ids) for e in encoded.values() for ids in e["input_ids"])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return {
        "train_x": torch.from_numpy(_padded(encoded["train"], length, pad_id)),
        "train_y": torch.from_numpy(labels["train"]),
        "test_x": torch.from_numpy(_padded(encoded["validation"], length, pad_id)),
        "test_y": torch.from_numpy(labels["validation"]),
    }


def read_cache(path: Path) -> dict[str, torch.Tensor] | None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as handle:
            if (handle.metadata() or {}).get("version") != CACHE_VERSION:
                return None
        return load_file(str(path))
    except Exception:  # a torn or foreign file: tokenise again and overwrite it
        return None


def write_cache(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Written to a temporary name and renamed, so runs started together never read half a file."""
    from safetensors.torch import save_file

    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"version": CACHE_VERSION})
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"cannot write the tokenisation cache {path} ({exc}); "
                        "pass a --cache-dir you can write to") from None
