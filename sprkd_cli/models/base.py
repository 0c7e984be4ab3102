"""The split every model exposes, so methods can work below the input layer (sage)."""

from torch import Tensor, nn


class EmbedBody(nn.Module):
    """forward(x) = body(embed(x)). `embed` is the input layer; `body` the rest, head included."""

    embed: nn.Module
    body: nn.Module

    def forward(self, x: Tensor) -> Tensor:
        return self.body(self.embed(x))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
