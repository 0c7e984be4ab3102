import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch from one seed: same seed, same machine, identical numbers."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
