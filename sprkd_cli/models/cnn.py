"""A small two-convolution network for image inputs (C x H x W)."""

from torch import nn

from ..errors import UserError
from .base import EmbedBody


class SmallCNN(EmbedBody):
    def __init__(self, *, input_shape: tuple[int, ...], n_classes: int, channels: int):
        super().__init__()
        if len(input_shape) != 3:
            raise UserError(f"cnn needs image inputs (channels, height, width); this dataset gives {input_shape}")
        self.embed = nn.Conv2d(input_shape[0], channels, kernel_size=3, padding=1)
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * channels, n_classes),
        )
