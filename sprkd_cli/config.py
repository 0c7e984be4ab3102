"""A run's complete configuration: every hyperparameter, stored with the run and hashed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "constant")
# Fields that say what to measure during a run, not how it trains: left out of the config hash,
# so a run with Hessian reports is the same experiment as one without (and compare reuses either).
MEASUREMENT_FIELDS = ("seed", "hessian_every", "hessian_density")
# A teacher's saddle tracking only reads the probe Hessian (mode, buffers and .grad restored, private RNGs):
# it trains the same teacher, so these are measurement fields too (tests/test_sprkd.py checks the metrics).
SADDLE_FIELDS = ("track_saddles", "saddle_every", "saddle_top_n", "saddle_rule", "saddle_alpha", "saddle_beta",
                 "max_saddles", "probe_batches", "probe_size", "probe_mode")
MEASUREMENT_FIELDS += SADDLE_FIELDS
# How the data are fetched and what hardware trains: not what the experiment is, so a --download or a
# GPU run is the same experiment and compare reuses it. (A GPU run's numbers differ in the last digits
# from a CPU run's; the run's row records the device it used.) The data folder stays in the hash: two
# folders may hold different files under one dataset name, and reuse matches on hash and seed alone.
LOCATION_FIELDS = ("download", "device")
# How often the training state is saved for --resume: a resumed run ends with the same numbers either way.
RECORDING_FIELDS = ("checkpoint_every",)


@dataclass
class TrainConfig:
    kind: str  # teacher | student
    method: str  # sgd for teachers; sgd | kd | ... for students
    dataset: str
    model: str
    seed: int = 0
    split_seed: int = 0
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    momentum: float = 0.9  # sgd only
    betas: tuple[float, float] = (0.9, 0.99)  # adam/adamw only
    schedule: str = "cosine"
    teacher_ids: list[str] = field(default_factory=list)
    method_options: dict = field(default_factory=dict)
    device: str = "cpu"
    data_dir: str | None = None  # --data-dir: where the dataset's files are (None: ./data, downloads allowed)
    download: bool = False  # image datasets: fetch missing files (torchvision, datasets); off: files only
    image_size: int | None = None  # malaria: the side images are resized to (None: 32)
    augment: bool = False  # random crop (padding 4) + horizontal flip of every training batch
    hessian_every: int = 0  # a Hessian report (top-5, bottom-1, Hutch++ trace) every N steps; 0: none
    hessian_density: bool = False  # add the SLQ density to those reports
    track_saddles: bool = False  # teachers: the strong-saddle test every saddle_every steps (METHODS.md, sprkd phase 1)
    saddle_every: int = 50
    saddle_top_n: int = 4  # eigenvalues of largest magnitude examined
    saddle_rule: str = "ratio"  # ratio: S- >= alpha*S+; magnitude: S- >= beta; both
    saddle_alpha: float = 0.4
    saddle_beta: float = 7.0
    max_saddles: int = 20  # the lowest-probe-loss ones are kept
    probe_batches: int = 2  # the probe set of the saddle test (and of --hessian-every reports)
    probe_size: int = 256
    probe_mode: str = "eval"
    checkpoint_every: float = 60.0  # seconds between saved training states (at epoch ends); 0: every epoch

    def to_dict(self) -> dict:
        out = asdict(self)
        out["betas"] = list(self.betas)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["betas"] = tuple(known.get("betas", (0.9, 0.99)))
        return cls(**known)

    def config_hash(self) -> str:
        """Identifies the experiment; the seed, measurement-only and location fields are not part of it
        (same hash + same seed = same run)."""
        body = {k: v for k, v in self.to_dict().items() if k not in MEASUREMENT_FIELDS + LOCATION_FIELDS + RECORDING_FIELDS}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
