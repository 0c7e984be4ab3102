"""What a run loads: its data set (with the decoded-data cache), a stored run's model, and its teachers,
checked against the student's data."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import TrainConfig
from ..errors import UserError
from ..store import Run, Store
from ..store import artifacts as store_artifacts
from .lifecycle import read_run

if TYPE_CHECKING:
    from ..data import Splits

BEST_CHECKPOINT = "best.safetensors"
FINAL_CHECKPOINT = "model.safetensors"


def load_config_data(cfg: TrainConfig, store: Store, *, download: bool = False, progress: Callable | None = None):
    """The data set of `cfg`, read from its data dir, with what is derived from it cached in its
    --cache-dir, else $SPRKD_CACHE_DIR, else cache/ in `store`'s artifact root."""
    from ..data import load_dataset
    from ..data.source import cache_root

    return load_dataset(cfg.dataset, cfg.split_seed, data_dir=cfg.data_dir, model=cfg.model, image_size=cfg.image_size,
                        download=download, progress=progress,
                        cache_dir=str(cache_root(cfg.cache_dir, _local_or_none(store.artifact_root))))


def _local_or_none(root):
    """`root` when it is a local folder; None (the default ./runs/cache) when it is remote: decoded data
    is cached on the machine that uses it."""
    return None if store_artifacts.is_remote(root) else root


def resolve_teacher(store: Store, ref: str, data: Splits) -> Run:
    """The finished teacher run `ref`, checked against the student's dataset and split."""
    run = read_run(store, ref)
    if run.kind != "teacher":
        raise UserError(f"run {run.id} is a {run.kind} run, not a teacher; see `sprkd runs list --kind teacher`")
    if run.status != "finished":
        raise UserError(f"teacher {run.id} is {run.status}, not finished; train a teacher to completion first")
    split = run.config["data"]
    if split["n_classes"] != data.n_classes:
        raise UserError(
            f"teacher {run.id} predicts {split['n_classes']} classes ({run.dataset}) but the student's dataset "
            f"{data.name} has {data.n_classes}; use a teacher trained on {data.name}"
        )
    if run.dataset != data.name or split["split_seed"] != data.split_seed:
        raise UserError(
            f"teacher {run.id} was trained on {run.dataset} with split seed {split['split_seed']}; the student uses "
            f"{data.name} with split seed {data.split_seed}; a teacher must share the student's data and split "
            "(it would otherwise have seen the student's test examples)"
        )
    if split.get("tokenizer") != data.describe().get("tokenizer"):
        raise UserError(
            f"teacher {run.id} ({run.model}) tokenises {run.dataset} differently from the student; kd and sage on text "
            "need a student whose tokenizer is the teacher's (the same vocabulary)"
        )
    if tuple(split["input_shape"]) != data.input_shape:
        raise UserError(
            f"teacher {run.id} was trained on {run.dataset} inputs of shape {tuple(split['input_shape'])}, the "
            "student's "
            f"are {data.input_shape}; give the student the teacher's --image-size ({run.config.get('image_size')})")
    if split["fingerprint"] != data.describe()["fingerprint"]:
        raise UserError(f"teacher {run.id}'s split of {run.dataset} differs from the student's (the data changed)")
    return run


def load_run_model(run: Run, checkpoint: str = BEST_CHECKPOINT):
    """Rebuild a run's model from its stored config and load its checkpoint, in eval mode. A checkpoint
    whose header holds an `embed_config` (a sage student given the input layer of a teacher of another
    transformer family) gets an embedding module of that architecture before its weights are loaded."""
    from ..engine import checkpoint_metadata, load_weights
    from ..models import build_model

    cfg = TrainConfig.from_dict(run.config)
    split = run.config["data"]
    model = build_model(cfg.model, tuple(split["input_shape"]), split["n_classes"])
    from ..store.artifacts import join, location

    path = join(location(run.artifact_dir), checkpoint)
    embed = checkpoint_metadata(path).get("embed_config")
    if embed:
        from ..models.hf import embed_from_config

        model.embed = embed_from_config(embed)
    load_weights(model, path)
    return model.eval()
