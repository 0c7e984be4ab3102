"""Standard CIFAR augmentation on a batch of image tensors: a random crop with zero padding and a
random horizontal flip, drawn from a seeded generator so a run is reproducible.

Applied per batch in the training loop to the normalised tensors, so the padding is 0 in normalised
space (the per-channel mean colour) rather than black as with torchvision's PIL transforms."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

AUGMENT_STREAM = 1  # the augmentation draws from its own stream, apart from the data order


class CropFlip:
    """x (N, C, H, W) -> same shape: each image shifted by up to `padding` pixels each way (the
    uncovered border zero) and mirrored left-right with probability 1/2. The random draws come from a
    CPU generator whatever the device, so CPU and GPU runs see the same crops."""

    def __init__(self, seed: int, padding: int = 4):
        state = np.random.SeedSequence([seed, AUGMENT_STREAM]).generate_state(1)[0]
        self.generator = torch.Generator().manual_seed(int(state))
        self.padding = padding

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        p = self.padding
        shifts = torch.randint(0, 2 * p + 1, (n, 2), generator=self.generator)
        flips = torch.rand(n, generator=self.generator) < 0.5
        rows = (shifts[:, :1] + torch.arange(h)).to(x.device)  # (n, h) rows of the padded image
        ramp = torch.arange(w)
        cols = (shifts[:, 1:] + torch.where(flips[:, None], w - 1 - ramp, ramp)).to(x.device)  # (n, w)
        padded = F.pad(x, (p, p, p, p))
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        channels = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        return padded[batch, channels, rows[:, None, :, None], cols[:, None, None, :]]
