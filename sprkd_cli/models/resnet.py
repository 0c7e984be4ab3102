"""CIFAR ResNets as defined in the CRD / RepDistiller model zoo (Tian et al., models/resnet.py):
resnet20 and resnet56 (stages of 16, 32, 64 channels), resnet8x4 and resnet32x4 (a 32-channel stem,
stages of 64, 128, 256). Basic blocks, a 1x1 convolution + BN shortcut where the shape changes, Kaiming
(fan-out) initialisation of the convolutions, BN weights 1 and biases 0.

`embed` is the stem (conv, BN, ReLU); `body` the three stages, global average pooling and the
classifier. The zoo's fixed 8x8 average pool is an adaptive one here: identical on 32x32 inputs, and
the nets also take other sizes (28x28 MNIST) and any number of input channels."""

from torch import Tensor, nn

from ..errors import UserError
from .base import EmbedBody, init_residual


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False),
                                            nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class CifarResNet(EmbedBody):
    """depth = 6n + 2: n basic blocks per stage; stage widths `width`, 2·width, 4·width after a stem of `stem`."""

    def __init__(self, *, input_shape: tuple[int, ...], n_classes: int, depth: int, stem: int, width: int):
        super().__init__()
        if len(input_shape) != 3:
            raise UserError(f"CIFAR ResNets need images (channels, height, width); this dataset gives {input_shape}")
        if depth < 8 or (depth - 2) % 6 or stem < 1 or width < 1:
            raise UserError(f"resnet depth must be 6n + 2 >= 8 and stem, width >= 1 (got depth {depth})")
        blocks = (depth - 2) // 6
        self.embed = nn.Sequential(conv3x3(input_shape[0], stem), nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        c_in = stem
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            stage_blocks = [BasicBlock(c_in if i == 0 else c_out, c_out, 2 if stage and i == 0 else 1)
                            for i in range(blocks)]
            layers.append(nn.Sequential(*stage_blocks))
            c_in = c_out
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, n_classes))
        init_residual(self)
