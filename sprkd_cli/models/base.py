"""The split every model exposes, so methods can work below the input layer (sage)."""

from torch import Tensor, nn


class EmbedBody(nn.Module):
    """forward(x) = body(embed(x)). `embed` is the input layer; `body` the rest, head included."""

    embed: nn.Module
    body: nn.Module

    def forward(self, x: Tensor) -> Tensor:
        return self.body(self.embed(x))

    def vectorise(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """embed(x), and the attention mask the body needs for token inputs (None for the others)."""
        return self.embed(x), None

    def from_vectors(self, vectors: Tensor, mask: Tensor | None = None) -> Tensor:
        """The body's logits on vectors as `vectorise` gives them."""
        return self.body(vectors)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
