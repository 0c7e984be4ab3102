"""A run's complete configuration: every hyperparameter, stored with the run and hashed."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

from .errors import UserError
from .options import above, at_least, capped, check_options, from_below, option
from .specs import SEED_LIMIT


def seed_range(value: int) -> str | None:
    return None if 0 <= value < SEED_LIMIT else "must be from 0 to 2^63-1"

# Fields that say what to measure during a run, not how it trains: left out of the config hash,
# so a run with Hessian reports is the same experiment as one without (and compare reuses either).
MEASUREMENT_FIELDS = ("seed", "hessian_every", "hessian_density", "eval_noise")
# A teacher's saddle tracking only reads the probe Hessian (mode, buffers and .grad restored, private RNGs):
# it trains the same teacher, so these are measurement fields too (tests/test_sprkd.py checks the metrics).
SADDLE_FIELDS = ("track_saddles", "saddle_every", "saddle_top_n", "max_saddles", "probe_batches", "probe_size",
                 "probe_mode")
MEASUREMENT_FIELDS += SADDLE_FIELDS
# How the data are fetched, where what is derived from them is cached, and what hardware trains (and how
# the probe set is cut to fit its memory: the Hessian is the same up to rounding): not what the experiment
# is, so a --download or a GPU run is the same experiment and compare reuses it. (A GPU run's numbers
# differ in the last digits from a CPU run's; the run's row records the device it used.)
# The data folder stays in the hash: two folders may hold different files under one dataset name, and
# reuse matches on hash and seed alone.
LOCATION_FIELDS = ("download", "device", "cache_dir", "probe_micro_batch")
# How often the training state is saved for --resume: a resumed run ends with the same numbers either way;
# and the name of the arm a run was trained for (compare --arm): one experiment may serve several arms.
RECORDING_FIELDS = ("checkpoint_every", "arm")
# An option added after runs were stored changes every hash unless its default is left out of the body; a
# migration instead brings the stored runs forward (their config and hash: migrations/versions/0004).


TRAIN = "Training"
HESSIAN = "Hessian during training"
SADDLES = "Saddle tracking (sprkd teachers)"
PROBE = "Probe set (Hessian and probe loss)"
CLAIMS = "Claims measured at the end (stats --metric)"

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "constant")
PROBE_MODES = ("eval", "train")
PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class TrainConfig:
    """Every training option is declared here once (default, help, check); the commands' flags derive
    from these declarations (cli/derive.py). kind, method, dataset, model, seed and teachers are each
    command's own arguments."""

    kind: str  # teacher | student
    method: str  # sgd for teachers; sgd | kd | ... for students
    dataset: str
    model: str
    seed: int = 0
    split_seed: int = option(0, "Seed of the train/val/test split (stored with the run).", check=seed_range)
    epochs: int = option(30, "Training epochs (at most 100000 unless sprkd --no-caps).", panel=TRAIN,
                         check=capped(1, 100_000))
    patience: int = option(0, "Early stopping: end the run this many epochs after its best validation epoch "
                                 "(accuracy, ties by lowest loss); 0: train every epoch.", panel=TRAIN,
                           check=at_least(0))
    batch_size: int = option(64, "Mini-batch size.", panel=TRAIN, check=capped(1, 1_000_000))
    optimizer: str = option("adamw", "Base optimizer.", panel=TRAIN, choices=OPTIMIZERS)
    lr: float = option(1e-3, "Learning rate.", panel=TRAIN, check=above(0))
    weight_decay: float = option(0.01, "Weight decay.", panel=TRAIN, check=at_least(0))
    momentum: float = option(0.9, "Momentum (sgd optimizer only), in [0, 1).", panel=TRAIN, check=from_below(0, 1))
    betas: tuple[float, float] = option(None, "Adam betas.", cli=False, factory=lambda: (0.9, 0.99))
    schedule: str = option("cosine", "Learning-rate schedule per step.", panel=TRAIN, choices=SCHEDULES)
    teacher_ids: list[str] = field(default_factory=list)
    method_options: dict = field(default_factory=dict)
    arm: str | None = None  # the arm of compare this run is trained for (None: the one named after its method)
    device: str = option("auto", "auto (cuda, then mps, else cpu), cpu, cuda or mps.", panel=TRAIN, choices=DEVICES)
    precision: str = option("fp32", "fp32, or mixed precision: bf16, fp16 (with loss scaling). Autocast of each "
                                    "training step's forward pass and loss and of evaluation; targets computed ahead "
                                    "(the teacher's, sage's rounds) and the Hessian and saddle probes stay fp32.",
                            panel=TRAIN, choices=PRECISIONS)
    data_dir: str | None = option(
        None, "Folder of the dataset's files (text tasks: a save_to_disk folder or train/validation parquet, csv, "
              "tsv or json files with GLUE's columns); default ./data.")
    cache_dir: str | None = option(
        None, "Folder for what sprkd derives from the data (decoded malaria images, token tensors), kept out of the "
              "data dir; default $SPRKD_CACHE_DIR, else cache/ in the artifact root (runs/cache beside the store).")
    download: bool = option(False, "Image datasets: download missing files (torchvision; malaria from the Hugging "
                                   "Face hub) into the data dir.")
    image_size: int | None = option(None, "malaria: side in pixels the images are resized to (default 32).",
                                    check=at_least(1))
    augment: bool = option(False, "Random crop (padding 4) and horizontal flip of every training batch, seeded "
                                  "(CIFAR-style images).", panel=TRAIN)
    hessian_every: int = option(0, "A Hessian report (top-5 and bottom-1 eigenvalues, Hutch++ trace) every N "
                                   "optimiser steps, stored with its step; 0: none.", panel=HESSIAN,
                                check=at_least(0))
    hessian_density: bool = option(False, "Add the SLQ eigenvalue density to the reports of --hessian-every.",
                                   panel=HESSIAN)
    track_saddles: bool = option(False, "Examine the probe Hessian during training and keep the saddle candidates "
                                        "(sprkd teachers; a student's --saddle-rule picks the strong ones).",
                                 panel=SADDLES, scope="teacher")
    saddle_every: int = option(50, "A saddle check every N optimiser steps.", panel=SADDLES, check=at_least(1),
                               scope="teacher")
    saddle_top_n: int = option(4, "Eigenvalues of largest magnitude the test looks at.", panel=SADDLES,
                               check=at_least(1), scope="teacher")
    max_saddles: int = option(20, "Keep the saddle candidates (checks with negative curvature) of this many highest "
                                  "S-/S+ and this many highest S- (whichever rule a student applies later).",
                              panel=SADDLES, check=at_least(1), scope="teacher")
    probe_batches: int = option(2, "Probe set: batches drawn once from the run's seed.", panel=PROBE,
                                check=at_least(1))
    probe_size: int = option(256, "Probe set: examples per batch.", panel=PROBE, check=at_least(1))
    probe_micro_batch: int = option(0, "Probe set: most examples whose gradient graph a Hessian-vector product holds "
                                       "at once (peak memory); the products sum over micro-batches, the same Hessian "
                                       "up to rounding (in --probe-mode train a micro-batch has its own batch "
                                       "statistics "
                                       "and dropout masks). 0: from the model's size (all of the probe set for a model "
                                       "of up to 4M parameters in eval mode, 16 examples for bert-base; the whole "
                                       "probe "
                                       "set in train mode). Lower it when a Hessian runs out of memory.",
                                    panel=PROBE, check=at_least(0))
    probe_mode: str = option("eval", "Module mode during a probe (restored after).", panel=PROBE,
                             choices=PROBE_MODES)
    checkpoint_every: float = option(60.0, "Seconds between saved training states for --resume (at epoch ends; 0: "
                                           "every epoch). Not part of the experiment's config hash.",
                                     check=at_least(0))
    eval_noise: str = option("", "Noise levels S,S,... (each >= 0): at the end, the test accuracy with Gaussian noise "
                                 "of "
                                 "sd S x each input feature's training sd added to the test inputs (fixed noise "
                                 "seed), on the best-val and the final weights; stored as noise_acc:S. Not for "
                                 "text (token-id) datasets.", panel=CLAIMS)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["betas"] = list(self.betas)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["betas"] = tuple(known.get("betas", (0.9, 0.99)))
        return cls(**known)

    def check(self) -> None:
        """UserError for the first option value its declaration refuses."""
        wrong = seed_range(self.seed)
        if wrong:
            raise UserError(f"--seed {wrong} (got {self.seed})")
        check_options(self)
        if self.eval_noise:
            noise_levels(self.eval_noise)
            from .data import LOADERS, check_dataset_name

            if LOADERS[check_dataset_name(self.dataset)][1] == "text":
                raise UserError(f"--eval-noise adds Gaussian noise to input features; {self.dataset} gives token ids, "
                                "where noise means nothing: drop --eval-noise")

    def config_hash(self) -> str:
        """Identifies the experiment; the seed, measurement-only and location fields are not part of it
        (same hash + same seed = same run)."""
        left_out = MEASUREMENT_FIELDS + LOCATION_FIELDS + RECORDING_FIELDS
        body = {k: v for k, v in self.to_dict().items() if k not in left_out}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def noise_levels(text: str) -> list[float]:
    """The levels of --eval-noise ("0.1,0.3": each a finite number >= 0), in the order given, each once."""
    levels = []
    for part in text.split(","):
        try:
            level = float(part)
        except ValueError:
            level = math.nan
        if not math.isfinite(level) or level < 0:
            raise UserError(f"bad --eval-noise '{text}': give comma-separated noise levels >= 0, e.g. 0.1,0.3")
        if noise_key(level) not in map(noise_key, levels):
            levels.append(level)
    return levels


def noise_key(level: float) -> str:
    """How a noise level is named in metrics and summaries: noise_acc:0.1 (0.10 and .1 are one level)."""
    return f"{float(level):g}"


def same_tracking(run, cfg: TrainConfig) -> bool:
    """Whether a stored run tracked saddles as `cfg` asks (for --reuse: an untracked teacher is not one)."""
    if not cfg.track_saddles:
        return True
    defaults = TrainConfig(kind="", method="", dataset="", model="")
    return all(run.config.get(f, getattr(defaults, f)) == getattr(cfg, f) for f in SADDLE_FIELDS)
