"""Wide ResNets as defined in the CRD / RepDistiller model zoo (models/wrn.py, after Zagoruyko and
Komodakis): depth = 6n + 4, widen factor k, pre-activation basic blocks with stage widths 16k, 32k,
64k after a 16-channel stem, a 1x1 convolution shortcut where the shape changes. wrn-16-2 and wrn-40-2
are depth 16 and 40 with k = 2. Kaiming (fan-out) convolutions, BN weights 1 and biases 0, classifier
bias 0.

`embed` is the stem convolution; `body` the three stages, the final BN-ReLU, global average pooling and
the classifier (adaptive pooling: identical on 32x32 inputs, and other sizes work too)."""

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError
from .base import EmbedBody, init_residual


class WideBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.shortcut = None if c_in == c_out else nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        # As in the zoo: where the shape changes, the shortcut also sees the pre-activated input.
        activated = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(activated)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        return out + (x if self.shortcut is None else self.shortcut(activated))


class WideResNet(EmbedBody):
    def __init__(self, *, input_shape: tuple[int, ...], n_classes: int, depth: int, widen: int, dropout: float):
        super().__init__()
        if len(input_shape) != 3:
            raise UserError(f"wide ResNets need images (channels, height, width); this dataset gives {input_shape}")
        if depth < 10 or (depth - 4) % 6 or widen < 1 or not 0.0 <= dropout < 1.0:
            raise UserError(f"wrn depth must be 6n + 4 >= 10, widen >= 1 and 0 <= dropout < 1 (got depth {depth}, "
                            f"widen {widen}, dropout {dropout})")
        blocks = (depth - 4) // 6
        widths = (16 * widen, 32 * widen, 64 * widen)
        self.embed = nn.Conv2d(input_shape[0], 16, kernel_size=3, stride=1, padding=1, bias=False)
        stages: list[nn.Module] = []
        c_in = 16
        for stage, c_out in enumerate(widths):
            stages.append(nn.Sequential(*[WideBlock(c_in if i == 0 else c_out, c_out, 2 if stage and i == 0 else 1,
                                                    dropout) for i in range(blocks)]))
            c_in = c_out
        self.body = nn.Sequential(*stages, nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Linear(c_in, n_classes))
        init_residual(self, zero_linear_bias=True)
