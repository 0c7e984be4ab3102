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
    hessian_every: int = 0  # a Hessian report (top-5, bottom-1, Hutch++ trace) every N steps; 0: none
    hessian_density: bool = False  # add the SLQ density to those reports

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
        """Identifies the experiment; the seed and measurement-only fields are not part of it
        (same hash + same seed = same run)."""
        body = {k: v for k, v in self.to_dict().items() if k not in MEASUREMENT_FIELDS}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
