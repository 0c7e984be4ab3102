"""Statistics for comparing distillation methods across seeds (see docs/methods.md).

Imports only numpy, scipy and the standard library.
"""

from .claims import auc_val_acc, brown_forsythe, epochs_to, sd_last
from .compare import MIN_SEEDS, PairResult, compare_arms, power_note
from .effect_size import cohens_d, cohens_dz
from .mcnemar import McNemarResult, mcnemar_exact
from .multiple import holm
from .power import MAX_SEEDS, seeds_for_power, two_sample_power
from .summary import ArmSummary, summarize
from .ttests import PairedTTest, WelchTTest, paired_ttest, welch_ttest

__all__ = [
    "MAX_SEEDS",
    "MIN_SEEDS",
    "ArmSummary",
    "McNemarResult",
    "PairResult",
    "PairedTTest",
    "WelchTTest",
    "auc_val_acc",
    "brown_forsythe",
    "cohens_d",
    "cohens_dz",
    "compare_arms",
    "epochs_to",
    "holm",
    "mcnemar_exact",
    "paired_ttest",
    "power_note",
    "sd_last",
    "seeds_for_power",
    "summarize",
    "two_sample_power",
    "welch_ttest",
]
