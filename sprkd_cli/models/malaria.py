"""The malaria CNNs of the research: two unpadded 3x3 convolutions, one 2x2 max-pool, dropout, a hidden
fully connected layer, then the classes. For 3x32x32 inputs and 2 classes the teacher (4 and 8
channels, 16 hidden units) has 25,546 parameters and the student (2 and 4 channels, 8 hidden) 6,430.

`softmax=true` ends the network in a softmax, as the reference implementation's malaria CNNs do: every
loss then takes the softmax's probabilities as its logits (a softmax applied twice), which bounds the
cross-entropy below by about 0.31 and slows training. It is there to reproduce the reference's
numbers (docs/sprkd-reference.md), not as a recommendation."""

from torch import nn

from ..errors import UserError
from .base import EmbedBody


class MalariaCNN(EmbedBody):
    def __init__(self, *, input_shape: tuple[int, ...], n_classes: int, c1: int, c2: int, hidden: int,
                 dropout: float, softmax: bool = False):
        super().__init__()
        if len(input_shape) != 3 or min(input_shape[1:]) < 6:
            raise UserError(f"the malaria CNNs need images (channels, height, width) of at least 6x6; this dataset "
                            f"gives {input_shape}")
        if min(c1, c2, hidden) < 1 or not 0.0 <= dropout < 1.0:
            raise UserError(f"the malaria CNNs need c1, c2, hidden >= 1 and 0 <= dropout < 1 "
                            f"(got {c1}, {c2}, {hidden}, {dropout})")
        channels, height, width = input_shape
        pooled = ((height - 4) // 2) * ((width - 4) // 2)
        self.embed = nn.Conv2d(channels, c1, kernel_size=3)
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(c2 * pooled, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_classes),
            *([nn.Softmax(dim=1)] if softmax else []),
        )
