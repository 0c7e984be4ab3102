"""The training loop, evaluation, optimisers, checkpoints and seeding, independent of CLI and store."""

from .checkpoint import checkpoint_metadata, load_weights, save_weights
from .loop import EpochRecord, FitResult, evaluate, fit
from .seeding import seed_everything

__all__ = ["EpochRecord", "FitResult", "checkpoint_metadata", "evaluate", "fit", "load_weights", "save_weights",
           "seed_everything"]
